"""Is a train-on-synthetic classifier held back by its generator or by how few synthetic images it gets?

One trained generator (`--checkpoint`) samples `max(--per-class)` images of each class once (DDIM-20, bf16 autocast: its
speed, benchmarks/bf16_quality.py for what it changes); the `cpu` preset's small CNN is then trained on the first k per
class for each k in `--per-class` (nested sets), `--seeds` seeds each, its epoch chosen on the real validation split,
and tested on the whole real test split. The real-trained reference (same CNN, the real training split, same seeds)
is printed beside it. The generator saw the real training split only; the classifiers never see a test image.

    flock /tmp/medsyn-heavy.lock python benchmarks/tstr_vs_samples.py --checkpoint benchmarks/out/quality_vs_compute/pneumoniamnist/8min
"""
from __future__ import annotations
import argparse, json, time
from pathlib import Path

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--per-class', nargs='+', type=int, default=[200, 600, 1800])
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--out', default='benchmarks/results/tstr_vs_samples.json')
    a = p.parse_args()
    from scipy import stats
    from medsyn import diffusion as D, sampling as S
    from medsyn.core import load_settings, versions
    from medsyn.data import load_medmnist, MedMNISTSplit
    from medsyn.classify import train_classifier, predict, classification_metrics
    s = load_settings('cpu')
    unet, sch, meta = S.load_model(D.resolve_checkpoint(a.checkpoint), ema=True, device='cpu')
    va, te = load_medmnist(meta['flag'], 'val'), load_medmnist(meta['flag'], 'test')
    K = max(a.per_class)
    labels = np.tile(np.arange(te.n_classes), K)                 # class-interleaved: the first k*C images hold k of each class
    t0 = time.perf_counter()
    imgs = S.generate(unet, sch, labels, s.sampler, s.sample_steps, seed=0, batch_size=250, null_class=meta['null_class'],
                      mixed_precision='bf16', desc=f'sample {K} per class')
    res = dict(checkpoint=str(a.checkpoint), step=meta['step'], sample_s=round(time.perf_counter() - t0, 1), versions=versions(), rows=[])
    def run(train_ds, what):
        aucs = []
        for seed in a.seeds:
            model, _ = train_classifier(train_ds, va, s.archs[0], s, seed=seed, progress=False)
            aucs.append(classification_metrics(te.labels, predict(model, te), te.info['task'], te.n_classes)['auc'])
        h = stats.t.ppf(0.975, len(aucs) - 1) * np.std(aucs, ddof=1) / np.sqrt(len(aucs))
        res['rows'].append(dict(train=what, n=len(train_ds), auc=float(np.mean(aucs)), half=float(h), per_seed=aucs))
        print(f"{what:>28}: n={len(train_ds):5d}  AUC {np.mean(aucs):.4f} ± {h:.4f}", flush=True)
    run(load_medmnist(meta['flag'], 'train'), 'real training split')
    for k in sorted(a.per_class):
        n = k * te.n_classes
        run(MedMNISTSplit(imgs[:n], labels[:n], meta['flag'], 'train', imgs.shape[1], te.info), f'synthetic, {k} per class')
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == '__main__':
    main()
