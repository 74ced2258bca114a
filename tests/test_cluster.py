"""Concurrency: one study per runs folder (refuse naming the holder, or wait), stale locks from killed runs taken over
safely, per-cell locks; and the submitit executor end to end (slow: `make faults`)."""
import json, os, select, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest

from medsyn.cluster import RunLock, pid_alive
from medsyn.core import save_json
from medsyn.study import plan
from tests.conftest import ROOT, run_cli
from tests.faultlog import record

pytestmark = pytest.mark.faults
MEDSYN = str(Path(sys.executable).parent / "medsyn")


def _done_grid(runs):
    "A runs folder whose smoke cells are all finished (so a study over it runs no stage)."
    for c in plan("smoke", runs_dir=runs):
        save_json(dict(cell=c.name), c.done_marker)
    return runs


def _study(runs, *extra, wait=True):
    args = [MEDSYN, "study", "--preset", "smoke", "--runs-dir", str(runs), "--no-report", *extra]
    p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "MEDSYN_OFFLINE": "1"})
    if wait: p.out, p.err = p.communicate(timeout=120)
    return p


def _dead_lock(path):
    "A lock file written by a process that was then killed with SIGKILL (it never released it)."
    code = f"import os, signal\nfrom medsyn.cluster import RunLock\nRunLock({str(path)!r}).acquire()\nos.kill(os.getpid(), signal.SIGKILL)"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    assert p.returncode == -signal.SIGKILL
    return json.loads(Path(path).read_text())


def test_a_second_study_on_the_same_runs_folder_refuses_naming_the_holder(tmp_path):
    runs = _done_grid(tmp_path / "runs")
    with RunLock(runs / "medsyn.lock") as lk:
        host = lk.info["host"]
        p = _study(runs)
    assert p.returncode == 2, p.err
    assert f"pid {os.getpid()} on {host}" in p.err and "--wait-lock" in p.err and "Traceback" not in p.err
    assert not (runs / "smoke" / "study.json").exists()                 # it did nothing
    record("concurrency", "second `medsyn study` on a locked runs folder", "refused (exit 2), message names pid, host, start, command", True)


def test_wait_lock_waits_for_the_holder_then_runs(tmp_path):
    runs = _done_grid(tmp_path / "runs")
    lk = RunLock(runs / "medsyn.lock").acquire()
    p = _study(runs, "--wait-lock", wait=False)
    seen, deadline = '', time.time() + 120          # however long it takes to start (a loaded machine): until it says it waits
    while "waiting for the runs folder lock held by pid" not in seen:
        assert p.poll() is None and time.time() < deadline, f"it should wait while the lock is held: {seen}"
        if select.select([p.stderr], [], [], 1)[0]: seen += p.stderr.readline()
    time.sleep(2)
    assert p.poll() is None, "it should still be waiting while the lock is held"
    lk.release()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, seen + err
    assert (runs / "smoke" / "study.json").exists()
    record("concurrency", "second study with --wait-lock", "waited, then ran once the first released the lock", True)


def test_a_stale_lock_from_a_killed_run_is_taken_over(tmp_path):
    runs = _done_grid(tmp_path / "runs")
    dead = _dead_lock(runs / "medsyn.lock")
    assert not pid_alive(dead["pid"], dead["proc_start"])
    p = _study(runs)
    assert p.returncode == 0, p.err
    assert f"took over the stale lock of a dead run (pid {dead['pid']}" in p.err
    assert not (runs / "medsyn.lock").exists()                          # released at the end
    record("concurrency", "stale runs-folder lock of a SIGKILLed study", "recognised (pid dead) and taken over with a message", True)


def test_two_processes_taking_over_one_stale_lock_get_it_once(tmp_path):
    lock = tmp_path / "medsyn.lock"
    _dead_lock(lock)
    code = ("import sys, time\nfrom medsyn.cluster import RunLock, LockHeld\n"
            f"l = RunLock({str(lock)!r})\n"
            "try: l.acquire()\nexcept LockHeld: print('refused'); sys.exit(0)\n"
            "print('acquired', flush=True); time.sleep(3); l.release()")
    ps = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in ps]
    assert sorted(outs) == ["acquired", "refused", "refused", "refused"], outs
    record("concurrency", "4 processes racing for one stale lock", "exactly one took it over; 3 refused naming the holder", True)


def test_a_cell_locked_by_a_live_process_is_not_run_twice(tmp_path):
    from medsyn.study import run_cell
    c = plan("smoke", runs_dir=tmp_path / "runs")[0]
    code = f"import time\nfrom medsyn.cluster import RunLock\nRunLock({str(c.run_dir.parent / ('.' + c.run_dir.name + '.lock'))!r}).acquire()\nprint('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_cell(c, "smoke")
        assert r["status"] == "failed" and r["stage"] == "lock" and f"pid {holder.pid}" in r["error"], r
        assert not c.run_dir.exists()                                    # not touched
    finally:
        holder.kill(); holder.wait()
    record("concurrency", "a cell locked by a live job", "not run twice: recorded as failed naming the holder", True)


def test_a_cell_of_a_killed_study_still_running_on_another_node_is_not_taken_over(tmp_path, capsys):
    "A killed `--executor slurm` study leaves its jobs running; a new study's job for the same cell must not write beside one."
    import platform
    from medsyn.cluster import LockHeld, lock_info
    lk = tmp_path / ".l2.lock"
    lk.write_text(json.dumps(dict(lock_info(), host="node7", pid=4242)))   # the orphaned job of the killed study, beating
    with pytest.raises(LockHeld, match="on node7.*heartbeat is 0 s old"): RunLock(lk, "cell").acquire()
    assert json.loads(lk.read_text())["host"] == "node7"
    old = time.time() - RunLock.stale_after - 1                                                # the node died: no heartbeat
    os.utime(lk, (old, old))
    with RunLock(lk, "cell") as held: assert held.read()["host"] == platform.node()
    assert "took over the stale lock" in capsys.readouterr().err
    record("concurrency", "cell lock of a killed study's job still running on another node (heartbeat fresh / 5 min old)",
           "refused while the job beats; taken over once its heartbeat is older than stale_after", True)


# --- the submitit executor, end to end (slow) ---------------------------------------------------------------------

@pytest.mark.faults_slow
def test_executor_local_runs_the_smoke_grid_through_submitit_and_the_report_is_identical(tmp_path):
    env = {"MEDSYN_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = lambda d, *x: ["study", "--preset", "smoke", "--losses", "l2", "--fractions", "1.0", "--backbones", "none", "--runs-dir", d / "runs",
                          "--figures-dir", d / "figures", "--tables-dir", d / "tables", *x]
    t0 = time.time()
    a = run_cli(*args(tmp_path / "inprocess"), env=env, timeout=1500)
    b = run_cli(*args(tmp_path / "local", "--executor", "local"), env=env, timeout=1500)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-2000:], b.stderr[-2000:])
    assert "submitting 1 cell(s) to the local executor" in b.stdout
    jobs = list((tmp_path / "local" / "runs" / "smoke" / ".submitit").glob("*_result.pkl"))
    assert len(jobs) == 2                                               # two real subprocess jobs ran the cells
    ta, tb = tmp_path / "inprocess" / "tables", tmp_path / "local" / "tables"
    names = sorted(p.name for p in ta.glob("*.csv") if not p.name.startswith("provenance"))
    assert names and names == sorted(p.name for p in tb.glob("*.csv") if not p.name.startswith("provenance"))
    for n in names: assert (ta / n).read_bytes() == (tb / n).read_bytes(), n
    # resume works the same: a second run skips both cells
    c = run_cli(*args(tmp_path / "local", "--executor", "local", "--no-report"), env=env, timeout=600)
    assert c.returncode == 0 and c.stdout.count(": skipped") == 2, c.stdout
    record("scale-out", "--executor local (submitit subprocess jobs) vs in-process, smoke grid",
           f"report tables byte-identical ({len(names)} csv); re-run skips both cells", True, time.time() - t0)


@pytest.mark.faults_slow
def test_accelerate_launch_trains_one_cell_with_two_cpu_processes(tmp_path):
    "Multi-GPU training of one cell stays `accelerate launch`; here two CPU processes (gloo) run the medsyn console script."
    acc = Path(sys.executable).parent / "accelerate"
    cmd = [str(acc), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", MEDSYN, "train", "--dataset", "breastmnist", "--loss", "l2", "--preset", "smoke",
           "--out", str(tmp_path / "run"), "--no-progress"]
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MEDSYN_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["processes"] == 2 and (tmp_path / "run" / "checkpoints" / "step-000004" / "medsyn.json").exists()
    record("scale-out", "accelerate launch, 2 CPU processes, one cell's training", "trained; one checkpoint series written by the main process", True, time.time() - t0)


def test_slurm_jobs_ask_for_the_resources_in_the_settings(tmp_path, monkeypatch):
    "Without a cluster: a stub `srun` on PATH lets submitit build the sbatch script that `--executor slurm` would submit."
    import submitit
    from medsyn.cluster import executor_parameters
    from medsyn.core import load_settings
    (tmp_path / "bin").mkdir(); stub = tmp_path / "bin" / "srun"; stub.write_text("#!/bin/sh\nexit 0\n"); stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    s = load_settings("paper", slurm_partition="gpu", slurm_mem_gb=64)
    ex = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    ex.update_parameters(**executor_parameters(s, "slurm"))
    text = ex._executor._make_submission_file_text(command="python -m submitit.core._submit", uid="u")
    for line in ("--gpus-per-node=1", "--partition=gpu", "--cpus-per-task=8", "--mem=64GB", "--time=720"):
        assert f"#SBATCH {line}" in text, (line, text)
    record("scale-out", "--executor slurm: sbatch script from the slurm_* settings (stub srun, no cluster)",
           "one GPU per cell, partition, CPUs, memory, time as set", True)
