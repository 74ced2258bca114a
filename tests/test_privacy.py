"Membership inference: the positive control, the null check, member/non-member disjointness, TPR at low FPR."
import numpy as np
import pytest

from medsyn.core import MedsynError, load_settings
from medsyn.data import load_medmnist
from medsyn.privacy import (attack_summary, audit_membership, check_disjoint, denoising_losses, membership_sets,
                            privacy_verdict, tpr_at_fpr)


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
    from medsyn.training import train
    s = load_settings("smoke", model="tiny", train_steps=1500, batch_size=16, lr=2e-3, warmup_steps=10, log_every=100,
                      checkpoint_every=1500, ema_decay=0.0, label_dropout=0.0, train_fraction=16 / 546, device="cpu")
    run = tmp_path_factory.mktemp("priv") / "overfit"
    train("breastmnist", "l2", run, settings=s, progress=False)
    return run, s


def test_attacks_find_the_members_of_an_overfitted_generator(overfit):
    run, s = overfit
    a = audit_membership(run, settings=s, progress=False, n_bootstrap=100)
    assert a["n_members"] == a["n_nonmembers"] == 16
    assert a["attacks"]["loss"]["auc"] > 0.9 and a["attacks"]["loss"]["auc_low"] > 0.5, a["attacks"]["loss"]["auc"]
    assert a["attacks"]["t_error"]["timestep"] in (50, 100, 200, 300)


def test_two_disjoint_nonmember_sets_are_indistinguishable(overfit):
    from medsyn.sampling import load_model
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
