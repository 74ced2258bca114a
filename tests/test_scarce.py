"The scarce-data experiment: per-modality augmentation, generator sizing, paired statistics, leak check, table and figure."
import json, shutil

import numpy as np
import pandas as pd
import pytest
import torch

from medsyn.core import MedsynError, load_settings, save_json
from medsyn.data import MODALITY, classical_augmentation, indices_digest, load_medmnist, to_tensor
from medsyn.scarce import (ARMS, check_leak, collect_scarce, fig_scarce, generator_steps, mean_ci, paired_difference,
                           real_subset, scarce_markdown, scarce_table, verdict)


def test_paired_statistics_hand_computed():
    # differences 0.03, 0.01, 0.04: mean 0.026667, sd 0.015275, se 0.008819, t(0.975, 2) = 4.302653
    d = paired_difference({0: 0.83, 1: 0.83, 2: 0.88}, {0: 0.80, 1: 0.82, 2: 0.84})
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.0266667, abs=1e-6)
    assert d["low"] == pytest.approx(0.0266667 - 4.302653 * 0.0088192, abs=1e-5)
    assert d["high"] == pytest.approx(0.0266667 + 4.302653 * 0.0088192, abs=1e-5)
    assert d["includes_zero"] and verdict(d) == "no detectable difference"
    # seeds pair by name: the arm's seed 5 has no partner and is left out
    d2 = paired_difference({0: 0.9, 1: 0.92, 2: 0.95, 5: 0.1}, {0: 0.8, 1: 0.8, 2: 0.81})
    assert d2["n"] == 3 and verdict(d2) == "helps"
    assert verdict(paired_difference({0: 0.6, 1: 0.61, 2: 0.62}, {0: 0.8, 1: 0.8, 2: 0.81})) == "hurts"
    m, lo, hi = mean_ci([0.7])
    assert m == 0.7 and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(MedsynError, match="no seed in common"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_generator_training_is_sized_to_its_subset():
    q = load_settings("quick")   # 300 steps x 32
    assert generator_steps(55, q) == 258 and generator_steps(4708, q) == 300
    assert generator_steps(1, q.replace(low_data_max_epochs=1)) == 1
    with pytest.raises(MedsynError, match="low_data_max_epochs"):
        generator_steps(10, q.replace(low_data_max_epochs=0))


@pytest.mark.parametrize("flag", sorted(MODALITY))
def test_every_modality_has_an_augmentation_that_keeps_range_and_shape(flag):
    from medsyn.data import medmnist_info
    c = medmnist_info(flag)["n_channels"]
    x = torch.rand(6, c, 28, 28) * 2 - 1
    aug = classical_augmentation(flag)
    torch.manual_seed(0); a = aug(x)
    torch.manual_seed(0); b = aug(x)
    assert a.shape == x.shape and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1 and not torch.equal(a, x)


def test_augmentation_respects_anatomy():
    assert "Flip" not in repr(classical_augmentation("pneumoniamnist"))              # no mirrored chest films
    r = repr(classical_augmentation("breastmnist"))
    assert "RandomHorizontalFlip" in r and "RandomVerticalFlip" not in r               # skin stays at the top
    assert "RandomVerticalFlip" in repr(classical_augmentation("retinamnist"))
    assert "Flip" not in repr(classical_augmentation("organamnist"))                   # CT keeps left and right


def test_classifier_with_augmentation_is_repeatable_and_records_it():
    from medsyn.classify import train_classifier
    s = load_settings("smoke", archs="cnn", clf_epochs=1, device="cpu")
    sub, _ = real_subset("breastmnist", 0.1, s)
    va = load_medmnist("breastmnist", "val")
    aug = classical_augmentation("breastmnist")
    m1, h1 = train_classifier(sub, va, "cnn", s, seed=3, progress=False, augment=aug)
    m2, h2 = train_classifier(sub, va, "cnn", s, seed=3, progress=False, augment=aug)
    m3, h3 = train_classifier(sub, va, "cnn", s, seed=3, progress=False)
    w = lambda m: torch.cat([p.flatten() for p in m.parameters()])
    assert torch.equal(w(m1), w(m2)) and not torch.equal(w(m1), w(m3))
    assert "ultrasound" in h1["augment"] and h3["augment"] is None


def test_diffusion_training_records_which_real_images_it_saw(tmp_path):
    from medsyn.diffusion import train
    s = load_settings("smoke", train_steps=1, device="cpu", train_fraction=0.1, seed=4)
    train("breastmnist", "l2", tmp_path / "m", settings=s, progress=False)
    seen = json.loads((tmp_path / "m" / "config.json").read_text())["real_images"]
    _, idx = real_subset("breastmnist", 0.1, s)
    assert seen["indices"] == idx.tolist() and seen["digest"] == indices_digest(idx) and seen["n"] == 55 and seen["fraction"] == 0.1


def _rows(dataset="breastmnist", fraction=0.1, n_real=55, digest="d"):
    "Classifier rows as run_arms writes them: four arms x three seeds; the synthetic arms help by about 0.05 AUC."
    rng = np.random.default_rng(0)
    base = {0: 0.80, 1: 0.78, 2: 0.82}
    rows = []
    for arm, shift in (("real", 0.0), ("real+aug", 0.002), ("real+syn", 0.05), ("real+syn+aug", 0.05)):
        for seed, b in base.items():
            auc = b + shift + (rng.normal(0, 0.004) if shift else 0)
            rows.append(dict(dataset=dataset, fraction=fraction, arm=arm, ratio=1.0 if "syn" in arm else 0.0, seed=seed, subset_seed=0,
                             real_digest=digest, n_real=n_real, n_synthetic=n_real if "syn" in arm else 0, acc=auc - 0.1, auc=auc,
                             f1_macro=auc - 0.2, loss=None if "syn" not in arm else "l2"))
    return pd.DataFrame(rows)


def test_scarce_table_pairs_each_arm_with_real_only():
    gens = pd.DataFrame([dict(dataset="breastmnist", loss="l2", fraction=0.1, n_real=55, digest="d", steps=258, batch_size=32,
                              epochs=150.1, nearcopy_share=0.9, median_ratio=0.2, min_ratio=0.0, n_synthetic=55, replays=True)])
    t = scarce_table(_rows(), gens)
    assert list(t["arm"]) == list(ARMS) and (t["seeds"] == 3).all()
    f = dict(zip(t["arm"], t["finding"]))
    assert f["real+syn"] == "helps" and f["real+syn+aug"] == "helps" and pd.isna(f["real"])
    assert t.loc[t["arm"] == "real+syn", "d_auc_mean"].iloc[0] == pytest.approx(0.05, abs=0.01)
    md = scarce_markdown(t)
    assert md["generator copies"].str.contains("replays its subset").sum() == 2        # both synthetic arms flagged
    assert "±" not in md.to_string() and not md["AUC [95% CI]"].str.contains("0.000, 0.000").any()
    one = scarce_table(_rows().query("seed == 0"))                                      # one seed: no interval, said so
    assert set(one.loc[one["arm"] != "real", "finding"]) == {"one seed: no interval"}
    assert "[" not in "".join(scarce_markdown(one)["AUC [95% CI]"])
    with pytest.raises(MedsynError, match="no 'real only' arm"):
        scarce_table(_rows().query("arm != 'real'"))


def test_scarce_figure_has_a_column_per_data_set(tmp_path):
    import matplotlib; matplotlib.use("Agg")
    r = pd.concat([_rows(), _rows(fraction=0.25, n_real=137), _rows("retinamnist", 0.1, 108)], ignore_index=True)
    fig = fig_scarce(scarce_table(r))
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "breastmnist"
    assert fig.axes[0].get_xscale() == "log" and len(fig.legends[0].get_texts()) == 4
    from medsyn.report import save_fig
    assert all(p.stat().st_size > 1000 for p in save_fig(fig, tmp_path, "low_data"))


def test_single_seed_results_are_not_printed_as_zero_spread(tmp_path):
    from medsyn.report import write_tables
    D = pd.DataFrame([dict(dataset="breastmnist", loss=None, regime="real", cell="real", arch="cnn", epochs=6, n_seeds=1,
                           acc=0.8, acc_std=0.0, auc=0.9, auc_std=0.0, f1_macro=0.7, f1_macro_std=0.0),
                      dict(dataset="breastmnist", loss="l2", regime="synthetic", cell="synthetic", arch="cnn", epochs=6, n_seeds=3,
                           acc=0.7, acc_std=0.05, auc=0.8, auc_std=0.02, f1_macro=0.6, f1_macro_std=0.01)])
    empty = pd.DataFrame()
    write_tables(dict(fid=empty, downstream=D, fidelity=empty, lime=empty), tmp_path)
    md = (tmp_path / "downstream.md").read_text()
    assert "0.800 (1 seed)" in md and "± 0.000" not in md and "0.700 ± 0.050" in md
