"""The benchmark scripts re-create committed tables and figures (benchmarks/RESULTS.md): every medsyn name they use must exist.

A benchmark imports the library inside its functions (so that `--help` is fast), where a renamed or moved function only
fails when the script reaches it, often after minutes of training. This reads each script's syntax tree instead: every
`from medsyn.<module> import <name>` and every `<alias>.<name>` of a `from medsyn import <module> as <alias>` must name
something the library has. The redesign (issue 25) moved `generate`, `load_model`, `sample` and `train` out of
medsyn.diffusion and left nine scripts calling them there: this test fails on that.
"""
import ast, importlib, subprocess, sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent/'benchmarks'
SCRIPTS = sorted(BENCH.glob('*.py'))


def medsyn_references(tree) -> list:
    "(module, name, line) for every medsyn name a script's syntax tree uses."
    refs, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == 'medsyn':
            for a in node.names:
                refs.append((f"medsyn.{a.name}", None, node.lineno))
                aliases[a.asname or a.name] = f"medsyn.{a.name}"
        elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('medsyn.'):
            refs += [(node.module, a.name, node.lineno) for a in node.names]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            refs.append((aliases[node.value.id], node.attr, node.lineno))
    return refs


def missing(path) -> list:
    "'script:line module.name' for each medsyn name the script uses that the library lacks."
    out = []
    for mod, name, line in medsyn_references(ast.parse(path.read_text())):
        try: m = importlib.import_module(mod)
        except ImportError: out.append(f"{path.name}:{line} {mod} (no such module)"); continue
        if name is not None and not hasattr(m, name): out.append(f"{path.name}:{line} {mod}.{name}")
    return out


def test_the_check_finds_a_moved_name(tmp_path):
    f = tmp_path/'old.py'
    f.write_text("def run():\n    from medsyn import diffusion as D\n    from medsyn.sampling import generate, nowhere\n"
                 "    return D.load_model, D.resolve_checkpoint, generate\n")
    assert missing(f) == ['old.py:3 medsyn.sampling.nowhere', 'old.py:4 medsyn.diffusion.load_model']


@pytest.mark.parametrize('path', SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_every_medsyn_name_a_benchmark_uses_exists(path):
    assert missing(path) == []


def test_a_name_value_argument_without_its_name_is_refused():
    "tstr_gap.py's --set, --model-dir, --grid and --compare take NAME=VALUE; without a name argparse says which (exit 2), no traceback."
    for arg in (['--set', 'model'], ['--model-dir', '=benchmarks/out/x']):
        r = subprocess.run([sys.executable, str(BENCH/'tstr_gap.py'), *arg], capture_output=True, text=True)
        assert r.returncode == 2 and f"argument {arg[0]}: {arg[1]!r}: expected NAME=VALUE" in r.stderr, r.stderr
