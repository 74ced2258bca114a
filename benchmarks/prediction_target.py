"""Prediction target: epsilon vs v-prediction after the same short training, side by side in one run.

Both models are the `quick` preset's (small UNet, cosine schedule, L2 loss, same seed, same batches, same number of
steps); only `prediction` differs. Each draws `--per-class` images of every class with DDIM (`--steps`, EMA weights,
same seed) and is compared with the same real test images (a seeded class-stratified subset of the same size) by:

- FID on 64-d Inception features (medsyn.metrics),
- high-frequency energy: mean absolute difference of horizontally adjacent pixels (real images give the reference),
- the mean brightness of the 3x3 corners (black in RetinaMNIST's fundus photographs).

    flock /tmp/medsyn-heavy.lock python benchmarks/prediction_target.py                 # ~7 minutes on a 2-core CPU
    python benchmarks/prediction_target.py --dataset pneumoniamnist --train-steps 1000
"""
from __future__ import annotations
import argparse, json, os, shutil, time
from pathlib import Path

import numpy as np


def high_freq(u: np.ndarray) -> float:
    "Mean |difference| of horizontally adjacent pixels of uint8 images (N,H,W[,C])."
    u = u.astype(np.float32)
    return float(np.abs(u[:, :, 1:] - u[:, :, :-1]).mean())


def corners(u: np.ndarray) -> float:
    "Mean brightness of the four 3x3 corners."
    u = u.astype(np.float32)
    return float(np.mean([u[:, :3, :3].mean(), u[:, :3, -3:].mean(), u[:, -3:, :3].mean(), u[:, -3:, -3:].mean()]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='retinamnist')
    p.add_argument('--train-steps', type=int, default=300, help='training steps of each model (quick preset: 300)')
    p.add_argument('--per-class', type=int, default=20)
    p.add_argument('--steps', type=int, default=20, help='DDIM steps (quick preset: 20)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='benchmarks/out/prediction_target')
    a = p.parse_args()
    import torch
    from medsyn import sampling as S, training as T
    from medsyn.data import load_medmnist, stratified_indices
    from medsyn.features import image_features
    from medsyn.metrics import fid_from_features
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    real = load_medmnist(a.dataset, 'test')
    ridx = stratified_indices(real.labels, per_class=a.per_class, seed=a.seed)
    fr = image_features(real.images[ridx], progress=False)
    rows = [dict(prediction='(real test images)', seconds_train=None, fid64=None,
                 high_freq=high_freq(real.images[ridx]), corners=corners(real.images[ridx]))]
    for pred in ('epsilon', 'v_prediction'):
        run = out/pred
        shutil.rmtree(run, ignore_errors=True)
        t = time.perf_counter()
        T.train(a.dataset, 'l2', run, preset='quick', progress=False, seed=a.seed, prediction=pred,
                train_steps=a.train_steps, checkpoint_every=a.train_steps)
        secs = time.perf_counter() - t
        f = S.sample(run, a.per_class, out/f'{pred}.npz', 'ddim', a.steps, seed=a.seed, progress=False,
                     grid=out/f'{pred}.png')
        with np.load(f) as z: u = z['train_images']
        ff = image_features(u, progress=False, cache=False)
        rows.append(dict(prediction=pred, seconds_train=round(secs, 1), fid64=fid_from_features(fr[64], ff[64]),
                         high_freq=high_freq(u), corners=corners(u)))
        print(f"  {pred}: trained {secs:.0f} s, FID-64 {rows[-1]['fid64']:.3f}", flush=True)
    dev = 'cuda: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f'cpu ({os.cpu_count()} cores)'
    print(f"\n{a.dataset}, quick preset (small UNet, cosine, L2), {a.train_steps} steps, DDIM-{a.steps}, "
          f"{len(ridx)} images a side, on {dev}")
    print(f"{'prediction':<22}{'FID-64':>9}{'high-freq':>11}{'corners':>9}")
    for r in rows:
        fid = f"{r['fid64']:>9.3f}" if r['fid64'] is not None else f"{'':>9}"
        print(f"{r['prediction']:<22}{fid}{r['high_freq']:>11.1f}{r['corners']:>9.1f}")
    e, v = rows[1], rows[2]
    print(f"FID-64 ratio epsilon / v: {e['fid64'] / v['fid64']:.2f}x")
    (out/'results.json').write_text(json.dumps(dict(args=vars(a), device=dev, rows=rows), indent=2))


if __name__ == '__main__':
    main()
