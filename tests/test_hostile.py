"""Hostile and broken inputs: each is refused with a message that names the problem and what is allowed, and leaves no
partial output. Cases are recorded for the reliability table (tools/faults_table.py) when MEDSYN_FAULTS_LOG is set."""
import json, os, pickle, re, zipfile
from pathlib import Path

import numpy as np
import pytest

from medsyn.core import MedsynError, load_settings, load_json
from medsyn.data import load_medmnist, load_npz
from tests.conftest import ROOT, run_cli
from tests.faultlog import record

pytestmark = pytest.mark.faults
FLAG = "breastmnist"


@pytest.fixture(scope="module")
def val():
    return load_medmnist(FLAG, "val")


class Evil:
    "A pickle whose loading would create a file: proof that a loader ran code."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (open, (self.marker, "w"))


# --- synthetic npz files -------------------------------------------------------------------------------------------

def _two_per_class(v):
    idx = np.concatenate([np.flatnonzero(v.labels == c)[:2] for c in range(2)])
    return v.images[idx], v.labels[idx]


def _npz(kind, d, v):
    "Write the hostile synthetic set `kind` into folder `d`; return its path."
    x, y = _two_per_class(v)
    p = d / f"{kind}.npz"
    arrays = dict(train_images=x, train_labels=y[:, None].astype(np.uint8))
    side = {"flag": FLAG}
    if kind == "float_dtype": arrays["train_images"] = x.astype(np.float32) / 255
    elif kind == "bad_shape": arrays["train_images"] = x[:, :, :27]
    elif kind == "rgb_channels": arrays["train_images"] = np.repeat(x[..., None], 3, -1)
    elif kind == "label_range": arrays["train_labels"] = np.array([[0], [1], [7], [1]], np.uint8)
    elif kind == "nan": arrays["train_images"] = np.where(x > 128, np.nan, x.astype(np.float32))
    elif kind == "inf": arrays["train_images"] = np.where(x > 128, np.inf, x.astype(np.float32))
    elif kind == "empty_class": arrays["train_labels"] = np.zeros((len(x), 1), np.uint8)
    elif kind == "other_dataset_classes": side["label_names"] = ["normal", "mild", "moderate", "severe", "proliferative"]
    elif kind == "other_dataset_flag": side = {"flag": "retinamnist"}
    elif kind == "float_labels": arrays["train_labels"] = y[:, None].astype(np.float64) + 0.5
    elif kind == "count_mismatch": arrays["train_labels"] = arrays["train_labels"][:3]
    elif kind == "pickled_objects": arrays["train_images"] = np.array([Evil(str(d / "PWNED"))] * len(x), dtype=object)
    np.savez(p, **arrays)
    if kind == "truncated":
        b = p.read_bytes(); p.write_bytes(b[: len(b) // 2])
    elif kind == "text_file": p.write_text("root:x:0:0:root:/root:/bin/bash\n")
    elif kind == "single_npy": np.save(d / "one.npy", x); (d / "one.npy").replace(p)
    p.with_suffix(".json").write_text(json.dumps(side))
    return p


NPZ_CASES = {
    "float_dtype": "images are float32; MedMNIST images are uint8",
    "bad_shape": "allowed: (N, H, H) grey or (N, H, H, 3) colour",
    "rgb_channels": "needs uint8 (28, 28) (1 channel(s))",
    "label_range": "labels [7] are not classes of breastmnist; allowed: 0..1",
    "nan": "NaN or infinite",
    "inf": "NaN or infinite",
    "empty_class": "has no images of class(es) [1] of breastmnist",
    "other_dataset_classes": "but breastmnist's classes are",
    "other_dataset_flag": "imitates 'retinamnist'",
    "float_labels": "labels are float64; allowed: integers",
    "count_mismatch": "4 images but 3 labels",
    "pickled_objects": "never unpickles",
    "truncated": "is not a readable npz file",
    "text_file": "is not an npz file (NumPy's zip of named arrays, as MedMNIST ships): it starts with b'root:x:0:0:root:/root:/b' (it is a text file)",
    "single_npy": "it is a single .npy array (np.save)",
}


@pytest.mark.parametrize("kind", list(NPZ_CASES))
def test_a_hostile_synthetic_npz_is_refused_by_name(kind, tmp_path, val):
    from medsyn.data import load_synthetic
    p = _npz(kind, tmp_path, val)
    with pytest.raises(MedsynError) as e:
        load_synthetic(p, FLAG, 28, need_all_classes=True)
    assert NPZ_CASES[kind] in str(e.value) and str(p.name) in str(e.value), str(e.value)
    assert not (tmp_path / "PWNED").exists()                       # nothing in the file ran
    record("hostile input", f"synthetic npz: {kind.replace('_', ' ')}", "refused: " + NPZ_CASES[kind], True)


def test_the_classify_command_refuses_a_pickle_bearing_npz_and_writes_nothing(tmp_path, val):
    p = _npz("pickled_objects", tmp_path, val)
    r = run_cli("classify", "--dataset", FLAG, "--regime", "synthetic", "--synthetic", p, "--preset", "smoke",
                "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 2 and "never unpickles" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "PWNED").exists()
    record("hostile input", "medsyn classify --synthetic <pickle-bearing npz>", "exit 2, 'never unpickles', no output folder", True)


# --- checkpoints and state files -----------------------------------------------------------------------------------

def _tiny_checkpoint(tmp_path):
    "A real 1-step medsyn checkpoint (smoke preset, tiny model)."
    from medsyn.training import train
    from medsyn.diffusion import checkpoints
    out = tmp_path / "run"
    train(FLAG, "l2", out=out, settings=load_settings("smoke", train_steps=1, checkpoint_every=1), progress=False)
    return checkpoints(out)[-1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _tiny_checkpoint(tmp_path_factory.mktemp("ck"))


def test_a_pickle_bearing_training_state_is_refused_and_never_run(checkpoint, tmp_path):
    import shutil, torch
    from medsyn.training import load_training_state
    ck = tmp_path / "ck"; shutil.copytree(checkpoint, ck)
    torch.save({"step": 1, "payload": Evil(str(tmp_path / "PWNED"))}, ck / "training_state.pt")
    with pytest.raises(MedsynError, match="is not a training state medsyn can read safely"):
        load_training_state(ck)
    assert not (tmp_path / "PWNED").exists()
    record("hostile input", "checkpoint training_state.pt carrying a pickle payload", "refused (weights_only=True), payload not run", True)


@pytest.mark.parametrize("what", ["truncated weights", "pickle in place of safetensors"])
def test_broken_checkpoint_weights_are_refused(what, checkpoint, tmp_path):
    import shutil
    from medsyn.sampling import load_model
    ck = tmp_path / "ck"; shutil.copytree(checkpoint, ck)
    w = next((ck / "unet_ema").glob("*.safetensors"))
    if what == "truncated weights": w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    else: w.write_bytes(pickle.dumps(Evil(str(tmp_path / "PWNED"))))
    with pytest.raises(MedsynError, match="a truncated or corrupt checkpoint is never used"):
        load_model(ck, device="cpu")
    assert not (tmp_path / "PWNED").exists()
    record("hostile input", f"checkpoint: {what}", "refused by name (safetensors only)", True)


def test_a_pickle_bearing_classifier_state_is_refused(tmp_path):
    import torch
    from medsyn.classify import load_classifier
    d = tmp_path / "seed-0"; d.mkdir()
    (d / "classifier.json").write_text(json.dumps(dict(arch="cnn", in_channels=1, n_classes=2, input_size=28)))
    torch.save({"payload": Evil(str(tmp_path / "PWNED"))}, d / "model.pt")
    with pytest.raises(MedsynError, match="never used"):
        load_classifier(d, "cpu")
    assert not (tmp_path / "PWNED").exists()
    record("hostile input", "classifier model.pt carrying a pickle payload", "refused (weights_only=True), payload not run", True)


def test_no_unsafe_deserialisation_in_the_library():
    "Every torch.load says weights_only=True; no allow_pickle=True, pickle.load(s) or weights_only=False anywhere in medsyn/."
    bad = []
    for f in sorted((ROOT / "medsyn").glob("*.py")):
        text = f.read_text()
        for m in re.finditer(r"torch\.load\(([^\n]*)", text):
            if "weights_only=True" not in m.group(1): bad.append(f"{f.name}: torch.load({m.group(1)}")
        for pat in ("weights_only=False", "allow_pickle=True", "pickle.load", "yaml.load(", "eval(open"):
            if pat in text: bad.append(f"{f.name}: {pat}")
    assert not bad, bad
    record("hostile input", "source audit: torch.load without weights_only=True, allow_pickle=True, pickle.load",
           "none in medsyn/", True)


# --- settings, presets, flags and runs folders: the command refuses and writes nothing ----------------------------

def _broken_ini(tmp_path, what):
    src = (ROOT / "settings.ini").read_text()
    p = tmp_path / "settings.ini"
    if what == "syntax": p.write_text(src.replace("[smoke]", "[smoke\n", 1))
    elif what == "unknown key": p.write_text(src.replace("[smoke]\n", "[smoke]\ntrain_stepz = 4\n", 1))
    elif what == "bad value": p.write_text(src.replace("[smoke]\n", "[smoke]\nsampler = euler\n", 1))
    return p


STUDY_CASES = {
    "unknown preset": (["--preset", "nope"], None, "unknown preset 'nope'. Presets in settings.ini: smoke, quick, cpu, dp, paper"),
    "unknown setting value": (["--preset", "smoke", "--loss", "l3"], None, "Allowed: l2, l1, huber, pseudo_huber"),
    "wrong value type": (["--preset", "smoke", "--train-steps", "many"], None, "'train_steps' must be of type int"),
    "unknown data set": (["--preset", "smoke", "--datasets", "mnist"], None, "'mnist' is not allowed. Allowed: pathmnist"),
    "unknown flag": (["--preset", "smoke", "--trian-steps", "4"], None, "unrecognized arguments: --trian-steps"),
    "unknown executor": (["--preset", "smoke", "--executor", "k8s"], None, "invalid choice: 'k8s' (choose from"),
    "settings.ini syntax error": (["--preset", "smoke"], "syntax", "has a syntax error"),
    "settings.ini unknown key": (["--preset", "smoke"], "unknown key", "unknown setting(s) train_stepz. Valid settings:"),
    "settings.ini bad value": (["--preset", "smoke"], "bad value", "'euler' is not allowed. Allowed: ddim, ddpm, dpmsolver, unipc"),
    "negative time limit": (["--preset", "smoke", "--time-limit", "-5"], None, "--time-limit must be a positive number"),
    "runs folder of another format": (["--preset", "smoke"], "runs-format", "runs format 0; this medsyn"),
}


@pytest.mark.parametrize("case", list(STUDY_CASES))
def test_medsyn_study_refuses_bad_settings_and_writes_nothing(case, tmp_path):
    args, ini, msg = STUDY_CASES[case]
    runs = tmp_path / "runs"
    env = {"MEDSYN_OFFLINE": "1"}
    if ini == "runs-format":
        runs.mkdir(); (runs / "medsyn-runs.json").write_text(json.dumps({"format": 0, "medsyn": "0.0.1"}))
    elif ini: env["MEDSYN_SETTINGS"] = str(_broken_ini(tmp_path, ini))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = run_cli("study", *args, "--runs-dir", runs, "--figures-dir", tmp_path / "f", "--tables-dir", tmp_path / "t", env=env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before       # no partial output
    record("hostile input", f"medsyn study: {case}", f"exit 2: '{msg}'; nothing written", True)
