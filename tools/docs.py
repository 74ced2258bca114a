"""Build the documentation site into `_docs/` (`make docs`), offline, from the notebooks in `nbs/`.

nbdev does the part that makes a notebook a documentation page: `refresh_quarto_yml`, `nbdev_sidebar`
and `proc_nbs` write `_proc/`, one processed notebook per page, with the API reference (`show_doc`) of
every exported name rendered, `#| hide` cells dropped and each page's title, description and file
name in its front matter. What turns `_proc/` into HTML depends on what is installed:

- **Quarto** on the PATH (`quarto`): nbdev's own renderer (`render_quarto`, what `nbdev-docs` runs), the
  site GitHub Pages gets (`.github/workflows/deploy.yaml`).
- **No Quarto**: nbconvert renders every processed notebook to one HTML page, with a sidebar in the
  order of `nbs/sidebar.yml`. Quarto cannot be installed offline: `quarto-cli` on PyPI is a 5 kB
  source package whose build downloads the Quarto binary from GitHub (and fails with "nothing to
  open" without network), and neither Debian nor npm packages Quarto. So `make docs` on a fresh clone
  and in CI uses this path.

Three steps go beyond `nbdev-docs`, on both paths:

- `proc_nbs` executes, besides the exported cells, every cell that imports something; here that
  would be tests that train models (nbdev's FAQ: "cells containing imports and other code"). The
  build evaluates only exported cells and cells that consist of imports alone.
- `nbs/index.ipynb` is executed (its cells only read the committed `tables/`), so the home page shows
  today's results, as README.md does.
- Pages link the committed figures as `../figures/...` (right beside the notebooks, in the
  repository); the build copies `figures/` into the site and points those links at the copy.

`tools/check_docs.py` then fails on a missing page, a broken link, image or anchor, or an error
output (run by `make docs`).
"""
import html, os, re, shutil, subprocess, sys
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbrun import execute   # noqa: E402  (tools/ is not a package)

ROOT = Path(__file__).resolve().parent.parent
SITE_URL = "https://medsyn.github.io/medsyn/"


def _only_exports_and_imports():
    "Make nbdev's doc build evaluate exported cells and import-only cells, not tests that mix both."
    import ast
    import nbdev.processors as P
    orig = P._do_eval
    P.warn = lambda *a, **k: None   # its "imports and other code" warning is about what this patch skips
    def _do_eval(cell):
        if not orig(cell): return None
        if cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}: return True
        if P._show_docs(cell.parsed_()): return True
        return all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in cell.parsed_()) or None
    P._do_eval = _do_eval


def process() -> Path:
    "nbdev's notebook processing into `_proc/` (what `nbdev-proc-nbs` does, without installing Quarto)."
    os.chdir(ROOT)
    import nbdev.doclinks
    from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
    from nbdev.serve import proc_nbs
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    nbdev_sidebar.__wrapped__()
    _only_exports_and_imports()
    cache = proc_nbs(n_workers=0, force=True)   # in this process, so the patch above applies
    _execute_index(cache)
    _figures(cache)
    return cache


def _execute_index(cache: Path):
    "Execute the pages made from the committed tables (the home page and the results page), so they show today's."
    for name in ('index.ipynb', 'results.ipynb'):
        p = cache/name
        nb = nbformat.read(p, as_version=4)
        execute(nb, ROOT/'nbs')
        nbformat.write(nb, p)


def _figures(cache: Path):
    "Copy the committed figures beside the pages and point `../figures/` (and `../../figures/`) links at them."
    import nbformat
    if (ROOT/'figures').exists(): shutil.copytree(ROOT/'figures', cache/'figures', dirs_exist_ok=True)
    for p in cache.rglob('*.ipynb'):
        depth = len(p.relative_to(cache).parts) - 1
        new = '../' * depth + 'figures/'
        old = '../' * (depth + 1) + 'figures/'
        text = p.read_text()
        if old in text: p.write_text(text.replace(old, new))


# ---------------------------------------------------------------- rendering without Quarto

CSS = """
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.5;color:#212529}
nav#sidebar{position:fixed;top:0;left:0;bottom:0;width:15rem;overflow:auto;padding:1rem;background:#f7f7f9;border-right:1px solid #ddd;font-size:.9rem}
nav#sidebar a{display:block;color:#2c3e50;text-decoration:none;padding:.1rem 0}
nav#sidebar a.active{font-weight:bold;color:#0d6efd}
nav#sidebar .section{margin-top:.8rem;font-weight:bold;text-transform:capitalize}
nav#sidebar .section + div a{padding-left:.6rem}
main{margin-left:17rem;max-width:60rem;padding:1rem 2rem}
p.description{font-size:1.15rem;color:#6c757d}
pre{background:#f8f9fa;padding:.6rem;overflow:auto;border-radius:4px;white-space:pre-wrap;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ddd;padding:.2rem .5rem}
img{max-width:100%}
details{background:#f1f6ff;border:1px solid #cfe0ff;border-radius:4px;padding:.4rem .8rem;margin:.5rem 0}
.jp-InputPrompt,.jp-OutputPrompt{display:none}
"""


# formulas ($...$) typeset offline: MathJax 2 from the jupyter-server-mathjax package (a dev dependency), copied into the site;
# it ships the STIX-Web fonts only (no TeX fonts), so MathJax is told to use them rather than to look for fonts it lacks
MATHJAX = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({{tex2jax: {{inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], '
           'processEscapes: true}}, messageStyle: "none", '
           '"HTML-CSS": {{availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null}}}});</script>'
           '<script src="{root}mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"></script>')


def _mathjax(dest: Path):
    "Copy MathJax into the site (no CDN: the pages are read offline too)."
    import jupyter_server_mathjax
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent/'static', dest/'mathjax')


def _front_matter(nb):
    if nb.cells and nb.cells[0].cell_type == 'raw' and nb.cells[0].source.startswith('---'):
        fm = yaml.safe_load(nb.cells[0].source.strip().strip('-')) or {}
        nb.cells = nb.cells[1:]
        return fm
    return {}


def _pages(cache: Path):
    "Processed notebooks in sidebar order: (section or None, notebook path, output path, front matter)."
    import nbformat
    side = yaml.safe_load((cache/'sidebar.yml').read_text())['website']['sidebar']['contents']
    entries = []
    def walk(items, section):
        for it in items:
            if isinstance(it, dict): walk(it['contents'], it.get('section'))
            else: entries.append((section, it))
    walk(side, None)
    pages = []
    for section, rel in entries:
        p = cache/rel
        nb = nbformat.read(p, as_version=4)
        fm = _front_matter(nb)
        out = Path(rel).parent/(fm.get('output-file') or Path(rel).with_suffix('.html').name)
        pages.append((section, Path(rel), out, fm, nb))
    return pages


def _rel(frm: Path, to: Path) -> str:
    return os.path.relpath(to, frm.parent).replace(os.sep, '/')


def render_html(cache: Path, dest: Path):
    "Each processed notebook as one HTML page, with a sidebar; links between notebooks point at pages."
    from nbconvert import HTMLExporter
    from pygments.formatters import HtmlFormatter
    pages = _pages(cache)
    targets = {str(rel): out for _, rel, out, _, _ in pages}
    from traitlets.config import Config
    cfg = Config()
    cfg.TagRemovePreprocessor.enabled = True
    cfg.TagRemovePreprocessor.remove_input_tags = {'remove_input'}
    exporter = HTMLExporter(config=cfg, template_name='basic', exclude_input_prompt=True, exclude_output_prompt=True)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    (dest/'styles.css').write_text(CSS + HtmlFormatter().get_style_defs('.highlight'))
    if (cache/'figures').exists(): shutil.copytree(cache/'figures', dest/'figures')
    _mathjax(dest)
    for section, rel, out, fm, nb in pages:
        for c in nb.cells:
            for k in set(c) - {'cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments'}: del c[k]
            c.metadata = {k: v for k, v in c.metadata.items() if k == 'tags'}
            if c.cell_type != 'code': continue
            lines = c.source.splitlines()
            opts = {l[3:].split(':')[0].strip(): l.split(':', 1)[-1].strip() for l in lines if l.startswith('#| ')}
            c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
            if opts.get('echo') == 'false' or not c.source: c.metadata['tags'] = ['remove_input']
        nb.cells = [c for c in nb.cells if c.cell_type != 'code' or c.outputs or 'remove_input' not in c.metadata.get('tags', [])]
        body, _ = exporter.from_notebook_node(nb)
        nav = []
        last = None
        for s2, rel2, out2, fm2, _ in pages:
            if s2 != last:
                if last is not None: nav.append('</div>')
                if s2: nav.append(f'<div class="section">{html.escape(s2)}</div>')
                nav.append('<div>')
                last = s2
            cls = ' class="active"' if out2 == out else ''
            nav.append(f'<a href="{_rel(out, out2)}"{cls}>{html.escape(str(fm2.get("title", rel2.stem)))}</a>')
        nav.append('</div>')
        title = html.escape(str(fm.get('title', rel.stem)))
        desc = f'<p class="description">{html.escape(str(fm["description"]))}</p>' if fm.get('description') else ''
        doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
               f'<meta name="viewport" content="width=device-width, initial-scale=1">'
               f'<title>{title} – medsyn</title><link rel="stylesheet" href="{_rel(out, Path("styles.css"))}">{MATHJAX.format(root=_rel(out, Path("x")).removesuffix("x"))}</head>\n'
               f'<body><nav id="sidebar"><a href="{_rel(out, Path("index.html"))}"><b>medsyn</b></a>{"".join(nav)}</nav>\n'
               f'<main><h1 class="title">{title}</h1>{desc}\n{body}\n</main></body></html>\n')
        doc = _fix_links(doc, rel, out, targets)
        doc = re.sub(r'(<h[1-6] id="([^"]+)">)', _quarto_id, doc)
        (dest/out).parent.mkdir(parents=True, exist_ok=True)
        (dest/out).write_text(doc)


def _quarto_id(m):
    "Add the id Quarto (Pandoc) gives a heading, which nbdev's API links use (`core.html#medsynerror`)."
    from urllib.parse import unquote
    q = re.sub(r'[^\w\s.-]', '', unquote(m.group(2)).replace('-', ' ')).strip().lower()
    q = re.sub(r'\s+', '-', q)
    return m.group(1) if q == m.group(2) else f'{m.group(1)}<span id="{html.escape(q)}"></span>'


def _fix_links(doc: str, rel: Path, out: Path, targets: dict) -> str:
    "Links to the published site become relative; links to notebooks point at their pages."
    def site(m):
        path = m.group(2)
        return f'{m.group(1)}="{_rel(out, Path(path.split("#")[0] or "index.html"))}{"#" + path.split("#", 1)[1] if "#" in path else ""}"'
    doc = re.sub(r'(href|src)="' + re.escape(SITE_URL) + r'([^"]*)"', site, doc)
    def nb(m):
        link, frag = m.group(2), m.group(3) or ''
        tgt = os.path.normpath(rel.parent/link).replace(os.sep, '/')
        if tgt in targets: return f'{m.group(1)}="{_rel(out, targets[tgt])}{frag}"'
        return m.group(0)
    doc = re.sub(r'(href)="([^":#]+\.ipynb)(#[^"]*)?"', nb, doc)
    # Pandoc's link attributes in show_doc's Markdown (`[source](url){target="_blank" ...}`) as HTML attributes
    return re.sub(r'(<a [^>]*)>([^<]*)</a>\{([^{}]*)\}', r'\1 \3>\2</a>', doc)


def main(argv):
    import time
    t0 = time.time()
    cache = process()
    dest = ROOT/'_docs'
    use_quarto = shutil.which('quarto') and '--no-quarto' not in argv
    if use_quarto:
        from nbdev.quarto_render import render_quarto
        from nbdev.quarto import _fix_quarto_nav
        render_quarto(cache, cache/'_docs', n_workers=1)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.move(cache/'_docs', dest)
        _fix_quarto_nav(dest)
    else:
        render_html(cache, dest)
    print(f"docs: {len(list(dest.rglob('*.html')))} pages in {dest.relative_to(ROOT)}/ "
          f"({'Quarto' if use_quarto else 'nbconvert, no Quarto'}), {time.time() - t0:.0f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
