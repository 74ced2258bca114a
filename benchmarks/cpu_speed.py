"""What the CPU itself can give: bf16 autocast, channels_last and torch.compile for training, sampling and Inception.

Every row runs in this one process, alternating the variants over `--rounds` rounds (the median is reported), so the
ratios are side by side on the same machine at the same moment. Measured:

- a training step (forward, backward, AdamW) of the denoiser (`--model`, 28 px, batch `--batch-size`), fp32 vs bf16
  autocast, each also with channels_last, and fp32/bf16 under torch.compile (inductor; compile time reported apart);
- sampling: DDIM-20 over a batch of 250 with the EMA-free denoiser, fp32 vs bf16 autocast;
- the Inception pass of medsyn.metrics (4 taps, channels_last, batch 64): fp32 vs bf16 autocast (`fid_precision`).

    flock /tmp/medsyn-heavy.lock python benchmarks/cpu_speed.py          # ~6 min on a 2-core CPU
"""
from __future__ import annotations
import argparse, json, statistics, time
from pathlib import Path

import numpy as np
import torch


def _ctx(bf16): return torch.autocast('cpu', dtype=torch.bfloat16) if bf16 else torch.autocast('cpu', enabled=False)


def train_rate(net, opt, x, t, y, bf16, steps, fwd=None) -> float:
    fwd = net if fwd is None else fwd
    for i in range(steps + 2):
        if i == 2: t0 = time.perf_counter()
        with _ctx(bf16): out = fwd(x, t, class_labels=y).sample
        loss = (out.float() - x).pow(2).mean(); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return steps * len(x) / (time.perf_counter() - t0)


@torch.no_grad()
def sample_rate(net, sch, n, bf16) -> float:
    from medsyn.sampling import generate
    t0 = time.perf_counter()
    generate(net, sch, np.zeros(n, dtype=int), 'ddim', 20, batch_size=n, progress=False, mixed_precision='bf16' if bf16 else 'no')
    return n / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='unet-small')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--steps', type=int, default=15)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--no-compile', action='store_true')
    p.add_argument('--out', default='benchmarks/out/cpu_speed.json')
    a = p.parse_args()
    from medsyn.core import load_settings, versions
    from medsyn.denoisers import make_denoiser
    from medsyn.diffusion import make_scheduler
    from medsyn.data import load_medmnist
    from medsyn.features import image_features
    sys_info = dict(cpu=next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?'),
                    flags=sorted({f for l in open('/proc/cpuinfo') if l.startswith('flags') for f in l.split()
                                  if f.startswith(('avx512_bf16', 'amx', 'avx512f'))}),
                    threads=torch.get_num_threads(), capability=torch.backends.cpu.get_cpu_capability(), **versions())
    torch.manual_seed(0)
    ds = load_medmnist('pneumoniamnist', 'train')
    x = torch.from_numpy(ds.images[:a.batch_size]).float().div(127.5).sub(1).unsqueeze(1)
    t, y = torch.randint(0, 1000, (a.batch_size,)), torch.from_numpy(ds.labels[:a.batch_size])
    net = make_denoiser(1, 2, 28, a.model, 1000); opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    variants = {'train fp32': lambda: train_rate(net, opt, x, t, y, False, a.steps),
                'train bf16': lambda: train_rate(net, opt, x, t, y, True, a.steps)}
    net_cl = make_denoiser(1, 2, 28, a.model, 1000).to(memory_format=torch.channels_last)
    opt_cl = torch.optim.AdamW(net_cl.parameters(), lr=1e-4)
    xcl = x.contiguous(memory_format=torch.channels_last)
    variants['train fp32 channels_last'] = lambda: train_rate(net_cl, opt_cl, xcl, t, y, False, a.steps)
    variants['train bf16 channels_last'] = lambda: train_rate(net_cl, opt_cl, xcl, t, y, True, a.steps)
    compile_s = {}
    if not a.no_compile:
        for bf16 in (False, True):
            k = f"train {'bf16' if bf16 else 'fp32'} compiled"
            netc = make_denoiser(1, 2, 28, a.model, 1000); optc = torch.optim.AdamW(netc.parameters(), lr=1e-4)
            fwd = torch.compile(netc)
            t0 = time.perf_counter(); train_rate(netc, optc, x, t, y, bf16, 1, fwd); compile_s[k] = time.perf_counter() - t0
            variants[k] = (lambda netc=netc, optc=optc, fwd=fwd, bf16=bf16: train_rate(netc, optc, x, t, y, bf16, a.steps, fwd))
    sch = make_scheduler()
    net.eval()
    variants['sample fp32 (DDIM-20)'] = lambda: sample_rate(net, sch, 250, False)
    variants['sample bf16 (DDIM-20)'] = lambda: sample_rate(net, sch, 250, True)
    s32, s16 = load_settings('quick'), load_settings('quick', fid_precision='bf16')
    imgs = load_medmnist('pneumoniamnist', 'test').images[:128]
    def inc(s):
        t0 = time.perf_counter(); image_features(imgs, s, cache=False, progress=False); return len(imgs) / (time.perf_counter() - t0)
    variants['inception fp32'] = lambda: inc(s32)
    variants['inception bf16'] = lambda: inc(s16)
    rates = {k: [] for k in variants}
    for r in range(a.rounds):
        for k, f in variants.items():
            rates[k].append(f()); print(f"round {r + 1} {k}: {rates[k][-1]:.1f} img/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = {'train': med['train fp32'], 'sample': med['sample fp32 (DDIM-20)'], 'inception': med['inception fp32']}
    lines = [f"{sys_info['cpu']}, {sys_info['threads']} threads, torch {sys_info['torch']}, flags {' '.join(sys_info['flags'])}; "
             f"{a.model}, batch {a.batch_size}; median of {a.rounds} rounds", "",
             "| what | img/s (median) | rounds | vs fp32 |", "|---|---:|---|---:|"]
    for k, v in med.items():
        lines.append(f"| {k} | {v:.1f} | {' / '.join(f'{r:.0f}' for r in rates[k])} | {v / base[k.split()[0]]:.2f}x |")
    if compile_s: lines += ["", "compile (first step) seconds: " + ', '.join(f"{k}: {v:.0f}" for k, v in compile_s.items())]
    print('\n'.join(lines))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(args=vars(a), system=sys_info, rates=rates, median=med, compile_s=compile_s), indent=1))


if __name__ == '__main__':
    main()
