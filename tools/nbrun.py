"""Execute a notebook the way the README, the docs and `make nbs` need it: a fresh kernel talking over
local sockets in a private folder (IPC), not TCP ports, so nothing listens on the network and the
kernel has no "running over TCP without encryption" warning to print."""
import tempfile
from pathlib import Path

from nbconvert.preprocessors import ExecutePreprocessor
from medsyn.core import kernel_config


def execute(nb, cwd: Path, timeout: int = 600):
    "Run every cell of `nb` (an nbformat notebook) in place with `cwd` as the working directory; returns it."
    with tempfile.TemporaryDirectory(prefix='medsyn-kernel-') as d:
        ExecutePreprocessor(timeout=timeout, kernel_name='python3', config=kernel_config(d)).preprocess(nb, {'metadata': {'path': str(cwd)}})
    return nb
