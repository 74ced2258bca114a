"""Execute the notebooks of `nbs/` and commit them with their outputs (`make nbs`), so that the pages of the
documentation site and GitHub show what each example prints and draws.

Size: what `make test` runs, nothing larger. Each example states its own size: the `smoke` preset, the
embedded 28 px data sets, a few training steps (about 10 min on 2 CPU cores for every notebook). The study
notebooks (`nbs/study/`) are papermill templates and stay without outputs: their executed copies live in
`runs/`. The notebooks are run by `nbdev-test --save` (the same runner, flags and working directory as the
tests), then tidied so that re-running gives a small diff:

- progress bars (tqdm's text on stderr: `\\r`, `it/s`) are dropped; warnings and other stderr stay;
- `nbdev-clean` removes execution counts and timing metadata (outputs are kept: `clear_all` is off).

Usage: `python tools/nbs.py [NOTEBOOK ...]` (default: every notebook of nbs/ outside nbs/study/).
"""
import json, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_BAR = re.compile(r'\r|\d+%\|| it/s\]|s/it\]|img-step/s')


def notebooks() -> list:
    return sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))


def tidy(path: Path) -> int:
    "Drop progress-bar outputs from `path`; how many."
    nb, n = json.loads(path.read_text()), 0
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        keep = [o for o in c.get('outputs', []) if not (o.get('output_type') == 'stream' and o.get('name') == 'stderr'
                                                        and _BAR.search(''.join(o.get('text', ''))))]
        n += len(c.get('outputs', [])) - len(keep)
        c['outputs'] = keep
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return n


def main(argv) -> int:
    paths = [Path(a).resolve() for a in argv] or notebooks()
    failed = []
    for p in paths:
        r = subprocess.run(['nbdev-test', '--save', '--n-workers', '1', str(p)], cwd=ROOT)
        if r.returncode: failed.append(p.name); continue
        dropped = tidy(p)
        print(f"{p.relative_to(ROOT)}: outputs saved ({dropped} progress bar(s) dropped)", flush=True)
    subprocess.run(['nbdev-clean'], cwd=ROOT, check=True)
    if failed: print(f"failed (left as they were): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
