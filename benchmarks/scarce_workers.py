"""Why `scarce_workers` 2 on a 2-core CPU: one process with every thread against one process per core, side by side.

The scarce-data stage trains many small models (subset generators, classifier arms) whose steps are too small to keep
two threads busy. This times the two workloads it is made of, the small CNN's training step (batches of 32, bf16 where
the CPU has AMX) and unet-small's (batches of 32), three ways in one run: one process with 1 thread, one process with
all `--threads` threads, and `--threads` processes at once with 1 thread each (what `medsyn.scarce.run_draws` does). The
table gives the work done per second by all processes together, and its ratio to the one-process, all-threads row.

    flock /tmp/medsyn-heavy.lock python benchmarks/scarce_workers.py          # about 2 min on a 2-core CPU
"""
from __future__ import annotations
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from time_to_quality import machine   # noqa: E402


def one(workload:str, steps:int) -> float:
    "Median seconds per training step of `workload` in this process (its threads set by the caller)."
    import torch                                     # in the child only, after the parent set its OMP_NUM_THREADS
    from medsyn.classify import build_classifier
    from medsyn.core import bf16_fast
    from medsyn.denoisers import make_unet
    bf16 = bf16_fast('cpu')                          # the precision the scarce-data stage's `auto` picks
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 28, 28, generator=g)
    if workload == 'cnn':
        m = build_classifier('cnn', 1, 2, verbose=False).to(memory_format=torch.channels_last)
        x, y = x.to(memory_format=torch.channels_last), torch.randint(0, 2, (32,), generator=g)
        f = lambda: torch.nn.functional.cross_entropy(m(x), y)
    else:
        m = make_unet(1, 2, 28, 'small')
        t, c = torch.randint(0, 1000, (32,), generator=g), torch.randint(0, 2, (32,), generator=g)
        f = lambda: (m(x, t, class_labels=c).sample - x).pow(2).mean()
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            loss = f()
        opt.zero_grad(); loss.backward(); opt.step()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts[2:])


def run(workload:str, steps:int, threads:int, procs:int) -> float:
    "Steps per second of `procs` processes at once, `threads` threads each, all together."
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, '--_one', workload, '--steps', str(steps)]
    ps = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    outs = [p.communicate()[0] for p in ps]
    if any(p.returncode for p in ps): raise SystemExit(f"a {workload} process failed")
    return sum(1 / json.loads(o.strip().splitlines()[-1])['sec_per_step'] for o in outs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threads', type=int, default=os.cpu_count() or 2)
    p.add_argument('--cnn-steps', type=int, default=60); p.add_argument('--unet-steps', type=int, default=20)
    p.add_argument('--json'); p.add_argument('--_one', help=argparse.SUPPRESS); p.add_argument('--steps', type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._one:
        import torch
        torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
        print(json.dumps(dict(sec_per_step=one(a._one, a.steps)))); return
    n = a.threads
    rows = []
    for w, steps, unit in (('cnn', a.cnn_steps, 32), ('unet-small', a.unet_steps, 32)):
        r = {'1 process, 1 thread': run(w, steps, 1, 1), f'1 process, {n} threads': run(w, steps, n, 1),
             f'{n} processes, 1 thread each': run(w, steps, 1, n)}
        base = r[f'1 process, {n} threads']
        for k, v in r.items():
            rows.append(dict(workload=w, layout=k, steps_per_s=v, images_per_s=v * unit, vs_all_threads=v / base))
            print(f"{w}: {k}: {v * unit:.0f} images/s", file=sys.stderr)
    print(f"| workload (batches of 32) | layout | images/s, all processes | vs 1 process, {n} threads |")
    print('|---|---|---:|---:|')
    for r in rows: print(f"| {r['workload']} | {r['layout']} | {r['images_per_s']:.0f} | {r['vs_all_threads']:.2f}x |")
    print(f"\n{machine()}; median step over {a.cnn_steps} (CNN) and "
          f"{a.unet_steps} (unet-small) steps per process. `benchmarks/scarce_workers.py`.")
    if a.json:
        with open(a.json, 'w') as f: json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
