"""What a study stage pays before it does any work: starting its Jupyter kernel and importing medsyn there.

`medsyn study` runs every stage of every cell in a fresh kernel through papermill (about 44 kernels in the quick study),
so a kernel's start-up is paid at every stage. Each row executes, with papermill and the study's own kernel settings
(IPC transport, `medsyn.core.kernel_config`), a two-cell notebook: the `parameters` cell and one import. Rows alternate
within each round, so that all of them see the same machine; the table gives the median over rounds.

- `x = 1`: the kernel alone (the floor);
- `import medsyn.stages`: what a stage's kernel imports now (nbs/06a_stages.ipynb);
- `import medsyn.study, medsyn.stages`: what it imported before the stages had a module of their own (the runner's
  papermill, nbformat, jsonschema and cluster executors on top of the stages' own imports).

    flock /tmp/medsyn-heavy.lock python benchmarks/kernel_start.py --rounds 5     # about 3 min on a 2-core CPU
"""
from __future__ import annotations
import argparse, json, platform, statistics, sys, tempfile, time
from pathlib import Path

ROWS = {'kernel alone': 'x = 1',
        'stage kernel now (import medsyn.stages)': 'import medsyn.stages',
        'stage kernel before (import medsyn.study, medsyn.stages)': 'import medsyn.study, medsyn.stages'}


def notebook(path: Path, source: str):
    import nbformat
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('p = 0'); params.metadata['tags'] = ['parameters']
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, str(path))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--json', help='write the numbers here')
    a = p.parse_args(argv)
    import papermill as pm
    import torch
    from medsyn.core import kernel_config
    times = {k: [] for k in ROWS}
    with tempfile.TemporaryDirectory(prefix='medsyn-kernel-bench-') as d:
        d = Path(d)
        for i, src in enumerate(ROWS.values()): notebook(d/f'{i}.ipynb', src)
        pm.execute_notebook(str(d/'0.ipynb'), str(d/'warm.ipynb'), kernel_name='python3', progress_bar=False,
                            config=kernel_config(d))                                  # warm the file cache once
        for r in range(a.rounds):
            for i, k in enumerate(ROWS):
                t = time.perf_counter()
                pm.execute_notebook(str(d/f'{i}.ipynb'), str(d/f'out-{i}.ipynb'), parameters={'p': r}, kernel_name='python3',
                                    progress_bar=False, config=kernel_config(d))
                times[k].append(time.perf_counter() - t)
            print(f"round {r + 1}/{a.rounds}: " + ', '.join(f"{v[-1]:.1f} s" for v in times.values()), file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    before, now, alone = med[list(ROWS)[2]], med[list(ROWS)[1]], med[list(ROWS)[0]]
    print(f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"median of {a.rounds} rounds\n")
    print('| kernel | seconds (median) | min-max |\n|---|---:|---:|')
    for k, v in times.items(): print(f"| {k} | {med[k]:.1f} | {min(v):.1f}-{max(v):.1f} |")
    print(f"\nper stage: {before - now:.1f} s saved ({before / now:.2f}x); the imports alone: "
          f"{before - alone:.1f} s -> {now - alone:.1f} s")
    if a.json: Path(a.json).write_text(json.dumps(dict(seconds=times, median=med), indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
