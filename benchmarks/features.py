"""Inception feature extraction speed (images/s), side by side in one run.

    flock /tmp/medsyn-heavy.lock python benchmarks/features.py [--n 128] [--batch-sizes 16,64] [--threads 0]

Measures, on BreastMNIST 28 px test images (grayscale, resized to 299 inside the network):
  * medsyn.metrics.image_features, one pass for all four taps (64/192/768/2048), cache off, per batch size,
    with the network in channels_last (medsyn's choice) and in the default contiguous layout;
  * torchmetrics' FrechetInceptionDistance(feature=2048) update on the same images (one tap, its own network),
    as the reference cost of the usual route;
  * the cost of a second call that hits the feature cache.
Prints a Markdown table for benchmarks/RESULTS.md.
"""
import argparse, platform, tempfile, time

import numpy as np
import torch

from medsyn.core import load_settings
from medsyn.data import load_medmnist
from medsyn import features as M
from medsyn.core import get_device


def timed(fn, repeat=1):
    best = float('inf')
    for _ in range(repeat):
        t = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--n', type=int, default=128, help='images per measurement')
    p.add_argument('--batch-sizes', default='16,64')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    imgs = load_medmnist('breastmnist', 'test').images[:a.n]
    cache = tempfile.mkdtemp()
    s = load_settings('smoke', cache_dir=cache)
    dev = get_device(s.device)
    M.image_features(imgs[:4], s, cache=False, progress=False)            # warm-up: weights, network, threads
    rows = []
    net = M.inception(s)                                                  # the session's network (channels_last)
    for bs in [int(b) for b in a.batch_sizes.split(',')]:
        for layout, fmt in (('channels_last', torch.channels_last), ('contiguous NCHW', torch.contiguous_format)):
            net.to(memory_format=fmt)
            t = timed(lambda: M.image_features(imgs, s, cache=False, batch_size=bs, progress=False))
            rows.append((f'medsyn image_features, 4 taps, batch {bs}, {layout}', a.n / t, t))
    net.to(memory_format=torch.channels_last)
    from torchmetrics.image.fid import FrechetInceptionDistance
    fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(M.fid_weights_path(s)), antialias=False).to(dev)
    x = M._to_nchw3(imgs)
    def tm():
        for i in range(0, len(x), 64): fid.update(x[i:i+64].to(dev), real=True)
    t = timed(tm)
    rows.append(('torchmetrics FID update, 1 tap (2048), batch 64', a.n / t, t))
    M.image_features(imgs, s, progress=False)                             # fill the cache
    t = timed(lambda: M.image_features(imgs, s, progress=False), repeat=3)
    rows.append(('medsyn image_features, cache hit', a.n / t, t))
    print(f"\nmachine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"device {dev}, torch {torch.__version__}; {a.n} BreastMNIST 28 px images\n")
    print('| what | images/s | seconds |\n|---|---:|---:|')
    for name, ips, t in rows: print(f'| {name} | {ips:.1f} | {t:.2f} |')


if __name__ == '__main__':
    main()
