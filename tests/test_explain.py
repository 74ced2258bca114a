"LIME explanations: seeded, paired, an IoU with sanity baselines, a figure, the CLI and bad input."
import json

import numpy as np
import pytest

from medsyn.classify import classify
from medsyn.data import write_synthetic
from medsyn.core import MedsynError, load_settings
from medsyn.data import load_medmnist
from medsyn.explain import explain, iou, random_iou, segmenter, top_mask

FLAG = "breastmnist"


def smoke(**kw):
    return load_settings("smoke", **{"train_fraction": 0.1, "device": "cpu", **kw})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    "A real-trained and a (stand-in) synthetic-trained classifier, at smoke scale."
    d = tmp_path_factory.mktemp("lime")
    tr = load_medmnist(FLAG, "train")
    rng = np.random.default_rng(0)
    imgs = np.clip(tr.images[:60] + rng.normal(0, 30, tr.images[:60].shape), 0, 255).astype(np.uint8)
    syn = write_synthetic(d / "syn.npz", imgs, tr.labels[:60], FLAG)
    classify(FLAG, "real", d / "real", seeds=[0], settings=smoke(), progress=False)
    classify(FLAG, "synthetic", d / "syn", synthetic=syn, seeds=[0], settings=smoke(), progress=False)
    return d / "real" / "seed-0", d / "syn" / "seed-0"


def test_iou_and_baselines():
    a = np.zeros((4, 4), bool); a[:2] = True
    b = np.zeros((4, 4), bool); b[1:3] = True
    assert iou(a, a) == 1.0 and iou(a, b) == pytest.approx(4 / 12) and iou(a, ~a) == 0.0
    seg = np.arange(25).reshape(5, 5)
    assert random_iou(seg, 25) == 1.0                      # all superpixels: always the same set
    assert 0.05 < random_iou(seg, 3) < 0.15                # 3 of 25 at random: about 0.07
    assert top_mask(seg, {3: 0.2, 7: 0.9, 9: -1.0}, 2).sum() == 2


def test_segmentation_gives_about_the_requested_superpixels():
    te = load_medmnist(FLAG, "test")
    for img in te.images[:5]:
        n = len(np.unique(segmenter(25)(np.repeat(img[..., None], 3, -1))))
        assert 15 <= n <= 30


def test_explain_two_classifiers(models, tmp_path):
    real, syn = models
    s = smoke()
    res = explain(real, FLAG, tmp_path / "a", compare_dir=syn, n=2, settings=s, progress=False)
    assert (tmp_path / "a" / "lime_breastmnist.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "a" / "explain.json").read_text())
    assert saved["n"] == 2 and len(saved["iou_per_image"]) == 2 and 0 <= saved["mean_iou"] <= 1
    assert saved["mean_iou"] == pytest.approx(np.mean(saved["iou_per_image"]))
    assert saved["lime"]["samples"] == s.lime_samples and saved["lime"]["top_k"] == s.lime_top_k
    assert saved["baseline"]["self_iou"] == 1.0 and 0 < saved["baseline"]["random_iou"] < 1
    assert saved["run_record"]["seed"] == 0
    with np.load(tmp_path / "a" / "explanations.npz") as z:
        assert list(z["indices"]) == res["indices"] and z["segments/0"].shape == (28, 28)
        w0 = z["weights/0/0"]
        # the IoU in the JSON is the one the saved weights give
        m = [top_mask(z["segments/0"], dict(enumerate(z[f"weights/{j}/0"])), s.lime_top_k) for j in (0, 1)]
        assert iou(*m) == pytest.approx(saved["iou_per_image"][0])
    again = explain(real, FLAG, tmp_path / "b", compare_dir=syn, n=2, settings=s, progress=False)
    assert again["iou_per_image"] == res["iou_per_image"] and again["indices"] == res["indices"]   # seeded
    with np.load(tmp_path / "b" / "explanations.npz") as z:
        np.testing.assert_allclose(z["weights/0/0"], w0, atol=1e-6)


def test_a_classifier_agrees_with_itself(models, tmp_path):
    real, _ = models
    res = explain(real, FLAG, tmp_path / "self", compare_dir=real, n=2, settings=smoke(), progress=False)
    assert res["mean_iou"] == 1.0


def test_single_model_and_colour_images(tmp_path):
    s = smoke(train_fraction=0.05)
    classify("retinamnist", "real", tmp_path / "rt", seeds=[0], settings=s, progress=False)
    res = explain(tmp_path / "rt" / "seed-0", "retinamnist", tmp_path / "lime", n=1, settings=s, target="predicted", progress=False)
    assert res["mean_iou"] is None and res["target"] == "predicted" and (tmp_path / "lime" / "lime_retinamnist.png").exists()


def test_bad_input(models, tmp_path):
    real, _ = models
    s = smoke()
    with pytest.raises(MedsynError, match="not 'pneumoniamnist'"):
        explain(real, "pneumoniamnist", tmp_path / "x", settings=s)
    with pytest.raises(MedsynError, match="not a classifier folder"):
        explain(tmp_path, FLAG, tmp_path / "x", settings=s)
    with pytest.raises(MedsynError, match="more than the 156 test images"):
        explain(real, FLAG, tmp_path / "x", n=1000, settings=s)
    assert not (tmp_path / "x").exists()


def test_cli_explain(cli, models, tmp_path):
    real, syn = models
    p = cli("explain", "--classifier", real, "--compare", syn, "--dataset", FLAG, "--n", "1", "--preset", "smoke",
            "--lime-samples", "30", "--quiet", "--out", tmp_path / "e", check=True)
    assert "mean top-3 superpixel IoU" in p.stdout
    assert json.loads((tmp_path / "e" / "explain.json").read_text())["lime"]["samples"] == 30
    p = cli("explain", "--classifier", tmp_path / "nothing", "--dataset", FLAG, "--preset", "smoke", "--out", tmp_path / "y")
    assert p.returncode == 2 and "not a classifier folder" in p.stderr
