"""Generate README.md from nbs/index.ipynb (`python tools/readme.py`), or check it is current (`--check`).

nbdev's own `nbdev-readme` needs Quarto, whose installer downloads a binary; this does the same
job with nbconvert's Markdown exporter, which the project already depends on.
"""
import sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parent.parent
HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n"


def render() -> str:
    nb = nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4)
    # drop cells nbdev hides from docs and the `#|` directives of the rest
    keep = []
    for c in nb.cells:
        lines = c.source.splitlines()
        if any(l.strip() in ("#| hide", "#|hide") for l in lines):
            continue
        c.source = "\n".join(l for l in lines if not l.startswith("#|"))
        keep.append(c)
    nb.cells = keep
    body, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    return HEADER + body.strip() + "\n"


def main(argv):
    text, out = render(), ROOT / "README.md"
    if "--check" in argv:
        if not out.exists() or out.read_text() != text:
            print("README.md is out of date with nbs/index.ipynb: run `make readme`", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
