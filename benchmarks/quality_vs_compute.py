"""How long must a generator train on a CPU before its images are worth using? Quality against training minutes.

For one recipe (a settings line on top of `--preset`, as in benchmarks/time_to_quality.py), each data set and each
budget in `--minutes`, a generator trains for that many minutes of wall clock with its learning-rate schedule planned to
end at the budget (benchmarks/time_to_quality.train_budget), then samples `--per-class` images of each class. Judged as
the study judges it, at the `cpu` preset's sizes:

- FID-64 and FID-2048 with bootstrap intervals, KID-2048 with its range over subsets, precision/recall: a class-matched
  draw of `--n` synthetic images against `--n` real test images; the floor is `--n` real *training* images (the
  generator's own) against the same test images, class-matched.
- TSTR: the small CNN (`cpu` preset's classifier settings) trained on the synthetic images alone, its epoch chosen on the
  real validation split, tested on the whole real test split; `--clf-seeds` seeds. Beside it, the same CNN trained on
  the real training split (the images the generator saw), same seeds: the real-trained reference.

Which images each model saw: the generator, the real training split; the TSTR classifier, only its synthetic images
(and the validation split for choosing its epoch); nothing here sees a test image before testing.

    flock /tmp/medsyn-heavy.lock python benchmarks/quality_vs_compute.py --recipe "bf16=mixed_precision:bf16"

Writes `--out`/results.json and results.csv, tables/quality_vs_compute.{csv,md} and figures/quality_vs_compute.png.
"""
from __future__ import annotations
import argparse, json, shutil, sys, time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from time_to_quality import parse_recipe, train_budget, quality, machine   # noqa: E402


def tstr(train_ds, val, test, s, seeds, augment=None) -> list:
    "Test AUC and accuracy on the real test split of the CNN trained on `train_ds` (with `augment`, a batch transform), one per seed."
    from medsyn.classify import train_classifier, predict, classification_metrics
    out = []
    for seed in seeds:
        model, _ = train_classifier(train_ds, val, s.archs[0], s, seed=seed, progress=False, augment=augment)
        m = classification_metrics(test.labels, predict(model, test), test.info['task'], test.n_classes)
        out.append(dict(seed=seed, auc=m['auc'], acc=m['acc']))
    return out


def run(a):
    from medsyn import sampling as S
    from medsyn.core import load_settings, versions
    from medsyn.data import load_medmnist, MedMNISTSplit, image_grid, class_rows, save_figure
    from medsyn.features import image_features
    from medsyn.data import draw_indices
    name, kv = parse_recipe(a.recipe)
    s = load_settings(a.preset, **{k: v for k, v in kv.items()})
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    res_path = out/'results.json'
    rows = json.loads(res_path.read_text())['rows'] if a.resume and res_path.exists() else []
    done = {(r['dataset'], r['minutes']) for r in rows}
    for ds in a.datasets:
        te, tr, va = (load_medmnist(ds, sp) for sp in ('test', 'train', 'val'))
        n = min(a.n, len(te))
        i_te = draw_indices(te.labels, n, a.seed)
        counts = {int(c): int((te.labels[i_te] == c).sum()) for c in np.unique(te.labels[i_te])}
        f_te = image_features(te.images[i_te], s, desc=f'{ds} test')
        f_tr = image_features(tr.images[draw_indices(tr.labels, n, a.seed + 3, counts=counts)], s, desc=f'{ds} train')
        if not any(r['dataset'] == ds and r['minutes'] == 0 for r in rows):
            t0 = time.perf_counter()
            ref = tstr(tr, va, te, s, a.clf_seeds)
            rows.append(dict(dataset=ds, minutes=0, recipe='real training images', n=n,
                             tstr_auc=float(np.mean([r['auc'] for r in ref])), tstr_auc_sd=float(np.std([r['auc'] for r in ref], ddof=1)),
                             tstr_acc=float(np.mean([r['acc'] for r in ref])), per_seed=ref, clf_s=round(time.perf_counter() - t0, 1)))
            print(rows[-1], flush=True)
        for m in a.minutes:
            if (ds, m) in done: continue
            runf = out/ds/f'{m:g}min'
            if runf.exists(): shutil.rmtree(runf)
            print(f"\n== {ds}: {name} for {m:g} min", flush=True)
            r = train_budget(ds, runf, 60 * m, a.preset, dict(kv), a.seed, a.device)
            labels = np.repeat(np.arange(te.n_classes), a.per_class)
            t1 = time.perf_counter()
            imgs = S.generate(r['unet'], r['scheduler'], labels, s.sampler, s.sample_steps, seed=a.seed, batch_size=250,
                              null_class=r['null_class'], progress=False)   # fp32 sampling, as in the study
            sample_s = time.perf_counter() - t1
            syn = MedMNISTSplit(imgs, labels, ds, 'train', imgs.shape[1], te.info)
            np.savez_compressed(runf/'samples.npz', train_images=imgs, train_labels=labels.astype(np.uint8).reshape(-1, 1))
            save_figure(image_grid(class_rows(syn, 10, a.seed), te.label_names, title=f'{ds}: {m:g} min'), runf/'grid.png')
            i_syn = draw_indices(labels, n, a.seed + 1, counts=counts)
            q = quality(f_te, image_features(imgs[i_syn], s, cache=False, progress=False), f_tr, a.n_bootstrap, a.seed)
            t2 = time.perf_counter()
            ts = tstr(syn, va, te, s, a.clf_seeds)
            row = dict(dataset=ds, minutes=m, recipe=name, n=n, steps=r['steps'], images_seen=r['images_seen'],
                       train_s=round(r['seconds'], 1), sample_s=round(sample_s, 1), clf_s=round(time.perf_counter() - t2, 1),
                       **{k: round(v, 5) for k, v in q.items()},
                       tstr_auc=float(np.mean([t['auc'] for t in ts])), tstr_auc_sd=float(np.std([t['auc'] for t in ts], ddof=1)),
                       tstr_acc=float(np.mean([t['acc'] for t in ts])), per_seed=ts, plans=r['plans'])
            rows.append(row)
            print({k: v for k, v in row.items() if k not in ('plans', 'per_seed')}, flush=True)
            res_path.write_text(json.dumps(dict(args=vars(a), recipe=kv, machine=machine(), versions=versions(), rows=rows), indent=1, default=str))
    res_path.write_text(json.dumps(dict(args=vars(a), recipe=kv, machine=machine(), versions=versions(), rows=rows), indent=1, default=str))
    report(rows, a, kv)


def report(rows, a, kv):
    import pandas as pd, matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from scipy import stats
    from medsyn.data import save_figure
    df = pd.DataFrame([{k: v for k, v in r.items() if k not in ('plans', 'per_seed')} for r in rows])
    t = stats.t.ppf(0.975, len(a.clf_seeds) - 1)
    df['tstr_auc_half'] = t * df.tstr_auc_sd / np.sqrt(len(a.clf_seeds))
    Path(a.out, 'results.csv').write_text(df.to_csv(index=False))
    syn = df[df.minutes > 0].sort_values(['dataset', 'minutes'])
    ref = df[df.minutes == 0].set_index('dataset')
    tab = pd.DataFrame(dict(
        dataset=syn.dataset, minutes=syn.minutes, steps=syn.steps.astype(int),
        fid64=[f"{v:.3f} [{l:.3f}, {h:.3f}]" for v, l, h in zip(syn.fid64, syn.fid64_lo, syn.fid64_hi)],
        floor64=syn.fid64_floor.round(3),
        fid2048=[f"{v:.1f} [{l:.1f}, {h:.1f}]" for v, l, h in zip(syn.fid2048, syn.fid2048_lo, syn.fid2048_hi)],
        floor2048=syn.fid2048_floor.round(1), ratio2048=(syn.fid2048 / syn.fid2048_floor).round(2),
        kid_x1e3=[f"{1e3 * v:.1f} [{1e3 * l:.1f}, {1e3 * h:.1f}]" for v, l, h in zip(syn.kid, syn.kid_lo, syn.kid_hi)],
        precision=syn.precision.round(2), recall=syn.recall.round(2),
        tstr_auc=[f"{v:.3f} ± {h:.3f}" for v, h in zip(syn.tstr_auc, syn.tstr_auc_half)],
        real_auc=[f"{ref.tstr_auc[d]:.3f} ± {ref.tstr_auc_half[d]:.3f}" for d in syn.dataset]))
    Path('tables').mkdir(exist_ok=True)
    num = df.drop(columns=[c for c in ('recipe',) if c in df]).sort_values(['dataset', 'minutes'])
    num.to_csv('tables/quality_vs_compute.csv', index=False)              # every number, minutes 0 = real-trained reference
    note = (f"Recipe `{a.preset}` preset + {kv or 'nothing'}; {machine()}; n = {a.n} images a side (FID floor: as many real training "
            f"images vs the same test images); intervals: FID bootstrap 95 %, KID 2.5-97.5 % over 50 subsets, TSTR t-interval "
            f"over {len(a.clf_seeds)} classifier seeds (one generator per point). `benchmarks/quality_vs_compute.py`.")
    md = ['| ' + ' | '.join(tab.columns) + ' |', '|' + '---|' * len(tab.columns)] + \
         ['| ' + ' | '.join(str(v) for v in r) + ' |' for r in tab.itertuples(index=False)]
    Path('tables/quality_vs_compute.md').write_text('\n'.join(md) + '\n\n' + note + '\n')
    dsets = list(dict.fromkeys(syn.dataset))
    fig, axs = plt.subplots(3, len(dsets), figsize=(4.2 * len(dsets), 9), squeeze=False, sharex=True)
    for j, d in enumerate(dsets):
        g = syn[syn.dataset == d]
        for i, (col, lab) in enumerate((('fid2048', 'FID-2048'), ('kid', 'KID-2048'), ('tstr_auc', 'TSTR AUC'))):
            ax = axs[i, j]
            if col == 'tstr_auc':
                ax.errorbar(g.minutes, g.tstr_auc, yerr=g.tstr_auc_half, marker='o', capsize=3, label='synthetic only')
                ax.axhspan(ref.tstr_auc[d] - ref.tstr_auc_half[d], ref.tstr_auc[d] + ref.tstr_auc_half[d], color='k', alpha=.15)
                ax.axhline(ref.tstr_auc[d], color='k', lw=1, label='real training images')
            else:
                ax.errorbar(g.minutes, g[col], yerr=[g[col] - g[col + '_lo'], g[col + '_hi'] - g[col]], marker='o', capsize=3, label='synthetic')
                if col == 'fid2048': ax.axhline(g.fid2048_floor.iloc[0], color='k', lw=1, ls='--', label='real-vs-real floor')
                else: ax.axhline(0, color='k', lw=1, ls='--')
            ax.set_xscale('log', base=2); ax.set_ylabel(lab); ax.grid(alpha=.3)
            if i == 0: ax.set_title(d)
            if i == 2: ax.set_xlabel('training minutes (2-core CPU)')
            if j == 0: ax.legend(fontsize=8)
    fig.suptitle(f"Quality against CPU training time ({a.preset} preset{' + ' + ', '.join(f'{k}={v}' for k, v in kv.items()) if kv else ''})")
    fig.tight_layout()
    Path('figures').mkdir(exist_ok=True)
    save_figure(fig, 'figures/quality_vs_compute.png')
    print(Path('tables/quality_vs_compute.md').read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--datasets', nargs='+', default=['pneumoniamnist', 'breastmnist', 'retinamnist'])
    p.add_argument('--recipe', default='bf16=mixed_precision:bf16', help='name=key:value,... on top of --preset')
    p.add_argument('--preset', default='cpu')
    p.add_argument('--minutes', nargs='+', type=float, default=[1, 2, 4, 8])
    p.add_argument('--n', type=int, default=300, help='images a side for FID/KID/PRDC (the cpu preset compares 300)')
    p.add_argument('--per-class', type=int, default=200, help='synthetic images per class (TSTR trains on all of them)')
    p.add_argument('--clf-seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--n-bootstrap', type=int, default=20)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='auto')
    p.add_argument('--resume', action='store_true', help='keep the points already in --out/results.json')
    p.add_argument('--report-only', action='store_true', help='redraw the figure and table from --out/results.json')
    p.add_argument('--out', default='benchmarks/out/quality_vs_compute')
    a = p.parse_args()
    if a.report_only:
        d = json.loads(Path(a.out, 'results.json').read_text()); return report(d['rows'], a, d['recipe'])
    run(a)


if __name__ == '__main__':
    main()
