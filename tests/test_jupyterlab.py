"""JupyterLab as people use it: a real `jupyter lab` server on the loopback address with a token.

`test_lab_runs_a_study_notebook` opens a study notebook through the Jupyter Server REST API, starts a
kernel for it the way JupyterLab does (a session), runs its cells over the kernel's websocket with
smoke parameters and checks the outputs. `test_lab_in_a_browser` (mark `browser`, not in the default
run: `python -m pytest -m browser tests/test_jupyterlab.py`) loads JupyterLab in headless Chromium
(Debian's `chromium`, driven by Playwright) with the notebook open and saves a screenshot.
The server is always stopped, whatever happens.
"""
import json, os, secrets, shutil, signal, socket, subprocess, sys, time, uuid
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request, urlopen

import nbformat
import nbformat.sign
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT/'nbs'/'study'/'real.ipynb'   # the cheapest study stage: ~20 s at smoke size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Lab:
    "A running `jupyter lab` and the few REST calls the tests need."
    def __init__(self, root: Path, log: Path):
        self.root, self.port, self.token = root, _free_port(), secrets.token_hex(16)
        self.url = f'http://127.0.0.1:{self.port}'
        # its own runtime and data folders: the notary's secret and signature database are this test's
        self.env = env = {**os.environ, 'JUPYTER_RUNTIME_DIR': str(root.parent/'runtime'), 'JUPYTER_DATA_DIR': str(root.parent/'data'),
                          'PYTHONPATH': os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)}
        self.log = open(log, 'w')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={self.port}',
             '--port-retries=0', f'--IdentityProvider.token={self.token}', f'--ServerApp.root_dir={root}',
             '--ServerApp.open_browser=False', '--LabApp.news_url=None', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
            + (['--allow-root'] if os.geteuid() == 0 else []),   # CI and containers run as root
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def api(self, path, method='GET', body=None, timeout=30):
        req = Request(self.url + path, method=method, headers={'Authorization': f'token {self.token}', 'Content-Type': 'application/json'},
                      data=None if body is None else json.dumps(body).encode())
        with urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text and 'json' in r.headers.get('Content-Type', '') else text)

    def wait(self, timeout=90):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None: raise RuntimeError(f'jupyter lab exited {self.proc.returncode}: {self.logs(3000)}')
            try: return self.api('/api/status', timeout=5)
            except (URLError, ConnectionError, OSError): time.sleep(0.5)
        raise TimeoutError(f'jupyter lab did not answer in {timeout} s: {self.logs(3000)}')

    def trust(self, name):
        "What `make trust` does (nbdev's `nbdev-trust`): sign the notebook for this user's Jupyter."
        subprocess.run([str(Path(sys.executable).parent/'nbdev-trust'), '--fname', str(self.root/name)], env=self.env, check=True, cwd=self.root)

    def cells_trusted(self, name) -> list:
        return [c['metadata'].get('trusted') for c in self.api(f'/api/contents/{name}?content=1&type=notebook')[1]['content']['cells']
                if c['cell_type'] == 'code']

    def logs(self, tail:int|None=None) -> str:
        "The server's log so far (its last `tail` characters)."
        self.log.flush()
        text = Path(self.log.name).read_text()
        return text[-tail:] if tail else text

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)      # the server and the kernels it started
            try: self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL); self.proc.wait(5)
        self.log.close()


@pytest.fixture
def lab(tmp_path):
    root = tmp_path/'lab'
    root.mkdir()
    shutil.copy(NOTEBOOK, root/NOTEBOOK.name)
    server = Lab(root, tmp_path/'lab.log')
    try:
        server.wait()
        yield server
    finally:
        server.stop()
    assert server.proc.poll() is not None


def run_cell(ws, session, code, timeout=300):
    "Send one execute_request over the kernel websocket; return (reply content, iopub outputs)."
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({'header': {'msg_id': msg_id, 'msg_type': 'execute_request', 'username': 'test', 'session': session,
                                   'date': '', 'version': '5.3'},
                        'parent_header': {}, 'metadata': {}, 'channel': 'shell', 'buffers': [],
                        'content': {'code': code, 'silent': False, 'store_history': True, 'user_expressions': {},
                                    'allow_stdin': False, 'stop_on_error': True}}))
    outputs, reply, idle, t0 = [], None, False, time.time()
    while not (reply and idle):
        if time.time() - t0 > timeout: raise TimeoutError(code)
        m = json.loads(ws.recv())
        if m.get('parent_header', {}).get('msg_id') != msg_id: continue
        t = m['msg_type']
        if m['channel'] == 'shell' and t == 'execute_reply': reply = m['content']
        elif t == 'status' and m['content']['execution_state'] == 'idle': idle = True
        elif t in ('stream', 'execute_result', 'display_data', 'error'): outputs.append(m['content'] | {'output_type': t})
    return reply, outputs


def test_lab_runs_a_study_notebook(lab, tmp_path):
    import websocket
    _, status = lab.api('/api/status')
    assert 'started' in status and status['kernels'] == 0
    _, specs = lab.api('/api/kernelspecs')
    assert 'python3' in specs['kernelspecs']

    # open the notebook as JupyterLab does: the Contents API, then a session with its kernel
    _, model = lab.api(f'/api/contents/{NOTEBOOK.name}?content=1&type=notebook')
    assert model['type'] == 'notebook' and model['format'] == 'json'
    nb = nbformat.from_dict(model['content'])
    assert nb.metadata.kernelspec.name == 'python3'
    # nothing to trust: a notebook committed without outputs has no untrusted output to hide
    assert all(not c.get('outputs') for c in nb.cells if c.cell_type == 'code')
    assert nbformat.sign.NotebookNotary(data_dir=str(tmp_path)).check_cells(nb)
    # a fresh clone is unsigned for this user's Jupyter: the server warns and JupyterLab says "not trusted";
    # `make trust` (nbdev-trust) signs it, and it opens trusted
    assert not any(lab.cells_trusted(NOTEBOOK.name)) and f'Notebook {NOTEBOOK.name} is not trusted' in lab.logs()
    lab.trust(NOTEBOOK.name)
    mark = len(lab.logs())
    _, model = lab.api(f'/api/contents/{NOTEBOOK.name}?content=1&type=notebook')
    assert all(c['metadata']['trusted'] for c in model['content']['cells'] if c['cell_type'] == 'code')
    assert 'not trusted' not in lab.logs()[mark:]
    code, session = lab.api('/api/sessions', 'POST', {'path': NOTEBOOK.name, 'type': 'notebook', 'name': NOTEBOOK.name,
                                                      'kernel': {'name': 'python3'}})
    assert code == 201 and session['kernel']['name'] == 'python3'
    kid = session['kernel']['id']

    ws = websocket.create_connection(f'ws://127.0.0.1:{lab.port}/api/kernels/{kid}/channels?token={lab.token}', timeout=300)
    try:
        sid = uuid.uuid4().hex
        results = []
        for c in nb.cells:
            if c.cell_type != 'code': continue
            reply, outs = run_cell(ws, sid, c.source)
            assert reply['status'] == 'ok', (c.source, reply, outs)
            results.append(outs)
            if 'parameters' in c.metadata.get('tags', []):   # papermill's injected cell, by hand: smoke size, a temp run folder
                reply, _ = run_cell(ws, sid, f"preset = 'smoke'\nrun_dir = {str(tmp_path/'runs'/'real')!r}")
                assert reply['status'] == 'ok'
        # the metrics table is shown as HTML and as text, with accuracies in [0, 1]
        shown = [o for outs in results for o in outs if o['output_type'] == 'execute_result']
        assert shown and 'text/html' in shown[-1]['data'] and 'acc' in shown[-1]['data']['text/plain']
        reply, outs = run_cell(ws, sid, "print(len(df), float(df['acc'].min()), float(df['acc'].max()))")
        n, lo, hi = outs[-1]['text'].split()
        assert int(n) >= 1 and 0 <= float(lo) <= float(hi) <= 1
    finally:
        ws.close()
    assert (tmp_path/'runs'/'real'/'model'/'metrics.json').exists() or list((tmp_path/'runs'/'real').rglob('metrics.json'))
    lab.api(f"/api/sessions/{session['id']}", 'DELETE')
    assert 'not trusted' not in lab.logs()[mark:] and 'Traceback' not in lab.logs()


def _chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(name): return shutil.which(name)


@pytest.mark.browser
def test_lab_in_a_browser(lab, tmp_path):
    "JupyterLab in headless Chromium with the notebook open: its cells render, the kernel is python3; saves a screenshot."
    browser = _chromium()
    if not browser: pytest.skip("no Chromium binary: `apt-get install chromium` (Debian's package)")
    playwright = pytest.importorskip('playwright.sync_api', reason='`pip install playwright` (dev extra)')
    out = Path(os.environ.get('MEDSYN_SCREENSHOT_DIR', tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    lab.trust(NOTEBOOK.name)                      # as after `make trust`
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=['--no-sandbox', '--disable-gpu'])
        try:
            page = b.new_page(viewport={'width': 1400, 'height': 900})
            page.goto(f'{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}', timeout=120_000)
            page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=120_000)
            # the kernel the notebook asks for starts by itself, without a "select kernel" dialog
            page.wait_for_function("(document.querySelector('.jp-Toolbar-kernelName')?.textContent || '').trim() !== ''"
                                   " && !/No Kernel|Initializing|Starting|Connecting/.test("
                                   "document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('aria-label') || "
                                   "document.body.innerText.match(/\\| (Idle|Busy|Initializing|Starting|Connecting)/)?.[0] || 'Initializing')",
                                   timeout=120_000)
            for b2 in page.get_by_role('button', name='No', exact=True).all():   # the "notified about Jupyter news?" toast
                try: b2.click(timeout=5_000)
                except playwright.Error: pass
            kernel = page.inner_text('.jp-Toolbar-kernelName').strip()
            cells = page.locator('.jp-Notebook .jp-Cell').count()
            dialogs = page.locator('.jp-Dialog').count()
            trust = page.evaluate("[...document.querySelectorAll('#jp-main-statusbar [data-icon$=trusted]')]"
                                  ".map(e => e.getAttribute('data-icon') + ' | ' + (e.closest('[title]')?.title || ''))")
            dirty = page.locator('.jp-mod-dirty').count()
            status = page.inner_text('#jp-main-statusbar')
            page.screenshot(path=str(out/'jupyterlab.png'))
        finally:
            b.close()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    python3 = lab.api('/api/kernelspecs')[1]['kernelspecs']['python3']['spec']['display_name']   # 'Python 3 (ipykernel)'
    assert kernel == python3 and cells == len(nb.cells), (kernel, cells)
    assert dialogs == 0, 'a dialog (kernel choice, trust, error) opened with the notebook'
    n = sum(c.cell_type == 'code' for c in nb.cells)
    assert trust == [f'ui-components:trusted | Notebook trusted: {n} of {n} code cells trusted.'], trust
    # JupyterLab marks the notebook changed on opening (dirty = 1): nbdev-clean writes the kernelspec's
    # display_name as 'python3' and JupyterLab replaces it with the spec's own, 'Python 3 (ipykernel)'
    print(kernel, cells, trust, 'dirty' if dirty else 'clean', status.replace('\n', ' '))
    assert (out/'jupyterlab.png').stat().st_size > 10_000


def test_every_notebook_asks_for_python3(tmp_path):
    """Each notebook opens on the `python3` kernel without asking, and shows its committed outputs before anyone trusts it: text,
    Markdown, images and (sanitised) HTML tables, no JavaScript and no widgets, which an untrusted notebook would hide."""
    hidden = ('application/javascript', 'application/vnd.jupyter.widget-view+json')
    for p in sorted((ROOT/'nbs').rglob('*.ipynb')):
        nb = nbformat.read(p, as_version=4)
        assert nb.metadata.get('kernelspec', {}).get('name') == 'python3', p
        bad = {k for c in nb.cells for o in c.get('outputs', []) for k in o.get('data', {}) if k in hidden}
        assert not bad, f'{p}: outputs an untrusted notebook would not show: {bad}'
        if p.parent.name == 'study':                 # papermill's templates: their outputs live in the executed copies in runs/
            assert nbformat.sign.NotebookNotary(data_dir=str(tmp_path)).check_cells(nb), f'{p}: a study template with outputs'
