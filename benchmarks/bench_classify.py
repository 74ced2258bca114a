"""Classifier and LIME speed, side by side in one run.

1. resnet18_28 training throughput (images/s, forward + backward + Adam step) in the default
   (NCHW) memory layout vs channels_last, which medsyn.classify uses.
2. resnet18_28 inference throughput, same two layouts.
3. The small `cnn` (the quick preset's classifier) vs resnet18_28: training throughput, channels_last, batch 128.
4. One LIME explanation (lime_samples perturbed images) with LIME's default classifier batch of 10
   vs the batch of 256 medsyn.explain uses.

Run: flock /tmp/medsyn-heavy.lock python benchmarks/bench_classify.py [--batches 32,128] [--lime-samples 300]
"""
import argparse, time

import numpy as np
import torch

from medsyn.classify import build_classifier
from medsyn.data import load_medmnist
from medsyn.explain import explain_image


def best_of(fn, reps):
    fn()                                  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return min(ts)


def train_step_time(channels_last, batch, reps, arch="resnet18_28"):
    torch.manual_seed(0)
    m = build_classifier(arch, 1, 2)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 2, (batch,))
    if channels_last:
        m = m.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    def step():
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
    return batch / best_of(step, reps)


def eval_time(channels_last, batch, reps):
    torch.manual_seed(0)
    m = build_classifier("resnet18_28", 1, 2).eval()
    x = torch.randn(batch, 1, 28, 28)
    if channels_last:
        m = m.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return batch / best_of(lambda: m(x), reps)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batches", default="32,128", help="training batch sizes")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--lime-samples", type=int, default=300)
    a = p.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for b in map(int, a.batches.split(",")):
        tr = {cl: train_step_time(cl, b, a.reps) for cl in (False, True)}
        print(f"train resnet18_28 batch {b}: NCHW {tr[False]:.1f} img/s, channels_last {tr[True]:.1f} img/s, "
              f"ratio {tr[True] / tr[False]:.2f}x")
    ev = {cl: eval_time(cl, 256, a.reps) for cl in (False, True)}
    print(f"predict resnet18_28 batch 256: NCHW {ev[False]:.1f} img/s, channels_last {ev[True]:.1f} img/s, "
          f"ratio {ev[True] / ev[False]:.2f}x")
    ar = {arch: train_step_time(True, 128, a.reps, arch) for arch in ("resnet18_28", "cnn")}
    print(f"train batch 128, channels_last: resnet18_28 {ar['resnet18_28']:.1f} img/s, cnn {ar['cnn']:.1f} img/s, "
          f"ratio {ar['cnn'] / ar['resnet18_28']:.1f}x")
    m = build_classifier("resnet18_28", 1, 2).to(memory_format=torch.channels_last).eval()
    img = load_medmnist("breastmnist", "test").images[0]
    lt = {}
    for bs in (10, 256):
        t = time.perf_counter()
        _, w = explain_image(m, img, 1, 1, a.lime_samples, 25, seed=0, batch_size=bs)
        lt[bs] = time.perf_counter() - t
        lt[f"w{bs}"] = np.array([w[k] for k in sorted(w)])
    same = np.allclose(lt["w10"], lt["w256"], atol=1e-4)
    print(f"LIME, one 28 px image, {a.lime_samples} samples: classifier batch 10 {lt[10]:.2f} s, batch 256 {lt[256]:.2f} s, "
          f"ratio {lt[10] / lt[256]:.2f}x (same weights: {same})")


if __name__ == "__main__":
    main()
