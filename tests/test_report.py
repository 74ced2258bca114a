"The report's three steps on a tiny runs folder written by hand: collect, tables (CSV, Markdown, LaTeX), figures."
import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from medsyn.collect import collect
from medsyn.figures import fig_downstream, fig_fid
from medsyn.tables import tex_escape, to_latex, write_tables


def _json(p, obj):
    p.parent.mkdir(parents=True, exist_ok=True); p.write_text(json.dumps(obj))


def _classifier(acc, auc, seeds=(0, 1, 2), sd=0.01):
    per = {str(s): dict(acc=acc, auc=auc, f1_macro=acc) for s in seeds}
    return dict(arch="cnn", run_record=dict(settings=dict(clf_epochs=3)),
                cells=[dict(cell="all", per_seed=per, mean=dict(acc=acc, auc=auc, f1_macro=acc), std=dict(acc=sd, auc=sd, f1_macro=sd))])


def _fid(v, floor, n=300):
    return dict(value=v, ci_low=v - 0.1, ci_high=v + 0.2, floor=dict(value=floor, ci_low=floor - 0.05, ci_high=floor + 0.05),
                n_real=n, n_synthetic=n, rank_deficient=False)


@pytest.fixture
def runs(tmp_path):
    "runs/<preset>/breastmnist: a real baseline and one L2 cell with its metrics and a TSTR classifier; nothing else."
    root = tmp_path / "runs" / "tiny"
    ds = root / "breastmnist"
    _json(ds / "real" / "classify_real" / "metrics.json", _classifier(0.85, 0.90))
    run = ds / "l2"
    _json(run / "DONE.json", {})
    _json(run / "metrics.json", dict(
        fid={"64": _fid(1.23, 0.51), "2048": _fid(31.5, 20.0)},
        kid=dict(mean=0.01, std=0.002, floor_mean=0.004, floor_std=0.001),
        prdc=dict(precision=0.8, recall=0.6, density=0.9, coverage=0.7, floor=dict(precision=0.9, recall=0.9, density=1.0, coverage=0.9)),
        memorisation=dict(threshold=0.6, **{sp: dict(nearcopy_share=0.0, test_nearcopy_share=0.3, min_ratio=0.7, median_ratio=1.0)
                                            for sp in ("pixel", "inception")})))
    _json(run / "classify_synthetic" / "metrics.json", _classifier(0.80, 0.86))
    return root


def test_collect_turns_the_runs_into_tidy_tables(runs):
    T = collect(runs)
    assert sorted(T["fid"]["features"]) == [64, 2048] and T["fid"].loc[T["fid"]["features"] == 64, "fid"].item() == 1.23
    assert set(T["downstream"]["regime"]) == {"real", "synthetic"} and T["missing"] == []
    assert T["scarce_rows"].empty and T["backbones"].empty


def test_tables_from_a_tiny_runs_folder(runs, tmp_path):
    files = write_tables(collect(runs), tmp_path / "tables")
    names = {p.name for p in files}
    assert {"fid.csv", "fid.md", "fid.tex", "downstream.md", "comparison.md"} <= names
    fid = (tmp_path / "tables" / "fid.md").read_text()
    assert "| breastmnist | l2 | 300 | 1.23 [1.13, 1.43] | 0.51 |" in fid
    assert "0.800 ± 0.010" in (tmp_path / "tables" / "downstream.md").read_text()


def test_latex_escapes_every_special_character_and_the_symbols_the_tables_print():
    import pandas as pd
    assert tex_escape("50 % & $5 {a} ^ ~ # _ \\ z") == (r"50 \% \& \$5 \{a\} \textasciicircum \space \textasciitilde \space \# \_ "
                                                       r"\textbackslash \space z")
    tex = to_latex(pd.DataFrame({"ΔAUC": ["+0.01 ± 0.02"], "n": [float("nan")]}), caption="ε ≤ 10")
    assert r"\ensuremath{\Delta}AUC" in tex and r"+0.01 \ensuremath{\pm} 0.02" in tex and r"\caption{\ensuremath{\varepsilon} \ensuremath{\leq} 10}" in tex
    assert not any(ch in tex for ch in "Δ±ε≤")                  # nothing a LaTeX text font lacks
    assert r"\toprule" in tex and r"\bottomrule" in tex and "nan" not in tex


def test_figures_are_files_that_are_not_blank(runs, tmp_path):
    T = collect(runs)
    for f in (fig_fid, fig_downstream):
        out = f(T, tmp_path / "figures")
        assert sorted(p.suffix for p in out) == [".pdf", ".png"]
        png = next(p for p in out if p.suffix == ".png")
        img = mpimg.imread(png)
        assert img.shape[0] > 100 and img[..., :3].std() > 0.05, png    # a drawn figure, not an empty canvas
        assert next(p for p in out if p.suffix == ".pdf").read_bytes().startswith(b"%PDF")
