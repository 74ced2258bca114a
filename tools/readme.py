"""Generate README.md from nbs/index.ipynb (`python tools/readme.py`), or check it is current (`--check`).

It executes the notebook (its cells only read the committed `tables/`), drops the code of cells
marked `#| echo: false` or `#| hide`, keeps their output, and rewrites the notebook's `../` links
so they work from the repository root.

Why not nbdev's own `nbdev-readme`: it runs `quarto render nbs/index.ipynb -t gfm --no-execute`, and
- Quarto cannot be installed here: `quarto-cli` on PyPI is a source package whose build downloads
  the Quarto binary from GitHub (without network: "nothing to open"), and neither Debian nor npm
  packages Quarto; nbdev's own installer (`nbdev-install-quarto`) downloads it too;
- `--no-execute` renders the outputs committed in the notebook, and the notebooks are committed
  clean (no outputs): the README's results (tables, run times, provenance) are made by running the
  notebook's cells on `tables/`, so nbdev-readme would write a README without them;
- it leaves `../figures/...` and `../tables/...` links as they are in `nbs/`, broken from the root.
So this stays until nbdev-readme can execute the notebook and rewrite its links (`make docs`
builds the site with Quarto when it is installed, and without it otherwise: tools/docs.py).
"""
import re, sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbrun import execute   # noqa: E402  (tools/ is not a package)

ROOT = Path(__file__).resolve().parent.parent
HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n"


def render() -> str:
    nb = nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4)
    execute(nb, ROOT / "nbs", timeout=120)
    keep = []
    for c in nb.cells:
        lines = c.source.splitlines()
        flags = {l.replace(" ", "") for l in lines if l.startswith("#|")}
        if "#|hide" in flags:
            continue
        if c.cell_type == "code" and "#|echo:false" in flags:
            # keep only what the cell shows, as Markdown
            shown = [o.get("data", {}).get("text/markdown") or o.get("text", "") for o in c.get("outputs", [])]
            text = "\n\n".join(s.strip() for s in shown if s and s.strip()).replace("](../", "](")
            text = re.sub(r"\]\((\w+)\.ipynb\)", r"](nbs/\1.ipynb)", text)
            if text:
                keep.append(nbformat.v4.new_markdown_cell(text))
            continue
        else:
            c.source = "\n".join(l for l in lines if not l.startswith("#|"))
        if c.cell_type == "markdown":
            c.source = re.sub(r"\]\((\w+)\.ipynb\)", r"](nbs/\1.ipynb)", c.source.replace("](../", "]("))
        keep.append(c)
    nb.cells = keep
    body, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    while "\n\n\n" in body:
        body = body.replace("\n\n\n", "\n\n")
    return HEADER + body.strip() + "\n"


def main(argv):
    text, out = render(), ROOT / "README.md"
    if "--check" in argv:
        if not out.exists() or out.read_text() != text:
            print("README.md is out of date with nbs/index.ipynb and tables/: run `make readme`", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
