import os, subprocess, sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, check=False, env=None, timeout=900):
    "Run the `medsyn` console script; return the CompletedProcess (text)."
    exe = Path(sys.executable).parent / "medsyn"
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, **(env or {})}, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"medsyn {' '.join(map(str, args))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def cli():
    return run_cli


def pytest_collection_modifyitems(config, items):
    "Study-level fault and scale-out cases (marker faults_slow) run only under MEDSYN_FAULTS=all (`make faults`)."
    if os.environ.get("MEDSYN_FAULTS") == "all": return
    skip = pytest.mark.skip(reason="study-level fault case: run `make faults` (MEDSYN_FAULTS=all)")
    for item in items:
        if "faults_slow" in item.keywords: item.add_marker(skip)
