"""A reader's JupyterLab, in a real browser, on a fresh clone of the committed state.

``make browser-test`` clones this checkout's HEAD into a temporary folder, starts ``make lab``
there (the reader's command: git filter, read-only executed copies, hidden egg-info) and drives
Debian's headless Chromium through its chromedriver with selenium (nothing is downloaded):

* 02_graph stops in its setup cell with the short message naming 01_train.ipynb (no traceback);
* 04_q1, 05_q2 and 07_early_stopping run top to bottom from the committed data, without an error
  or a warning in any output, and are saved (as a reader's autosave would);
* the executed copy results/executed/default/01_train.ipynb opens read-only and is not rewritten;
* the file browser does not list paperlib.egg-info;
* afterwards ``git status`` of the clone is clean.

Screenshots of every notebook (Table 2, Figures 3 and 4, the readings) go to
``$PAPERLIB_BROWSER_OUT`` (default: a temporary folder, printed).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from paperlib import paths

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
WIDTH, HEIGHT = 1500, 1000
RUN_TIMEOUT = 2700  # seconds for one notebook on a busy 2-core machine

pytestmark = [
    pytest.mark.skipif(not CHROMIUM or not DRIVER,
                       reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                              "chromium-driver)"),
    pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install -e '.[browser]'")
pytest.importorskip("nbstripout", reason="needs nbstripout: pip install -e '.[browser]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    out = Path(os.environ.get("PAPERLIB_BROWSER_OUT") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {out}")
    return out


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clone of this checkout's HEAD (what a reader gets; uncommitted changes are not in it)."""
    dest = tmp_path_factory.mktemp("clone") / "repo"
    head = _git(paths.CODE, "rev-parse", "HEAD").strip()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(paths.CODE), str(dest)], check=True)
    _git(dest, "checkout", "--quiet", "--detach", head)
    return dest


@pytest.fixture(scope="module")
def lab(clone, tmp_path_factory):
    """``make lab`` in the clone, with this interpreter's environment as the venv; yields the base URL."""
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("jupyter-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAPERLIB_", "JUPYTER", "PYTEST"))}
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               IPYTHONDIR=str(home / "ipython"), MPLCONFIGDIR=str(home / "mpl"))
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}\n')  # no "Jupyter news?" toast over the screenshots
    venv = Path(sys.prefix)
    lab_args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
                f"--IdentityProvider.token={token} --LabApp.expose_app_in_browser=True")
    log = open(home / "lab.log", "w")
    # -o: the environment is ready (it runs these tests); make must not install into it
    proc = subprocess.Popen(["make", "-C", str(clone), "lab", f"VENV={venv}", f"PY={sys.executable}",
                             "-o", f"{venv}/.installed", f"LAB_ARGS={lab_args}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                raise RuntimeError(f"make lab exited with {proc.returncode}:\n{(home / 'lab.log').read_text()}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("JupyterLab did not start:\n" + (home / "lab.log").read_text())
        yield base, token, home / "lab.log"
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_script_timeout(600)  # opening starts a kernel (slow on a busy machine); long runs are polled (_run)
    yield driver
    driver.quit()


# --------------------------------------------------------------------------- driving JupyterLab
_OPEN = """
const path = arguments[0];
window.__paperlib_open = {done: false};
(async () => {
  const app = window.jupyterapp;
  await app.commands.execute('application:close-all').catch(() => {});
  await app.serviceManager.sessions.shutdownAll().catch(() => {});
  const widget = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await widget.context.ready;
  await widget.sessionContext.ready;
  // headless Chromium may have no focused window: the shell's current widget can stay null, so the
  // opened widget is kept here and activated explicitly (the notebook commands act on the active one)
  window.__paperlib_widget = widget;
  app.shell.activateById(widget.id);
  window.__paperlib_open = {done: true, writable: widget.context.contentsModel.writable};
})().catch(e => { window.__paperlib_open = {done: true, error: String(e)}; });
"""

_RUN_ALL = """
window.__paperlib_run = {done: false};
(async () => {
  const app = window.jupyterapp;
  const widget = window.__paperlib_widget;
  const kernel = widget.sessionContext.session.kernel;
  app.shell.activateById(widget.id);
  await app.commands.execute('notebook:run-all-cells');  // resolves when the last cell ran, or one failed
  do { await new Promise(r => setTimeout(r, 1000)); } while (kernel.status !== 'idle');
  await widget.context.save();  // what autosave (or Ctrl-S) does
  window.__paperlib_run = {done: true, report: _report(widget)};
})().catch(e => { window.__paperlib_run = {done: true, report: {error: String(e)}}; });
function _report(widget) {
  const problems = [], cells = [];
  [...widget.content.model.cells].forEach((c, i) => {
    if (c.type !== 'code') return;
    const outs = c.outputs.toJSON();
    cells.push({index: i, count: c.executionCount,
                kinds: outs.map(o => o.output_type + (o.name ? ':' + o.name : ''))});
    for (const o of outs) {
      if (o.output_type === 'error') problems.push({cell: i, error: o.ename + ': ' + o.evalue,
                                                    traceback: o.traceback});
      if (o.output_type === 'stream' && o.name === 'stderr') problems.push({cell: i, stderr: o.text});
    }
  });
  return {problems, cells};
}
"""

_SCROLL_TO = """
const [needle] = arguments;
const widget = window.__paperlib_widget;
const cells = [...widget.content.model.cells];
const index = cells.findIndex(c => c.sharedModel.source.includes(needle));
if (index < 0) return false;
widget.content.activeCellIndex = index;
const cell = widget.content.widgets[index];
widget.content.scrollToCell(cell, 'start');
return true;
"""


def _open(driver, base, token, path):
    if not driver.current_url.startswith(base):
        driver.get(f"{base}/lab?token={token}&reset")
    for _ in range(240):
        if driver.execute_script("return !!(window.jupyterapp && window.jupyterapp.shell)"):
            break
        time.sleep(0.5)
    time.sleep(2)
    driver.execute_script(_OPEN, path)  # polled: a kernel may take minutes to start on a busy machine
    t0 = time.monotonic()
    while not (result := driver.execute_script("return window.__paperlib_open") or {}).get("done"):
        assert time.monotonic() - t0 < 600, f"{path} did not open in 600 s"
        time.sleep(2)
    assert "error" not in result, result
    time.sleep(2)
    return result


def _shot(driver, out: Path, name: str, needle: str | None = None, below: int = 0) -> Path:
    if needle is not None:
        assert driver.execute_script(_SCROLL_TO, needle), f"no cell with {needle!r}"
        time.sleep(1.5)
        if below:
            driver.execute_script(
                "document.querySelector('.jp-mod-current .jp-WindowedPanel-outer')?.scrollBy(0, arguments[0])", below)
            time.sleep(1.0)
    path = out / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _run(driver, base, token, path):
    """Run every cell (JupyterLab's Run All), save; returns the outputs' errors and stderr (from the model)."""
    _open(driver, base, token, path)
    driver.execute_script(_RUN_ALL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < RUN_TIMEOUT:
        state = driver.execute_script("return window.__paperlib_run")
        if state and state.get("done"):
            report = state["report"]
            assert "error" not in report, report
            return report
        time.sleep(3)
    raise AssertionError(f"{path} did not finish in {RUN_TIMEOUT} s")


# --------------------------------------------------------------------------- the test
def test_a_reader_in_jupyterlab(lab, browser, clone, out_dir):
    base, token, log = lab
    before = {p: p.read_bytes() for p in sorted((clone / "results" / "executed" / "default").glob("*.ipynb"))}

    # the file browser: no egg-info (the clone has none; one is made to check the hiding)
    (clone / "paperlib.egg-info").mkdir()
    (clone / "paperlib.egg-info" / "PKG-INFO").write_text("Name: paperlib\n")
    with urllib.request.urlopen(f"{base}/api/contents/?token={token}") as r:
        import json

        listed = {item["name"] for item in json.load(r)["content"]}
    assert "notebooks" in listed and "paperlib.egg-info" not in listed
    shutil.rmtree(clone / "paperlib.egg-info")

    # 02_graph on a fresh clone: a short message, no traceback
    report = _run(browser, base, token, "notebooks/02_graph.ipynb")
    errors = [p for p in report["problems"] if "error" in p]
    assert len(errors) == 1 and errors[0]["error"].startswith("MissingInputError"), report
    shown = "\n".join(errors[0]["traceback"])
    assert "01_train.ipynb" in shown and "Traceback" not in shown and "File " not in shown, shown
    _shot(browser, out_dir, "02_graph_missing_input", "pipeline.require_inputs", below=250)

    # 04, 05, 07 from the committed data: no error or warning anywhere (checked at the end, after every screenshot)
    problems = {}
    for name, shots in [  # the quick ones first: 04_q1 reruns every classifier (minutes on 2 busy cores)
        ("07_early_stopping", [("07_table", "pruning.run_early_stopping", 0),
                               ("07_figure", "write_fig_early_stopping", 0),
                               ("07_reading", "pruning.reading", 0)]),
        ("05_q2", [("05_q2_fig4", "figures.fig4(P)", 0), ("05_q2_reading", "readings.q2_reading", 0)]),
        ("04_q1", [("04_q1_table2", "render.show_table2", 0), ("04_q1_fig3", "figures.fig3(P)", 0),
                   ("04_q1_reading", "readings.q1_reading", 0)]),
    ]:
        report = _run(browser, base, token, f"notebooks/{name}.ipynb")
        _shot(browser, out_dir, f"{name}_top")
        for shot, needle, below in shots:
            _shot(browser, out_dir, shot, needle, below)
        problems[name] = report["problems"] + [f"cell {c['index']} did not run" for c in report["cells"]
                                               if c["count"] is None]

    # the executed copy of 01 opens read-only, and is not rewritten (not even by an explicit save)
    opened = _open(browser, base, token, "results/executed/default/01_train.ipynb")
    assert opened["writable"] is False
    time.sleep(5)
    browser.execute_async_script("""
      const done = arguments[arguments.length - 1];
      window.__paperlib_widget.context.save().then(() => done(), () => done());
      setTimeout(done, 5000);""")
    time.sleep(1)
    _shot(browser, out_dir, "01_train_executed_read_only")
    browser.execute_script("document.querySelectorAll('.jp-Dialog button.jp-mod-reject')"
                           ".forEach(b => b.click())")
    browser.execute_async_script("""
      const done = arguments[arguments.length - 1];
      window.jupyterapp.serviceManager.sessions.shutdownAll().then(() => done(), () => done());""")
    time.sleep(2)
    after = {p: p.read_bytes() for p in before}
    assert after == before, [p.name for p in before if before[p] != after[p]]

    assert not any(problems.values()), problems
    status = _git(clone, "status", "--porcelain", "--untracked-files=all")
    (out_dir / "git-status.txt").write_text(status + "\n" + _git(clone, "diff", "--stat"))
    print("\ngit status after the browser session:\n" + (status or "(clean)\n"))
    assert _git(clone, "status", "--porcelain", "--untracked-files=all", "--", "notebooks", "results/executed") == ""
    assert status == "", f"git status is not clean:\n{status}\n{_git(clone, 'diff', '--stat')}"
