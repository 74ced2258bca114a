"The site checker (tools/check_docs.py) catches what it is there to catch, on a small site made here."
import importlib.util, json

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location('check_docs', ROOT/'tools'/'check_docs.py')
check_docs = importlib.util.module_from_spec(spec); spec.loader.exec_module(check_docs)


def _site(tmp_path):
    nbs, site = tmp_path/'nbs', tmp_path/'_docs'
    (nbs/'study').mkdir(parents=True); (site/'study').mkdir(parents=True); (site/'figures').mkdir()
    (nbs/'01_data.ipynb').write_text('{"cells": [{"source": ["#| default_exp data\\n"]}]}')
    (nbs/'study'/'real.ipynb').write_text('{"cells": []}')
    (site/'figures'/'a.png').write_bytes(b'png')
    (site/'data.html').write_text('<html><body><h2 id="load">Loading a split of the data</h2><img src="figures/a.png">'
                                  '<a href="study/real.html#top">real</a><a href="https://example.org/x">out</a></body></html>')
    (site/'study'/'real.html').write_text('<html><body><h1 id="top">Study: the real baseline</h1>'
                                          '<a href="../data.html#load">data</a><a href="https://medsyn.github.io/medsyn/data.html">site</a></body></html>')
    return nbs, site


def test_a_good_site_passes(tmp_path):
    nbs, site = _site(tmp_path)
    assert check_docs.check(site, nbs) == []


def test_broken_pages_links_images_and_anchors_fail(tmp_path):
    nbs, site = _site(tmp_path)
    (site/'figures'/'a.png').unlink()
    (site/'study'/'real.html').write_text((site/'study'/'real.html').read_text().replace('#load', '#nowhere')
                                          .replace('medsyn/data.html', 'medsyn/gone.html'))
    (nbs/'10_privacy.ipynb').write_text('{"cells": [{"source": ["#| default_exp privacy"]}]}')
    (site/'err.html').write_text('<html><body><p>A page with a failed cell</p><div class="cell-output-error">'
                                 'Traceback (most recent call last)</div></body></html>')
    errors = '\n'.join(check_docs.check(site, nbs))
    for what in ('figures/a.png is missing', 'no anchor #nowhere', 'gone.html is missing',
                 'nbs/10_privacy.ipynb: no page privacy.html', 'err.html: shows an error output'):
        assert what in errors, (what, errors)


def test_a_library_page_must_show_its_examples_outputs(tmp_path):
    nbs, site = _site(tmp_path)
    cell = lambda src, outs=(): {"cell_type": "code", "source": [src], "outputs": list(outs)}
    nb = lambda *cells: json.dumps({"cells": [cell("#| default_exp data"), cell("#| export\\ndef f(): return 1"), *cells]})
    (nbs/'01_data.ipynb').write_text(nb(cell("f()"), cell("assert f() == 1")))
    assert "none of its 2 examples has an output" in '\n'.join(check_docs.check(site, nbs))
    (nbs/'01_data.ipynb').write_text(nb(cell("f()", [{"output_type": "execute_result", "data": {"text/plain": "1"}}])))
    assert check_docs.check(site, nbs) == []
    (nbs/'01_data.ipynb').write_text(nb(cell("plt.plot([1])", [{"output_type": "display_data", "data": {"image/png": "iVBOR"}}])))
    assert check_docs.check(site, nbs) == []                      # data.html shows an image
    (site/'data.html').write_text((site/'data.html').read_text().replace('<img src="figures/a.png">', ''))
    assert "draw 1 figure(s) but data.html shows no image" in '\n'.join(check_docs.check(site, nbs))


def test_every_library_notebook_is_committed_with_its_outputs():
    "`make nbs` executes the notebooks and keeps their outputs; a notebook committed without them shows code and no result."
    bare = []
    for p in sorted((ROOT/'nbs').glob('*.ipynb')):
        text = p.read_text()
        if '#| default_exp' not in text: continue
        n, shown, _ = check_docs.examples(json.loads(text))
        if n and not shown: bare.append(f"{p.name} ({n} examples)")
    assert not bare, f"committed without outputs (run `make nbs`): {', '.join(bare)}"


def test_the_readme_is_short():
    lines = (ROOT/'README.md').read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: the full results belong on the results page (nbs/results.ipynb)"
    assert lines.index('pip install -e ".[dev]"          # in a clone, in a fresh virtual environment (Python 3.10+)') < 30


@pytest.mark.browser
def test_the_site_in_a_browser_shows_the_figures():
    "Each library page whose examples draw a figure shows at least one loaded image in headless Chromium (after `make docs`)."
    import shutil
    site = ROOT/'_docs'
    if not (site/'index.html').exists(): pytest.skip("no site: run `make docs` first")
    browser = next((shutil.which(b) for b in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(b)), None)
    if not browser: pytest.skip("no Chromium binary: `apt-get install chromium` (Debian's package)")
    playwright = pytest.importorskip('playwright.sync_api', reason='`pip install playwright` (dev extra)')
    want = {page: nb for nb, page in check_docs.expected_pages(ROOT/'nbs').items()
            if check_docs.examples(json.loads((ROOT/'nbs'/nb).read_text()))[2]}
    assert want, "no notebook draws a figure: `make nbs` keeps their outputs"
    shown, typeset = {}, {}
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=['--no-sandbox', '--disable-gpu'])
        try:
            pg = b.new_page()
            for page in want:
                pg.goto((site/page).as_uri()); pg.wait_for_load_state('load')
                shown[page] = pg.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
                # the formulas: typeset by the site's own MathJax (no CDN), raw TeX nowhere once it is done
                pg.wait_for_function("window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0",
                                     timeout=60_000)
                typeset[page] = (pg.evaluate("document.querySelectorAll('.MathJax').length"),
                                 pg.evaluate("([...document.querySelectorAll('p, li, td')].map(e => e.innerText).join(' ')"
                                             ".match(/\\$\\\\[a-z]+/g) || []).length"))   # prose, not code
        finally: b.close()
    assert all(shown.values()), {p: n for p, n in shown.items() if not n}
    assert typeset['tutorial.html'][0] > 10 and not any(raw for _, raw in typeset.values()), typeset
    print(shown, typeset)
