"""Training throughput: medsyn's trainer vs a reference loop fed the way diffusers' train_unconditional example feeds data.

Both train the same class-conditional UNet (medsyn's `--model` preset) on the same MedMNIST training split with the
same batch size, MSE loss, AdamW and cosine LR schedule. The reference loop follows
diffusers/examples/unconditional_image_generation/train_unconditional.py: one PIL image per item through torchvision
transforms (Resize, CenterCrop, ToTensor, Normalize) and a shuffling torch DataLoader (num_workers 0, the example's
default), fp32, eager, `accelerator.accumulate`, gradient clipping at 1.0 and no EMA (the example's default).
medsyn's trainer keeps the images as one tensor on the device, does its own flips/label dropout on the device,
and additionally updates an EMA of the weights every step.

Each trainer runs in its own process (so peak memory is its own), alternating for `--rounds` rounds; images/s is
measured between the callbacks of step `--warmup` and the last step (setup, imports and the final checkpoint
excluded). Prints a table and the ratio medsyn / reference (median over rounds); `--json` writes the numbers.

    flock /tmp/medsyn-heavy.lock python benchmarks/train_throughput.py            # a few minutes on a 2-core CPU
    python benchmarks/train_throughput.py --steps 200 --batch-size 256 --model base --mixed-precision bf16   # a GPU
"""
from __future__ import annotations
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path


def peak_memory_mb(device) -> float:
    import torch
    if device.type == 'cuda': return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # Linux: KiB


def run_medsyn(a) -> dict:
    import torch
    from medsyn.training import train
    from medsyn.core import get_device
    stamps = {}
    def cb(step, loss):
        if step in (a.warmup, a.steps):
            if torch.cuda.is_available(): torch.cuda.synchronize()     # steps are asynchronous: time finished work
            stamps[step] = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix='tp-medsyn-'))
    mp = a.mixed_precision if torch.cuda.is_available() else 'no'
    extra = dict(compile=a.compile) if a.compile != 'no' else {}    # an older medsyn (--baseline-src) has no compile setting
    train(a.dataset, 'l2', out/'run', preset='quick', progress=False, callback=cb, model=a.model, train_steps=a.steps,
          batch_size=a.batch_size, warmup_steps=1, checkpoint_every=10**9, log_every=a.log_every, mixed_precision=mp,
          label_dropout=0.1, seed=0, device=a.device, **extra)
    dt = stamps[a.steps] - stamps[a.warmup]
    return dict(images_per_s=(a.steps - a.warmup) * a.batch_size / dt, peak_mb=peak_memory_mb(get_device(a.device)))


def run_reference(a) -> dict:
    "The diffusers train_unconditional example's data path and loop, with the same UNet and class labels."
    import torch, torch.nn.functional as F
    from torchvision import transforms
    from PIL import Image
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from medsyn.core import get_device, seed_everything
    from medsyn.data import load_medmnist
    from medsyn.denoisers import make_unet
    seed_everything(0)
    dev = get_device(a.device)
    acc = Accelerator(cpu=dev.type == 'cpu', mixed_precision='no', gradient_accumulation_steps=1)
    ds = load_medmnist(a.dataset, 'train')
    tf = transforms.Compose([transforms.Resize(28, interpolation=transforms.InterpolationMode.BILINEAR),
                             transforms.CenterCrop(28), transforms.Lambda(lambda x: x),   # random_flip off (default)
                             transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])

    class PILSet(torch.utils.data.Dataset):         # what HF `datasets` + set_transform hands the DataLoader
        def __len__(self): return len(ds)
        def __getitem__(self, i):
            img = Image.fromarray(ds.images[i]).convert('RGB' if ds.n_channels == 3 else 'L')
            return {'input': tf(img), 'label': int(ds.labels[i])}

    dl = torch.utils.data.DataLoader(PILSet(), batch_size=a.batch_size, shuffle=True, num_workers=0, drop_last=True)
    model = make_unet(ds.n_channels, ds.n_classes, 28, a.model)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule='squaredcos_cap_v2')
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    sched = get_cosine_schedule_with_warmup(opt, 1, a.steps)
    model, opt, dl, sched = acc.prepare(model, opt, dl, sched)
    step, stamps = 0, {}
    while step < a.steps:
        for batch in dl:
            clean, labels = batch['input'], batch['label']
            noise = torch.randn(clean.shape, device=clean.device)
            t = torch.randint(0, 1000, (clean.shape[0],), device=clean.device).long()
            noisy = noise_scheduler.add_noise(clean, noise, t)
            with acc.accumulate(model):
                pred = model(noisy, t, class_labels=labels).sample
                loss = F.mse_loss(pred.float(), noise.float())
                acc.backward(loss)
                if acc.sync_gradients: acc.clip_grad_norm_(model.parameters(), 1.0)
                opt.step(); sched.step(); opt.zero_grad()
            loss.detach().item()                       # the example logs loss.detach().item() every step
            step += 1; stamps[step] = time.perf_counter()
            if step >= a.steps: break
    dt = stamps[a.steps] - stamps[a.warmup]
    return dict(images_per_s=(a.steps - a.warmup) * a.batch_size / dt, peak_mb=peak_memory_mb(dev))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='pneumoniamnist')
    p.add_argument('--model', default='small', help='UNet preset of both trainers (tiny, small, base)')
    p.add_argument('--steps', type=int, default=40, help='optimiser steps per trainer per round')
    p.add_argument('--warmup', type=int, default=5, help='steps excluded from the timing')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--rounds', type=int, default=2, help='alternating rounds (medsyn, reference, medsyn, ...)')
    p.add_argument('--device', default='auto')
    p.add_argument('--mixed-precision', default='bf16', help="medsyn's precision on a GPU (the reference stays fp32)")
    p.add_argument('--compile', default='no', help="medsyn's compile setting (no, default, reduce-overhead, max-autotune)")
    p.add_argument('--log-every', type=int, default=10, help="medsyn's log_every (losses are read from the device once per window)")
    p.add_argument('--baseline-src', default=None, help='also time the medsyn of this source tree (e.g. a git worktree of an older commit)')
    p.add_argument('--json', default=None, help='write the results here')
    p.add_argument('--worker', choices=['medsyn', 'reference', 'baseline'], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print('RESULT ' + json.dumps(run_reference(a) if a.worker == 'reference' else run_medsyn(a)), flush=True); return
    import torch
    who_all = ('medsyn', 'reference') + (('baseline',) if a.baseline_src else ())
    res = {w: [] for w in who_all}
    args = [a2 for a2 in sys.argv[1:] if not a2.startswith('--json')]
    if a.json and a.json in args: args.remove(a.json)
    for r in range(a.rounds):
        for who in who_all:
            env = dict(os.environ)
            if who == 'baseline': env['PYTHONPATH'] = str(Path(a.baseline_src).resolve())   # its medsyn shadows the installed one
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args, '--worker', who], capture_output=True, text=True,
                                 env=env, cwd=a.baseline_src if who == 'baseline' else None)
            line = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
            if out.returncode or not line: sys.exit(f"{who} failed:\n{out.stdout}\n{out.stderr}")
            res[who].append(json.loads(line[0][7:]))
            print(f"round {r+1} {who:<9}: {res[who][-1]['images_per_s']:7.1f} img/s, peak {res[who][-1]['peak_mb']:7.0f} MB", flush=True)
    med = {w: statistics.median(x['images_per_s'] for x in v) for w, v in res.items()}
    peak = {w: max(x['peak_mb'] for x in v) for w, v in res.items()}
    ratio = med['medsyn'] / med['reference']
    dev = 'cuda: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f'cpu ({os.cpu_count()} cores)'
    print(f"\n{a.dataset}, UNet '{a.model}', batch {a.batch_size}, {a.steps} steps ({a.warmup} warm-up) x {a.rounds} rounds on {dev}")
    print(f"{'trainer':<12}{'img/s (median)':>16}{'peak MB':>10}")
    for w in res: print(f"{w:<12}{med[w]:>16.1f}{peak[w]:>10.0f}")
    goal = 2.0 if torch.cuda.is_available() else 0.95
    print(f"ratio medsyn/reference: {ratio:.3f} (goal >= {goal}: {'met' if ratio >= goal else 'NOT met'})")
    if a.baseline_src: print(f"ratio medsyn/baseline ({a.baseline_src}): {med['medsyn'] / med['baseline']:.3f}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(dict(args=vars(a), device=dev, rounds=res, median=med, peak_mb=peak, ratio=ratio), indent=2))


if __name__ == '__main__':
    main()
