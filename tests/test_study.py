"The study runner end to end on a smoke grid, through real Jupyter kernels (papermill)."
import json, shutil

import nbformat
import pandas as pd
import pytest

from medsyn.core import load_settings
from medsyn.study import plan


def _injected(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    cells = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "papermill injects exactly one parameters cell"
    return cells[0].source


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    "Run a smoke grid: breastmnist works; bloodmnist is absent offline, so its cells fail."
    from tests.conftest import run_cli
    tmp = tmp_path_factory.mktemp("study")
    env = {"MEDSYN_OFFLINE": "1", "MEDMNIST_ROOT": str(tmp / "medmnist"), "MEDSYN_CACHE": str(tmp / "cache")}
    args = ["study", "--preset", "smoke", "--datasets", "breastmnist,bloodmnist", "--losses", "l2",
            "--runs-dir", tmp / "runs", "--figures-dir", tmp / "figures", "--tables-dir", tmp / "tables"]
    first = run_cli(*args, env=env, timeout=2700)     # a slow 2-core CPU shared with nbdev-test (make test) took over 900 s
    second = run_cli(*args, env=env)
    return dict(tmp=tmp, first=first, second=second, runs=tmp / "runs" / "smoke", args=args, env=env)


def test_failing_cells_are_recorded_and_others_complete(study):
    p, runs = study["first"], study["runs"]
    assert p.returncode == 1, p.stdout + p.stderr
    assert "bloodmnist/l2 at train" in p.stderr and "bloodmnist/real at real" in p.stderr
    failed = json.loads((runs / "bloodmnist" / "l2" / "FAILED.json").read_text())
    assert failed["stage"] == "train" and "bloodmnist.npz" in failed["error"]
    # the executed notebook keeps the traceback
    nb = nbformat.read(runs / "bloodmnist" / "l2" / "train.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert not (runs / "bloodmnist" / "l2" / "DONE.json").exists()
    for cell in ("real", "l2"):
        assert (runs / "breastmnist" / cell / "DONE.json").exists(), cell


def test_kernels_and_progress_bars_print_no_noise(study):
    "The kernels talk over IPC (no 'running over TCP without encryption' warning); tqdm finds ipywidgets in every notebook."
    out = study["first"].stdout + study["first"].stderr
    assert "without encryption" not in out and "IProgress not found" not in out
    for nb in study["runs"].rglob("*.ipynb"):
        assert "IProgress not found" not in nb.read_text(), nb


def test_a_grid_that_cannot_run_is_refused_before_anything_is_written(cli, tmp_path):
    p = cli("study", "--preset", "smoke", "--datasets", "chestmnist", "--runs-dir", tmp_path / "runs",
            "--figures-dir", tmp_path / "figures", "--tables-dir", tmp_path / "tables")
    assert p.returncode == 2 and "the grid cannot run chestmnist: chestmnist is multi-label" in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())


def test_parameters_are_injected(study):
    src = _injected(study["runs"] / "breastmnist" / "l2" / "train.ipynb")
    assert 'loss = "l2"' in src and 'dataset = "breastmnist"' in src and 'preset = "smoke"' in src
    assert str(study["runs"] / "breastmnist" / "l2") in src


def test_artefacts_of_a_cell(study):
    d = study["runs"] / "breastmnist" / "l2"
    for f in ("model/loss.csv", "model/config.json", "synthetic.npz", "synthetic.json", "grid.png", "metrics.json",
              "classify_synthetic/metrics.json", "classify_mixed/metrics.json", "fidelity.json",
              "train.ipynb", "sample.ipynb", "evaluate.ipynb", "classify.ipynb"):
        assert (d / f).exists(), f
    assert (study["runs"] / "breastmnist" / "real" / "classify_real" / "metrics.json").exists()
    assert any((d / "lime").glob("*.png"))
    m = json.loads((d / "metrics.json").read_text())
    assert set(map(str, (64, 192, 768, 2048))) <= set(m["fid"])


def test_rerun_skips_finished_cells(study):
    p = study["second"]
    assert p.returncode == 1  # the absent data set still fails
    assert "breastmnist/l2: skipped" in p.stdout and "breastmnist/real: skipped" in p.stdout
    assert "breastmnist/l2: train" not in p.stdout


def test_extra_backbones_run_beside_the_main_model_and_the_report_compares_them(study):
    runs = study["runs"] / "breastmnist"
    for b, cls in (("swin-tiny", "SwinUNet"), ("dit-tiny", "DiT")):
        d = runs / b / "l2"
        assert (d / "DONE.json").exists(), b
        assert json.loads((d / "model" / "config.json").read_text())["denoiser"] == cls
        assert 'model": "' + b in _injected(d / "train.ipynb").replace("'", '"')
        assert not (d / "scarce").exists() and not (d / "privacy.json").exists()     # scarce and privacy stay with the main model
    B = pd.read_csv(study["tmp"] / "tables" / "backbones.csv")
    assert sorted(B["backbone"]) == ["dit-tiny", "swin-tiny", "unet-tiny"]
    assert B[["fid64", "fid2048", "floor64", "kid", "precision", "recall", "tstr_acc", "tstr_auc", "fidelity_f1",
              "params", "train_img_s", "sample_img_s"]].notna().all().all()
    assert (study["tmp"] / "figures" / "backbones.png").exists()
    assert "swin-tiny" in (study["tmp"] / "tables" / "backbones.md").read_text()


def test_report_writes_figures_and_tables(study):
    figs = {p.name for p in (study["tmp"] / "figures").glob("*.png")}
    assert any(n.startswith("fid_vs_features") for n in figs), figs
    assert any(n.startswith("loss_curves") for n in figs), figs
    tabs = {p.name for p in (study["tmp"] / "tables").iterdir()}
    assert {"fid.csv", "fid.md", "fid.tex"} <= tabs, tabs


def test_plan_lists_grid(cli, tmp_path):
    p = cli("study", "--preset", "smoke", "--losses", "l2,huber", "--runs-dir", tmp_path, "--plan", check=True)
    assert "breastmnist/real" in p.stdout and "breastmnist/huber" in p.stdout
    assert [c.name for c in plan("smoke", losses="l2,huber", runs_dir=tmp_path)] == \
        ["breastmnist/real", "breastmnist/l2", "breastmnist/huber", "breastmnist/swin-tiny/l2", "breastmnist/dit-tiny/l2"]
    assert "breastmnist/swin-tiny/l2" in p.stdout


def _fake_runs(root, statuses):
    "A runs/<preset> folder with two finished cells and the study.json of the command that ran them."
    from medsyn.core import save_json
    for name in ("breastmnist/real", "breastmnist/l2"):
        stages = {"real": 10.0} if name.endswith("real") else {"train": 60.0, "sample": 5.0}
        save_json(dict(cell=name, stage_seconds=stages, seconds=sum(stages.values()), time="2026-11-23T10:00:00",
                       host="h", versions={"torch": "x"}, settings={"preset": "quick"}), root / name / "DONE.json")
    save_json(dict(seconds=80.0, results=[dict(cell=n, status=s) for n, s in statuses]), root / "study.json")


def test_provenance_states_the_whole_command_time_only_when_one_command_ran_every_cell(tmp_path):
    from medsyn.tables import provenance
    root = tmp_path / "runs" / "quick"
    _fake_runs(root, [("breastmnist/real", "done"), ("breastmnist/l2", "done")])
    provenance(root, tmp_path / "t1", report_seconds=20.0)
    p = json.loads((tmp_path / "t1" / "provenance.json").read_text())
    assert p["cells_seconds"] == 75.0 and p["study_seconds"] == 100.0 and p["report_seconds"] == 20.0
    assert "took 20 s: 1.7 min in all" in (tmp_path / "t1" / "provenance.md").read_text()
    # a re-run that skipped a finished cell did not time it: no whole-command time is claimed
    _fake_runs(root, [("breastmnist/real", "skipped"), ("breastmnist/l2", "done")])
    provenance(root, tmp_path / "t2", report_seconds=20.0)
    p = json.loads((tmp_path / "t2" / "provenance.json").read_text())
    assert p["study_seconds"] is None and "min in all" not in (tmp_path / "t2" / "provenance.md").read_text()


def test_a_command_that_ran_no_cell_keeps_the_timing_of_the_one_that_did(tmp_path):
    from medsyn.core import save_json
    from medsyn.study import run_study
    runs = tmp_path / "runs"
    for c in plan("smoke", runs_dir=runs):   # every cell already finished by an earlier command
        save_json(dict(cell=c.name), c.done_marker)
    save_json(dict(seconds=123.0, results=[dict(cell="breastmnist/l2", status="done")]), runs / "smoke" / "study.json")
    res = run_study("smoke", runs_dir=runs, report=False, out=open(tmp_path / "log", "w"))
    assert {r["status"] for r in res["results"]} == {"skipped"}
    assert json.loads((runs / "smoke" / "study.json").read_text())["seconds"] == 123.0


def test_scarce_stage_writes_every_arm_and_its_generator_saw_only_the_classifiers_subset(study):
    from medsyn.scarce import real_subset
    from medsyn.data import indices_digest
    ds = study["runs"] / "breastmnist"
    s = load_settings("smoke")
    _, idx = real_subset("breastmnist", 0.5, s, 0)
    fd = ds / "l2" / "scarce" / "frac-0.5" / "draw-0"
    for f in ("model/config.json", "synthetic.npz", "synthetic.json", "audit.json", "quality.json", "metrics.json", "predictions.npz"):
        assert (fd / f).exists(), f
    assert (ds / "l2" / "scarce.ipynb").exists() and (ds / "real" / "scarce.ipynb").exists()
    seen = json.loads((fd / "model" / "config.json").read_text())["real_images"]
    syn_rows = json.loads((fd / "metrics.json").read_text())["rows"]
    real_rows = json.loads((ds / "real" / "scarce" / "frac-0.5" / "draw-0" / "metrics.json").read_text())["rows"]
    # the generator saw exactly the classifiers' real images: the same indices, the same digest in every row
    assert seen["indices"] == idx.tolist() and seen["fraction"] == 0.5
    assert {r["real_digest"] for r in syn_rows + real_rows} == {indices_digest(idx)} == {seen["digest"]}
    assert {r["arm"] for r in real_rows} == {"real", "real+aug"} and {r["arm"] for r in syn_rows} == {"real+syn", "real+syn+aug"}
    assert sorted({r["seed"] for r in syn_rows}) == s.scarce_seeds and len(s.scarce_seeds) >= 3
    assert json.loads((fd / "synthetic.json").read_text())["real_images"]["digest"] == seen["digest"]
    assert {r["val"] for r in syn_rows + real_rows} == set(s.scarce_val) == {"scarce"} and seen["subset_seed"] == 0
    q = json.loads((fd / "quality.json").read_text())
    assert q["kid_floor"] < q["kid"] and q["n"] > 0              # a smoke generator's images are far from real ones


def test_a_generator_that_saw_other_images_fails_the_leak_check(study, tmp_path):
    from medsyn.core import MedsynError
    from medsyn.scarce import collect_scarce
    runs = tmp_path / "smoke"
    shutil.copytree(study["runs"] / "breastmnist", runs / "breastmnist")
    assert len(collect_scarce(runs)["rows"]) == 4 * len(load_settings("smoke").scarce_seeds)
    cfg = runs / "breastmnist" / "l2" / "scarce" / "frac-0.5" / "draw-0" / "model" / "config.json"
    c = json.loads(cfg.read_text()); c["real_images"]["digest"] = "0000000000000000"; cfg.write_text(json.dumps(c))
    with pytest.raises(MedsynError, match="leak"):
        collect_scarce(runs)


def test_report_writes_the_scarce_table_and_figure(study):
    t = (study["tmp"] / "tables" / "scarce.md").read_text()
    assert "real + classical aug." in t and "real + synthetic + classical aug." in t and "ΔAUC vs real only [95% CI, draws]" in t
    assert (study["tmp"] / "figures" / "scarce.png").exists()
    csv = pd.read_csv(study["tmp"] / "tables" / "scarce.csv")
    assert set(csv["arm"]) == {"real", "real+aug", "real+syn", "real+syn+aug"} and (csv["seeds"] >= 3).all()


def test_privacy_stage_audits_the_full_and_the_subset_generators(study):
    d = study["runs"] / "breastmnist" / "l2"
    assert (d / "privacy.ipynb").exists()
    p = json.loads((d / "privacy.json").read_text())
    assert set(p) == {"full", "frac-0.5/draw-0"}
    assert p["full"]["fraction"] == 1.0 and p["frac-0.5/draw-0"]["fraction"] == 0.5 and p["frac-0.5/draw-0"]["draw"] == 0
    assert set(p["full"]["attacks"]) == {"loss", "t_error", "black_box"}
    assert p["full"]["n_members"] == load_settings("smoke").privacy_max_images
    t = pd.read_csv(study["tmp"] / "tables" / "privacy.csv")
    assert set(t["attack"]) == {"loss", "t_error", "black_box"} and t["auc"].between(0, 1).all()
    assert (study["tmp"] / "figures" / "privacy.png").exists()
