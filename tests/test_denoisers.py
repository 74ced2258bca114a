"The three denoiser backbones through the same trainer, sampler and checkpoints: train, lower the loss, resume exactly, sample, CLI."
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import medsyn.diffusion as D
import medsyn.training as TR
import medsyn.sampling as SA
from medsyn.core import MedsynError, load_json, load_settings
from medsyn.denoisers import make_denoiser, load_denoiser, n_params, parse_model, MODELS
from medsyn.data import load_npz

CMP = ["step", "loss", "lr"] + [f"t{i:02d}" for i in range(10)]
BACKBONES = ["unet-tiny", "swin-tiny", "dit-tiny"]


def weights(run, step, sub="unet"):
    return load_file(run / "checkpoints" / f"step-{step:06d}" / sub / "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize("model", BACKBONES)
def test_backbone_trains_resumes_exactly_and_samples(model, tmp_path):
    kw = dict(preset="smoke", progress=False, model=model, train_steps=4, checkpoint_every=2)
    straight = TR.train("breastmnist", "l2", tmp_path / "straight", **kw)
    cfg = load_json(straight / "config.json")
    assert cfg["model"] == model and cfg["backbone"] == parse_model(model)[0] and cfg["n_params"] > 1000
    assert cfg["denoiser"] == {"unet": "UNet2DModel", "swin": "SwinUNet", "dit": "DiT"}[parse_model(model)[0]]
    # resume from step 2 equals the uninterrupted run, weights and EMA bit for bit
    run = tmp_path / "run"
    shutil.copytree(straight, run); shutil.rmtree(run / "checkpoints" / "step-000004")
    TR.train("breastmnist", "l2", run, preset="smoke", progress=False, resume=True)
    pd.testing.assert_frame_equal(D.read_loss_csv(run)[CMP], D.read_loss_csv(straight)[CMP])
    for sub in ("unet", "unet_ema"):
        a, b = weights(run, 4, sub), weights(straight, 4, sub)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), sub
    # the checkpoint loads as its own class and samples a labelled MedMNIST npz
    net, sch, meta = SA.load_model(straight, device="cpu")
    assert type(net).__name__ == cfg["denoiser"] and meta["model"] == model
    out = SA.sample(straight, 3, tmp_path / "syn.npz", steps=2, progress=False, device="cpu")
    syn = load_npz(out)
    assert syn.images.shape == (6, 28, 28) and syn.images.dtype == np.uint8 and syn.class_counts() == [3, 3]


@pytest.mark.parametrize("model", BACKBONES)
def test_a_few_steps_lower_the_loss(model, tmp_path):
    s = load_settings("smoke", model=model, train_steps=60, batch_size=16, lr=2e-3, warmup_steps=5, log_every=20,
                      checkpoint_every=60, label_dropout=0.0)
    run = TR.train("breastmnist", "l2", tmp_path / "r", settings=s, progress=False)
    log = D.read_loss_csv(run)
    assert log.loss.iloc[-1] < 0.8 * log.loss.iloc[0], log.loss.tolist()


@pytest.mark.parametrize("model", BACKBONES)
def test_class_conditioning_changes_the_output(model):
    torch.manual_seed(0)
    net = make_denoiser(1, 2, 28, model).eval()
    with torch.no_grad():
        for p in net.parameters(): p.add_(0.05 * torch.randn_like(p))     # fresh adaLN-zero networks output zeros
        x, t = torch.randn(3, 1, 28, 28), torch.tensor([5, 300, 900])
        outs = [net(x, t, class_labels=torch.full((3,), k)).sample for k in (0, 1, 2)]   # 2: the null class
    assert (outs[0] - outs[1]).abs().mean() > 1e-4 and (outs[0] - outs[2]).abs().mean() > 1e-4


def test_cli_trains_swin_and_dit(cli, tmp_path):
    for model in ("swin-small", "dit-small"):
        run = tmp_path / model
        cli("train", "--dataset", "breastmnist", "--preset", "smoke", "--model", model, "--train-steps", "2",
            "--out", run, "--no-progress", check=True)
        assert load_json(run / "config.json")["model"] == model
        p = cli("sample", "--model-dir", run, "--per-class", "2", "--steps", "2", "--out", tmp_path / f"{model}.npz", "--no-progress", check=True)
        assert "wrote" in p.stdout


def test_unknown_backbones_and_sizes_are_refused(cli, tmp_path):
    with pytest.raises(MedsynError, match="Models: unet-tiny"):
        parse_model("vit-small")
    with pytest.raises(MedsynError, match="Allowed: unet-tiny"):
        load_settings("smoke", model="swin-huge")
    with pytest.raises(MedsynError, match="Sizes: 28, 64, 128, 224"):
        make_denoiser(1, 2, 32, "dit-small")
    p = cli("train", "--dataset", "breastmnist", "--preset", "smoke", "--model", "mamba-small", "--out", tmp_path / "x", "--no-progress")
    assert p.returncode == 2 and "mamba-small" in p.stderr and "swin-small" in p.stderr and not (tmp_path / "x").exists()


def test_old_bare_size_models_are_unets():
    assert parse_model("small") == ("unet", "small")
    a, b = make_denoiser(1, 2, 28, "small"), make_denoiser(1, 2, 28, "unet-small")
    assert type(a) is type(b) and n_params(a) == n_params(b)
