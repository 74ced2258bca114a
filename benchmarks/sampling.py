"""Sampling speed vs quality: any samplers and step counts (DDIM, DDPM, DPM-Solver++, UniPC) from the same medsyn checkpoint.

Both samplers draw `--per-class` images of every class with `medsyn.sampling.sample` (EMA weights, same seed, same
batch size) and are compared with the same real images (a seeded class-stratified subset of the test split of the
same size) by FID on 64-d Inception features and KID (medsyn.metrics; skipped with a note if it is not importable).

Checkpoint: `--checkpoint`, else the medsyn run of benchmarks/time_to_quality_reference.py if present, else a `small` model
trained here for `--train-seconds` on the data set.

    flock /tmp/medsyn-heavy.lock python benchmarks/sampling.py          # ~10 minutes on a 2-core CPU
    python benchmarks/sampling.py --checkpoint runs/x --per-class 500    # a trained model, more samples
    python benchmarks/sampling.py --checkpoint runs/quick/pneumoniamnist/l2/model \
        --samplers ddim:10,ddim:20,ddim:50,dpmsolver:10,dpmsolver:20,unipc:10,unipc:20   # FID against steps
    python benchmarks/sampling.py --checkpoint RUN --batch-size 2000 --compile reduce-overhead --mixed-precision bf16   # a GPU
"""
from __future__ import annotations
import argparse, json, os, time
from pathlib import Path

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--dataset', default='pneumoniamnist', help='data set of the model trained here when no checkpoint is given')
    p.add_argument('--train-seconds', type=float, default=150)
    p.add_argument('--per-class', type=int, default=50)
    p.add_argument('--batch-size', type=int, default=100)
    p.add_argument('--samplers', default='ddim:50,ddpm:1000', help='comma-separated sampler:steps')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='auto')
    p.add_argument('--compile', default='no', help='compile setting of the denoiser (no, default, reduce-overhead, max-autotune)')
    p.add_argument('--mixed-precision', default='no', help='bf16 autocast of the denoiser, on a GPU or a CPU (no, bf16)')
    p.add_argument('--out', default='benchmarks/out/sampling')
    a = p.parse_args()
    import torch
    from medsyn import diffusion as D, sampling as S, training as T
    from medsyn.core import load_json, load_settings
    from medsyn.data import load_medmnist, stratified_indices
    try:
        from medsyn.features import image_features
        from medsyn.metrics import fid_from_features, kid_from_features
    except ImportError as e:
        image_features = None; print(f"medsyn.metrics not importable ({e}): FID/KID skipped")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    ck = a.checkpoint
    if ck is None and D.checkpoints('benchmarks/out/time_to_quality_reference/medsyn'): ck = 'benchmarks/out/time_to_quality_reference/medsyn'
    if ck is None:
        t0 = time.perf_counter()
        def guard(step, loss):
            if time.perf_counter() - t0 > a.train_seconds: raise KeyboardInterrupt
        try: T.train(a.dataset, 'l2', out/'run', preset='quick', progress=False, callback=guard, checkpoint_every=10**9, device=a.device)
        except KeyboardInterrupt: pass
        ck = out/'run'
    ck = D.resolve_checkpoint(ck)
    meta = load_json(ck/'medsyn.json')
    print(f"checkpoint {ck}: {meta['flag']}, {meta['loss']} loss, step {meta['step']}", flush=True)
    real = load_medmnist(meta['flag'], 'test', meta['image_size'])
    n = a.per_class * meta['n_classes']
    # the real comparison set: per_class images of each class (as many as the test split has)
    ridx = stratified_indices(real.labels, per_class=a.per_class, seed=a.seed)
    fr = image_features(real.images[ridx], progress=False) if image_features else None
    saved = {k: v for k, v in meta['settings'].items() if k != 'preset'}
    s = load_settings(meta['settings'].get('preset'), **{**saved, 'compile': a.compile, 'mixed_precision': a.mixed_precision, 'device': a.device})
    rows = []
    for spec in a.samplers.split(','):
        sampler, steps = spec.split(':'); steps = int(steps)
        f = S.sample(ck, a.per_class, out/f'{sampler}{steps}.npz', sampler, steps, seed=a.seed, batch_size=a.batch_size,
                     device=a.device, progress=False, settings=s)
        side = load_json(f.with_suffix('.json'))
        row = dict(sampler=sampler, steps=steps, n=side['n_images'], seconds=side['seconds'], images_per_s=side['images_per_s'])
        if fr is not None:
            with np.load(f) as z: ff = image_features(z['train_images'], progress=False, cache=False)
            row['fid64'] = fid_from_features(fr[64], ff[64])
            row['kid64'] = kid_from_features(fr[64], ff[64], min(50, n // 2), 20, seed=a.seed)
        rows.append(row)
        print(f"  {sampler}-{steps}: {row['images_per_s']:.2f} img/s" + (f", FID-64 {row['fid64']:.3f}" if 'fid64' in row else ''), flush=True)
    dev = 'cuda: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f'cpu ({os.cpu_count()} cores)'
    print(f"\n{meta['flag']}, checkpoint step {meta['step']} ({meta['model']} UNet), {n} images per sampler, "
          f"batch {a.batch_size}, on {dev}; real: {len(ridx)} test images")
    print(f"{'sampler':<12}{'img/s':>9}{'seconds':>9}{'FID-64':>9}{'KID-64 (mean±sd)':>20}")
    for r in rows:
        q = f"{r['fid64']:>9.3f}{r['kid64'][0]:>12.4f}±{r['kid64'][1]:.4f}" if 'fid64' in r else '   (no medsyn.metrics)'
        print(f"{r['sampler']}-{r['steps']:<7}{r['images_per_s']:>9.2f}{r['seconds']:>9.1f}{q}")
    (out/'results.json').write_text(json.dumps(dict(args=vars(a), device=dev, checkpoint=str(ck), rows=rows), indent=2))


if __name__ == '__main__':
    main()
