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

Writes `--out`/results.json, tables/tstr_gap.{csv,md}.
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from time_to_quality import machine   # noqa: E402
from quality_vs_compute import tstr   # noqa: E402
from medsyn.core import load_settings, versions   # noqa: E402
from medsyn.data import load_medmnist, MedMNISTSplit, draw_indices, classical_augmentation   # noqa: E402
from medsyn.training import train_or_resume   # noqa: E402
from medsyn.sampling import load_model, generate   # noqa: E402
from medsyn.stats import mean_ci, fmt_ci, fmt_pm   # noqa: E402


def generator(ds:str, a, s) -> Path:
    "The data set's `cpu` generator: the one named in --model-dir, or trained here (kept across runs of this script)."
    given = dict(kv.split('=', 1) for kv in a.model_dir)
    if ds in given: return Path(given[ds])
    return train_or_resume(ds, 'l2', Path(a.out)/ds/'generator', s, progress=True)


def run_dataset(ds:str, a, s) -> list:
    tr, va, te = (load_medmnist(ds, sp) for sp in ('train', 'val', 'test'))
    t0 = time.perf_counter()
    net, sch, meta = load_model(generator(ds, a, s), ema=True)
    train_s = time.perf_counter() - t0
    K, C = max(a.per_class), te.n_classes
    labels = np.tile(np.arange(C), K)                    # class-interleaved: the first k*C images hold k of each class
    t0 = time.perf_counter()
    imgs = generate(net, sch, labels, s.sampler, s.sample_steps, seed=0, batch_size=250, null_class=meta['null_class'],
                    mixed_precision=s.mixed_precision, desc=f'{ds}: {K} per class')
    sample_s = time.perf_counter() - t0
    n_small = min(a.per_class) * C
    sets = {'real': tr, f'real@{n_small}': tr.subset(draw_indices(tr.labels, n_small, 0))}
    for k in sorted(a.per_class):
        sets[f'synthetic {k}/class'] = MedMNISTSplit(imgs[:k * C], labels[:k * C], ds, 'train', imgs.shape[1], te.info)
    aug = classical_augmentation(ds, tr.n_channels)
    rows = []
    for name, d in sets.items():
        for augmented in (False, True):
            t0 = time.perf_counter()
            aucs = [r['auc'] for r in tstr(d, va, te, s, a.seeds, aug if augmented else None)]
            rows.append(dict(dataset=ds, train_set=name, n=len(d), augmented=augmented, aucs=aucs, clf_s=round(time.perf_counter() - t0, 1),
                             generator_step=meta['step'], train_s=round(train_s, 1), sample_s=round(sample_s, 1)))
            print(f"{ds:15s} {name:22s} aug={augmented!s:5s} AUC {fmt_pm(np.mean(aucs), np.std(aucs, ddof=1), len(aucs))}", flush=True)
    return rows


def table(rows):
    "A row per (data set, training set, recipe): test AUC mean ± sd over seeds and the paired difference from real (same recipe)."
    import pandas as pd
    out = []
    for r in rows:
        ref = next(q for q in rows if q['dataset'] == r['dataset'] and q['train_set'] == 'real' and q['augmented'] == r['augmented'])
        d = np.subtract(r['aucs'], ref['aucs'])
        m, lo, hi = mean_ci(d)
        out.append({'data set': r['dataset'], 'training set': r['train_set'], 'images': r['n'],
                    'classifier': 'classical augmentation' if r['augmented'] else 'plain (the study\'s)',
                    'test AUC': fmt_pm(np.mean(r['aucs']), np.std(r['aucs'], ddof=1), len(r['aucs'])),
                    'Δ from real (same classifier)': '' if r['train_set'] == 'real' else fmt_ci(m, lo, hi, signed=True)})
    return pd.DataFrame(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--datasets', nargs='+', default=['pneumoniamnist', 'breastmnist'])
    p.add_argument('--model-dir', nargs='*', default=[], help='dataset=folder: a trained generator to reuse')
    p.add_argument('--per-class', nargs='+', type=int, default=[200, 1000], help='synthetic images per class (the cpu study: 200)')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4])
    p.add_argument('--preset', default='cpu')
    p.add_argument('--out', default='benchmarks/out/tstr_gap')
    a = p.parse_args()
    from medsyn.tables import write_table
    s = load_settings(a.preset)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    res = Path(a.out)/'results.json'
    rows = json.loads(res.read_text())['rows'] if res.exists() else []
    for ds in a.datasets:
        if any(r['dataset'] == ds for r in rows): continue          # a data set finished by an earlier run of this script
        rows += run_dataset(ds, a, s)
        res.write_text(json.dumps(dict(args=vars(a), machine=machine(), versions=versions(), rows=rows), indent=1))
    note = (f"`benchmarks/tstr_gap.py`: one `{a.preset}` L2 generator per data set; the `{a.preset}` preset's small CNN, "
            f"{len(a.seeds)} seeds, epoch chosen on the real validation split, tested on the real test split; Δ paired by seed, "
            f"95 % t-interval over seeds. {machine()}.")
    cap = "Train on synthetic, test on real: the gap against real-trained with the same classifier, plain and with classical augmentation."
    for f in write_table(table(rows), Path('tables'), 'tstr_gap', cap, note=note): print(f"wrote {f}")


if __name__ == '__main__':
    main()
