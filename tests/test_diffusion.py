"Class-conditional diffusion: model, losses, trainer (resume, Ctrl-C, NaN), sampler and their error paths."
import json, os, shutil, signal

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import medsyn.denoisers as DN
import medsyn.diffusion as D
import medsyn.training as TR
import medsyn.sampling as SA
from medsyn.core import MedsynError, compiled, load_json
from medsyn.data import load_npz

CMP = ["step", "loss", "lr"] + [f"t{i:02d}" for i in range(10)]   # loss.csv without the timing column


def weights(run, step, sub="unet"):
    return load_file(run / "checkpoints" / f"step-{step:06d}" / sub / "diffusion_pytorch_model.safetensors")


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    "4 smoke steps of huber on breastmnist, uninterrupted: the reference for determinism and resume."
    return TR.train("breastmnist", "huber", tmp_path_factory.mktemp("d") / "straight", preset="smoke", progress=False)


# ---- the "done when": CLI train then CLI sample ------------------------------------------------------------------

def test_cli_train_then_sample(cli, tmp_path):
    run, npz, png = tmp_path / "run", tmp_path / "syn.npz", tmp_path / "syn.png"
    cli("train", "--dataset", "breastmnist", "--loss", "huber", "--preset", "smoke", "--out", run, "--no-progress", check=True)
    cfg = load_json(run / "config.json")
    assert cfg["settings"]["loss"] == "huber" and cfg["settings"]["preset"] == "smoke" and cfg["seed"] == 0
    assert cfg["n_params"] > 0 and cfg["versions"]["torch"] and cfg["denoiser_config"]["num_class_embeds"] == 3 and cfg["denoiser"] == "UNet2DModel"
    log = pd.read_csv(run / "loss.csv")
    assert list(log.columns) == D.loss_columns(10) and log.step.tolist() == [1, 2, 3, 4] and log.loss.notna().all()
    assert [p.name for p in D.checkpoints(run)] == ["step-000002", "step-000004"]
    ck = run / "checkpoints" / "step-000004"
    assert sorted(p.name for p in ck.iterdir()) == ["medsyn.json", "scheduler", "training_state.pt", "unet", "unet_ema"]
    meta = load_json(ck / "medsyn.json")
    assert meta["flag"] == "breastmnist" and meta["n_classes"] == 2 and meta["null_class"] == 2 and meta["step"] == 4
    assert meta["loss"] == "huber" and meta["label_names"] == ["malignant", "normal, benign"]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]   # no temp dirs left

    p = cli("sample", "--model-dir", run, "--per-class", "8", "--steps", "3", "--out", npz, "--grid", png, "--no-progress", check=True)
    assert "wrote" in p.stdout
    with np.load(npz) as z:
        assert z["train_images"].shape == (16, 28, 28) and z["train_images"].dtype == np.uint8
        assert z["train_labels"].shape == (16, 1) and z["train_labels"].dtype == np.uint8
        assert z["train_labels"].ravel().tolist() == [0] * 8 + [1] * 8
    side = load_json(npz.with_suffix(".json"))
    assert side["flag"] == "breastmnist" and side["sampler"] == "ddim" and side["steps"] == 3 and side["per_class"] == 8
    assert side["checkpoint"].endswith("step-000004") and side["seconds"] > 0 and side["images_per_s"] > 0 and side["versions"]
    assert load_npz(npz).class_counts() == [8, 8]
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


# ---- determinism and resume ---------------------------------------------------------------------------------------

def test_deterministic_for_a_seed(straight, tmp_path):
    again = TR.train("breastmnist", "huber", tmp_path / "again", preset="smoke", progress=False)
    pd.testing.assert_frame_equal(D.read_loss_csv(again)[CMP], D.read_loss_csv(straight)[CMP])
    assert same_weights(weights(again, 4), weights(straight, 4))
    other = TR.train("breastmnist", "huber", tmp_path / "other", preset="smoke", progress=False, seed=1, train_steps=1)
    assert D.read_loss_csv(other).loss[0] != D.read_loss_csv(straight).loss[0]


def test_resume_from_a_checkpoint_is_exact(straight, tmp_path):
    # a run that died after step 3 had logged rows 3-4 past its last checkpoint (step 2): resume drops them
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    shutil.rmtree(run / "checkpoints" / "step-000004")
    TR.train("breastmnist", "huber", run, preset="smoke", progress=False, resume=True)
    pd.testing.assert_frame_equal(D.read_loss_csv(run)[CMP], D.read_loss_csv(straight)[CMP])
    for sub in ("unet", "unet_ema"):
        assert same_weights(weights(run, 4, sub), weights(straight, 4, sub)), sub
    ts_a = torch.load(run / "checkpoints/step-000004/training_state.pt", weights_only=True)
    ts_b = torch.load(straight / "checkpoints/step-000004/training_state.pt", weights_only=True)
    assert ts_a["step"] == ts_b["step"] == 4 and ts_a["ema"]["optimization_step"] == 4
    assert torch.equal(ts_a["rng"]["data"]["generator"], ts_b["rng"]["data"]["generator"])
    assert load_json(run / "config.json")["resumes"][0]["step"] == 2


def test_keyboard_interrupt_saves_and_resumes_exactly(straight, tmp_path):
    run = tmp_path / "run"

    def ctrl_c(step, loss):
        if step == 3: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        TR.train("breastmnist", "huber", run, preset="smoke", progress=False, callback=ctrl_c)
    assert [p.name for p in D.checkpoints(run)] == ["step-000002", "step-000003"]
    TR.train("breastmnist", "huber", run, preset="smoke", progress=False, resume=True)
    pd.testing.assert_frame_equal(D.read_loss_csv(run)[CMP], D.read_loss_csv(straight)[CMP])
    assert same_weights(weights(run, 4), weights(straight, 4))
    assert same_weights(weights(run, 4, "unet_ema"), weights(straight, 4, "unet_ema"))


def test_sigint_finishes_the_step_then_saves(straight, tmp_path):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)

    def press_ctrl_c(step, loss):
        if step == 1: os.kill(os.getpid(), signal.SIGINT)     # a real SIGINT, as from the keyboard
    with pytest.raises(KeyboardInterrupt):
        TR.train("breastmnist", "huber", run, preset="smoke", progress=False, callback=press_ctrl_c)
    assert [p.name for p in D.checkpoints(run)] == ["step-000001"]
    assert signal.getsignal(signal.SIGINT) is before                           # handler restored
    TR.train("breastmnist", "huber", run, preset="smoke", progress=False, resume=True)
    assert same_weights(weights(run, 4), weights(straight, 4))


def test_resume_can_extend_but_not_change_the_recipe(straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    with pytest.raises(MedsynError, match="cannot change loss"):
        TR.train("breastmnist", "l2", run, preset="smoke", progress=False, resume=True, train_steps=6)
    with pytest.raises(MedsynError, match="cannot change lr"):
        TR.train("breastmnist", None, run, preset="smoke", progress=False, resume=True, lr=1e-3)
    with pytest.raises(MedsynError, match="is a run on 'breastmnist'"):
        TR.train("pneumoniamnist", None, run, preset="smoke", progress=False, resume=True)
    TR.train("breastmnist", None, run, preset="smoke", progress=False, resume=True, train_steps=6)
    assert D.read_loss_csv(run).step.tolist() == [1, 2, 3, 4, 5, 6]
    assert D.checkpoints(run)[-1].name == "step-000006"


# ---- failures --------------------------------------------------------------------------------------------------

def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = D.diffusion_loss

    def poisoned(pred, *a, **k):
        out = real(pred, *a, **k)
        if pred.ndim < 4: return out             # the trainer's up-front check of the loss settings
        calls["n"] += 1
        return out * float("nan") if calls["n"] == 3 else out
    monkeypatch.setattr(TR, "diffusion_loss", poisoned)   # the name the trainer calls
    run = tmp_path / "run"
    with pytest.raises(MedsynError, match=r"loss is nan at step 3 .*last good checkpoint.*lower --lr.*huber") as e:
        TR.train("breastmnist", "l2", run, preset="smoke", progress=False)
    assert [p.name for p in D.checkpoints(run)] == ["step-000002"]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert all(torch.isfinite(v).all() for v in weights(run, 2).values())


def test_nan_is_found_within_a_log_window_and_never_checkpointed(tmp_path, monkeypatch):
    # losses are read once per log window (no host sync per step): a NaN at step 3 of a 4-step window is still
    # named by its step, and the checkpoint due at step 4 is not written from weights that step touched
    calls = {"n": 0}
    real = D.diffusion_loss

    def poisoned(pred, *a, **k):
        out = real(pred, *a, **k)
        if pred.ndim < 4: return out
        calls["n"] += 1
        return out * float("nan") if calls["n"] == 3 else out
    monkeypatch.setattr(TR, "diffusion_loss", poisoned)   # the name the trainer calls
    run = tmp_path / "run"
    with pytest.raises(MedsynError, match=r"loss is nan at step 3 "):
        TR.train("breastmnist", "l2", run, preset="smoke", progress=False, log_every=4, train_steps=6)
    assert [p.name for p in D.checkpoints(run)] == ["step-000002"]
    assert all(torch.isfinite(v).all() for v in weights(run, 2).values())


def test_no_host_sync_per_step(tmp_path, monkeypatch):
    # .item() / .tolist() / float(tensor) made by medsyn's own code are host syncs: count them over 8 steps logged every 4.
    # (torch's single-tensor AdamW reads its CPU step counters with .item(): no device sync, and fused on a GPU.)
    import sys
    calls = []
    for name in ("item", "tolist", "__float__"):
        orig = getattr(torch.Tensor, name)
        def wrap(self, *a, _orig=orig, _name=name, **k):
            f = sys._getframe(1).f_code.co_filename
            if f"{os.sep}medsyn{os.sep}" in f: calls.append((_name, f.rsplit(os.sep, 1)[-1], sys._getframe(1).f_lineno))
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, wrap)
    TR.train("breastmnist", "l2", tmp_path / "run", preset="smoke", progress=False, log_every=4, train_steps=8, checkpoint_every=8)
    assert len(calls) <= 8, calls       # a few per window (losses, buckets, counts): 2 windows, not one per step


def test_time_limit_stops_cleanly_and_resume_is_exact(straight, tmp_path, monkeypatch):
    from medsyn.core import TimeLimitReached
    clock = {"t": 1000.0}
    monkeypatch.setattr(TR, "_now", lambda: clock["t"])

    def tick(step, loss):
        if step == 2: clock["t"] = 2000.0        # past the deadline after step 2
    run = tmp_path / "run"
    with pytest.raises(TimeLimitReached, match="time limit reached at step 2 of 4"):
        TR.train("breastmnist", "huber", run, preset="smoke", progress=False, callback=tick, deadline=1500.0)
    assert [p.name for p in D.checkpoints(run)] == ["step-000002"]
    monkeypatch.setenv("MEDSYN_DEADLINE", "1500")      # the same deadline from the environment, as `medsyn study` sets it
    with pytest.raises(TimeLimitReached):
        TR.train("breastmnist", "huber", run, preset="smoke", progress=False, resume=True)
    monkeypatch.delenv("MEDSYN_DEADLINE")
    TR.train("breastmnist", "huber", run, preset="smoke", progress=False, resume=True)
    pd.testing.assert_frame_equal(D.read_loss_csv(run)[CMP], D.read_loss_csv(straight)[CMP])
    for sub in ("unet", "unet_ema"):
        assert same_weights(weights(run, 4, sub), weights(straight, 4, sub)), sub


def test_a_tampered_training_state_is_refused_not_executed(straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    shutil.rmtree(run / "checkpoints" / "step-000004")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self): return (os.system, (f"touch {marker}",))
    torch.save({"step": 2, "payload": Payload()}, run / "checkpoints" / "step-000002" / "training_state.pt")
    with pytest.raises(MedsynError, match="not a training state medsyn can read safely"):
        TR.train("breastmnist", "huber", run, preset="smoke", progress=False, resume=True)
    assert not marker.exists()


def test_training_refuses_bad_requests(straight, tmp_path):
    with pytest.raises(MedsynError, match="multi-label"):
        TR.train("chestmnist", "l2", tmp_path / "c", preset="smoke")
    with pytest.raises(MedsynError, match="Allowed: l2, l1, huber, pseudo_huber"):
        TR.train("breastmnist", "mse", tmp_path / "m", preset="smoke")
    with pytest.raises(MedsynError, match="already holds a training run"):
        TR.train("breastmnist", "huber", straight, preset="smoke")
    with pytest.raises(MedsynError, match="nothing to resume"):
        TR.train("breastmnist", "huber", tmp_path / "empty", preset="smoke", resume=True)
    with pytest.raises(MedsynError, match="needs an output folder"):
        TR.train("breastmnist", "huber", None, preset="smoke")
    with pytest.raises(MedsynError, match="'huber_delta' must be > 0"):
        TR.train("breastmnist", "huber", tmp_path / "h", preset="smoke", huber_delta=0)


def test_cli_errors_exit_2_with_a_message(cli, tmp_path):
    p = cli("train", "--dataset", "breastmnist", "--loss", "l3", "--preset", "smoke", "--out", tmp_path / "x")
    assert p.returncode == 2 and "Allowed: l2, l1, huber, pseudo_huber" in p.stderr
    p = cli("train", "--dataset", "breastmnist", "--preset", "smoke", "--lr", "-1", "--out", tmp_path / "x")
    assert p.returncode == 2 and "setting 'lr' must be > 0, got -1.0" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()
    p = cli("sample", "--checkpoint", tmp_path, "--per-class", "2", "--out", tmp_path / "y.npz")
    assert p.returncode == 2 and "is not a medsyn checkpoint" in p.stderr


# ---- sampling ---------------------------------------------------------------------------------------------------

def test_resolve_and_load_model(straight):
    ck = D.resolve_checkpoint(straight)
    assert ck.name == "step-000004" and D.resolve_checkpoint(ck) == ck
    assert D.resolve_checkpoint(straight / "checkpoints" / "step-000002").name == "step-000002"
    denoiser, sch, meta = SA.load_model(straight, device="cpu")
    raw, _, _ = SA.load_model(straight, ema=False, device="cpu")
    assert meta["n_classes"] == 2 and sch.config.num_train_timesteps == 1000 and not denoiser.training
    assert any(not torch.equal(a, b) for a, b in zip(denoiser.parameters(), raw.parameters()))   # EMA != raw weights


def test_sampling_is_seeded_and_ddpm_and_guidance_work(straight, tmp_path):
    a = load_npz(SA.sample(straight, 3, tmp_path / "a.npz", steps=3, seed=5, progress=False, batch_size=4))
    b = load_npz(SA.sample(straight, 3, tmp_path / "b.npz", steps=3, seed=5, progress=False, batch_size=4))
    c = load_npz(SA.sample(straight, 3, tmp_path / "c.npz", steps=3, seed=6, progress=False, batch_size=4))
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)
    d = load_npz(SA.sample(straight, 2, tmp_path / "d.npz", sampler="ddpm", steps=2, guidance=3.0, progress=False))
    assert d.images.shape == (4, 28, 28) and load_json(tmp_path / "d.json")["guidance"] == 3.0


@pytest.mark.parametrize("sampler", ["dpmsolver", "unipc"])
def test_multistep_solvers_are_seeded_and_start_each_batch_afresh(straight, sampler):
    denoiser, sch, meta = SA.load_model(straight, device="cpu")
    labels = np.array([0, 1, 0, 1])
    kw = dict(sampler=sampler, steps=4, seed=3, null_class=meta["null_class"], progress=False)
    one = SA.generate(denoiser, sch, labels, batch_size=4, **kw)
    assert np.array_equal(one, SA.generate(denoiser, sch, labels, batch_size=4, **kw))
    assert not np.array_equal(one, SA.generate(denoiser, sch, labels, batch_size=4, **{**kw, "seed": 4}))
    # a second batch must not inherit the first batch's solver history: sampled in two batches of 2, each
    # image is what it is in one batch of 4 (the initial noise is drawn in the same order)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(torch.randn(4, 1, 28, 28, generator=g1),
                       torch.cat([torch.randn(2, 1, 28, 28, generator=g2), torch.randn(2, 1, 28, 28, generator=g2)]))
    assert np.array_equal(one, SA.generate(denoiser, sch, labels, batch_size=2, **kw))
    assert not np.array_equal(one, SA.generate(denoiser, sch, labels, batch_size=4, **{**kw, "sampler": "ddim"}))


def test_compile_setting_reaches_training_sampling_and_classifiers(straight, tmp_path, monkeypatch):
    modes = []
    def fake_compile(model, mode=None, **kw):
        modes.append(mode); return model
    monkeypatch.setattr(torch, "compile", fake_compile)
    TR.train("breastmnist", "l2", tmp_path / "r", preset="smoke", progress=False, train_steps=1, compile="reduce-overhead")
    denoiser, sch, meta = SA.load_model(straight, device="cpu")
    SA.generate(denoiser, sch, [0, 1, 0], batch_size=2, steps=2, progress=False, compile="max-autotune")
    from medsyn.classify import train_classifier
    from medsyn.core import load_settings
    from medsyn.data import load_medmnist, subsample
    s = load_settings("smoke", compile="default", clf_epochs=1, device="cpu")
    train_classifier(subsample(load_medmnist("breastmnist"), fraction=0.05), load_medmnist("breastmnist", "val"), "cnn", s, progress=False)
    assert modes == ["reduce-overhead", "max-autotune", None]      # None: torch.compile's default mode
    with pytest.raises(MedsynError, match="compile must be one of"):
        compiled(denoiser, "fast")


def test_compiled_denoiser_matches_eager_on_cpu(straight):
    pytest.importorskip("torch._inductor")
    denoiser, sch, meta = SA.load_model(straight, device="cpu")
    kw = dict(sampler="ddim", steps=2, seed=1, progress=False)
    eager = SA.generate(denoiser, sch, [0, 1], batch_size=2, **kw)
    comp = SA.generate(denoiser, sch, [0, 1], batch_size=2, compile="default", **kw)
    assert np.abs(eager.astype(int) - comp.astype(int)).max() <= 1     # uint8 images: at most one grey level apart


def test_guidance_zero_is_the_unconditional_model(straight):
    denoiser, sch, meta = SA.load_model(straight, device="cpu")
    g0 = SA.generate(denoiser, sch, [0, 1], steps=3, guidance=0.0, null_class=2, progress=False)
    null = SA.generate(denoiser, sch, [2, 2], steps=3, guidance=1.0, progress=False)
    assert np.abs(g0.astype(int) - null.astype(int)).max() <= 1      # eps = eps_uncond + 0 * (...)
    cond = SA.generate(denoiser, sch, [0, 1], steps=3, guidance=1.0, progress=False)
    g1 = SA.generate(denoiser, sch, [0, 1], steps=3, guidance=1.0 + 1e-6, null_class=2, progress=False)
    assert np.abs(cond.astype(int) - g1.astype(int)).max() <= 1       # g = 1: the conditional model


def test_sampling_refuses_bad_requests(straight, tmp_path):
    out = tmp_path / "x.npz"
    for kw, msg in [(dict(per_class=0), "per_class must be an integer >= 1"),
                    (dict(steps=0), r"steps must be an integer in 1\.\.1000"),
                    (dict(steps=1001), r"steps must be an integer in 1\.\.1000"),
                    (dict(sampler="euler"), "Samplers: ddim, ddpm"),
                    (dict(sampler="ddpm", eta=0.5), "eta applies to the ddim sampler only"),
                    (dict(guidance=-1.0), "guidance must be >= 0")]:
        with pytest.raises(MedsynError, match=msg):
            SA.sample(straight, **{"per_class": 2, "out": out, "progress": False, **kw})
    with pytest.raises(MedsynError, match="is not a medsyn checkpoint"):
        SA.sample(tmp_path, 2, out)
    with pytest.raises(MedsynError, match="no such checkpoint"):
        SA.sample(tmp_path / "nope", 2, out)
    with pytest.raises(MedsynError, match="must be an .npz"):
        SA.sample(straight, 2, tmp_path / "x.png")
    # a checkpoint whose class count disagrees with its UNet / data set
    bad = tmp_path / "bad"
    shutil.copytree(straight / "checkpoints" / "step-000004", bad)
    m = load_json(bad / "medsyn.json"); m["n_classes"] = 3
    (bad / "medsyn.json").write_text(json.dumps(m))
    with pytest.raises(MedsynError, match="class count mismatch"):
        SA.sample(bad, 2, out, steps=2, progress=False)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_guidance_needs_a_null_class(tmp_path):
    run = TR.train("breastmnist", "l2", tmp_path / "r", preset="smoke", progress=False, train_steps=1, label_dropout=0)
    with pytest.raises(MedsynError, match="needs a model trained with label_dropout > 0"):
        SA.sample(run, 2, tmp_path / "x.npz", guidance=2.0)
    assert SA.sample(run, 1, tmp_path / "ok.npz", steps=1, progress=False).exists()    # guidance 1 is fine


# ---- other recipes: 3 channels, epsilon prediction (the default is v), linear schedule, min-SNR, accumulation, flips, fraction ----------------

@pytest.mark.parametrize("loss,extra", [
    ("l1", dict(prediction="epsilon", schedule="linear", min_snr_gamma=5.0)),
    ("pseudo_huber", dict(grad_accum=2, hflip=True, vflip=True, train_fraction=0.5, ema_decay=0.0)),
])
def test_recipes_train_and_sample(tmp_path, loss, extra):
    run = TR.train("retinamnist", loss, tmp_path / "r", preset="smoke", progress=False, train_steps=2, **extra)
    log = D.read_loss_csv(run)
    assert log.step.tolist() == [1, 2] and np.isfinite(log.loss).all()
    meta = load_json(D.resolve_checkpoint(run) / "medsyn.json")
    assert meta["n_channels"] == 3 and meta["n_classes"] == 5 and meta["loss"] == loss
    syn = load_npz(SA.sample(run, 1, tmp_path / "s.npz", steps=2, progress=False))
    assert syn.images.shape == (5, 28, 28, 3) and syn.labels.tolist() == [0, 1, 2, 3, 4]
    if extra.get("ema_decay") == 0.0:                                        # no EMA: EMA weights == raw weights
        assert same_weights(weights(run, 2), weights(run, 2, "unet_ema"))
    else:
        assert load_json(run / "config.json")["settings"]["prediction"] == "epsilon"


# ---- short-run recipes: bf16 autocast on the CPU, anytime schedules, EMA power warm-up --------------------------

def test_bf16_inverse_sqrt_ema_power_resume_exactly(tmp_path):
    kw = dict(preset="smoke", progress=False, train_steps=4, warmup_steps=2, checkpoint_every=10, lr_schedule="inverse_sqrt",
              ema_power=0.75, mixed_precision="bf16")
    full = TR.train("breastmnist", "l2", tmp_path / "full", **kw)
    lr = D.read_loss_csv(full).lr.tolist()                        # lr after steps 1..4 (warm-up 2): 1/2, 1, sqrt(2/3), sqrt(2/4)
    assert np.allclose(lr, 2e-4 * np.array([0.5, 1.0, (2 / 3) ** 0.5, 0.5 ** 0.5]))
    def stop_at_2(step, loss):
        if step == 2: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        TR.train("breastmnist", "l2", tmp_path / "part", callback=stop_at_2, **kw)
    TR.train("breastmnist", "l2", tmp_path / "part", resume=True, **kw)
    for sub in ("unet", "unet_ema"):                              # resumed == uninterrupted, raw and EMA weights
        assert same_weights(weights(full, 4, sub), weights(tmp_path / "part", 4, sub))
    fp32 = TR.train("breastmnist", "l2", tmp_path / "fp32", **{**kw, "mixed_precision": "no"})
    assert not same_weights(weights(full, 4), weights(fp32, 4))  # the autocast was applied
    with pytest.raises(MedsynError, match="fp16 needs a GPU"):
        TR.train("breastmnist", "l2", tmp_path / "fp16", **{**kw, "mixed_precision": "fp16"})
    assert not (tmp_path / "fp16").exists()


def test_mixed_precision_auto_follows_the_cpu(tmp_path, monkeypatch):
    "`auto` trains in bf16 where the CPU has AVX-512 bf16 or AMX and in fp32 where it would be emulated; the record says which."
    import medsyn.core as C
    kw = dict(preset="smoke", progress=False, train_steps=2, warmup_steps=1, checkpoint_every=10)
    runs = {}
    for name, fast in (("fast", True), ("slow", False)):
        monkeypatch.setattr(C, "bf16_fast", lambda device, cpuinfo=None, fast=fast: fast)
        runs[name] = TR.train("breastmnist", "l2", tmp_path / name, mixed_precision="auto", **kw)
        assert load_json(runs[name] / "config.json")["precision"] == ("bf16" if fast else "no")
    bf16 = TR.train("breastmnist", "l2", tmp_path / "bf16", mixed_precision="bf16", **kw)
    fp32 = TR.train("breastmnist", "l2", tmp_path / "fp32", mixed_precision="no", **kw)
    assert same_weights(weights(runs["fast"], 2), weights(bf16, 2))
    assert same_weights(weights(runs["slow"], 2), weights(fp32, 2))
    assert not same_weights(weights(bf16, 2), weights(fp32, 2))


# ---- model and losses -----------------------------------------------------------------------------------------

def test_unet_presets():
    n = {m: DN.n_params(DN.make_unet(1, 2, 28, m)) for m in DN.UNET_PRESETS}
    assert 5e3 < n["tiny"] < 1e5 and 1e6 <= n["small"] <= 2e6 and n["base"] > n["small"]
    u = DN.make_unet(3, 5, 64, "small")
    assert u.config.num_class_embeds == 6 and u.config.in_channels == 3
    assert u.config.down_block_types[-1] == "AttnDownBlock2D" and "AttnDownBlock2D" not in u.config.down_block_types[:-1]
    with pytest.raises(MedsynError, match="1 or 3 channels"):
        DN.make_unet(2, 2, 28)


def test_losses():
    p, t = torch.tensor([[0.05, 2.0]]), torch.zeros(1, 2)
    assert torch.allclose(D.diffusion_loss(p, t, "l2"), torch.tensor([(0.05**2 + 4) / 2]))
    assert torch.allclose(D.diffusion_loss(p, t, "l1"), torch.tensor([2.05 / 2]))
    assert torch.allclose(D.diffusion_loss(p, t, "huber", huber_delta=0.1), torch.tensor([(0.05**2 / 2 + 0.1 * (2 - 0.05)) / 2]))
    c = 0.03
    ph = ((0.05**2 + c**2) ** 0.5 - c + (4 + c**2) ** 0.5 - c) / 2
    assert torch.allclose(D.diffusion_loss(p, t, "pseudo_huber", pseudo_huber_c=c), torch.tensor([ph]))
    with pytest.raises(MedsynError, match="unknown loss 'mse'. Losses: l2, l1, huber, pseudo_huber"):
        D.diffusion_loss(p, t, "mse")
    sch = D.make_scheduler("cosine", "epsilon")
    tt = torch.tensor([0, 999])
    w = D.snr_weights(sch, tt, 5.0)
    assert w[0] < 0.01 and w[1] == 1
    wv = D.snr_weights(sch, tt, 5.0, "v_prediction")
    assert torch.all(wv <= 1) and wv[1] < 1
