"""Fault injection: SIGKILL (not Ctrl-C) at named points of every stage (`medsyn.core.fault_point`, env MEDSYN_FAULT), then
the same command again: it completes, its outputs equal an uninterrupted run's (bit-identical on CPU), and nothing
half-written is read. A full disk (ENOSPC injected between writing a file and renaming it) loses nothing finished.

The quick cases (the training and sampling stages run as the study's notebooks run them, in a subprocess) run by
default; the study-level cases (a whole `medsyn study` killed, lock left stale, re-run, report compared) need
MEDSYN_FAULTS=all: `make faults`, which also writes the table in benchmarks/RESULTS.md."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest

from medsyn.core import MedsynError
from tests.conftest import ROOT, run_cli
from tests.faultlog import record

pytestmark = pytest.mark.faults
FLAG = "breastmnist"

STAGES = """
import sys
from medsyn.stages import context, stage_train, stage_sample
ctx = context('breastmnist', 'l2', 'smoke', run_dir=sys.argv[1])
for st in sys.argv[2].split(','): dict(train=stage_train, sample=stage_sample)[st](ctx)
"""


def run_stages(run_dir, stages="train,sample", fault=None, tmp=None):
    "Run the study's train/sample stage functions on `run_dir` in a fresh process, with `fault` injected."
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSYN_FAULT") and k != "MEDSYN_STUDY_PID"}
    env.update(MEDSYN_OFFLINE="1", OMP_NUM_THREADS="1")
    if fault: env.update(MEDSYN_FAULT=fault, MEDSYN_FAULT_LOG=str(Path(tmp) / "fired.log"))
    return subprocess.run([sys.executable, "-c", STAGES, str(run_dir), stages], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def fired(tmp):
    p = Path(tmp) / "fired.log"
    return p.read_text().split() [:2] if p.exists() else None


def tensors(ck):
    from safetensors.numpy import load_file
    return {f"{sub}/{k}": v for sub in ("unet", "unet_ema") for k, v in load_file(next((ck / sub).glob("*.safetensors"))).items()}


def loss_rows(run):
    "loss.csv without its timing column (images_per_s)."
    lines = (run / "model" / "loss.csv").read_text().splitlines()
    return [",".join(l.split(",")[:-1]) for l in lines]


def assert_same_run(a, b):
    "Run folders `a` and `b` hold the same checkpoints (bit-identical weights), loss log and synthetic set."
    from medsyn.diffusion import checkpoints
    ca, cb = checkpoints(a / "model"), checkpoints(b / "model")
    assert [c.name for c in ca] == [c.name for c in cb]
    ta, tb = tensors(ca[-1]), tensors(cb[-1])
    assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta), "weights differ"
    assert loss_rows(a) == loss_rows(b)
    with np.load(a / "synthetic.npz") as za, np.load(b / "synthetic.npz") as zb:
        assert np.array_equal(za["train_images"], zb["train_images"]) and np.array_equal(za["train_labels"], zb["train_labels"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    "An uninterrupted run of the training and sampling stages (smoke preset: 4 steps, checkpoints at 2 and 4)."
    d = tmp_path_factory.mktemp("ref") / "l2"
    r = run_stages(d)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


KILLS = {
    "train/step@3": "inside training step 3 (after the step-2 checkpoint)",
    "checkpoint/write@1": "writing the first checkpoint (weights saved, marker not)",
    "write/medsyn.json@2": "between writing the step-4 checkpoint marker and renaming it",
    "sample/batch@1": "inside the first sampling batch",
    "write/synthetic.npz": "between writing synthetic.npz and renaming it into place",
}


SLOW = pytest.mark.faults_slow      # beyond the default run's minute: `make faults`
QUICK_KILLS = ("train/step@3", "checkpoint/write@1", "write/synthetic.npz")


@pytest.mark.parametrize("fault", [f if f in QUICK_KILLS else pytest.param(f, marks=SLOW) for f in KILLS])
def test_sigkill_then_the_same_command_gives_a_bit_identical_run(fault, reference, tmp_path):
    from medsyn.diffusion import checkpoints
    t0 = time.time()
    run = tmp_path / "l2"
    r = run_stages(run, fault=fault, tmp=tmp_path)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    assert fired(tmp_path) == [fault.split("@")[0], "kill"]
    # nothing half-written is visible: only complete checkpoints are listed, no synthetic.npz before its rename
    for ck in checkpoints(run / "model"): assert (ck / "medsyn.json").exists() and (ck / "training_state.pt").exists()
    if fault.startswith(("sample", "write/synthetic")): assert not (run / "synthetic.npz").exists()
    r2 = run_stages(run)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert_same_run(reference, run)
    record("kill (SIGKILL)", f"{fault}: {KILLS[fault]}", "re-run completed; weights, loss log, synthetic set bit-identical",
           True, time.time() - t0)


@SLOW
def test_a_half_written_loss_log_row_is_dropped_on_resume(reference, tmp_path):
    run = tmp_path / "l2"
    assert run_stages(run, fault="train/step@3", tmp=tmp_path).returncode == -signal.SIGKILL
    with open(run / "model" / "loss.csv", "a") as f: f.write("3,0.12")          # a kill in the middle of appending a row
    assert run_stages(run).returncode == 0
    assert_same_run(reference, run)
    record("truncated file", "loss.csv with a half-written last row, then resume", "row dropped; log bit-identical", True)


@pytest.mark.parametrize("point", ["write/synthetic.npz", pytest.param("write/medsyn.json@2", marks=SLOW)])
def test_a_full_disk_loses_nothing_finished(point, reference, tmp_path):
    "ENOSPC between writing a file and renaming it: the earlier result stays intact, no temporary is left; freed, the run completes."
    from medsyn.diffusion import checkpoints
    run = tmp_path / "l2"
    if point == "write/synthetic.npz":
        shutil.copytree(reference, run)                                          # a finished run whose sample is redone
        before = (run / "synthetic.npz").read_bytes()
        r = run_stages(run, "sample", fault=point + ":enospc", tmp=tmp_path)
        assert r.returncode == 1 and "No space left on device" in r.stderr
        assert (run / "synthetic.npz").read_bytes() == before
        assert not [p for p in run.iterdir() if p.name.startswith(".synthetic")]
        outcome = "failed with ENOSPC; the finished synthetic.npz byte-identical, no temporary left"
    else:
        r = run_stages(run, fault=point + ":enospc", tmp=tmp_path)
        assert r.returncode == 1 and "No space left on device" in r.stderr
        assert [c.name for c in checkpoints(run / "model")] == ["step-000002"]   # the finished checkpoint kept
        assert not list((run / "model" / "checkpoints").glob(".step-000004*"))
        assert run_stages(run).returncode == 0
        assert_same_run(reference, run)
        outcome = "failed with ENOSPC; step-2 checkpoint kept, no half folder; re-run bit-identical"
    record("disk full (ENOSPC)", f"{point}", outcome, True)


def test_truncated_results_are_refused_by_name(reference, tmp_path):
    "A truncated checkpoint, npz or JSON in a run folder is refused with its name, never used."
    from medsyn.core import load_json
    from medsyn.data import load_npz
    from medsyn.sampling import load_model
    from medsyn.diffusion import checkpoints
    run = tmp_path / "l2"; shutil.copytree(reference, run)
    ck = checkpoints(run / "model")[-1]
    w = next((ck / "unet_ema").glob("*.safetensors")); w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(MedsynError, match="a truncated or corrupt checkpoint is never used"): load_model(ck, device="cpu")
    n = run / "synthetic.npz"; n.write_bytes(n.read_bytes()[:500])
    with pytest.raises(MedsynError, match="synthetic.npz is not a readable npz file"): load_npz(n)
    j = run / "synthetic.json"; j.write_text(j.read_text()[:40])
    with pytest.raises(MedsynError, match="synthetic.json is not valid JSON"): load_json(j)
    record("truncated file", "checkpoint weights, synthetic.npz, side-car JSON cut short", "each refused with its name", True)


def test_a_damaged_loss_log_is_never_plotted(reference, tmp_path, capsys):
    "What the report reads of loss.csv: a last row cut short by a kill is left out with a warning; damage elsewhere is refused."
    from medsyn.diffusion import read_loss_csv
    m = tmp_path / "model"; shutil.copytree(reference / "model", m)
    whole = read_loss_csv(m)
    text = (m / "loss.csv").read_text()
    (m / "loss.csv").write_text(text + "5,0.12")                                 # a kill while a row was being appended
    assert read_loss_csv(m).equals(whole)
    assert "its last row is cut short" in capsys.readouterr().err
    lines = text.splitlines(); lines[2] = lines[2][:len(lines[2]) // 2]
    (m / "loss.csv").write_text("\n".join(lines) + "\n")                       # damage inside the log
    with pytest.raises(MedsynError, match="loss.csv: line 3 is not a row of"): read_loss_csv(m)
    record("truncated file", "loss.csv read by the report: last row cut short / a middle row cut",
           "torn last row left out with a warning; damaged log refused with file and line", True)


# --- study level: the whole `medsyn study` killed (its lock left stale), the same command again --------------------

STUDY_KILLS = {
    "classify/epoch": ("real-data baseline: classifier training", False),
    "train/step@3": ("loss cell: inside a training step", True),
    "checkpoint/write@2": ("loss cell: checkpoint half-written", True),
    "sample/batch@1": ("loss cell: sampling", True),
    "features/batch@2": ("loss cell: Inception feature extraction (evaluate)", True),
    "classify/epoch@1": ("loss cell: TSTR classifier training", True),
    "lime/image@2": ("loss cell: LIME", True),
    "write/privacy.json": ("loss cell: privacy record written, not renamed", True),
    "write/fid.csv": ("report: a table written, not renamed", True),
}


def _fresh_cache(d):
    "A cache folder with the converted Inception weights but no cached features, so every run extracts its own."
    c = Path(d) / "cache"; c.mkdir(parents=True, exist_ok=True)
    home = Path(os.environ.get("MEDSYN_CACHE") or Path.home() / ".cache" / "medsyn")
    for w in home.glob("*.pth"): shutil.copy(w, c / w.name)
    return {"MEDSYN_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MEDSYN_CACHE": str(c)}


def _study_args(d):
    # one loss cell, no scarce stage, no extra backbones (their table holds speeds, which no re-run reproduces)
    return ["study", "--preset", "smoke", "--losses", "l2", "--fractions", "1.0", "--backbones", "none", "--runs-dir", d / "runs",
            "--figures-dir", d / "figures", "--tables-dir", d / "tables"]


@pytest.fixture(scope="module")
def study_reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("study_ref")
    r = run_cli(*_study_args(d), env=_fresh_cache(d), timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def _tables(d):
    "The report's tables (provenance holds timings: left out)."
    return {p.name: p.read_bytes() for p in sorted((d / "tables").glob("*.csv")) if not p.name.startswith("provenance")}


@pytest.mark.faults_slow
@pytest.mark.parametrize("fault", list(STUDY_KILLS))
def test_a_killed_study_rerun_gives_the_same_report(fault, study_reference, tmp_path):
    what, seed_real = STUDY_KILLS[fault]
    t0 = time.time()
    if seed_real:                                  # the baseline cell is already finished: only the loss cell and report run
        shutil.copytree(study_reference / "runs" / "smoke" / FLAG / "real", tmp_path / "runs" / "smoke" / FLAG / "real")
    env = _fresh_cache(tmp_path)
    r = run_cli(*_study_args(tmp_path), env={**env, "MEDSYN_FAULT": fault, "MEDSYN_FAULT_LOG": str(tmp_path / "fired.log")}, timeout=1500)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert fired(tmp_path) == [fault.split("@")[0], "kill"]
    assert (tmp_path / "runs" / "medsyn.lock").exists()                     # the killed study never released its lock
    r2 = run_cli(*_study_args(tmp_path), env=env, timeout=1500)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "took over the stale lock of a dead run" in r2.stderr
    ref, got = _tables(study_reference), _tables(tmp_path)
    assert ref.keys() == got.keys() and ref, (ref.keys(), got.keys())
    differ = [n for n in ref if ref[n] != got[n]]
    assert not differ, differ
    a, b = study_reference / "runs" / "smoke" / FLAG / "l2", tmp_path / "runs" / "smoke" / FLAG / "l2"
    assert_same_run(a, b)
    from medsyn.cluster import _PARTIAL, _PARTIAL_DIR          # nothing half-written left where a glob or a bundle would find it
    left = [p for d in ("runs", "tables", "figures") for p in (tmp_path / d).rglob(".*")
            if ".submitit" not in p.parts and (_PARTIAL_DIR.match(p.name) or (_PARTIAL.match(p.name) and ".lock" not in p.name))]
    assert not left, left
    record("kill (SIGKILL) of medsyn study", f"{fault}: {what}",
           f"stale lock taken over; re-run completed; {len(ref)} report tables byte-identical; weights and samples bit-identical",
           True, time.time() - t0)


# --- the scarce-data stage killed inside a whole `medsyn study` ------------------------------------------------------

SCARCE_KILLS = {     # fault: (what, the real cell's scarce arms already done)
    "classify/epoch@2": ("scarce stage, real cell: real-only / classical-augmentation arms", False),
    "train/step@3": ("scarce stage, loss cell: the subset generator's training", True),
    "sample/batch@1": ("scarce stage, loss cell: sampling the subset generator", True),
    "classify/epoch@3": ("scarce stage, loss cell: synthetic and mixed arms", True),
    "write/audit.json": ("scarce stage, loss cell: copy audit written, not renamed", True),
}


@pytest.fixture(scope="module")
def scarce_reference(tmp_path_factory):
    "An uninterrupted smoke study with the scarce-data stage (fraction 0.5) and its privacy audit."
    d = tmp_path_factory.mktemp("scarce_ref")
    args = [a for a in _study_args(d)]; i = args.index("--fractions"); del args[i:i + 2]
    r = run_cli(*args, env=_fresh_cache(d), timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return d, args


def _seed_before_scarce(ref, d, real_scarce_done):
    "Copy the reference's cells into `d` as they stood before their scarce stage (and the loss cell's privacy stage) ran."
    src, dst = ref / "runs" / "smoke" / FLAG, d / "runs" / "smoke" / FLAG
    shutil.copytree(src, dst)
    undo = {"l2": ("scarce", "privacy"), **({} if real_scarce_done else {"real": ("scarce",)})}
    for cell, stages in undo.items():
        c = dst / cell
        (c / "DONE.json").unlink()
        for st in stages: (c / f".{st}.done").unlink(); (c / f"{st}.ipynb").unlink()
        if "scarce" in stages: shutil.rmtree(c / "scarce")
        if "privacy" in stages: (c / "privacy.json").unlink()


@pytest.mark.faults_slow
@pytest.mark.parametrize("fault", list(SCARCE_KILLS))
def test_a_killed_scarce_stage_rerun_gives_the_same_report(fault, scarce_reference, tmp_path):
    what, real_done = SCARCE_KILLS[fault]
    ref, args = scarce_reference
    t0 = time.time()
    _seed_before_scarce(ref, tmp_path, real_done)
    args = [str(tmp_path / Path(a).relative_to(ref)) if str(a).startswith(str(ref)) else a for a in args]
    env = _fresh_cache(tmp_path)
    r = run_cli(*args, env={**env, "MEDSYN_FAULT": fault, "MEDSYN_FAULT_LOG": str(tmp_path / "fired.log")}, timeout=1500)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert fired(tmp_path) == [fault.split("@")[0], "kill"]
    r2 = run_cli(*args, env=env, timeout=1500)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "took over the stale lock of a dead run" in r2.stderr
    want, got = _tables(ref), _tables(tmp_path)
    assert want.keys() == got.keys() and "scarce.csv" in want, sorted(want)
    differ = [n for n in want if want[n] != got[n]]
    assert not differ, differ
    fr = Path("runs") / "smoke" / FLAG / "l2" / "scarce" / "frac-0.5" / "draw-0"
    a, b = ref / fr, tmp_path / fr
    from medsyn.diffusion import checkpoints
    ta, tb = tensors(checkpoints(a / "model")[-1]), tensors(checkpoints(b / "model")[-1])
    assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta), "the subset generator's weights differ"
    with np.load(a / "synthetic.npz") as za, np.load(b / "synthetic.npz") as zb:
        assert np.array_equal(za["train_images"], zb["train_images"])
    drop = lambda j: {k: v for k, v in json.loads(j.read_text()).items() if k != "run_record"}     # it holds times and the host
    rows = lambda j: [{k: v for k, v in r.items() if k != "generator"} for r in json.loads(j.read_text())["rows"]]   # a path
    assert drop(a / "audit.json") == drop(b / "audit.json") and rows(a / "metrics.json") == rows(b / "metrics.json")
    record("kill (SIGKILL) of medsyn study", f"{fault}: {what}",
           f"stale lock taken over; re-run completed; {len(want)} report tables byte-identical (scarce, privacy included); "
           "subset generator, its samples and audit bit-identical", True, time.time() - t0)
