"Differentially private training (nbs/12_dp.ipynb): the accountant, the refusals, and the positive control trained under DP."
import math

import numpy as np
import pytest

from medsyn.core import MedsynError, load_settings, load_json
from medsyn.dp import epsilon_spent, epsilon_lower_bound, roc_bound, calibrate


def test_reported_epsilon_is_opacus_accountant_for_the_run(tmp_path):
    "A private run's record and checkpoints state the ε that Opacus' RDP accountant gives for its (σ, q, steps), stepped as Opacus does."
    from opacus.accountants import RDPAccountant
    from medsyn.training import train
    run = train("breastmnist", "l2", tmp_path / "dp", preset="smoke", progress=False, dp_epsilon=4.0, train_steps=6, checkpoint_every=3)
    dp = load_json(run / "config.json")["dp"]
    assert dp["steps"] == 6 and dp["sample_rate"] == 1 / math.ceil(546 / 8) and dp["delta"] == pytest.approx(1 / 5460)
    for step in (3, 6):
        acc = RDPAccountant()
        for _ in range(step): acc.step(noise_multiplier=dp["noise_multiplier"], sample_rate=dp["sample_rate"])
        spent = load_json(run / "checkpoints" / f"step-{step:06d}" / "medsyn.json")["dp"]
        assert spent["epsilon"] == pytest.approx(acc.get_epsilon(dp["delta"]), rel=1e-9)
    assert spent["epsilon"] <= 4.0 and spent["epsilon_prv"] <= spent["epsilon"] + 0.05


def test_private_runs_refuse_what_dp_sgd_cannot_do(tmp_path):
    from medsyn.training import train
    bad = dict(grad_accum=dict(grad_accum=2), bf16=dict(mixed_precision="bf16"), delta=dict(dp_delta=0.01), swin=dict(model="swin-tiny"))
    for name, kw in bad.items():
        with pytest.raises(MedsynError) as e:
            train("breastmnist", "l2", tmp_path / name, preset="smoke", progress=False, dp_epsilon=1.0, **kw)
        assert {"grad_accum": "grad_accum 1", "bf16": "fp32", "delta": "1/(10 N)", "swin": "unet-* and dit-*"}[name] in str(e.value)
        assert not (tmp_path / name / "checkpoints").exists()


def test_a_private_run_cannot_resume_past_its_calibration(tmp_path):
    from medsyn.training import train
    run = train("breastmnist", "l2", tmp_path / "dp", preset="smoke", progress=False, dp_epsilon=4.0)
    with pytest.raises(MedsynError, match="calibrated for 4 steps"):
        train("breastmnist", "l2", run, preset="smoke", resume=True, progress=False, train_steps=8)


def _control(tmp_path, **dp):
    "The positive control of tests/test_privacy.py (the tiny UNet, 16 BreastMNIST images, about 1500 passes each), optionally private."
    from medsyn.training import train
    s = load_settings("smoke", model="tiny", train_steps=1500, batch_size=16, lr=2e-3, warmup_steps=10, log_every=100,
                      checkpoint_every=1500, ema_decay=0.0, label_dropout=0.0, train_fraction=16 / 546, device="cpu", **dp)
    return train("breastmnist", "l2", tmp_path, settings=s, progress=False), s


def _all_scores(run, s):
    "Loss-attack scores of every member (16) and as many class-matched non-members: the whole audit set, not the reported half."
    from medsyn.sampling import load_model
    from medsyn.privacy import membership_sets, denoising_losses
    sets = membership_sets(run)
    denoiser, sch, meta = load_model(run, ema=True, device="cpu")
    lm, ln = (denoising_losses(denoiser, sch, d, prediction=meta["prediction"], progress=False) for d in (sets["members"], sets["nonmembers"]))
    return -lm.mean(1), -ln.mean(1)


def test_the_positive_control_under_dp_stays_inside_its_bound(tmp_path):
    """Without DP the control's loss attack proves ε > 1 at 95 % confidence (Clopper-Pearson, 16 members vs 16 non-members): the check
    has the power to catch a broken private trainer. Trained at ε = 1 it must prove no more than 1, at every threshold."""
    plain, s = _control(tmp_path / "plain")
    proved = epsilon_lower_bound(*_all_scores(plain, s))
    assert proved > 1.0, f"the non-private control proves only ε >= {proved:.2f}: the audit below could not fail"
    private, sp = _control(tmp_path / "dp", dp_epsilon=1.0)
    spent = load_json(next((private / "checkpoints").iterdir()) / "medsyn.json")["dp"]
    assert spent["epsilon"] <= 1.0
    m, n = _all_scores(private, sp)
    got = epsilon_lower_bound(m, n, spent["delta"])
    assert got <= spent["epsilon"], (f"the private control is beaten beyond its guarantee: its attack proves ε >= {got:.2f} "
                                     f"> {spent['epsilon']:.2f}. The DP-SGD implementation is broken")
    # and the ROC itself: inside the bound wherever the counts are not pure sampling noise
    from sklearn.metrics import roc_curve
    f, t, _ = roc_curve(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n])
    assert (t <= roc_bound(f, spent["epsilon"], spent["delta"]) + 3.5 / math.sqrt(len(m))).all()
