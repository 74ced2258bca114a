"""Check the built site in `_docs/` (`python tools/check_docs.py`; `make docs` runs it).

Fails (exit 1, one line per problem) when
- a notebook in `nbs/` has no page (the page for `nbs/01_data.ipynb` is `data.html`, from its
  `#| default_exp`; a study notebook's is `study/<name>.html`), or a page is empty;
- a page shows an error output (a traceback from a cell that failed while the site was built);
- a library notebook (one with `#| default_exp`) has examples but not one of them has a committed
  output (`make nbs` executes the notebooks and keeps their outputs), or its examples draw a figure
  and its page shows no image;
- a link, image or script on a page points at a file of the site that is not there, or at an
  anchor (`#name`) that the target page does not have. Links into the published site
  (`https://medsyn.github.io/medsyn/...`) are checked as local files; other external links are not
  followed (the build is offline).
"""
import json, re, sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
SITE_URL = "https://medsyn.github.io/medsyn/"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs, self.ids, self.text = [], set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name'):
            if a.get(k): self.ids.add(a[k])
        for k in ('href', 'src'):
            if a.get(k) is not None and not (tag == 'link' and 'preconnect' in (a.get('rel') or '')): self.refs.append((tag, a[k]))
    def handle_data(self, data): self.text.append(data)


def expected_pages(nbs: Path = ROOT/'nbs') -> dict:
    "Notebook (relative to nbs/) -> its page (relative to the site)."
    out = {}
    for p in sorted(nbs.rglob('*.ipynb')):
        rel = p.relative_to(nbs)
        if any(part.startswith(('_', '.')) for part in rel.parts): continue
        m = re.search(r'#\|\s*default_exp\s+([\w.]+)', p.read_text())
        name = (m.group(1).replace('.', '/') if m else rel.stem) + '.html'
        out[str(rel)] = str(rel.parent/name) if str(rel.parent) != '.' else name
    return out


_NOT_EXAMPLE = re.compile(r'^#\|\s*(export|exports|exporti|hide|default_exp)\b', re.M)


def examples(nb: dict) -> tuple:
    "(examples, examples with an output, examples with an image) of a notebook: code cells that are not exported or hidden."
    n = shown = images = 0
    for c in nb.get('cells', []):
        src = ''.join(c.get('source', ''))
        if c.get('cell_type') != 'code' or not src.strip() or _NOT_EXAMPLE.search(src): continue
        outs = c.get('outputs', [])
        n += 1; shown += bool(outs); images += any('image/png' in o.get('data', {}) for o in outs)
    return n, shown, images


def check(site: Path = ROOT/'_docs', nbs: Path = ROOT/'nbs') -> list:
    errors = []
    if not site.is_dir(): return [f'{site} does not exist: run `make docs`']
    for nb, page in expected_pages(nbs).items():
        if not (site/page).is_file(): errors.append(f'nbs/{nb}: no page {page}'); continue
        text = (nbs/nb).read_text()
        if '#| default_exp' not in text: continue
        n, shown, images = examples(json.loads(text))
        if n and not shown: errors.append(f'nbs/{nb}: none of its {n} examples has an output (run `make nbs`)')
        if images and '<img' not in (site/page).read_text(errors='replace'):
            errors.append(f'nbs/{nb}: its examples draw {images} figure(s) but {page} shows no image')
    pages = {}
    for f in sorted(site.rglob('*.html')):
        p = _Page(); p.feed(f.read_text(errors='replace')); pages[f.resolve()] = p
    for f, p in pages.items():
        rel = f.relative_to(site.resolve())
        text = ''.join(p.text)
        if len(text.strip()) < 20: errors.append(f'{rel}: empty page')
        raw = f.read_text(errors='replace')
        if 'cell-output-error' in raw or ('Traceback (most recent call last)' in text and 'vnd.jupyter.stderr' in raw):
            errors.append(f'{rel}: shows an error output')
        for tag, ref in p.refs:
            if ref.startswith(SITE_URL): ref = '/' + ref[len(SITE_URL):]
            u = urlsplit(ref)
            if u.scheme or u.netloc or ref.startswith(('mailto:', 'javascript:', 'data:')): continue
            target = (site.resolve()/unquote(u.path).lstrip('/')) if u.path.startswith('/') else \
                     (f.parent/unquote(u.path)) if u.path else f
            target = target.resolve()
            if target.is_dir(): target = target/'index.html'
            if not target.exists():
                errors.append(f'{rel}: <{tag}> {ref}: {target.relative_to(site.resolve()) if target.is_relative_to(site.resolve()) else target} is missing')
                continue
            if u.fragment and target.suffix == '.html' and target in pages and not {u.fragment, unquote(u.fragment)} & pages[target].ids:
                errors.append(f'{rel}: <{tag}> {ref}: no anchor #{u.fragment} in {target.relative_to(site.resolve())}')
    return errors


def main(argv):
    site = Path(argv[0]) if argv else ROOT/'_docs'
    errors = check(site)
    for e in errors: print(e, file=sys.stderr)
    n = len(list(site.rglob('*.html'))) if site.is_dir() else 0
    print(f"check_docs: {n} pages, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
