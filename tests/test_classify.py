"Classifiers: architectures, the MedMNIST metrics, every regime at smoke settings, class fidelity, the CLI, bad input."
import json

import numpy as np
import pytest
import torch

from medsyn.classify import (build_classifier, class_fidelity, classification_metrics, classify,
                             load_classifier, predict, train_classifier, weights_file)
from medsyn.core import ARCHS, MedsynError, load_settings
from medsyn.data import load_medmnist, subsample, write_synthetic

FLAG = "breastmnist"


def smoke(**kw):
    return load_settings("smoke", **{"train_fraction": 0.1, "device": "cpu", **kw})


def make_synthetic(path, n=60, noise=10.0, flag=FLAG, seed=0):
    "A stand-in synthetic set: real training images plus Gaussian noise, with a side-car naming the data set."
    tr = load_medmnist(flag, "train")
    idx = np.random.default_rng(seed).choice(len(tr), n, replace=False)
    imgs = np.clip(tr.images[idx] + np.random.default_rng(seed).normal(0, noise, tr.images[idx].shape), 0, 255).astype(np.uint8)
    return write_synthetic(path, imgs, tr.labels[idx], flag)


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("syn") / "syn.npz")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "real"
    return out, classify(FLAG, "real", out, seeds=[0, 1], settings=smoke(archs="resnet18_28"), progress=False)


def test_synthetic_fixture_is_medmnist_format(syn):
    with np.load(syn) as z:
        assert z["train_images"].dtype == np.uint8 and z["train_images"].shape == (60, 28, 28)
        assert z["train_labels"].dtype == np.uint8 and z["train_labels"].shape == (60, 1)
    assert json.loads(syn.with_suffix(".json").read_text())["flag"] == FLAG


@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in ("resnet18_28", "cnn")])
@pytest.mark.parametrize("channels", [1, 3])
def test_torchvision_archs_forward_and_backward_on_cpu(arch, channels):
    m = build_classifier(arch, channels, 3, input_size=32)
    assert m.input_size == 32
    x = torch.randn(2, channels, 28, 28)
    loss = torch.nn.functional.cross_entropy(m(x), torch.tensor([0, 2]))
    loss.backward()
    assert m(x).shape == (2, 3)
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_resnet18_28_is_the_benchmark_variant():
    m = build_classifier("resnet18_28", 1, 2)
    assert m.input_size is None                       # no resizing: runs at the native 28 px
    assert m.net.conv1.kernel_size == (3, 3) and m.net.conv1.stride == (1, 1) and m.net.conv1.in_channels == 1
    assert isinstance(m.net.maxpool, torch.nn.Identity)
    assert build_classifier("resnet18", 3, 2).input_size == 224


@pytest.mark.parametrize("channels", [1, 3])
def test_small_cnn_runs_at_native_size_and_learns(channels):
    torch.manual_seed(0)
    m = build_classifier("cnn", channels, 3)
    assert m.input_size is None and sum(p.numel() for p in m.parameters()) < 500_000
    x, y = torch.randn(12, channels, 28, 28), torch.arange(12) % 3
    x = x + y[:, None, None, None]                   # a learnable signal: the class shifts the brightness
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 2


def test_small_cnn_has_no_imagenet_weights(capsys):
    with pytest.raises(MedsynError, match="cnn has no ImageNet weights"):
        build_classifier("cnn", 1, 2, pretrained="required")
    build_classifier("cnn", 1, 2, pretrained="true")      # falls back to training from scratch, and says so
    assert "training it from scratch" in capsys.readouterr().err.lower()


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(MedsynError, match="Valid architectures: resnet18_28, resnet18, resnet50, densenet121, vgg19_bn"):
        build_classifier("resnet34", 1, 2)


def test_pretrained_required_fails_without_cached_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MedsynError, match=r"resnet50-.*\.pth is not in .*checkpoints"):
        build_classifier("resnet50", 1, 2, pretrained="required", input_size=32)
    m = build_classifier("resnet18", 1, 2, pretrained="true", input_size=32)   # falls back, says so
    assert "from scratch" in capsys.readouterr().err and m(torch.randn(2, 1, 28, 28)).shape == (2, 2)


def test_pretrained_weights_are_read_from_the_hub_cache(tmp_path, monkeypatch):
    "A weights file in torch hub's cache is used (a random stand-in here: no download in tests)."
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    f = weights_file("resnet18")
    f.parent.mkdir(parents=True)
    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), f)
    m = build_classifier("resnet18", 1, 2, pretrained="required", input_size=32)
    assert torch.allclose(m.net.conv1.weight, ref.conv1.weight.sum(1, keepdim=True))      # grey = RGB kernel summed
    assert torch.equal(m.net.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    m28 = build_classifier("resnet18_28", 3, 2, pretrained="true")
    assert torch.equal(m28.net.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)


def test_metrics_equal_medmnist_evaluator(real_run):
    from medmnist.evaluator import getACC, getAUC
    out, _ = real_run
    with np.load(out / "predictions.npz") as z:
        y, scores = z["labels"], z["scores/real/seed0"]
    m = classification_metrics(y, scores, "binary-class", 2)
    assert m["acc"] == pytest.approx(getACC(y, scores, "binary-class"), abs=1e-6)
    assert m["auc"] == pytest.approx(getAUC(y, scores, "binary-class"), abs=1e-6)
    rng = np.random.default_rng(1)
    yr, sr = rng.integers(0, 5, 400), rng.dirichlet(np.ones(5), 400)
    mr = classification_metrics(yr, sr, "ordinal-regression", 5)
    assert mr["acc"] == pytest.approx(getACC(yr, sr, "ordinal-regression"), abs=1e-6)
    assert mr["auc"] == pytest.approx(getAUC(yr, sr, "ordinal-regression"), abs=1e-6)
    assert len(mr["recall_per_class"]) == 5 and np.array(mr["confusion"]).sum() == 400


def test_real_regime_writes_metrics_predictions_models(real_run):
    out, res = real_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["regime"] == "real" and metrics["seeds"] == [0, 1]
    assert set(metrics["cells"][0]["per_seed"]) == {"0", "1"}
    accs = [metrics["cells"][0]["per_seed"][s]["acc"] for s in "01"]
    assert metrics["mean"]["acc"] == pytest.approx(np.mean(accs)) and metrics["std"]["acc"] == pytest.approx(np.std(accs, ddof=1))
    assert metrics["run_record"]["settings"]["preset"] == "smoke" and "versions" in metrics["run_record"]
    te = load_medmnist(FLAG, "test")
    with np.load(out / "predictions.npz") as z:
        assert np.array_equal(z["labels"], te.labels) and z["scores/real/seed1"].shape == (len(te), 2)
        saved = z["scores/real/seed0"]
    model, meta = load_classifier(out / "seed-0")
    assert meta["arch"] == "resnet18_28" and meta["flag"] == FLAG and meta["label_names"] == ["malignant", "normal, benign"]
    assert meta["in_channels"] == 1 and meta["n_classes"] == 2 and meta["run_record"]["seed"] == 0
    np.testing.assert_allclose(predict(model, te), saved, atol=1e-5)           # the saved model is the tested one
    assert not list(out.parent.glob(".real.partial-*"))                       # staging folder cleaned up


def test_training_is_seeded_and_keeps_best_val_epoch():
    s = smoke(clf_epochs=3)
    tr, va = subsample(load_medmnist(FLAG, "train"), 0.05, seed=0), load_medmnist(FLAG, "val")
    m1, h1 = train_classifier(tr, va, "resnet18_28", s, seed=3, progress=False)
    m2, h2 = train_classifier(tr, va, "resnet18_28", s, seed=3, progress=False)
    np.testing.assert_allclose(predict(m1, va), predict(m2, va), atol=1e-5)
    assert [e["lr"] for e in h1["epochs"]] == pytest.approx([1e-3, 1e-4, 1e-5])   # x0.1 at 50 % and 75 % of 3 epochs
    best = max(h1["epochs"], key=lambda e: e["val_auc"])
    assert h1["best_val_auc"] == best["val_auc"]
    assert classification_metrics(va.labels, predict(m1, va), "binary-class", 2)["auc"] == pytest.approx(best["val_auc"], abs=1e-5)


def test_synthetic_regime_tstr(tmp_path, syn):
    res = classify(FLAG, "synthetic", tmp_path / "tstr", synthetic=syn, seeds=[0], settings=smoke(), progress=False)
    cell = res["cells"][0]["per_seed"]["0"]
    assert cell["n_real"] == 0 and cell["n_synthetic"] == 60 and 0 <= res["mean"]["auc"] <= 1
    assert json.loads((tmp_path / "tstr" / "seed-0" / "classifier.json").read_text())["synthetic"] == str(syn)


def test_mixed_regime_adds_mix_ratio_synthetic_per_real(tmp_path, syn):
    res = classify(FLAG, "mixed", tmp_path / "mixed", synthetic=syn, seeds=[0], settings=smoke(mix_ratio=0.5), progress=False)
    cell = res["cells"][0]["per_seed"]["0"]
    assert cell["n_real"] == 55 and cell["n_synthetic"] == 28          # 10 % of 546 real, 0.5 synthetic per real image


def test_the_retired_low_data_regime_points_to_the_scarce_experiment(tmp_path, syn):
    with pytest.raises(MedsynError, match="trains a generator on each subset only"):
        classify(FLAG, "low_data", tmp_path / "low", synthetic=syn, seeds=[0], settings=smoke(), progress=False)
    assert nothing_written(tmp_path, "low")


def test_class_fidelity(real_run, syn):
    out, _ = real_run
    f = class_fidelity(out / "seed-0", syn, settings=smoke())
    assert f["n"] == 60 and f["flag"] == FLAG and len(f["f1_per_class"]) == 2 and len(f["auc_per_class"]) == 2
    assert 0 <= f["f1_macro"] <= 1 and 0 <= f["auc"] <= 1 and 0 <= f["real_test"]["auc"] <= 1
    with np.load(syn) as z:
        y = z["train_labels"].reshape(-1)
    model, _ = load_classifier(out / "seed-0")
    assert f["acc"] == pytest.approx(classification_metrics(y, predict(model, z_images(syn)), "binary-class", 2)["acc"])


def z_images(path):
    with np.load(path) as z:
        return z["train_images"]


def nothing_written(tmp_path, name="bad"):
    return not (tmp_path / name).exists() and not list(tmp_path.glob(f".{name}.*"))


def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, syn, monkeypatch):
    s, out = smoke(), tmp_path / "bad"
    cases = [
        (dict(regime="tstr"), "Valid regimes: real, synthetic, mixed$"),
        (dict(regime="real", arch="resnet34"), "Valid architectures: resnet18_28"),
        (dict(regime="synthetic"), "needs a synthetic data set"),
        (dict(regime="mixed", synthetic=tmp_path / "missing.npz"), "no such file"),
    ]
    rt = load_medmnist("retinamnist", "train")
    cases.append((dict(regime="mixed", synthetic=write_synthetic(tmp_path / "rt.npz", rt.images[:5], rt.labels[:5], "retinamnist")),
                   "imitates 'retinamnist'"))
    cases.append((dict(regime="mixed", synthetic=write_synthetic(tmp_path / "rgb.npz", rt.images[:5], [0, 1, 0, 1, 0], FLAG)),
                   r"needs uint8 \(28, 28\) \(1 channel"))
    cases.append((dict(regime="synthetic", synthetic=write_synthetic(tmp_path / "big.npz", np.zeros((4, 64, 64), np.uint8), [0, 1, 0, 1], FLAG)),
                   r"needs uint8 \(28, 28\)"))
    cases.append((dict(regime="mixed", synthetic=write_synthetic(tmp_path / "lab.npz", z_images(syn)[:4], [0, 1, 5, 1], FLAG)),
                   r"labels \[5\] are not classes of breastmnist"))
    cases.append((dict(regime="synthetic", synthetic=write_synthetic(tmp_path / "one.npz", z_images(syn)[:4], [1, 1, 1, 1], FLAG)),
                   r"no images of class\(es\) \[0\]"))
    for kw, msg in cases:
        with pytest.raises(MedsynError, match=msg):
            classify(FLAG, out=out, seeds=[0], settings=s, progress=False, **kw)
        assert nothing_written(tmp_path), kw
    # a class with no images in the real training split: subsampling (train_fraction) cannot keep it
    import medsyn.classify as C
    real_load = C.load_medmnist
    def without_class_0(flag, split="train", *a, **k):
        ds = real_load(flag, split, *a, **k)
        return ds.subset(np.flatnonzero(ds.labels != 0)) if split == "train" else ds
    monkeypatch.setattr(C, "load_medmnist", without_class_0)
    with pytest.raises(MedsynError, match="class 0 has no images"):
        classify(FLAG, "real", out, seeds=[0], settings=s, progress=False)
    assert nothing_written(tmp_path)


def test_cli_classify_and_fidelity(cli, tmp_path, syn):
    p = cli("classify", "--dataset", FLAG, "--regime", "mixed", "--synthetic", syn, "--preset", "smoke",
            "--train-fraction", "0.1", "--seeds", "0", "--device", "cpu", "--quiet", "--out", tmp_path / "m", check=True)
    assert "ACC" in p.stdout and (tmp_path / "m" / "metrics.json").exists() and (tmp_path / "m" / "seed-0" / "model.pt").exists()
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["run_record"]["settings"]["train_fraction"] == 0.1
    p = cli("classify", "--fidelity-of", syn, "--classifier", tmp_path / "m" / "seed-0", "--preset", "smoke", "--out", tmp_path / "f", check=True)
    assert "class fidelity" in p.stdout and json.loads((tmp_path / "f" / "fidelity.json").read_text())["n"] == 60


def test_cli_torchvision_arch_on_cpu(cli, tmp_path):
    cli("classify", "--dataset", FLAG, "--regime", "real", "--arch", "resnet18", "--input-size", "32", "--preset", "smoke",
        "--train-fraction", "0.05", "--seeds", "0", "--quiet", "--out", tmp_path / "r", check=True)
    meta = json.loads((tmp_path / "r" / "seed-0" / "classifier.json").read_text())
    assert meta["arch"] == "resnet18" and meta["input_size"] == 32
    assert load_classifier(tmp_path / "r" / "seed-0")[0].input_size == 32


def test_cli_bad_input_exits_2(cli, tmp_path):
    p = cli("classify", "--dataset", FLAG, "--regime", "synthetic", "--preset", "smoke", "--out", tmp_path / "x")
    assert p.returncode == 2 and "needs a synthetic data set" in p.stderr and "Traceback" not in p.stderr
    p = cli("classify", "--dataset", FLAG, "--regime", "real", "--arch", "vgg16", "--preset", "smoke", "--out", tmp_path / "x")
    assert p.returncode == 2 and "Valid architectures" in p.stderr
    assert not (tmp_path / "x").exists()


def test_a_synthetic_set_without_side_car_takes_the_data_set_named_on_the_command_line(tmp_path, cli):
    tr = load_medmnist(FLAG, "train")
    np.savez(tmp_path / "bare.npz", train_images=tr.images[:40], train_labels=tr.labels[:40, None].astype(np.uint8))
    p = cli("classify", "--dataset", FLAG, "--regime", "synthetic", "--synthetic", tmp_path / "bare.npz", "--preset", "smoke",
            "--seeds", "0", "--archs", "cnn", "--out", tmp_path / "tstr", "--quiet")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "tstr" / "metrics.json").read_text())["cells"][0]["per_seed"]["0"]["n_synthetic"] == 40
