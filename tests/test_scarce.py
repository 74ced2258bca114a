"The scarce-data experiment: per-modality augmentation, generator sizing, paired statistics, leak check, table and figure."
import json, shutil

import numpy as np
import pandas as pd
import pytest
import torch

from medsyn.core import MedsynError, load_settings, save_json
from medsyn.data import MODALITY, classical_augmentation, indices_digest, load_medmnist, to_tensor
from medsyn.stats import mean_ci
from medsyn.figures import plot_scarce
from medsyn.scarce import (ARMS, REAL_ARMS, SYN_ARMS, check_draws, check_leak, collect_scarce, draw_difference, draw_table,
                           draws_needed, scarce_dir, generator_steps, paired_difference, real_subset, run_arms,
                           scarce_markdown, scarce_table, val_subset, verdict)


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
    assert generator_steps(1, q.replace(scarce_max_epochs=1)) == 1
    with pytest.raises(MedsynError, match="scarce_max_epochs"):
        generator_steps(10, q.replace(scarce_max_epochs=0))


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
    sub, _ = real_subset("breastmnist", 0.1, s, 0)
    va = load_medmnist("breastmnist", "val")
    aug = classical_augmentation("breastmnist")
    m1, h1 = train_classifier(sub, va, "cnn", s, seed=3, progress=False, augment=aug)
    m2, h2 = train_classifier(sub, va, "cnn", s, seed=3, progress=False, augment=aug)
    m3, h3 = train_classifier(sub, va, "cnn", s, seed=3, progress=False)
    w = lambda m: torch.cat([p.flatten() for p in m.parameters()])
    assert torch.equal(w(m1), w(m2)) and not torch.equal(w(m1), w(m3))
    assert "ultrasound" in h1["augment"] and h3["augment"] is None


def test_diffusion_training_records_which_real_images_it_saw(tmp_path):
    from medsyn.training import train
    s = load_settings("smoke", train_steps=1, device="cpu", train_fraction=0.1, seed=4)
    train("breastmnist", "l2", tmp_path / "m", settings=s, progress=False)
    seen = json.loads((tmp_path / "m" / "config.json").read_text())["real_images"]
    _, idx = real_subset("breastmnist", 0.1, s, 4)          # the generator's seed is the subset draw
    assert seen["subset_seed"] == 4 and seen["indices"] == idx.tolist() and seen["digest"] == indices_digest(idx) and seen["n"] == 55 and seen["fraction"] == 0.1


def _rows(dataset="breastmnist", fraction=0.1, n_real=55, draws=(0,), draw_effect=0.0):
    "Classifier rows as run_arms writes them: four arms x three seeds per draw; the synthetic arms help by about 0.05 AUC."
    rng = np.random.default_rng(0)
    base = {0: 0.80, 1: 0.78, 2: 0.82}
    rows = []
    for k in draws:
        effect = draw_effect * (k - np.mean(draws))        # how much better synthetic images do on this draw
        for arm, shift in (("real", 0.0), ("real+aug", 0.002), ("real+syn", 0.05), ("real+syn+aug", 0.05)):
            for seed, b in base.items():
                auc = b + shift + ((rng.normal(0, 0.004) + (effect if "syn" in arm else 0)) if shift else 0)
                rows.append(dict(dataset=dataset, fraction=fraction, draw=k, val="scarce", arm=arm, ratio=1.0 if "syn" in arm else 0.0,
                                 seed=seed, real_digest=f"d{k}", n_real=n_real, n_classes=2, n_val=8, val_digest=f"v{k}",
                                 n_synthetic=n_real if "syn" in arm else 0, acc=auc - 0.1, auc=auc, f1_macro=auc - 0.2,
                                 loss=None if "syn" not in arm else "l2",
                                 generator=f"/r/{dataset}/l2/scarce/frac-{fraction:g}/draw-{k}/synthetic.npz" if "syn" in arm else None))
    return pd.DataFrame(rows)


def _gens(draws=(0,), replays=True):
    return pd.DataFrame([dict(dataset="breastmnist", loss="l2", fraction=0.1, draw=k, n_real=55, digest=f"d{k}", steps=258, batch_size=32,
                              epochs=150.1, nearcopy_share=0.9, median_ratio=0.2, min_ratio=0.0, n_synthetic=55, replays=replays,
                              kid=0.05 + 0.01 * k, kid_floor=0.01) for k in draws])


def test_scarce_table_pairs_each_arm_with_real_only():
    t = scarce_table(_rows(), _gens())
    assert list(t["arm"]) == list(ARMS) and (t["seeds"] == 3).all() and (t["draws"] == 1).all()
    f = dict(zip(t["arm"], t["finding"]))
    assert f["real+syn"] == "helps" and f["real+syn+aug"] == "helps" and pd.isna(f["real"])
    assert t.loc[t["arm"] == "real+syn", "d_auc_mean"].iloc[0] == pytest.approx(0.05, abs=0.01)
    assert set(t["unit"].dropna()) == {"seeds"}                                        # one draw: the interval is over its seeds
    md = scarce_markdown(t)
    assert md["generators"].str.contains("replay their subset").sum() == 2              # both synthetic arms flagged
    assert md["generators"].str.contains("KID 0.0500").sum() == 2
    assert "±" not in md.to_string() and not md["AUC [95% CI]"].str.contains("0.000, 0.000").any()
    one = scarce_table(_rows().query("seed == 0"))                                      # one seed: no interval, said so
    assert set(one.loc[one["arm"] != "real", "finding"]) == {"one seed: no interval"}
    assert "[" not in "".join(scarce_markdown(one)["AUC [95% CI]"])
    with pytest.raises(MedsynError, match="no 'real only' arm"):
        scarce_table(_rows().query("arm != 'real'"))


def test_draws_are_the_unit_of_the_interval():
    # the synthetic arm helps by 0.05 on average, but by 0.01 .. 0.09 depending on the draw: seeds agree, draws do not
    r = _rows(draws=(0, 1, 2), draw_effect=0.04)
    t = scarce_table(r, _gens((0, 1, 2), replays=False)).set_index("arm")
    s = t.loc["real+syn"]
    assert s["unit"] == "draws" and s["draws"] == 3 and s["finding"] == "no detectable difference"
    assert s["d_auc_pooled_low"] > 0                                  # the pooled-seed interval would have called it 'helps'
    assert (s["d_auc_high"] - s["d_auc_low"]) > 3 * (s["d_auc_pooled_high"] - s["d_auc_pooled_low"])
    assert s["sd_between"] == pytest.approx(0.04, abs=0.005) and s["sd_within"] < 0.01
    assert draws_needed(s["sd_between"], 0.02) >= 15 and draws_needed(0.0, 0.02) == 2
    assert s["draws_for_0.02"] == draws_needed(s["sd_between"], 0.02) and s["draws_for_0.05"] < s["draws_for_0.02"]
    D = draw_table(r, _gens((0, 1, 2)))
    assert len(D) == 2 * 3 and D["kid"].notna().all()                 # a point per synthetic arm and draw, with its KID
    d = D[D["arm"] == "real+syn"].set_index("draw")["d_auc"]
    assert d[2] - d[0] == pytest.approx(0.08, abs=0.01)


def test_two_draws_sharing_a_generator_are_refused():
    g = _gens((0, 1))
    check_draws(g, _rows(draws=(0, 1)))                               # independent draws pass
    with pytest.raises(MedsynError, match="share a generator"):
        check_draws(g.assign(digest="d0"))
    r = _rows(draws=(0, 1))
    r.loc[(r["draw"] == 1) & r["generator"].notna(), "generator"] = "/r/breastmnist/l2/scarce/frac-0.1/draw-0/synthetic.npz"
    with pytest.raises(MedsynError, match="another draw's generator"):
        check_draws(g, r)


def test_arms_see_only_the_images_the_setting_allows(tmp_path, monkeypatch):
    """Every classifier of a draw trains on that draw's subset (plus synthetic images for the synthetic arms) and picks its epoch on
    the draw's validation images: the scarce fraction of the validation split, or all of it with scarce_val = full."""
    import medsyn.scarce as S          # the arms call the train_classifier that medsyn.scarce imported
    from medsyn.data import write_synthetic
    s = load_settings("smoke", archs="cnn", clf_epochs=1, clf_min_steps=0, device="cpu", scarce_seeds="0,1", scarce_val="scarce,full")
    tr, va = load_medmnist("breastmnist", "train"), load_medmnist("breastmnist", "val")
    key = lambda im: im.tobytes()
    seen = []
    real_train = S.train_classifier
    def spy(train, val, *a, **k):
        seen.append((set(map(key, train.images)), [key(x) for x in val.images], len(train)))
        return real_train(train, val, *a, **k)
    monkeypatch.setattr(S, "train_classifier", spy)
    f, subsets = 0.1, {}
    for draw in (0, 1):
        sub, idx = real_subset("breastmnist", f, s, draw)
        subsets[draw] = set(idx.tolist())
        allowed = set(map(key, tr.images[idx]))
        vals = {m: [key(x) for x in val_subset("breastmnist", f, s, draw, m)[0].images] for m in ("scarce", "full")}
        assert len(vals["scarce"]) == 8 and len(vals["full"]) == 78       # round(0.1 * 21) + round(0.1 * 57)
        rng = np.random.default_rng(draw)                                  # a stand-in synthetic set, recorded as this draw's
        syn_imgs = rng.integers(0, 256, (2 * len(sub), 28, 28), dtype=np.uint8)
        syn = write_synthetic(tmp_path / f"syn{draw}.npz", syn_imgs, np.repeat(sub.labels, 2), "breastmnist",
                              real_images=dict(fraction=f, subset_seed=draw, n=len(sub), digest=indices_digest(idx)))
        seen.clear()
        res = run_arms("breastmnist", ARMS, f, draw, scarce_dir(tmp_path, f, draw), s, synthetic=syn, progress=False)
        assert len(seen) == len(res["rows"]) == 2 * 4 * 2                 # 2 validation modes x 4 arms x 2 seeds
        syn_keys = set(map(key, syn_imgs))
        for (train_keys, val_keys, n), row in zip(seen, res["rows"]):
            real_part = train_keys - syn_keys
            assert real_part == allowed, f"{row['arm']}: a training image outside draw {draw}'s subset"
            assert val_keys == vals[row["val"]], f"{row['arm']}: validation images other than the {row['val']} set"
            assert (n > len(sub)) == (row["arm"] in SYN_ARMS)
            assert row["real_digest"] == indices_digest(idx) and row["draw"] == draw and row["n_val"] == len(vals[row["val"]])
    assert subsets[0] != subsets[1]
    with pytest.raises(MedsynError, match="the generator must see exactly"):   # draw 1's arms refuse draw 0's generator
        run_arms("breastmnist", SYN_ARMS, f, 1, tmp_path / "x", s, synthetic=tmp_path / "syn0.npz", progress=False)


def test_scarce_figure_has_a_column_per_data_set(tmp_path):
    import matplotlib; matplotlib.use("Agg")
    r = pd.concat([_rows(draws=(0, 1)), _rows(fraction=0.25, n_real=137, draws=(0, 1)), _rows("retinamnist", 0.1, 108, draws=(0, 1))],
                  ignore_index=True)
    fig = plot_scarce(scarce_table(r), draw_table(r, _gens((0, 1))))
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "breastmnist" and fig.axes[1].get_title() == "retinamnist"
    assert fig.axes[0].get_xscale() == "log" and "per class" in fig.axes[0].get_xlabel()
    assert len(fig.legends[0].get_texts()) == 3                        # the three arms compared with real only
    assert "KID" in fig.axes[2].get_xlabel() and len(fig.axes[2].collections) >= 2
    from medsyn.figures import save_fig
    assert all(p.stat().st_size > 1000 for p in save_fig(fig, tmp_path, "scarce"))


def test_single_seed_results_are_not_printed_as_zero_spread(tmp_path):
    from medsyn.tables import write_tables
    D = pd.DataFrame([dict(dataset="breastmnist", loss=None, regime="real", cell="real", arch="cnn", epochs=6, n_seeds=1,
                           acc=0.8, acc_std=0.0, auc=0.9, auc_std=0.0, f1_macro=0.7, f1_macro_std=0.0),
                      dict(dataset="breastmnist", loss="l2", regime="synthetic", cell="synthetic", arch="cnn", epochs=6, n_seeds=3,
                           acc=0.7, acc_std=0.05, auc=0.8, auc_std=0.02, f1_macro=0.6, f1_macro_std=0.01)])
    empty = pd.DataFrame()
    write_tables(dict(fid=empty, downstream=D, fidelity=empty, lime=empty), tmp_path)
    md = (tmp_path / "downstream.md").read_text()
    assert "0.800 (1 seed)" in md and "± 0.000" not in md and "0.700 ± 0.050" in md
