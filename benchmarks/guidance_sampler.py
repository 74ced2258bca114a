"""Classifier-free guidance and the sampler, on generators trained as long as the presets train them.

Two questions the equal-time recipe search left open (issue 22):

1. **Guidance.** A classifier trained on synthetic images alone (TSTR) stayed 0.03-0.06 AUC below the real-trained one
   however long the generator trained (benchmarks/quality_vs_compute.py) and however many images it drew
   (benchmarks/tstr_vs_samples.py). What the images carry about their class is what guidance changes: every generator
   is trained with label dropout (`label_dropout`, 0.1), so it can sample with `guidance` w > 1,
   eps = eps_u + w (eps_c - eps_u). For each data set and w in `--guidance`: FID-64 / FID-2048 with bootstrap intervals
   and the real-vs-real floor, KID, precision/recall on `--n` images a side against the real test split, and TSTR AUC over
   `--clf-seeds` CNN seeds (the `--preset` classifier), beside the real-trained CNN's AUC.
2. **The sampler.** DDIM at 20 and 50 steps against DPM-Solver++ (2M) and UniPC at 10 and 20, on one generator
   (`--sampler-dataset`), `--sampler-n` images a side (>= 1000: against as many real *training* images, with a floor of
   another disjoint draw of training images; the test splits are smaller), with sampling seconds side by side.

Each generator trains `--minutes` of wall clock (benchmarks/time_to_quality.train_budget, schedule planned to end at the
budget) with `--recipe` on top of `--preset`. Sampling and Inception features in bf16 autocast (both checked against fp32
in benchmarks/bf16_quality.py and time_to_quality.py --bf16-features). Which images each model saw: the generator, the
real training split; the TSTR classifier, its synthetic images (epoch chosen on the real validation split); the test
split only for testing. For the sampler question the reference images are training images the generator saw: that
measures how well each sampler reproduces the model's distribution, not generalisation.

    flock /tmp/medsyn-heavy.lock python benchmarks/guidance_sampler.py          # ~35 min on a 2-core CPU

Writes `--out`/results.json and tables/guidance.md, tables/sampler.md and figures/guidance.png.
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from time_to_quality import parse_recipe, train_budget, quality, machine   # noqa: E402
from quality_vs_compute import tstr                                          # noqa: E402

RECIPE = 'bf16+ema-power=mixed_precision:bf16,ema_power:0.6667,ema_decay:0.9995,fid_precision:bf16'
SAMPLERS = [('ddim', 20), ('ddim', 50), ('dpmsolver', 10), ('dpmsolver', 20), ('unipc', 10), ('unipc', 20)]


def sample(r, labels, sampler, steps, guidance, seed):
    from medsyn import sampling as S
    t0 = time.perf_counter()
    imgs = S.generate(r['unet'], r['scheduler'], labels, sampler, steps, guidance=guidance, seed=seed, batch_size=250,
                      null_class=r['null_class'], progress=False, mixed_precision='bf16')
    return imgs, time.perf_counter() - t0


def run(a):
    from medsyn import diffusion as D, sampling as S
    from medsyn.core import load_settings, versions
    from medsyn.data import load_medmnist, MedMNISTSplit, image_grid, class_rows, save_figure
    from medsyn.features import image_features
    from medsyn.data import draw_indices
    name, kv = parse_recipe(a.recipe)
    s = load_settings(a.preset, **kv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    res = dict(args=vars(a), recipe=kv, machine=machine(), versions=versions(), guidance=[], sampler=[], generators={})
    if a.reuse:                                   # add rows to the earlier run's results; a row measured again replaces its old one
        res = json.loads((out/'results.json').read_text())
        res.setdefault('added_by', []).append(vars(a))
    def add(kind, row, key):
        res[kind] = [r for r in res[kind] if tuple(r.get(k) for k in key) != tuple(row.get(k) for k in key)] + [row]
    save = lambda: (out/'results.json').write_text(json.dumps(res, indent=1, default=str))
    for ds in a.datasets:
        te, tr, va = (load_medmnist(ds, sp) for sp in ('test', 'train', 'val'))
        if a.reuse and (out/ds/'checkpoints').exists():                 # the generator of an earlier run of this script
            unet, sch, meta = S.load_model(D.resolve_checkpoint(out/ds), ema=True)
            r = dict(unet=unet, scheduler=sch, null_class=meta['null_class'], steps=meta['step'], seconds=float('nan'), plans=[])
        else:
            print(f"\n== {ds}: {name} for {a.minutes:g} min", flush=True)
            r = train_budget(ds, out/ds, 60 * a.minutes, a.preset, dict(kv), a.seed)
        if r['plans'] or ds not in res['generators']:   # trained here (a reused generator keeps its entry)
            res['generators'][ds] = dict(steps=r['steps'], train_s=round(r['seconds'], 1), plans=r['plans'])
        n = min(a.n, len(te))
        i_te = draw_indices(te.labels, n, a.seed)
        counts = {int(c): int((te.labels[i_te] == c).sum()) for c in np.unique(te.labels[i_te])}
        f_te = image_features(te.images[i_te], s, desc=f'{ds} test')
        f_fl = image_features(tr.images[draw_indices(tr.labels, n, a.seed + 3, counts=counts)], s, desc=f'{ds} train')
        if a.guidance and not any(r['dataset'] == ds and r['guidance'] == 0 for r in res['guidance']):
            ref = tstr(tr, va, te, s, a.clf_seeds)
            add('guidance', dict(dataset=ds, guidance=0, recipe='real training images', per_seed=ref,
                                 tstr_auc=float(np.mean([x['auc'] for x in ref])), tstr_auc_sd=float(np.std([x['auc'] for x in ref], ddof=1))), ('dataset', 'guidance'))
        grids = []
        for w in a.guidance:
            labels = np.repeat(np.arange(te.n_classes), a.per_class)
            imgs, sec = sample(r, labels, 'ddim', 20, w, a.seed)
            syn = MedMNISTSplit(imgs, labels, ds, 'train', imgs.shape[1], te.info)
            grids.append((w, syn))
            i_syn = draw_indices(labels, n, a.seed + 1, counts=counts)
            q = quality(f_te, image_features(imgs[i_syn], s, cache=False, progress=False), f_fl, a.n_bootstrap, a.seed)
            ts = tstr(syn, va, te, s, a.clf_seeds)
            row = dict(dataset=ds, guidance=w, n=n, steps=r['steps'], sample_s=round(sec, 1), **{k: round(v, 5) for k, v in q.items()},
                       tstr_auc=float(np.mean([x['auc'] for x in ts])), tstr_auc_sd=float(np.std([x['auc'] for x in ts], ddof=1)),
                       tstr_acc=float(np.mean([x['acc'] for x in ts])), per_seed=ts)
            add('guidance', row, ('dataset', 'guidance')); save()
            print({k: v for k, v in row.items() if k != 'per_seed'}, flush=True)
        for w, syn in grids:
            save_figure(image_grid(class_rows(syn, 8, a.seed), te.label_names, title=f'{ds}: guidance {w:g}'), out/ds/f'grid_w{w:g}.png')
        if ds == a.sampler_dataset:
            m = min(a.sampler_n, len(tr) // 2)
            i_ref = draw_indices(tr.labels, m, a.seed + 5)
            cts = {int(c): int((tr.labels[i_ref] == c).sum()) for c in np.unique(tr.labels[i_ref])}
            rest = np.setdiff1d(np.arange(len(tr)), i_ref)
            i_fl = rest[draw_indices(tr.labels[rest], m, a.seed + 6, counts=cts)]
            f_ref = image_features(tr.images[i_ref], s, desc=f'{ds} train ref')
            f_fl2 = image_features(tr.images[i_fl], s, desc=f'{ds} train floor')
            labels = np.concatenate([np.full(k, c) for c, k in sorted(cts.items())])
            for sampler, steps in (tuple(x.split('-')) for x in a.samplers):
                steps = int(steps)
                imgs, sec = sample(r, labels, sampler, steps, 1.0, a.seed)
                q = quality(f_ref, image_features(imgs, s, cache=False, progress=False), f_fl2, a.n_bootstrap, a.seed)
                row = dict(dataset=ds, sampler=sampler, steps=steps, n=m, sample_s=round(sec, 1), **{k: round(v, 5) for k, v in q.items()})
                add('sampler', row, ('dataset', 'sampler', 'steps')); save()
                print(row, flush=True)
    save()
    report(res, a)


def report(res, a):
    import pandas as pd, matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from scipy import stats
    from medsyn.data import save_figure
    k = len(a.clf_seeds)
    g = pd.DataFrame([{x: v for x, v in r.items() if x != 'per_seed'} for r in res['guidance']])
    g['tstr_half'] = stats.t.ppf(0.975, k - 1) * g.tstr_auc_sd / np.sqrt(k)
    real = g[g.guidance == 0].set_index('dataset')
    syn = g[g.guidance > 0]
    ci = lambda v, lo, hi, f: f"{v:{f}} [{lo:{f}}, {hi:{f}}]"
    lines = ['| data set | guidance | FID-64 | floor | FID-2048 | floor | ratio | KID-2048 (x1e3) | precision | recall | TSTR AUC | real AUC |',
             '|---|---:|---|---:|---|---:|---:|---|---:|---:|---|---|']
    for r in syn.itertuples():
        lines.append(f"| {r.dataset} | {r.guidance:g} | {ci(r.fid64, r.fid64_lo, r.fid64_hi, '.3f')} | {r.fid64_floor:.3f} | "
                     f"{ci(r.fid2048, r.fid2048_lo, r.fid2048_hi, '.1f')} | {r.fid2048_floor:.1f} | {r.fid2048 / r.fid2048_floor:.2f} | "
                     f"{ci(1e3 * r.kid, 1e3 * r.kid_lo, 1e3 * r.kid_hi, '.1f')} | {r.precision:.2f} | {r.recall:.2f} | "
                     f"{r.tstr_auc:.3f} ± {r.tstr_half:.3f} | {real.tstr_auc[r.dataset]:.3f} ± {real.tstr_half[r.dataset]:.3f} |")
    gens = ', '.join(f"{d} {int(q.steps.iloc[0])} steps" for d, q in syn.groupby('dataset', sort=False))
    note = (f"\n\n{res['machine']}; recipe `{a.preset}` + {res['recipe']}, {a.minutes:g} min of training per generator ({gens}); "
            f"DDIM-20, bf16; n = {a.n} a side (capped by the test split); TSTR: t-interval over {k} CNN seeds, one generator per "
            "data set. `benchmarks/guidance_sampler.py`.\n")
    Path('tables').mkdir(exist_ok=True)
    Path('tables/guidance.md').write_text('\n'.join(lines) + note)
    g.drop(columns=[c for c in ('recipe',) if c in g]).to_csv('tables/guidance.csv', index=False)   # guidance 0 = real-trained CNN
    if res['sampler']:
        sm = pd.DataFrame(res['sampler']).sort_values(['sampler', 'steps'])
        base = sm[(sm.sampler == 'ddim') & (sm.steps == 50)].sample_s.iloc[0]
        sl = ['| sampler | steps | seconds | vs DDIM-50 | FID-64 | floor | FID-2048 | floor | KID-2048 (x1e3) | precision | recall |',
              '|---|---:|---:|---:|---|---:|---|---:|---|---:|---:|']
        for r in sm.itertuples():
            sl.append(f"| {r.sampler} | {r.steps} | {r.sample_s:.0f} | {base / r.sample_s:.1f}x | {ci(r.fid64, r.fid64_lo, r.fid64_hi, '.3f')} | "
                      f"{r.fid64_floor:.3f} | {ci(r.fid2048, r.fid2048_lo, r.fid2048_hi, '.1f')} | {r.fid2048_floor:.1f} | "
                      f"{ci(1e3 * r.kid, 1e3 * r.kid_lo, 1e3 * r.kid_hi, '.1f')} | {r.precision:.2f} | {r.recall:.2f} |")
        sm.to_csv('tables/sampler.csv', index=False)
        Path('tables/sampler.md').write_text('\n'.join(sl) + f"\n\n{res['machine']}; {a.sampler_dataset}, the generator above; "
            f"n = {sm.n.iloc[0]} synthetic images against as many real training images (floor: another disjoint draw of training "
            "images); guidance 1, bf16. `benchmarks/guidance_sampler.py`.\n")
    dsets = list(dict.fromkeys(syn.dataset))
    fig, axs = plt.subplots(2, len(dsets), figsize=(4.2 * len(dsets), 6), squeeze=False, sharex=True)
    for j, d in enumerate(dsets):
        q = syn[syn.dataset == d]
        ax = axs[0, j]
        ax.errorbar(q.guidance, q.fid2048, yerr=[q.fid2048 - q.fid2048_lo, q.fid2048_hi - q.fid2048], marker='o', capsize=3)
        ax.axhline(q.fid2048_floor.iloc[0], color='k', ls='--', lw=1, label='real-vs-real floor')
        ax.set_title(d); ax.set_ylabel('FID-2048'); ax.grid(alpha=.3); ax.legend(fontsize=8)
        ax = axs[1, j]
        ax.errorbar(q.guidance, q.tstr_auc, yerr=q.tstr_half, marker='o', capsize=3, label='synthetic only')
        ax.axhspan(real.tstr_auc[d] - real.tstr_half[d], real.tstr_auc[d] + real.tstr_half[d], color='k', alpha=.15)
        ax.axhline(real.tstr_auc[d], color='k', lw=1, label='real training images')
        ax.set_xlabel('guidance scale w'); ax.set_ylabel('TSTR AUC'); ax.grid(alpha=.3); ax.legend(fontsize=8)
    fig.suptitle(f'Classifier-free guidance after {a.minutes:g} min of CPU training'); fig.tight_layout()
    Path('figures').mkdir(exist_ok=True)
    save_figure(fig, 'figures/guidance.png')
    print(Path('tables/guidance.md').read_text())
    if res['sampler']: print(Path('tables/sampler.md').read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--recipe', default=RECIPE)
    p.add_argument('--preset', default='cpu')
    p.add_argument('--datasets', nargs='+', default=['pneumoniamnist', 'breastmnist', 'retinamnist'])
    p.add_argument('--minutes', type=float, default=4)
    p.add_argument('--guidance', type=float, nargs='*', default=[1.0, 1.5, 2.0, 3.0])
    p.add_argument('--n', type=int, default=300)
    p.add_argument('--per-class', type=int, default=200)
    p.add_argument('--clf-seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--n-bootstrap', type=int, default=20)
    p.add_argument('--sampler-dataset', default='pneumoniamnist')
    p.add_argument('--sampler-n', type=int, default=1000)
    p.add_argument('--samplers', nargs='+', default=[f'{x}-{k}' for x, k in SAMPLERS], help='sampler-steps, e.g. ddim-50')
    p.add_argument('--reuse', action='store_true', help="sample from the generators an earlier run left in --out instead of training")
    p.add_argument('--report-only', action='store_true', help="rewrite the tables and figure from --out/results.json")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='benchmarks/out/guidance')
    a = p.parse_args()
    if a.report_only: return report(json.loads(Path(a.out, 'results.json').read_text()), a)
    if a.guidance and min(a.guidance) < 1: p.error('--guidance values must be >= 1 (1 = no guidance)')
    run(a)


if __name__ == '__main__':
    main()
