"""Does bf16 autocast on the CPU change the numbers? Sampling and classifiers, bf16 against fp32 on the same inputs.

- Sampling: one trained generator (`--checkpoint`, a run folder or checkpoint) samples the class mix of `--n` real test
  images twice with the same seed and sampler, in fp32 and under bf16 autocast; both sets are judged against the same
  real test images (fp32 Inception features): FID-64, FID-2048 (bootstrap intervals), KID. Also the mean absolute pixel
  difference between the two sets (same noise, so the same images up to rounding).
- Classifiers: the `cpu` preset's small CNN trained on the real training split of `--clf-dataset` with `--seeds`, in fp32
  and in bf16 (`mixed_precision`), tested on the real test split: AUC and accuracy per seed, and the paired difference.

    flock /tmp/medsyn-heavy.lock python benchmarks/bf16_quality.py --checkpoint benchmarks/out/quality_vs_compute/pneumoniamnist/8min
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from time_to_quality import quality, machine   # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--n', type=int, default=300)
    p.add_argument('--clf-dataset', default='breastmnist')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--out', default='benchmarks/results/bf16_quality.json')
    a = p.parse_args()
    from medsyn import diffusion as D, sampling as S
    from medsyn.core import load_settings, versions
    from medsyn.data import load_medmnist
    from medsyn.features import image_features
    from medsyn.data import draw_indices
    from medsyn.classify import train_classifier, predict, classification_metrics
    s = load_settings('cpu')
    unet, sch, meta = S.load_model(D.resolve_checkpoint(a.checkpoint), ema=True, device='cpu')
    te = load_medmnist(meta['flag'], 'test'); tr = load_medmnist(meta['flag'], 'train')
    i_te = draw_indices(te.labels, min(a.n, len(te)), 0)
    counts = {int(c): int((te.labels[i_te] == c).sum()) for c in np.unique(te.labels[i_te])}
    f_te = image_features(te.images[i_te], s, progress=False)
    f_tr = image_features(tr.images[draw_indices(tr.labels, len(i_te), 3, counts=counts)], s, progress=False)
    res = dict(machine=machine(), versions=versions(), checkpoint=str(a.checkpoint), sampling={}, classifiers={})
    imgs = {}
    for mp in ('no', 'bf16'):
        t0 = time.perf_counter()
        imgs[mp] = S.generate(unet, sch, te.labels[i_te], s.sampler, s.sample_steps, seed=0, batch_size=250, null_class=meta['null_class'],
                              progress=False, mixed_precision=mp)
        dt = time.perf_counter() - t0
        q = quality(f_te, image_features(imgs[mp], s, cache=False, progress=False), f_tr, 20, 0)
        res['sampling'][mp] = dict(seconds=round(dt, 1), img_s=round(len(i_te) / dt, 1), **{k: round(v, 5) for k, v in q.items()})
        print(mp, res['sampling'][mp], flush=True)
    res['sampling']['mean_abs_pixel_difference'] = float(np.abs(imgs['no'].astype(float) - imgs['bf16'].astype(float)).mean())
    ct, cv, cte = (load_medmnist(a.clf_dataset, sp) for sp in ('train', 'val', 'test'))
    for mp in ('no', 'bf16'):
        sc = s.replace(mixed_precision=mp); rows = []
        for seed in a.seeds:
            t0 = time.perf_counter()
            model, _ = train_classifier(ct, cv, sc.archs[0], sc, seed=seed, progress=False)
            m = classification_metrics(cte.labels, predict(model, cte), cte.info['task'], cte.n_classes)
            rows.append(dict(seed=seed, auc=m['auc'], acc=m['acc'], seconds=round(time.perf_counter() - t0, 1)))
        res['classifiers'][mp] = rows
        print(mp, rows, flush=True)
    d = [b['auc'] - f['auc'] for f, b in zip(res['classifiers']['no'], res['classifiers']['bf16'])]
    res['classifiers']['auc_difference_bf16_minus_fp32'] = dict(per_seed=d, mean=float(np.mean(d)))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k in ('sampling', 'classifiers')}, indent=1))


if __name__ == '__main__':
    main()
