"""Image quality per CPU-minute: diffusion training recipes side by side at equal wall-clock, on each data set.

Each recipe is a settings line on top of a preset (`--preset`, default `cpu`): `name=key:value,key:value`, the same keys
as settings.ini and `medsyn train --key value`. Every recipe trains for the same wall-clock budget (`--seconds`, setup
included) with its learning-rate schedule planned to end at the budget: the number of steps is planned from the speed
measured after 20 steps and re-planned halfway through what is left (an interrupt and exact resume). Then each samples
the class mix of a class-stratified draw of `--n` real test images with the same sampler, seed and fp32 precision, and
is compared with those real images on fp32 Inception features: FID-64 and FID-2048 with bootstrap intervals, KID
(2048-d) with the 2.5-97.5 % range over subsets, precision/recall; the floor is a class-matched draw of as many real
training images against the same test images. Recipes run one after the other in one process, alternating data sets.

    flock /tmp/medsyn-heavy.lock python benchmarks/time_to_quality.py                  # the default search, ~1 h (2 cores)
    python benchmarks/time_to_quality.py --datasets breastmnist --seconds 60 --recipes current bf16=mixed_precision:bf16

(medsyn's recipe against diffusers' train_unconditional example defaults: benchmarks/time_to_quality_reference.py.)

`--bf16-features` also extracts every set's features under bf16 autocast and reports how far each FID/KID moves from
its fp32 value (the check before `fid_precision = bf16` may be adopted). Writes `results.json`, `results.csv`, a table
in Markdown and a grid of samples per recipe and data set in `--out`.
"""
from __future__ import annotations
import argparse, json, os, platform, shutil, sys, time
from pathlib import Path

import numpy as np

DEFAULT_RECIPES = [
    'current=',                                                # the cpu preset: v-prediction, cosine, AdamW 2e-3, EMA
    'bf16=mixed_precision:bf16',                               # the same, with bf16 autocast on the CPU
    'bf16+minsnr5=mixed_precision:bf16,min_snr_gamma:5',       # min-SNR-5 in its v form, min(SNR, 5)/(SNR + 1)
    'bf16+batch64=mixed_precision:bf16,batch_size:64',
    'bf16+ema-power=mixed_precision:bf16,ema_power:0.6667,ema_decay:0.9995',   # Karras' power warm-up, longer horizon
    'bf16+swin=mixed_precision:bf16,model:swin-small',
]


def parse_recipe(text: str) -> tuple[str, dict]:
    "'name=key:value,key:value' -> (name, {key: value}); values are parsed by the settings schema."
    from medsyn.core import parse_value
    name, _, body = text.partition('=')
    if not name: raise SystemExit(f"recipe {text!r}: expected name=key:value,...")
    kv = {}
    for item in filter(None, body.split(',')):
        k, sep, v = item.partition(':')
        if not sep: raise SystemExit(f"recipe {text!r}: {item!r} is not key:value")
        kv[k.strip()] = parse_value(k.strip(), v.strip())
    return name, kv


def train_budget(dataset: str, out: Path, seconds: float, preset: str, overrides: dict, seed: int = 0, device='auto') -> dict:
    """Train with `overrides` for `seconds` of wall clock, the schedule planned to end at the budget (planned from the
    speed after 20 steps, re-planned halfway through what is left: an interrupt and exact resume)."""
    from medsyn import diffusion as D, denoisers as N, sampling as S, training as T
    t0 = time.perf_counter()
    common = dict(preset=preset, progress=False, seed=seed, checkpoint_every=10**9, device=device, **overrides)
    planned, check_at, resume, plans, loss = 10**6, 20, False, [], common.pop('loss', 'l2')
    while True:
        stamps = {}
        def cb(step, loss):
            stamps[step] = time.perf_counter()
            if stamps[step] - t0 > seconds or step == check_at: raise KeyboardInterrupt
        try:
            T.train(dataset, loss, out, resume=resume, callback=cb, train_steps=planned, **common); break
        except KeyboardInterrupt: pass
        step = max(stamps)
        left = seconds - (time.perf_counter() - t0) - 4          # the final save
        if left <= 0: break
        ks = sorted(stamps)[2:]                                  # skip the first steps of a segment
        rate = (len(ks) - 1) / (stamps[ks[-1]] - stamps[ks[0]])
        planned, resume = step + max(1, int(left * rate)), True
        check_at = step + (planned - step) // 2 if planned - step > 40 else None
        plans.append(dict(at_step=step, rate_steps_per_s=round(rate, 3), planned=planned))
    ck = D.resolve_checkpoint(out)
    unet, sch, meta = S.load_model(ck, ema=True, device=device)
    bs = meta['settings']['batch_size']
    return dict(unet=unet, scheduler=sch, null_class=meta['null_class'], steps=meta['step'], plans=plans,
                seconds=time.perf_counter() - t0, images_seen=meta['step'] * bs, params=N.n_params(unet))


def quality(real_f: dict, syn_f: dict, floor_f: dict, n_boot: int, seed: int = 0) -> dict:
    "FID-64/2048 (bootstrap intervals) with floors, KID-2048 with its range over subsets, precision/recall."
    import torch
    from medsyn.metrics import fid_interval, prdc, _poly_mmd
    r = {}
    for d in (64, 2048):
        f = fid_interval(real_f[d], syn_f[d], n_boot, seed)
        r[f'fid{d}'], r[f'fid{d}_lo'], r[f'fid{d}_hi'] = f['value'], f['ci_low'], f['ci_high']
        r[f'fid{d}_floor'] = fid_interval(real_f[d], floor_f[d], 0, seed)['value']
    n = min(len(real_f[2048]), len(syn_f[2048])); m = n // 2
    g = torch.Generator().manual_seed(seed)
    rt, st = torch.from_numpy(real_f[2048].astype(np.float64)), torch.from_numpy(syn_f[2048].astype(np.float64))
    ks = torch.stack([_poly_mmd(rt[torch.randperm(len(rt), generator=g)[:m]], st[torch.randperm(len(st), generator=g)[:m]])
                      for _ in range(50)]).numpy()
    r['kid'], (r['kid_lo'], r['kid_hi']) = float(ks.mean()), np.quantile(ks, [0.025, 0.975]).tolist()
    p = prdc(real_f[2048], syn_f[2048], 5)
    r['precision'], r['recall'] = p['precision'], p['recall']
    return r


def search(a):
    import torch
    from medsyn import sampling as S
    from medsyn.core import load_settings, versions
    from medsyn.data import load_medmnist, image_grid, save_figure, class_rows, MedMNISTSplit
    from medsyn.features import image_features
    from medsyn.data import draw_indices
    recipes = [parse_recipe(r) for r in a.recipes]
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    s32, s16 = load_settings(a.preset), load_settings(a.preset, fid_precision='bf16')
    rows, real = [], {}
    for ds in a.datasets:                                        # the real sides, once per data set
        te, tr = load_medmnist(ds, 'test'), load_medmnist(ds, 'train')
        n = min(a.n, len(te))
        i_te = draw_indices(te.labels, n, a.seed)
        counts = {int(c): int((te.labels[i_te] == c).sum()) for c in np.unique(te.labels[i_te])}
        i_tr = draw_indices(tr.labels, n, a.seed + 3, counts=counts)
        real[ds] = dict(labels=te.labels[i_te], te=te.images[i_te], tr=tr.images[i_tr], split=te)
    for ds in a.datasets:
        R = real[ds]
        f_te, f_tr = image_features(R['te'], s32, desc=f'{ds} test'), image_features(R['tr'], s32, desc=f'{ds} train')
        for name, kv in recipes:
            run = out/ds/name
            if run.exists(): shutil.rmtree(run)
            print(f"\n== {ds} / {name} {kv or '(preset as is)'}: training {a.seconds:.0f} s", flush=True)
            r = train_budget(ds, run, a.seconds, a.preset, dict(kv), a.seed, a.device)
            t1 = time.perf_counter()
            imgs = S.generate(r['unet'], r['scheduler'], R['labels'], s32.sampler, s32.sample_steps, seed=a.seed,
                              batch_size=250, null_class=r['null_class'], progress=False)
            sample_s = time.perf_counter() - t1
            np.savez_compressed(run/'samples.npz', train_images=imgs, train_labels=R['labels'].astype(np.uint8).reshape(-1, 1))
            syn = MedMNISTSplit(imgs, R['labels'], ds, 'train', imgs.shape[1], R['split'].info)
            save_figure(image_grid(class_rows(syn, 10, a.seed), R['split'].label_names, title=f'{ds}: {name}'), run/'grid.png')
            t2 = time.perf_counter()
            f_syn = image_features(imgs, s32, cache=False, desc=f'{name} samples')
            fp32_s = time.perf_counter() - t2
            q = quality(f_te, f_syn, f_tr, a.n_bootstrap, a.seed)
            row = dict(dataset=ds, recipe=name, settings=';'.join(f'{k}={v}' for k, v in kv.items()) or '-', steps=r['steps'],
                       images_seen=r['images_seen'], train_s=round(r['seconds'], 1), params_M=round(r['params'] / 1e6, 2),
                       train_img_s=round(r['images_seen'] / r['seconds'], 1), sample_img_s=round(len(imgs) / sample_s, 1),
                       n=len(imgs), **{k: round(v, 5) for k, v in q.items()}, plans=r['plans'])
            if a.bf16_features:
                t3 = time.perf_counter()
                g16 = {'syn': image_features(imgs, s16, cache=False, progress=False)}
                row['inception_img_s_fp32'], row['inception_img_s_bf16'] = round(len(imgs) / fp32_s, 2), round(len(imgs) / (time.perf_counter() - t3), 2)
                g16.update({k: image_features(v, s16, progress=False) for k, v in (('te', R['te']), ('tr', R['tr']))})
                q16 = quality(g16['te'], g16['syn'], g16['tr'], a.n_bootstrap, a.seed)
                row.update({f'bf16_{k}': round(q16[k], 5) for k in ('fid64', 'fid64_floor', 'fid2048', 'fid2048_floor', 'kid')})
            rows.append(row)
            print({k: v for k, v in row.items() if k != 'plans'}, flush=True)
            (out/'results.json').write_text(json.dumps(dict(args=vars(a), machine=machine(), versions=versions(), rows=rows), indent=1, default=str))
    write_tables(rows, out, a)
    samples_figure(rows, out)


def samples_figure(rows, out: Path, path='figures/recipes_equal_time.png'):
    "One picture: for each data set (column) and recipe (row), 2 samples per class from its saved samples.npz."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from medsyn.data import save_figure
    dsets, recs = list(dict.fromkeys(r['dataset'] for r in rows)), list(dict.fromkeys(r['recipe'] for r in rows))
    fig, axs = plt.subplots(len(recs), len(dsets), figsize=(4.5 * len(dsets), 0.8 * len(recs) + 0.5), squeeze=False)
    for j, ds in enumerate(dsets):
        for i, rec in enumerate(recs):
            ax = axs[i, j]; ax.axis('off')
            f = out/ds/rec/'samples.npz'
            if not f.exists(): continue
            with np.load(f, allow_pickle=False) as z: x, y = z['train_images'], z['train_labels'].ravel()
            pick = np.concatenate([np.flatnonzero(y == c)[:max(2, 10 // len(np.unique(y)))] for c in np.unique(y)])[:10]
            strip = np.concatenate(list(x[pick]), axis=1)
            ax.imshow(strip, cmap='gray' if strip.ndim == 2 else None, vmin=0, vmax=255)
            r = next(r for r in rows if r['dataset'] == ds and r['recipe'] == rec)
            head = f"$\\bf{{{ds}}}$\n" if i == 0 else ''
            ax.set_title(f"{head}{rec}: FID-2048 {r['fid2048']:.0f} (floor {r['fid2048_floor']:.0f}), KID {1e3 * r['kid']:.0f}e-3", fontsize=8)
    fig.tight_layout(h_pad=0.3)
    Path(path).parent.mkdir(exist_ok=True)
    save_figure(fig, path)


def machine() -> str:
    import torch
    if torch.cuda.is_available(): return 'cuda: ' + torch.cuda.get_device_name(0)
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def write_tables(rows, out: Path, a):
    import pandas as pd
    df = pd.DataFrame([{k: v for k, v in r.items() if k != 'plans'} for r in rows])
    df.to_csv(out/'results.csv', index=False)
    f = lambda v, lo, hi, p=2: f"{v:.{p}f} [{lo:.{p}f}, {hi:.{p}f}]"
    md = ["| data set | recipe | steps | img/s | FID-64 | floor | FID-2048 | floor | ratio | KID-2048 (x1e3) | precision | recall |",
          "|---|---|---:|---:|---|---:|---|---:|---:|---|---:|---:|"]
    for _, r in df.iterrows():
        md.append(f"| {r.dataset} | {r.recipe} | {r.steps} | {r.train_img_s:.0f} | {f(r.fid64, r.fid64_lo, r.fid64_hi, 3)} | "
                  f"{r.fid64_floor:.3f} | {f(r.fid2048, r.fid2048_lo, r.fid2048_hi, 1)} | {r.fid2048_floor:.1f} | "
                  f"{r.fid2048 / r.fid2048_floor:.2f} | {f(r.kid * 1e3, r.kid_lo * 1e3, r.kid_hi * 1e3, 1)} | {r.precision:.2f} | {r.recall:.2f} |")
    if 'bf16_fid2048' in df:
        md += ["", "Inception in bf16 autocast vs fp32, the same images (relative change of each number):", "",
               "| data set | recipe | FID-64 | FID-2048 | floor-2048 | KID |", "|---|---|---:|---:|---:|---:|"]
        rel = lambda x, y: f"{(y - x) / abs(x):+.1%}" if x else 'n/a'
        for _, r in df.iterrows():
            md.append(f"| {r.dataset} | {r.recipe} | {rel(r.fid64, r.bf16_fid64)} | {rel(r.fid2048, r.bf16_fid2048)} | "
                      f"{rel(r.fid2048_floor, r.bf16_fid2048_floor)} | {rel(r.kid, r.bf16_kid)} |")
    text = '\n'.join(md) + '\n'
    (out/'results.md').write_text(text)
    print(f"\n{', '.join(a.datasets)}; {a.seconds:.0f} s of training per recipe; {a.n} images a side; {machine()}\n{text}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--datasets', nargs='+', default=['pneumoniamnist', 'breastmnist', 'retinamnist'])
    p.add_argument('--recipes', nargs='+', default=DEFAULT_RECIPES, help="name=key:value,... on top of --preset")
    p.add_argument('--preset', default='cpu')
    p.add_argument('--seconds', type=float, default=120, help='training wall-clock budget of each recipe')
    p.add_argument('--n', type=int, default=250, help='synthetic images per recipe, real test images compared, real training images of the floor')
    p.add_argument('--n-bootstrap', type=int, default=20)
    p.add_argument('--bf16-features', action='store_true', help='also compare every FID/KID computed on bf16-autocast Inception features')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='auto')
    p.add_argument('--out', default='benchmarks/out/time_to_quality')
    p.add_argument('--report-only', action='store_true', help='redraw the tables and the samples figure from --out/results.json')
    a = p.parse_args()
    if a.report_only:
        rows = json.loads(Path(a.out, 'results.json').read_text())['rows']
        write_tables(rows, Path(a.out), a); samples_figure(rows, Path(a.out)); return
    search(a)


if __name__ == '__main__':
    main()
