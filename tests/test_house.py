"The shape of the house (issue 25): one straight line of imports, rooms a reader can hold, imports at the top."
import ast, json
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "medsyn"
MODULES = sorted(p for p in LIB.glob("*.py") if not p.name.startswith("_"))


def _imports(p):
    "The medsyn modules `p` imports, anywhere in it."
    out = set()
    for n in ast.walk(ast.parse(p.read_text())):
        if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module: out.add(n.module.split(".")[0])
        elif isinstance(n, ast.ImportFrom) and (n.module or "").startswith("medsyn."): out.add(n.module.split(".")[1])
        elif isinstance(n, ast.Import):
            out |= {a.name.split(".")[1] for a in n.names if a.name.startswith("medsyn.")}
    return out - {p.stem}


def test_no_import_cycle():
    graph = {p.stem: _imports(p) for p in MODULES}
    seen, stack = set(), []
    def visit(m):
        if m in stack: raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
        if m in seen: return
        stack.append(m)
        for d in sorted(graph.get(m, ())): visit(d)
        stack.pop(); seen.add(m)
    for m in graph: visit(m)


def test_imports_inside_functions_say_why():
    bad = []
    for p in MODULES:
        lines = p.read_text().splitlines()
        for f in ast.walk(ast.parse(p.read_text())):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                bad += [f"{p.name}:{n.lineno}" for n in ast.walk(f)
                        if isinstance(n, (ast.Import, ast.ImportFrom)) and "#" not in lines[n.lineno - 1]]
    assert not bad, bad


def _unused_imports(tree):
    "Names the module's top-level imports bind and nothing in it uses (names listed in `__all__` count as used)."
    bound = {}
    for n in tree.body:
        if isinstance(n, ast.Import): bound.update({a.asname or a.name.split(".")[0]: n.lineno for a in n.names})
        elif isinstance(n, ast.ImportFrom) and n.module != "__future__": bound.update({a.asname or a.name: n.lineno for a in n.names})
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {c.value for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
             for c in ast.walk(n.value) if isinstance(c, ast.Constant)}
    return sorted(name for name in bound if name not in used)


def test_every_import_is_used():
    "An import nothing uses is a false lead for a reader (the module splits left 31 of them behind)."
    assert _unused_imports(ast.parse("import os, json\nfrom .core import a as b, c\n__all__ = ['c']\nos.sep")) == ["b", "json"]
    bad = {p.name: u for p in MODULES if (u := _unused_imports(ast.parse(p.read_text())))}
    assert not bad, bad


@pytest.mark.parametrize("p", MODULES, ids=lambda p: p.name)
def test_rooms_a_reader_can_hold(p):
    "No module over 500 lines, no function over 60."
    src = p.read_text()
    assert len(src.splitlines()) <= 500, f"{p.name}: {len(src.splitlines())} lines"
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse(src))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, long


def _sources():
    "(name, syntax tree) of every module but runs.py and of every code cell of the study's papermill notebooks (nbs/study)."
    out = [(p.name, ast.parse(p.read_text())) for p in MODULES if p.name != "runs.py"]
    for nb in sorted((LIB.parent / "nbs" / "study").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        out += [(f"{nb.name}[{i}]", ast.parse("".join(c["source"]))) for i, c in enumerate(cells) if c["cell_type"] == "code"]
    assert len(out) > len(MODULES)
    return out


def test_shared_file_names_are_spelled_once():
    "A file one stage writes and another reads is named in medsyn.runs only: every module and study notebook takes its constant."
    runs = ast.parse((LIB / "runs.py").read_text())
    names = {n.value.value for n in runs.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
             and isinstance(n.value.value, str) and "." in n.value.value}
    assert {"metrics.json", "synthetic.npz", "loss.csv", "privacy.json", "DONE.json", "card.json", "config.json", "fidelity.json",
            "grid.png", "explain.json", "study.json", "predictions.npz", "metrics_closest.png"} <= names
    bad = [f"{name}:{n.lineno} {n.value!r}" for name, tree in _sources()
           for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names]
    assert not bad, "spell these through medsyn.runs' constants: " + ", ".join(bad)


FOLDERS = ("model", "real", "scarce", "lime", "classify_real")     # GENERATOR, REAL_CELL, SCARCE, EXPLANATIONS, REAL_CLASSIFIERS


def _joins(tree):
    "Lines of `tree` that join a path with one of the runs layout's folder names, or spell a `classify_<regime>` or `seed-<s>` folder."
    joins = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)
             and isinstance(n.right, ast.Constant) and n.right.value in FOLDERS]
    regimes = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) and n.values
               and isinstance(n.values[0], ast.Constant) and str(n.values[0].value).startswith(("classify_", "seed-"))]
    return joins + regimes


def test_folders_are_named_once():
    "A cell's folders are medsyn.runs' names: no module or study notebook joins a path with 'model', 'real', 'lime' ... itself."
    from medsyn import runs
    assert {runs.GENERATOR, runs.REAL_CELL, runs.SCARCE, runs.EXPLANATIONS, runs.REAL_CLASSIFIERS} == set(FOLDERS)
    assert _joins(ast.parse("run / 'model' / 'config.json'; d / 'real'; f'classify_{reg}'; f'seed-{s}'")) == [1, 1, 1, 1]   # sees each
    bad = [f"{name}:{ln}" for name, tree in _sources() for ln in _joins(tree)]
    assert not bad, "name a cell's folders through medsyn.runs (GENERATOR, REAL_CELL, classifiers_dir, seed_dir, ...): " + ", ".join(bad)
