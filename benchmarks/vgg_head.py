"""VGG-19-BN at 32 px: torchvision's head against medsyn's folded one (`medsyn.classify.fold_vgg_head`), side by side.

At 32-63 px VGG's features end in a 1x1 map that the 7x7 adaptive pool copies 49 times into a Linear(25088, 4096):
103 M of the network's 139 M weights. The folded head computes the same function with a Linear(512, 4096). This times,
in one process and one run, alternating the two so that the machine's drift falls on both: a training step (Adam, bf16
autocast where the CPU has AMX, as `medsyn cnns` trains) on batches of `--batch` 28 px grey images resized to 32 px,
and the copy of the model state that `train_classifier` keeps at each best epoch.

    flock /tmp/medsyn-heavy.lock python benchmarks/vgg_head.py          # about 2 min on a 2-core CPU
"""
from __future__ import annotations
import argparse, json, statistics, sys, time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.models as tvm

sys.path.insert(0, str(Path(__file__).parent))
from time_to_quality import machine   # noqa: E402
from medsyn.classify import Classifier, build_classifier   # noqa: E402
from medsyn.core import bf16_fast   # noqa: E402


def models():
    "The wide (torchvision) and folded VGG-19-BN for 1-channel, 2-class 28 px images at 32 px, from the same weights."
    torch.manual_seed(0)
    folded = build_classifier('vgg19_bn', 1, 2, input_size=32, verbose=False)
    wide = tvm.vgg19_bn(num_classes=2)
    wide.features[0] = torch.nn.Conv2d(1, 64, 3, padding=1)
    return {'torchvision head (Linear 25088 -> 4096)': Classifier(wide, 'vgg19_bn', 32),
            'folded head (Linear 512 -> 4096)': folded}


def timed_step(m, opt, x, y, bf16:bool) -> float:
    t0 = time.perf_counter()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(m(x).float(), y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return time.perf_counter() - t0


def timed_copy(m) -> float:
    t0 = time.perf_counter()
    {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=32); p.add_argument('--reps', type=int, default=5)
    p.add_argument('--json')
    a = p.parse_args(argv)
    bf16 = bf16_fast('cpu')
    ms = models()
    for m in ms.values(): m.to(memory_format=torch.channels_last).train()
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in ms.items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 1, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (a.batch,), generator=g)
    steps, copies = {k: [] for k in ms}, {k: [] for k in ms}
    for k, m in ms.items(): timed_step(m, opts[k], x, y, bf16)          # warm-up: allocations, Adam's state
    for _ in range(a.reps):                                              # alternate, so drift falls on both
        for k, m in ms.items():
            steps[k].append(timed_step(m, opts[k], x, y, bf16)); copies[k].append(timed_copy(m))
    rows = [dict(head=k, params=sum(q.numel() for q in ms[k].parameters()), step_ms=1e3 * statistics.median(steps[k]),
                 copy_ms=1e3 * statistics.median(copies[k])) for k in ms]
    base = rows[0]
    print(f"| VGG-19-BN at 32 px | weights | training step (batch {a.batch}) | images/s | state copy | step speed-up |")
    print('|---|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f"| {r['head']} | {r['params'] / 1e6:.1f} M | {r['step_ms']:.0f} ms | {a.batch / r['step_ms'] * 1e3:.1f} | "
              f"{r['copy_ms']:.0f} ms | {base['step_ms'] / r['step_ms']:.2f}x |")
    print(f"\n{machine()}; {'bf16 autocast' if bf16 else 'fp32'}; median of {a.reps} alternating steps after one warm-up each. "
          "`benchmarks/vgg_head.py`.")
    if a.json:
        with open(a.json, 'w') as f: json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
