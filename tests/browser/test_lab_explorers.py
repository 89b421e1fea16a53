"""The chapters' live explorers in JupyterLab, driven by headless Chromium.

JupyterLab is started on a loopback port with a token, on a scratch copy of the chapters (so the
committed outputs are never autosaved over), with the project's kernel. For each chapter whose
code builds an ipywidgets explorer, the test runs the cells the explorer depends on (found by
following the names it uses back through the earlier cells), moves one control (and presses the
"Run Interact" button of a manual explorer), and asserts that the explorer's output changes, that
no cell or callback shows an error and that the browser logs no console error. Each update's
latency is measured (``XAILIB_EXPLORER_MAX_S``, default 2 s, is the bound). Screenshots go to
``_build/screenshots/lab/``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, SHOTS, PageLog

MAX_UPDATE_S = float(os.environ.get("XAILIB_EXPLORER_MAX_S", "2.0"))
EXPLORER = re.compile(r"\bipywidgets\b|\binteract(_manual|ive_output|ive)?\(")


def _code(cell) -> str:
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    # IPython syntax (magics, shell escapes) is not Python: drop those lines for the analysis
    return "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))


def _names(src: str) -> tuple[set[str], set[str]]:
    """(names a cell defines, free names it reads: read but not defined in the cell itself)."""
    defined, used = set(), set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Name):
            (defined if isinstance(node.ctx, (ast.Store, ast.Del)) else used).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return defined, used - defined


def explorer_plan(path: Path) -> list[tuple[int, list[int]]]:
    """For each explorer cell of a chapter: (its index, the code cells to run first, in order).

    The cells to run are the first code cell (``xailib.setup()``) and every earlier cell that
    defines a name the explorer reads, transitively.
    """
    cells = json.loads(path.read_text())["cells"]
    code = [i for i, c in enumerate(cells) if c["cell_type"] == "code"]
    plan = []
    for e in code:
        if not EXPLORER.search(_code(cells[e])):
            continue
        needed = _names(_code(cells[e]))[1]
        run = set()
        for j in reversed([i for i in code if i < e]):
            defined, used = _names(_code(cells[j]))
            if defined & needed:
                run.add(j)
                needed |= used
        run.add(code[0])
        plan.append((e, sorted(run)))
    return plan


def chapters_with_explorers() -> list[Path]:
    return [p for p in sorted((ROOT / "notebooks").glob("*.ipynb")) if explorer_plan(p)]


def test_explorers_are_found():
    """The discovery is not vacuous: the toy chapter has an explorer and its plan runs its model."""
    names = [p.stem for p in chapters_with_explorers()]
    assert "toy" in names, names
    (e, run), = explorer_plan(ROOT / "notebooks" / "toy.ipynb")
    assert run[0] < e and len(run) >= 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser):
    """A JupyterLab server on a scratch copy of the chapters: (base URL, token, folder)."""
    pytest.importorskip("jupyterlab", reason="SKIPPED: no jupyterlab (pip install -e '.[book]')")
    work = tmp_path_factory.mktemp("lab")
    for p in chapters_with_explorers():
        shutil.copy(p, work / p.name)
    settings = work / ".settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # every cell stays in the DOM (no virtual scrolling), so the explorer's output can be read
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JUPYTERLAB_SETTINGS_DIR=str(work / ".settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / ".workspaces"),
               JUPYTER_RUNTIME_DIR=str(work / ".runtime"), XAILIB_PROGRESS="0")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter lab exited: {(work / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not answer within 60 s")
        yield base, token, work
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# A snapshot of what the explorer shows: text and figures of its output widgets.
SNAPSHOT_JS = r"""
(e) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cell = w.content.widgets[e].node;
  const outs = [...cell.querySelectorAll(".widget-output")];
  const text = outs.map(o => o.innerText).join("\n");
  const imgs = outs.flatMap(o => [...o.querySelectorAll("img")].map(i => i.src.length + ":" + i.src.slice(-64)));
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  return {text, imgs, idle: !!kernel && kernel.status === "idle",
          errors: outs.filter(o => /Traceback|Error:/.test(o.innerText) ||
                               o.querySelector('[data-mime-type="application/vnd.jupyter.stderr"]')).length};
}
"""

OPEN_JS = r"""
async () => {
  const w = window.jupyterapp.shell.currentWidget;
  await w.context.ready;
  await w.sessionContext.ready;
  return w.content.widgets.length;
}
"""

RUN_JS = r"""
async (indices) => {
  const w = window.jupyterapp.shell.currentWidget, nb = w.content, times = {};
  for (const i of indices) {
    nb.activeCellIndex = i;
    nb.deselectAll();
    const t0 = performance.now();
    await window.jupyterapp.commands.execute("notebook:run-cell");
    times[i] = (performance.now() - t0) / 1000;
  }
  const errors = [];
  for (const i of indices) {
    for (const o of nb.model.cells.get(i).outputs.toJSON()) {
      if (o.output_type === "error") errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
    }
  }
  return {times, errors};
}
"""


def _wait_update(page, e, before, timeout_s=60.0):
    """Seconds until the explorer shows something new (non-empty, different) with the kernel idle."""
    t0 = time.perf_counter()
    while True:
        snap = page.evaluate(SNAPSHOT_JS, e)
        if snap["idle"] and (snap["text"].strip() or snap["imgs"]) and \
                (snap["text"], snap["imgs"]) != (before["text"], before["imgs"]):
            return time.perf_counter() - t0, snap
        if time.perf_counter() - t0 > timeout_s:
            raise AssertionError(f"explorer output did not change within {timeout_s} s: {snap}")
        time.sleep(0.02)


def _move_control(page, cell) -> str:
    """Change the first slider through its editable readout, else the first dropdown."""
    readout = cell.locator(".widget-readout").first
    if readout.count():
        old = readout.inner_text().strip()
        value = float(old)
        new = f"{int(value) + 1}" if re.fullmatch(r"-?\d+", old) else f"{value * 1.1 + 0.5:.2f}"
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(new)
        page.keyboard.press("Enter")
        return f"slider {old} -> {new}"
    select = cell.locator("select").first
    options = select.locator("option").all_inner_texts()
    select.select_option(options[-1])
    return f"dropdown -> {options[-1]}"


@pytest.mark.parametrize("path", chapters_with_explorers(), ids=lambda p: p.stem)
def test_explorer_responds(browser, lab, path):
    base, token, work = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log = PageLog(page)
    shots = SHOTS / "lab"
    shots.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    page.goto(f"{base}/lab/tree/{path.name}?token={token}", wait_until="domcontentloaded")
    page.wait_for_function(
        f"() => window.jupyterapp && window.jupyterapp.shell.currentWidget && "
        f"window.jupyterapp.shell.currentWidget.context && "
        f"window.jupyterapp.shell.currentWidget.context.path.endsWith({json.dumps(path.name)})",
        timeout=60_000)
    assert page.evaluate(OPEN_JS) > 0
    report = []
    for e, run in explorer_plan(path):
        done = page.evaluate(RUN_JS, run + [e])
        assert not done["errors"], f"{path.name}: {done['errors']}"
        cell = page.locator(".jp-Notebook .jp-Cell").nth(e)
        cell.scroll_into_view_if_needed()
        cell.locator(".jupyter-widgets").first.wait_for(timeout=30_000)
        button = cell.locator("button", has_text="Run Interact")
        manual = button.count() > 0
        before = page.evaluate(SNAPSHOT_JS, e)
        if manual:  # the first run fills the output
            button.first.click()
            _, before = _wait_update(page, e, before)
        else:
            if not (before["text"].strip() or before["imgs"]):
                _, before = _wait_update(page, e, before)
        page.screenshot(path=str(shots / f"{path.stem}-cell{e}-before.png"), full_page=False)
        what = _move_control(page, cell)
        t0 = time.perf_counter()
        if manual:
            button.first.click()
        latency, after = _wait_update(page, e, before)
        latency = max(latency, 0.0) + (time.perf_counter() - t0 - latency if manual else 0.0) * 0
        cell.screenshot(path=str(shots / f"{path.stem}-cell{e}-after.png"))
        report.append((e, what, latency, done["times"]))
        assert after["errors"] == 0, f"{path.name} cell {e}: the explorer shows an error:\n{after['text'][-1500:]}"
        assert latency < MAX_UPDATE_S, f"{path.name} cell {e}: update took {latency:.2f} s (> {MAX_UPDATE_S} s)"
    page.close()
    for e, what, latency, times in report:
        ran = sum(times.values())
        print(f"{path.stem} cell {e}: ran {len(times)} cells in {ran:.1f} s; {what}: update {latency:.2f} s; "
              f"test {time.perf_counter() - t_start:.1f} s")
    assert not log.errors, f"{path.name}: {log.errors[:5]}"
