"Differentially private training (nbs/12_dp.ipynb): the accountant and the refusals (the positive control under DP: tests/test_privacy.py)."
import math

import pytest

from medsyn.core import MedsynError, load_json


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
