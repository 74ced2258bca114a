"Membership inference: the positive control (plain and under DP), the null check, member/non-member disjointness, TPR at low FPR."
import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from medsyn.core import MedsynError, load_settings, load_json
from medsyn.data import load_medmnist
from medsyn.privacy import (attack_summary, audit_membership, check_disjoint, denoising_losses, membership_sets,
                            privacy_verdict, tpr_at_fpr)
from medsyn.dp import epsilon_lower_bound, roc_bound
from medsyn.sampling import load_model
from medsyn.training import train


def test_tpr_at_low_fpr_hand_computed():
    # members 0.9, 0.8, 0.4; non-members 0.7, 0.3, 0.2, 0.1: 11 of 12 pairs ordered right; above 0.7 two of three members
    a = attack_summary([0.9, 0.8, 0.4], [0.7, 0.3, 0.2, 0.1], n_bootstrap=20)
    assert a["auc"] == pytest.approx(11 / 12) and a["tpr_at_1pct_fpr"] == pytest.approx(2 / 3)
    y, s = [1, 1, 0, 0], [0.9, 0.2, 0.5, 0.1]
    assert tpr_at_fpr(y, s, 0.25) == 0.5 and tpr_at_fpr(y, s, 0.5) == 1.0
    assert "no detectable" in privacy_verdict(dict(auc=0.52, auc_low=0.45, auc_high=0.6, tpr_at_1pct_fpr=0.0))
    assert privacy_verdict(dict(auc=0.9, auc_low=0.8, auc_high=0.95, tpr_at_1pct_fpr=0.4)).startswith("membership leaks")


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    "The positive control: the tiny UNet trained far past convergence on 16 BreastMNIST images (about 1500 passes over each)."
    return _control(tmp_path_factory.mktemp("priv") / "overfit")


def _control(out, **dp):
    "The positive control (`overfit`), optionally trained under DP-SGD (`dp_epsilon=...`)."
    s = load_settings("smoke", model="tiny", train_steps=1500, batch_size=16, lr=2e-3, warmup_steps=10, log_every=100,
                      checkpoint_every=1500, ema_decay=0.0, label_dropout=0.0, train_fraction=16 / 546, device="cpu", **dp)
    return train("breastmnist", "l2", out, settings=s, progress=False), s


def test_attacks_find_the_members_of_an_overfitted_generator(overfit):
    run, s = overfit
    a = audit_membership(run, settings=s, progress=False, n_bootstrap=100)
    assert a["n_members"] == a["n_nonmembers"] == 16
    assert a["attacks"]["loss"]["auc"] > 0.9 and a["attacks"]["loss"]["auc_low"] > 0.5, a["attacks"]["loss"]["auc"]
    assert a["attacks"]["t_error"]["timestep"] in (50, 100, 200, 300)


def test_two_disjoint_nonmember_sets_are_indistinguishable(overfit):
    run, _ = overfit
    sets = membership_sets(run)
    denoiser, sch, _ = load_model(run, device="cpu")
    tr = load_medmnist("breastmnist", "train")
    others = np.setdiff1d(np.arange(len(tr)), [i for _, i in sets["trained_on"]])
    rng = np.random.default_rng(1)     # every other training image, split in two halves of the same class mix
    halves = [np.array_split(rng.permutation(others[tr.labels[others] == c]), 2) for c in range(2)]
    k = [min(len(h[0]), len(h[1])) for h in halves]
    a, b = (np.concatenate([h[i][:kk] for h, kk in zip(halves, k)]) for i in (0, 1))
    assert len(a) == len(b) > 250
    la, lb = (denoising_losses(denoiser, sch, tr.subset(i)).mean(1) for i in (a, b))
    r = attack_summary(-la, -lb)
    assert abs(r["auc"] - 0.5) < 0.1, r["auc"]     # standard error about 0.025 at 260 a side


def test_members_and_nonmembers_are_disjoint_and_class_matched(overfit):
    run, _ = overfit
    sets = membership_sets(run, seed=3)
    assert check_disjoint(sets) == 16
    assert np.bincount(sets["members"].labels).tolist() == np.bincount(sets["nonmembers"].labels).tolist()
    bad = dict(sets, nonmember_ids=sets["nonmember_ids"][:-1] + [sets["trained_on"][0]])
    with pytest.raises(MedsynError, match="non-member"):
        check_disjoint(bad)


# --- the same control trained under DP-SGD (nbs/12_dp.ipynb): its guarantee must bound the attack that beats the plain one
def _all_scores(run):
    "Loss-attack scores of every member (16) and as many class-matched non-members: the whole audit set, not the reported half."
    sets = membership_sets(run)
    denoiser, sch, meta = load_model(run, ema=True, device="cpu")
    lm, ln = (denoising_losses(denoiser, sch, d, prediction=meta["prediction"], progress=False) for d in (sets["members"], sets["nonmembers"]))
    return -lm.mean(1), -ln.mean(1)


def test_the_positive_control_under_dp_stays_inside_its_bound(overfit, tmp_path):
    """Without DP the control's loss attack proves ε > 1 at 95 % confidence (Clopper-Pearson, 16 members vs 16 non-members): the check
    has the power to catch a broken private trainer. Trained at ε = 1 it must prove no more than 1, at every threshold."""
    plain, _ = overfit
    proved = epsilon_lower_bound(*_all_scores(plain))
    assert proved > 1.0, f"the non-private control proves only ε >= {proved:.2f}: the audit below could not fail"
    private, _ = _control(tmp_path / "dp", dp_epsilon=1.0)
    spent = load_json(next((private / "checkpoints").iterdir()) / "medsyn.json")["dp"]
    assert spent["epsilon"] <= 1.0
    m, n = _all_scores(private)
    got = epsilon_lower_bound(m, n, spent["delta"])
    assert got <= spent["epsilon"], (f"the private control is beaten beyond its guarantee: its attack proves ε >= {got:.2f} "
                                     f"> {spent['epsilon']:.2f}. The DP-SGD implementation is broken")
    # and the ROC itself: inside the bound wherever the counts are not pure sampling noise
    f, t, _ = roc_curve(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n])
    assert (t <= roc_bound(f, spent["epsilon"], spent["delta"]) + 3.5 / math.sqrt(len(m))).all()
