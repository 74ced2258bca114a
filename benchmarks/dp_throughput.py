"""What DP-SGD costs in training speed: medsyn's one trainer, non-private and private (Opacus per-sample gradients), side by side.

Every variant trains the same denoiser on the same MedMNIST training split with the same batch size through
`medsyn.training.train`; only the settings differ. Non-private: fp32 and (where the CPU has AMX / AVX-512 bf16) bf16
autocast. Private: `dp_epsilon` 10 (fp32, as DP-SGD runs), noise multiplicity 1 and 4. Images/s counts each
(image, draw) row the network sees per second, and steps/s the optimiser steps, between the callbacks of step
`--warmup` and the last step; variants alternate for `--rounds` rounds, each in its own process, and the table gives
medians and the ratio to non-private fp32.

    flock /tmp/medsyn-heavy.lock python benchmarks/dp_throughput.py --rounds 2          # about 10 min on a 2-core CPU
"""
from __future__ import annotations
import argparse, json, statistics, subprocess, sys, tempfile, time
from pathlib import Path

VARIANTS = {'non-private fp32': dict(mixed_precision='no'), 'non-private bf16': dict(mixed_precision='bf16'),
            'DP-SGD, K = 1': dict(dp_epsilon=10.0, dp_noise_multiplicity=1, mixed_precision='no'),
            'DP-SGD, K = 4': dict(dp_epsilon=10.0, dp_noise_multiplicity=4, mixed_precision='no')}


def one(a, name) -> dict:
    "Train variant `name` in this process; its images/s and steps/s."
    import torch
    from medsyn.training import train
    stamps = {}
    def cb(step, loss):
        if step in (a.warmup, a.steps):
            if torch.cuda.is_available(): torch.cuda.synchronize()
            stamps[step] = time.perf_counter()
    kw = VARIANTS[name]
    train(a.dataset, 'l2', Path(tempfile.mkdtemp(prefix='dp-tp-')) / 'run', preset='quick', progress=False, callback=cb,
          model=a.model, batch_size=a.batch_size, train_steps=a.steps, checkpoint_every=a.steps, log_every=a.steps,
          dp_physical_batch=a.physical_batch, **kw)
    sec = stamps[a.steps] - stamps[a.warmup]
    n = a.steps - a.warmup
    rows = a.batch_size * kw.get('dp_noise_multiplicity', 1)          # the expected Poisson batch is ~batch_size
    return dict(variant=name, steps_per_s=n / sec, rows_per_s=n * rows / sec, images_per_s=n * a.batch_size / sec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', default='pneumoniamnist'); p.add_argument('--model', default='unet-small')
    p.add_argument('--batch-size', type=int, default=64); p.add_argument('--physical-batch', type=int, default=256)
    p.add_argument('--steps', type=int, default=30); p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--rounds', type=int, default=2); p.add_argument('--variants', nargs='*', default=list(VARIANTS))
    p.add_argument('--json', help='write the numbers here'); p.add_argument('--_one', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._one: print('RESULT ' + json.dumps(one(a, a._one))); return
    res = {v: [] for v in a.variants}
    base = [sys.executable, __file__, '--dataset', a.dataset, '--model', a.model, '--batch-size', str(a.batch_size),
            '--physical-batch', str(a.physical_batch), '--steps', str(a.steps), '--warmup', str(a.warmup)]
    for r in range(a.rounds):
        for v in a.variants:
            out = subprocess.run(base + ['--_one', v], capture_output=True, text=True, check=True).stdout
            res[v].append(json.loads(next(l for l in out.splitlines() if l.startswith('RESULT '))[7:]))
            print(f"round {r + 1}: {v}: {res[v][-1]['images_per_s']:.1f} images/s", file=sys.stderr)
    med = {v: {k: statistics.median(x[k] for x in rs) for k in ('steps_per_s', 'rows_per_s', 'images_per_s')} for v, rs in res.items()}
    ref = med[a.variants[0]]['images_per_s']
    print(f"| {a.model}, batch {a.batch_size}, {a.dataset} | images/s | (image, draw) rows/s | steps/s | images/s vs {a.variants[0]} |")
    print('|---|---:|---:|---:|---:|')
    for v, m in med.items():
        print(f"| {v} | {m['images_per_s']:.1f} | {m['rows_per_s']:.1f} | {m['steps_per_s']:.2f} | {m['images_per_s'] / ref:.2f}x |")
    if a.json: Path(a.json).write_text(json.dumps(dict(args=vars(a), runs=res, median=med), indent=1))


if __name__ == '__main__':
    main()
