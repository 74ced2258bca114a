"""The `quick` preset's diffusion recipe: learning rate and training length for a half-hour CPU study.

Trains the `small` UNet on one data set (RetinaMNIST by default: 3 channels, the slowest to look right) with
each recipe in turn, in one process and one run, samples `--per-class` images of every class with DDIM-20,
and compares them with a class-stratified subset of the real test split by FID on 64-d Inception features
(medsyn.metrics; the real features are computed once). Every recipe starts from the `quick` preset and
changes only what its row names. It also writes one grid per recipe (real | synthetic) to look at.

    python benchmarks/quick_recipe.py                      # ~8 minutes on a 2-core CPU
    python benchmarks/quick_recipe.py --dataset breastmnist --recipes 'lr=5e-4,steps=200;lr=2e-3,steps=300'
"""
from __future__ import annotations
import argparse, shutil, time
from pathlib import Path

DEFAULT = 'lr=5e-4,steps=200;lr=2e-3,steps=200;lr=5e-4,steps=400;lr=2e-3,steps=300'


def parse(spec:str) -> dict:
    kv = dict(p.split('=') for p in spec.split(','))
    return dict(lr=float(kv['lr']), train_steps=int(kv['steps']))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='retinamnist')
    p.add_argument('--recipes', default=DEFAULT, help="';'-separated recipes, each 'lr=X,steps=N'")
    p.add_argument('--per-class', type=int, default=40)
    p.add_argument('--out', default='benchmarks/out/quick_recipe')
    a = p.parse_args()
    import numpy as np, pandas as pd
    from medsyn.core import load_settings
    from medsyn.data import load_medmnist, load_npz, stratified_indices
    from medsyn.training import train
    from medsyn.sampling import sample
    from medsyn.features import image_features
    from medsyn.metrics import fid_from_features
    out = Path(a.out); shutil.rmtree(out, ignore_errors=True)
    real = load_medmnist(a.dataset, 'test')
    fr = image_features(real.images[stratified_indices(real.labels, per_class=a.per_class, seed=0)], progress=False)[64]
    rows = []
    for spec in a.recipes.split(';'):
        over = parse(spec); d = out/spec.replace('=', '').replace(',', '_')
        s = load_settings('quick', checkpoint_every=over['train_steps'], **over)
        t0 = time.perf_counter()
        train(a.dataset, 'l2', out=d/'model', settings=s, progress=False)
        secs = time.perf_counter() - t0
        sample(d/'model', a.per_class, d/'synthetic.npz', steps=20, grid=d/'grid.png', progress=False)
        syn = load_npz(d/'synthetic.npz')
        log = pd.read_csv(d/'model'/'loss.csv')
        rows.append(dict(recipe=spec, train_s=round(secs, 1), img_per_s=round(float(log.images_per_s.iloc[2:].median()), 1),
                         last_loss=round(float(log.loss.tail(5).mean()), 4),
                         fid64=round(fid_from_features(fr, image_features(syn.images, progress=False)[64]), 3)))
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(f"\n{a.dataset}, quick preset ({s.batch_size} images a step, EMA {s.ema_decay}), l2 loss, DDIM-20, "
          f"{a.per_class} images per class against as many real test images:\n")
    from medsyn.tables import to_markdown
    print(to_markdown(df))
    df.to_csv(out/'results.csv', index=False)


if __name__ == '__main__':
    main()
