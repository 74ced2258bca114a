"""Where does the train-on-synthetic gap come from, and does the classifier's recipe close it? (issue 22's TSTR target)

In the committed `cpu` study a CNN trained only on synthetic images (TSTR) sits 0.025 AUC below the real-trained one on
PneumoniaMNIST and 0.046 on BreastMNIST, and neither more training minutes, five times the synthetic images nor
classifier-free guidance moved it (benchmarks/RESULTS.md). This asks what is left: the classifier side.

For each data set, one generator of the `cpu` preset (`--model-dir dataset=folder` to reuse one, else trained here with the
study's own `train_or_resume` into `--out/<dataset>/generator`) samples `max(--per-class)` images of each class once (the
preset's sampler, seed 0). The preset's small CNN is then trained on each of these sets, `--seeds` seeds each, its epoch
chosen on the real validation split, and tested on the whole real test split:

- `real`: the real training split (the images the generator saw);
- `real@n`: a class-stratified draw (seed 0) of as many real training images as the smaller synthetic set holds: what a
  perfect generator's images of that count would give;
- `synthetic k/class`: the first k synthetic images of each class, for each k in `--per-class`;

each plain (the study's recipe) and with the data set's classical augmentation (`medsyn.data.classical_augmentation`,
the scarce-data arms' policy), the same for real and synthetic images. Paired by seed, TSTR - real with a t-interval
over seeds, plain against plain and augmented against augmented.

Which images each model saw: the generator, the real training split; each classifier, only its own training set and the
validation split (to choose its epoch); no model sees a test image before testing.

    flock /tmp/medsyn-heavy.lock python benchmarks/tstr_gap.py          # 1.5-2 h per data set on a 2-core AVX2 CPU (fp32)

Another generator recipe, as a settings line (the table gets its own name, the out folder its own results), e.g. unet-base
and unet-tiny at unet-small's 35 minutes (steps from each one's step time on that CPU: a base step costs 6.7x a small one,
a tiny one 0.17x), then the three side by side:

    python benchmarks/tstr_gap.py --datasets breastmnist --per-class 200 --recipes plain --set model=unet-base \
        train_steps=360 checkpoint_every=360 --out benchmarks/out/tstr_gap_unet_base --name tstr_gap_unet_base
    python benchmarks/tstr_gap.py --datasets breastmnist --per-class 200 --recipes plain --set model=unet-tiny \
        train_steps=14600 checkpoint_every=14600 --out benchmarks/out/tstr_gap_unet_tiny --name tstr_gap_unet_tiny
    python benchmarks/tstr_gap.py --datasets breastmnist --per-class 200 --name tstr_gap_model_size --compare \
        unet-small=benchmarks/out/tstr_gap unet-tiny=benchmarks/out/tstr_gap_unet_tiny unet-base=benchmarks/out/tstr_gap_unet_base

Writes `--out`/results.json (FID and KID of each generator's smaller set beside the AUCs), tables/`--name`.{csv,md}; keeps
the samples in `--out`/<dataset>/synthetic_<k>.npz. Samples side by side, from the kept sets of several runs:

    python benchmarks/tstr_gap.py --datasets breastmnist --per-class 200 \
        --grid unet-small=benchmarks/out/tstr_gap unet-base=benchmarks/out/tstr_gap_unet_base
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from time_to_quality import machine   # noqa: E402
from quality_vs_compute import tstr   # noqa: E402
from medsyn.core import load_settings, versions, load_json   # noqa: E402
from medsyn.data import (load_medmnist, MedMNISTSplit, draw_indices, classical_augmentation, write_synthetic,   # noqa: E402
                         load_synthetic, medmnist_info, class_grid)
from medsyn.diffusion import checkpoints, MARKER   # noqa: E402
from medsyn.metrics import evaluate   # noqa: E402
from medsyn.figures import save_fig   # noqa: E402
from medsyn.tables import write_table   # noqa: E402
from medsyn.training import train_or_resume   # noqa: E402
from medsyn.sampling import load_model, generate   # noqa: E402
from medsyn.stats import mean_ci, fmt_ci, fmt_pm   # noqa: E402


def generator(ds:str, a, s) -> Path:
    "The data set's `cpu` generator: the one named in --model-dir, or trained here (kept across runs of this script)."
    given = pairs(a.model_dir)
    if ds in given: return Path(given[ds])
    return train_or_resume(ds, 'l2', Path(a.out)/ds/'generator', s, progress=True)


def fidelity_row(ds:str, imgs, labels, s, step:int) -> dict:
    "FID-64/2048 with floors and intervals and KID of a synthetic set (the study's evaluation: `s`'s test-split draw, n images a side)."
    res = evaluate(ds, MedMNISTSplit(imgs, labels, ds, 'train', imgs.shape[1], medmnist_info(ds)), 'test', s, progress=True)
    f = {d: {k: res['fid'][d][k] for k in ('value', 'ci_low', 'ci_high')} | {'floor': res['fid'][d]['floor']['value']} for d in ('64', '2048')}
    print(f"{ds}: step {step}, n={res['real']['n']}: FID-64 {f['64']['value']:.3f} (floor {f['64']['floor']:.3f}), "
          f"FID-2048 {f['2048']['value']:.1f} (floor {f['2048']['floor']:.1f}), KID {res['kid']['mean']:.4f}", flush=True)
    return dict(images=len(imgs), n=res['real']['n'], fid=f, kid={k: res['kid'][k] for k in ('mean', 'std', 'floor_mean')})


def samples(ds:str, a, s, K:int, C:int) -> tuple:
    "(images, labels, the generator's step, seconds to train or load it, seconds to sample): K per class, class-interleaved."
    t0 = time.perf_counter()
    net, sch, meta = load_model(generator(ds, a, s), ema=True)
    train_s = time.perf_counter() - t0
    labels = np.tile(np.arange(C), K)                    # class-interleaved: the first k*C images hold k of each class
    kept = Path(a.out)/ds/f'synthetic_{K}.npz'           # kept, so a stopped run resumes here
    if kept.exists():
        return load_synthetic(kept, ds).images, labels, meta['step'], train_s, load_json(kept.with_suffix('.json'))['sample_s']
    t0 = time.perf_counter()
    imgs = generate(net, sch, labels, s.sampler, s.sample_steps, seed=0, batch_size=250, null_class=meta['null_class'],
                    mixed_precision=s.mixed_precision, desc=f'{ds}: {K} per class')
    sample_s = time.perf_counter() - t0
    write_synthetic(kept, imgs, labels, ds, generator_step=meta['step'], sample_s=round(sample_s, 1))
    return imgs, labels, meta['step'], train_s, sample_s


def run_dataset(ds:str, a, s) -> list:
    tr, va, te = (load_medmnist(ds, sp) for sp in ('train', 'val', 'test'))
    K, C, n_small = max(a.per_class), te.n_classes, min(a.per_class) * te.n_classes
    imgs, labels, step, train_s, sample_s = samples(ds, a, s, K, C)
    fid = fidelity_row(ds, imgs[:n_small], labels[:n_small], s, step)
    sets = {'real': tr, f'real@{n_small}': tr.subset(draw_indices(tr.labels, n_small, 0))}
    for k in sorted(a.per_class):
        sets[f'synthetic {k}/class'] = MedMNISTSplit(imgs[:k * C], labels[:k * C], ds, 'train', imgs.shape[1], te.info)
    aug = classical_augmentation(ds, tr.n_channels)
    rows = []
    for name, d in sets.items():
        for augmented in [r == 'augmented' for r in a.recipes]:
            t0 = time.perf_counter()
            aucs = [r['auc'] for r in tstr(d, va, te, s, a.seeds, aug if augmented else None)]
            rows.append(dict(dataset=ds, train_set=name, n=len(d), augmented=augmented, aucs=aucs, clf_s=round(time.perf_counter() - t0, 1),
                             generator_step=step, train_s=round(train_s, 1), sample_s=round(sample_s, 1), fidelity=fid))
            print(f"{ds:15s} {name:22s} aug={augmented!s:5s} AUC {fmt_pm(np.mean(aucs), np.std(aucs, ddof=1), len(aucs))}", flush=True)
    return rows


def fid_cell(r) -> str:
    "The generator's FID-2048 with its interval and floor, on a synthetic row whose run measured it."
    f = r.get('fidelity')
    if not f or not r['train_set'].startswith('synthetic') or r['n'] != f['images']: return ''   # measured on the smaller set
    g = f['fid']['2048']
    return f"{g['value']:.1f} [{g['ci_low']:.1f}, {g['ci_high']:.1f}] ({g['floor']:.1f}), n={f['n']}"


def samples_grid(ds:str, gens:dict, k:int, n:int=8) -> list:
    "Per class a row of real training images, then one per generator of its kept k-per-class samples: figures/tstr_gap_<ds>_samples."
    fig = class_grid(load_medmnist(ds, 'train'), {g: load_synthetic(Path(out)/ds/f'synthetic_{k}.npz', ds) for g, out in gens.items()},
                     n, title=f"{ds}: real images and each generator's samples")
    return save_fig(fig, 'figures', f'tstr_gap_{ds}_samples')


def train_minutes(folder) -> float:
    "Minutes of optimiser steps of a generator, from its loss log (`log_every` steps per row at `images_per_s`) and its recorded batch."
    log, rec = pd.read_csv(Path(folder)/'loss.csv'), load_json(checkpoints(folder)[-1]/MARKER)['settings']
    steps = log['step'].diff().fillna(log['step'].iloc[0])
    return float((steps * rec['batch_size'] * rec['grad_accum'] / log['images_per_s']).sum() / 60)


def compare(ds:str, gens:dict, k:int):
    "One row per generator (label=--out of an earlier run): steps, minutes, FID, KID, TSTR of its k/class set, paired against the first."
    out, base = [], None
    for g, folder in gens.items():
        rows = [r for r in json.loads((Path(folder)/'results.json').read_text())['rows'] if r['dataset'] == ds and not r['augmented']]
        syn = next(r for r in rows if r['train_set'] == f'synthetic {k}/class')
        ref = next(r for r in rows if r['train_set'] == f'real@{syn["n"]}')
        base = syn if base is None else base
        f, kid = syn['fidelity']['fid'], syn['fidelity']['kid']
        out.append({'data set': ds, 'generator': g, 'steps': syn['generator_step'],
                    'training min': round(train_minutes(Path(folder)/ds/'generator'), 1),
                    'FID-64 (floor)': f"{f['64']['value']:.3f} ({f['64']['floor']:.3f})",
                    'FID-2048 (floor)': f"{f['2048']['value']:.1f} [{f['2048']['ci_low']:.1f}, {f['2048']['ci_high']:.1f}] ({f['2048']['floor']:.1f})",
                    'KID x1e3 (floor)': f"{1e3 * kid['mean']:.1f} ± {1e3 * kid['std']:.1f} ({1e3 * kid['floor_mean']:.1f})",
                    f'TSTR AUC, {k}/class': fmt_pm(np.mean(syn['aucs']), np.std(syn['aucs'], ddof=1), len(syn['aucs'])),
                    f'Δ from real@{syn["n"]}': fmt_ci(*mean_ci(np.subtract(syn['aucs'], ref['aucs'])), signed=True),
                    f'Δ from {next(iter(gens))}': '' if syn is base else fmt_ci(*mean_ci(np.subtract(syn['aucs'], base['aucs'])), signed=True)})
    return pd.DataFrame(out)


def table(rows):
    "A row per (data set, training set, recipe): test AUC mean ± sd over seeds and the paired difference from real (same recipe)."
    out = []
    for r in rows:
        ref = next(q for q in rows if q['dataset'] == r['dataset'] and q['train_set'] == 'real' and q['augmented'] == r['augmented'])
        d = np.subtract(r['aucs'], ref['aucs'])
        m, lo, hi = mean_ci(d)
        out.append({'data set': r['dataset'], 'training set': r['train_set'], 'images': r['n'],
                    'classifier': 'classical augmentation' if r['augmented'] else 'plain (the study\'s)',
                    'test AUC': fmt_pm(np.mean(r['aucs']), np.std(r['aucs'], ddof=1), len(r['aucs'])),
                    'Δ from real (same classifier)': '' if r['train_set'] == 'real' else fmt_ci(m, lo, hi, signed=True),
                    "generator's FID-2048 (floor)": fid_cell(r)})
    return pd.DataFrame(out)


def key_value(s:str) -> str:
    "An argparse type for NAME=VALUE arguments: the string back (as the run record keeps it), or a message naming what was wrong."
    if '=' not in s or not s.split('=', 1)[0]: raise argparse.ArgumentTypeError(f"{s!r}: expected NAME=VALUE, a name before the '='")
    return s


def pairs(args:list) -> dict:
    "NAME=VALUE arguments (checked by `key_value`) as {NAME: VALUE}."
    return dict(s.split('=', 1) for s in args)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--datasets', nargs='+', default=['pneumoniamnist', 'breastmnist'])
    p.add_argument('--model-dir', nargs='*', default=[], type=key_value, metavar='DATASET=FOLDER', help='dataset=folder: a trained generator to reuse')
    p.add_argument('--per-class', nargs='+', type=int, default=[200, 1000], help='synthetic images per class (the cpu study: 200)')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4])
    p.add_argument('--preset', default='cpu')
    p.add_argument('--out', default='benchmarks/out/tstr_gap')
    p.add_argument('--name', default='tstr_gap', help='the table: tables/<name>.{csv,md}')
    p.add_argument('--recipes', nargs='+', choices=['plain', 'augmented'], default=['plain', 'augmented'],
                   help="the classifier's recipes: the study's (plain) and with classical augmentation")
    p.add_argument('--set', nargs='*', default=[], type=key_value, metavar='KEY=VALUE', help="settings over the preset's (the generator's recipe)")
    p.add_argument('--grid', nargs='+', default=[], type=key_value, metavar='LABEL=OUT',
                   help="only draw figures/tstr_gap_<dataset>_samples from the kept samples of earlier runs' --out folders")
    p.add_argument('--compare', nargs='+', default=[], type=key_value, metavar='LABEL=OUT',
                   help="only tabulate earlier runs' generators side by side (tables/<name>), paired against the first")
    a = p.parse_args()
    if a.compare:
        gens = pairs(a.compare)
        T = pd.concat([compare(ds, gens, min(a.per_class)) for ds in a.datasets])
        cap = "Generators at equal training minutes: image quality and train-on-synthetic AUC"
        note = (f"`benchmarks/tstr_gap.py --compare`: each generator's {min(a.per_class)} samples per class; FID with its bootstrap "
                f"interval and the real-vs-real floor at the same n, KID mean ± sd over subsets; TSTR: the `{a.preset}` preset's small "
                f"CNN, {len(a.seeds)} seeds; Δ paired by classifier seed, 95 % t-interval over seeds; one generator each. {machine()}.")
        for f in write_table(T, Path('tables'), a.name, cap, note=note): print(f"wrote {f}")
        return
    if a.grid:
        for ds in a.datasets: print('wrote', *samples_grid(ds, pairs(a.grid), min(a.per_class)))
        return
    s = load_settings(a.preset, **pairs(a.set))     # parsed and checked by the settings schema
    Path(a.out).mkdir(parents=True, exist_ok=True)
    res = Path(a.out)/'results.json'
    prev = json.loads(res.read_text()) if res.exists() else {}
    rows, runs = prev.get('rows', []), prev.get('runs', [prev['args']] if 'args' in prev else [])
    runs.append(dict(vars(a), started=time.strftime('%Y-%m-%d %H:%M')))     # every invocation that added to the rows
    for ds in a.datasets:
        done = [r for r in rows if r['dataset'] == ds]               # a data set finished by an earlier run of this script
        if done and 'fidelity' not in done[0]:                        # ... before FID was measured here: the smaller set's, sampled anew
            C, k = load_medmnist(ds, 'test').n_classes, min(a.per_class)
            imgs, labels, step, *_ = samples(ds, a, s, k, C)
            fid = fidelity_row(ds, imgs, labels, s, step)
            for r in done: r['fidelity'] = fid
        if not done: rows += run_dataset(ds, a, s)
        res.write_text(json.dumps(dict(runs=runs, machine=machine(), versions=versions(), rows=rows), indent=1))
    recipe = f" ({', '.join(a.set)})" if a.set else ''
    note = (f"`benchmarks/tstr_gap.py`: one `{a.preset}`{recipe} L2 generator per data set; the `{a.preset}` preset's small CNN, "
            f"{len(a.seeds)} seeds, epoch chosen on the real validation split, tested on the real test split; Δ paired by seed, "
            f"95 % t-interval over seeds. {machine()}.")
    cap = "Train on synthetic, test on real: the gap against real-trained with the same classifier, plain and with classical augmentation."
    for f in write_table(table(rows), Path('tables'), a.name, cap, note=note): print(f"wrote {f}")


if __name__ == '__main__':
    main()
