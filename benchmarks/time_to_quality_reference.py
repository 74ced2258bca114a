"""Quality per unit of training time: medsyn's recipe vs diffusers' train_unconditional example defaults.

Both train on PneumoniaMNIST (28 px) for the same wall-clock budget (`--seconds`, setup included), then each samples
the same number of images with the same sampler (DDIM, `--sample-steps`, trailing spacing, same seed and class mix),
and both sets are compared with the same real images (a seeded, class-stratified subset of the test split) by FID on
64-d Inception features and KID (medsyn.metrics).

medsyn: `quick` preset choices: the `small` UNet sized for 28 px (1.1 M parameters, self-attention only at 7x7), cosine
noise schedule, epsilon prediction, L2 loss, EMA of the weights (0.99), AdamW 2e-4 with 50 warm-up steps and a cosine
decay planned to end at the budget (steps planned from the speed measured after 20 steps, re-planned halfway), batch 64, in-memory data,
label dropout 0.1.

reference (diffusers examples/unconditional_image_generation/train_unconditional.py defaults): its UNet
(layers_per_block 2, the example's widths 128/256/512 on the 3 levels that 28 px allows, attention on the
second-to-last level as in the example), here given class embeddings so that both models sample the same class mix;
linear beta schedule, 1000 steps, epsilon, MSE, AdamW lr 1e-4 betas (0.95, 0.999) weight decay 1e-6, 500 warm-up steps
and cosine decay over 100 epochs, batch 16, no EMA (use_ema is off by default), fp32, per-item PIL images through
torchvision transforms and a DataLoader.

    flock /tmp/medsyn-heavy.lock python benchmarks/time_to_quality_reference.py                # ~15 minutes on a 2-core CPU
    python benchmarks/time_to_quality_reference.py --seconds 1800 --n-samples 1000             # longer, less noisy
"""
from __future__ import annotations
import argparse, json, os, shutil, sys, time
from pathlib import Path

import numpy as np


def train_medsyn(a, out: Path) -> dict:
    """medsyn's `quick` recipe with its cosine LR decay planned to end at the budget: the number of steps is planned from
    the measured speed after 20 steps and re-planned halfway through what is left (interrupt + exact resume)."""
    from medsyn import diffusion as D, denoisers as N, sampling as S, training as T
    t0 = time.perf_counter()
    common = dict(preset='quick', progress=False, seed=a.seed, checkpoint_every=10**9, device=a.device)
    planned, check_at, resume, plans = 10**6, 20, False, []
    while True:
        stamps = {}
        def cb(step, loss):
            stamps[step] = time.perf_counter()
            if stamps[step] - t0 > a.seconds or step == check_at: raise KeyboardInterrupt
        try:
            T.train(a.dataset, 'l2', out, resume=resume, callback=cb, train_steps=planned, **common); break
        except KeyboardInterrupt: pass
        step = max(stamps)
        left = a.seconds - (time.perf_counter() - t0) - 4          # loading and the final save
        if left <= 0: break
        ks = sorted(stamps)[2:]                                       # skip the first steps of a segment
        rate = (len(ks) - 1) / (stamps[ks[-1]] - stamps[ks[0]])
        planned, resume = step + max(1, int(left * rate)), True
        check_at = step + (planned - step) // 2 if planned - step > 40 else None
        plans.append(dict(at_step=step, rate_steps_per_s=rate, planned=planned))
    ck = D.resolve_checkpoint(out)
    unet, sch, meta = S.load_model(ck, ema=True, device=a.device)
    return dict(unet=unet, scheduler=sch, null_class=meta['null_class'], steps=meta['step'], plans=plans,
                seconds=time.perf_counter() - t0, images_seen=meta['step'] * 64, params=N.n_params(unet))


def train_reference(a) -> dict:
    import torch, torch.nn.functional as F
    from torchvision import transforms
    from PIL import Image
    from accelerate import Accelerator
    from diffusers import UNet2DModel, DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from medsyn.core import get_device, seed_everything
    from medsyn.data import load_medmnist
    t0 = time.perf_counter()
    seed_everything(a.seed)
    dev = get_device(a.device)
    acc = Accelerator(cpu=dev.type == 'cpu', mixed_precision='no', gradient_accumulation_steps=1)
    ds = load_medmnist(a.dataset, 'train')
    tf = transforms.Compose([transforms.Resize(28, interpolation=transforms.InterpolationMode.BILINEAR),
                             transforms.CenterCrop(28), transforms.Lambda(lambda x: x),
                             transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])

    class PILSet(torch.utils.data.Dataset):
        def __len__(self): return len(ds)
        def __getitem__(self, i): return {'input': tf(Image.fromarray(ds.images[i])), 'label': int(ds.labels[i])}

    bs, epochs = 16, 100
    dl = torch.utils.data.DataLoader(PILSet(), batch_size=bs, shuffle=True, num_workers=0)
    model = UNet2DModel(sample_size=28, in_channels=ds.n_channels, out_channels=ds.n_channels, layers_per_block=2,
                        block_out_channels=(128, 256, 512),
                        down_block_types=('DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D'),
                        up_block_types=('UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'), num_class_embeds=ds.n_classes)
    sch = DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear', prediction_type='epsilon')
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    lr_sched = get_cosine_schedule_with_warmup(opt, 500, len(dl) * epochs)
    model, opt, dl, lr_sched = acc.prepare(model, opt, dl, lr_sched)
    step, done = 0, False
    while not done:
        for batch in dl:
            clean, labels = batch['input'], batch['label']
            noise = torch.randn(clean.shape, device=clean.device)
            t = torch.randint(0, 1000, (clean.shape[0],), device=clean.device).long()
            noisy = sch.add_noise(clean, noise, t)
            with acc.accumulate(model):
                loss = F.mse_loss(model(noisy, t, class_labels=labels).sample.float(), noise.float())
                acc.backward(loss)
                if acc.sync_gradients: acc.clip_grad_norm_(model.parameters(), 1.0)
                opt.step(); lr_sched.step(); opt.zero_grad()
            step += 1
            if time.perf_counter() - t0 > a.seconds: done = True; break
    unet = acc.unwrap_model(model).eval()
    return dict(unet=unet, scheduler=sch, null_class=None, steps=step, seconds=time.perf_counter() - t0,
                images_seen=step * bs, params=sum(p.numel() for p in unet.parameters()))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='pneumoniamnist')
    p.add_argument('--seconds', type=float, default=150, help='training wall-clock budget of each recipe')
    p.add_argument('--n-samples', type=int, default=100, help='synthetic images per recipe (and real images compared)')
    p.add_argument('--sample-steps', type=int, default=20, help='DDIM steps of both samplers')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='auto')
    p.add_argument('--out', default='benchmarks/out/time_to_quality_reference', help='run folder (medsyn checkpoint, samples, json)')
    a = p.parse_args()
    import torch
    from medsyn import sampling as S
    from medsyn.data import load_medmnist, stratified_indices
    try:
        from medsyn.features import image_features
        from medsyn.metrics import fid_from_features, kid_from_features
    except ImportError as e:
        image_features = None; print(f"medsyn.metrics not importable ({e}): FID/KID skipped")
    out = Path(a.out)
    if (out/'medsyn').exists(): shutil.rmtree(out/'medsyn')
    out.mkdir(parents=True, exist_ok=True)
    real = load_medmnist(a.dataset, 'test')
    ridx = stratified_indices(real.labels, fraction=min(1.0, a.n_samples / len(real)), seed=a.seed)
    real_imgs, real_labels = real.images[ridx], real.labels[ridx]
    res = {}
    for name, fn in (('medsyn', lambda: train_medsyn(a, out/'medsyn')), ('reference', lambda: train_reference(a))):
        print(f"training {name} for {a.seconds:.0f} s ...", flush=True)
        r = fn()
        t1 = time.perf_counter()
        imgs = S.generate(r['unet'], r['scheduler'], real_labels, 'ddim', a.sample_steps, seed=a.seed, batch_size=100,
                          null_class=r['null_class'], progress=False)
        r['sample_seconds'] = time.perf_counter() - t1
        np.savez_compressed(out/f'{name}_samples.npz', train_images=imgs, train_labels=real_labels.astype(np.uint8).reshape(-1, 1))
        for k in ('unet', 'scheduler', 'null_class'): r.pop(k)
        res[name] = r
        print(f"  {name}: {r['steps']} steps ({r['images_seen']} images) in {r['seconds']:.0f} s, {r['params']/1e6:.2f} M params, "
              f"sampling {r['sample_seconds']:.0f} s", flush=True)
        res[name]['images'] = imgs
    if image_features is not None:
        fr = image_features(real_imgs, progress=False)
        kss = min(50, len(real_imgs) // 2)
        for name in res:
            ff = image_features(res[name]['images'], progress=False, cache=False)
            res[name]['fid64'] = fid_from_features(fr[64], ff[64])
            res[name]['kid64'] = kid_from_features(fr[64], ff[64], kss, 20, seed=a.seed)
            res[name]['kid2048'] = kid_from_features(fr[2048], ff[2048], kss, 20, seed=a.seed)
    for name in res: res[name].pop('images')
    dev = 'cuda: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f'cpu ({os.cpu_count()} cores)'
    print(f"\n{a.dataset}, {a.seconds:.0f} s of training each, {len(real_labels)} samples each (DDIM-{a.sample_steps}), on {dev}")
    print(f"{'recipe':<11}{'params':>9}{'steps':>7}{'images':>8}{'FID-64':>9}{'KID-64 (mean±sd)':>20}{'KID-2048':>18}")
    for name, r in res.items():
        q = (f"{r['fid64']:>9.3f}{r['kid64'][0]:>12.4f}±{r['kid64'][1]:<7.4f}{r['kid2048'][0]:>10.4f}±{r['kid2048'][1]:<7.4f}"
             if 'fid64' in r else '   (no medsyn.metrics)')
        print(f"{name:<11}{r['params']/1e6:>8.2f}M{r['steps']:>7}{r['images_seen']:>8}{q}")
    (out/'results.json').write_text(json.dumps(dict(args=vars(a), device=dev, results=res), indent=2, default=str))


if __name__ == '__main__':
    main()
