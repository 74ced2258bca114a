"Data loading: checksums, error paths, conversions, subsampling and the `medsyn data` CLI."
import shutil

import numpy as np
import pytest
from PIL import Image

from medsyn.core import MedsynError
from medsyn import data as D


def test_embedded_sets_load_with_published_sizes():
    for flag, sizes in {"pneumoniamnist": (4708, 524, 624), "breastmnist": (546, 78, 156),
                        "retinamnist": (1080, 120, 400)}.items():
        got = tuple(len(D.load_medmnist(flag, s)) for s in D.SPLITS)
        assert got == sizes, flag


def test_unknown_and_3d_flags_list_valid_ones():
    with pytest.raises(MedsynError, match="Valid 2D flags: .*pneumoniamnist"):
        D.load_medmnist("pneumonia")
    with pytest.raises(MedsynError, match="3D MedMNIST set"):
        D.load_medmnist("nodulemnist3d")
    with pytest.raises(MedsynError, match="unsupported image size 32"):
        D.load_medmnist("breastmnist", size=32)
    with pytest.raises(MedsynError, match="unknown split"):
        D.load_medmnist("breastmnist", split="dev")


def test_corrupt_file_is_named_and_never_used(tmp_path, monkeypatch):
    # a truncated BloodMNIST in a user data dir (not embedded, so it is the only candidate)
    src = D.repo_root() / "data" / "breastmnist.npz"
    bad = tmp_path / "bloodmnist.npz"
    bad.write_bytes(src.read_bytes()[:1000])
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "root"))
    with pytest.raises(MedsynError, match=f"checksum mismatch for {bad}"):
        D.load_medmnist("bloodmnist", data_dir=tmp_path, download=False)
    # and a corrupted copy of an embedded file fails on its own checksum
    cp = tmp_path / "copy.npz"
    cp.write_bytes(src.read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(MedsynError, match="corrupt or truncated"):
        D.verify_md5(cp, D.medmnist_info("breastmnist")["md5"][28])


def test_the_users_data_dir_is_never_shadowed_by_the_embedded_copy(tmp_path, cli):
    src = D.repo_root() / "data" / "breastmnist.npz"
    (tmp_path / "good").mkdir(); (tmp_path / "bad").mkdir()
    shutil.copy(src, tmp_path / "good" / "breastmnist.npz")
    assert D.load_medmnist("breastmnist", data_dir=tmp_path / "good").path == tmp_path / "good" / "breastmnist.npz"
    (tmp_path / "bad" / "breastmnist.npz").write_bytes(src.read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(MedsynError, match=f"checksum mismatch for {tmp_path / 'bad' / 'breastmnist.npz'}"):
        D.load_medmnist("breastmnist", data_dir=tmp_path / "bad")
    p = cli("data", "info", "breastmnist", "--data-dir", tmp_path / "bad")       # as a new user would try it
    assert p.returncode == 2 and "checksum mismatch" in p.stderr, p.stderr


def test_missing_file_says_what_to_place_where(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "root"))
    with pytest.raises(MedsynError, match=r"Place dermamnist_128\.npz \(MD5 [0-9a-f]{32}\) in one of: .*root"):
        D.load_medmnist("dermamnist", size=128, data_dir=tmp_path, download=False)


def test_failed_download_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "root"))
    def no_network(*a, **k): raise RuntimeError("Automatic download failed!")
    monkeypatch.setattr(D, "_download", no_network)
    with pytest.raises(MedsynError, match="download failed .*Place bloodmnist.npz"):
        D.load_medmnist("bloodmnist", data_dir=tmp_path)


def test_roundtrip_is_exact_for_every_set():
    for flag in ("pneumoniamnist", "retinamnist"):
        x = D.load_medmnist(flag, "val").images
        t = D.to_tensor(x)
        assert t.min() >= -1 and t.max() <= 1 and t.ndim == 4
        assert np.array_equal(D.to_uint8(t), x)


def test_stratified_subsample_keeps_every_class():
    ds = D.load_medmnist("retinamnist", "train")
    sub = D.subsample(ds, fraction=0.05, seed=1)
    counts = sub.class_counts()
    assert all(c >= 1 for c in counts) and sum(counts) < len(ds) * 0.06
    assert sub.class_counts() == D.subsample(ds, fraction=0.05, seed=1).class_counts()
    assert not np.array_equal(D.stratified_indices(ds.labels, 0.05, seed=1), D.stratified_indices(ds.labels, 0.05, seed=2))
    for bad in (0, -0.1, 1.01):
        with pytest.raises(MedsynError, match=r"fraction must be in \(0, 1\]"):
            D.subsample(ds, fraction=bad)
    with pytest.raises(MedsynError, match="class 2 has no images"):
        D.stratified_indices(np.array([0, 1, 3]), fraction=0.5, n_classes=4)


def test_chestmnist_refused_for_conditioning():
    with pytest.raises(MedsynError, match="multi-label"):
        D.check_conditioning(D.medmnist_info("chestmnist"))


def test_cli_data_info(cli):
    p = cli("data", "info", "pneumoniamnist", check=True)
    assert "4708/524/624" in p.stdout and "pneumonia" in p.stdout and "1 channel" in p.stdout
    assert "1214" in p.stdout and "3494" in p.stdout


def test_cli_data_grid(cli, tmp_path):
    out = tmp_path / "g.png"
    cli("data", "grid", "retinamnist", "--out", out, "--n", "4", check=True)
    im = Image.open(out)
    assert im.size[0] > 200 and im.size[1] > 200
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_cli_errors_are_clear(cli):
    p = cli("data", "info", "organmnist3d")
    assert p.returncode == 2 and "3D MedMNIST set" in p.stderr and "Traceback" not in p.stderr
    p = cli("data", "info", "nosuchmnist")
    assert p.returncode == 2 and "Valid 2D flags" in p.stderr
