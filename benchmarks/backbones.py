"""Which denoiser backbone gives the best images and the most useful synthetic data per minute of training?

Two comparisons of `unet-small`, `swin-small` and `dit-small` (nbs/01a_denoisers.ipynb), on one data set, in one
process and one run, each backbone trained with the `quick` preset's recipe (batches of 32, lr 2e-3, cosine decay, EMA):

* **equal steps**: every backbone trains `--steps` optimiser steps (the quick preset's 300);
* **equal wall-clock**: every backbone trains for `--minutes` minutes. A short probe measures each backbone's
  steps per second first, and its run gets `train_steps` = what fits the budget, so every run completes its whole
  learning-rate schedule (stopping a longer schedule midway would handicap the faster network).

Each run then samples `--per-class` images per class (DDIM-20) and is scored by FID-64 against as many real test
images (medsyn.metrics, the real features computed once; the floor is as many real training images
against the same test images) and by TSTR: the quick preset's small CNN trained on
the synthetic images only and tested on the real test split (AUC and accuracy, `--seeds` seeds). Times are wall
clock on this machine; the table names it. Ratios between rows are the result; absolute times only say this CPU.

    python benchmarks/backbones.py                               # ~25 minutes on a 2-core CPU
    python benchmarks/backbones.py --dataset pneumoniamnist --minutes 5 --models unet-small,dit-small
"""
from __future__ import annotations
import argparse, json, platform, shutil, time
from pathlib import Path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='breastmnist')
    p.add_argument('--models', default='unet-small,swin-small,dit-small')
    p.add_argument('--steps', type=int, default=300, help='equal-steps budget (optimiser steps)')
    p.add_argument('--minutes', type=float, default=3.0, help='equal wall-clock budget per backbone (minutes of training)')
    p.add_argument('--per-class', type=int, default=64)
    p.add_argument('--seeds', default='0,1', help='TSTR classifier seeds')
    p.add_argument('--out', default='benchmarks/out/backbones')
    a = p.parse_args()
    import numpy as np, pandas as pd, torch
    from medsyn.core import load_settings, versions
    from medsyn.data import load_medmnist, load_npz, stratified_indices
    from medsyn.training import train
    from medsyn.sampling import sample
    from medsyn.features import image_features
    from medsyn.metrics import fid_from_features
    from medsyn.classify import classify
    from medsyn.denoisers import make_denoiser, n_params
    from medsyn.tables import to_markdown
    out = Path(a.out); shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
    real = load_medmnist(a.dataset, 'test')
    fr = image_features(real.images[stratified_indices(real.labels, per_class=a.per_class, seed=0)], progress=False)[64]
    tr = load_medmnist(a.dataset, 'train')     # the floor: as many real training images against the same real test images
    floor = fid_from_features(fr, image_features(tr.images[stratified_indices(tr.labels, per_class=a.per_class, seed=0)], progress=False)[64])
    print(f'FID-64 floor (real train vs real test, {a.per_class} per class): {floor:.3f}', flush=True)
    seeds = [int(x) for x in a.seeds.split(',')]
    models = a.models.split(',')

    def probe(model):
        "Steps per second of `model` with the quick recipe: 5 warm-up steps, then 15 timed."
        s = load_settings('quick', model=model, train_steps=20, checkpoint_every=20, log_every=5)
        t = {}
        def cb(step, loss):
            if step in (5, 20): t[step] = time.perf_counter()
        train(a.dataset, 'l2', out/'probe'/model, settings=s, progress=False, callback=cb)
        return 15 / (t[20] - t[5])

    rate = {m: probe(m) for m in models}
    print('steps/s:', {m: round(r, 2) for m, r in rate.items()}, flush=True)
    rows = []
    for budget in ('equal steps', 'equal wall-clock'):
        for m in models:
            steps = a.steps if budget == 'equal steps' else max(20, int(rate[m] * a.minutes * 60))
            d = out/budget.replace(' ', '_')/m
            s = load_settings('quick', model=m, train_steps=steps, checkpoint_every=steps)
            t0 = time.perf_counter()
            train(a.dataset, 'l2', d/'model', settings=s, progress=False)
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sample(d/'model', a.per_class, d/'synthetic.npz', steps=20, grid=d/'grid.png', progress=False, settings=s)
            sample_s = time.perf_counter() - t0
            syn = load_npz(d/'synthetic.npz')
            fid = fid_from_features(fr, image_features(syn.images, progress=False)[64])
            c = classify(a.dataset, 'synthetic', d/'tstr', synthetic=d/'synthetic.npz', seeds=seeds, settings=s, progress=False)
            cell = c['cells'][0]
            rows.append(dict(budget=budget, model=m, params_M=round(n_params(make_denoiser(syn.n_channels, syn.n_classes, 28, m)) / 1e6, 2),
                             steps=steps, train_min=round(train_s / 60, 2), train_img_s=round(steps * s.batch_size / train_s, 1),
                             sample_img_s=round(len(syn.images) / sample_s, 1), fid64=round(fid, 3), fid64_floor=round(floor, 3),
                             tstr_auc=round(cell['mean']['auc'], 3), tstr_auc_sd=round(cell['std']['auc'], 3),
                             tstr_acc=round(cell['mean']['acc'], 3)))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {versions()['torch']}"
    print(f"\n{a.dataset}, quick recipe (batch 32, lr 2e-3, cosine, EMA 0.99), l2 loss, DDIM-20, {a.per_class} images per class "
          f"against as many real test images (FID-64, beside its real-vs-real floor); TSTR: small CNN on the synthetic images only, {len(seeds)} seeds, real test split. "
          f"Equal steps: {a.steps}; equal wall-clock: {a.minutes:g} min of training each. Machine: {machine}.\n")
    print(to_markdown(df))
    df.to_csv(out/'results.csv', index=False)
    (out/'machine.json').write_text(json.dumps(dict(machine=machine, versions=versions(), args=vars(a), steps_per_s=rate), indent=1))


if __name__ == '__main__':
    main()
