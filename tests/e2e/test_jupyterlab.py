"""End to end: JupyterLab in headless Chromium opens notebook 00, runs every cell and shows the plots.

Run it with `make e2e` (installs Debian's chromium when it is missing) or
`PRUNING_PROFILE=quick .venv/bin/python -m pytest tests/e2e -q -m e2e`.
It skips when chromium or playwright is missing, unless PRUNING_E2E_REQUIRED=1, where that fails.
"""

import re
import time

import pytest

NOTEBOOK = "00_setup_and_baseline.ipynb"
PLOT_CELL = "plot_training_curves("  # the code cell that draws the baseline's training curves
KERNEL_READY_TIMEOUT_MS = 120_000
RUN_ALL_TIMEOUT_MS = 300_000

# Every snippet finds the notebook's panel among the main-area widgets by its path.
_PANEL = ("const app = window.jupyterapp;"
          "const panel = app && app.shell ? Array.from(app.shell.widgets('main'))"
          ".find(w => w.context && w.context.path === name && w.content && w.content.model) : undefined;")

KERNEL_IDLE = f"""name => {{
  {_PANEL}
  if (!panel || !panel.context.isReady || !panel.sessionContext.isReady) return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}}"""

RUN_ALL = f"""name => {{
  {_PANEL}
  app.shell.activateById(panel.id);
  window.__e2eRunAll = {{done: false}};
  app.commands.execute('notebook:run-all-cells').then(
    result => {{ window.__e2eRunAll = {{done: true, result}}; }},
    error => {{ window.__e2eRunAll = {{done: true, error: String(error)}}; }});
  return true;
}}"""

# Done when run-all has settled, the kernel is idle and every code cell ran (or one failed).
RUN_ALL_FINISHED = f"""name => {{
  const run = window.__e2eRunAll;
  if (!run || !run.done) return false;
  {_PANEL}
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const cells = panel.content.model.toJSON().cells.filter(c => c.cell_type === 'code');
  return cells.every(c => c.execution_count != null)
      || cells.some(c => (c.outputs || []).some(o => o.output_type === 'error'));
}}"""

CELLS = f"""name => {{
  {_PANEL}
  return panel.content.model.toJSON().cells.map(c => ({{
    cell_type: c.cell_type,
    source: Array.isArray(c.source) ? c.source.join('') : c.source,
    execution_count: c.execution_count === undefined ? null : c.execution_count,
    outputs: (c.outputs || []).map(o => ({{
      output_type: o.output_type, name: o.name || null, ename: o.ename || null, evalue: o.evalue || null,
      traceback: o.traceback || [], mimes: Object.keys(o.data || {{}}),
    }})),
  }}));
}}"""

SHOW_CELL = f"""async ([name, index]) => {{
  {_PANEL}
  const notebook = panel.content;
  notebook.activeCellIndex = index;
  if (notebook.scrollToItem) await notebook.scrollToItem(index, 'start');
  const node = notebook.widgets[index].node;
  node.setAttribute('data-e2e', 'baseline-plot');
  node.scrollIntoView({{block: 'start'}});
  return true;
}}"""

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _cell_label(cell):
    first = cell["source"].strip().splitlines()[0] if cell["source"].strip() else "(empty)"
    return f"[{cell['execution_count']}] {first[:70]}"


@pytest.mark.e2e
def test_notebook_00_runs_in_jupyterlab(lab_server, page, tmp_path, capsys):
    def report(message):
        with capsys.disabled():
            print(f"\n[e2e] {message}", flush=True)

    timings = {}
    start = time.perf_counter()
    screenshot = tmp_path / f"jupyterlab-{NOTEBOOK.removesuffix('.ipynb')}.png"
    try:
        page.goto(lab_server.url(f"/lab/tree/{NOTEBOOK}"), wait_until="domcontentloaded")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=60_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", state="visible", timeout=60_000)
        page.wait_for_function(KERNEL_IDLE, arg=NOTEBOOK, timeout=KERNEL_READY_TIMEOUT_MS)
        timings["lab and kernel ready"] = time.perf_counter() - start

        before = page.evaluate(CELLS, NOTEBOOK)
        code = [c for c in before if c["cell_type"] == "code"]
        assert code, "the notebook has no code cells"
        assert all(c["execution_count"] is None and not c["outputs"] for c in code), \
            "the served copy should start with no outputs"

        t = time.perf_counter()
        page.evaluate(RUN_ALL, NOTEBOOK)
        page.wait_for_function(RUN_ALL_FINISHED, arg=NOTEBOOK, timeout=RUN_ALL_TIMEOUT_MS, polling=500)
        timings["run all cells"] = time.perf_counter() - t

        cells = page.evaluate(CELLS, NOTEBOOK)
        code = [c for c in cells if c["cell_type"] == "code"]
        errors = [(c, o) for c in code for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors, "error output in the browser:\n" + "\n\n".join(
            f"{_cell_label(c)}\n{o['ename']}: {o['evalue']}\n" + ANSI.sub("", "\n".join(o["traceback"]))
            for c, o in errors)
        not_run = [_cell_label(c) for c in code if c["execution_count"] is None]
        assert not not_run, f"cells that never ran: {not_run}"
        counts = [c["execution_count"] for c in code]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), f"out-of-order run: {counts}"
        run_result = page.evaluate("() => window.__e2eRunAll")
        assert run_result.get("result") is True, f"notebook:run-all-cells reported {run_result}"

        # The baseline's training curves: a PNG output in the model and a loaded, visible <img> on the page.
        index = next(i for i, c in enumerate(cells) if c["cell_type"] == "code" and PLOT_CELL in c["source"])
        assert any("image/png" in o["mimes"] for o in cells[index]["outputs"]), \
            f"no image/png output in the plot cell: {cells[index]['outputs']}"
        assert sum("image/png" in o["mimes"] for c in code for o in c["outputs"]) >= 2, \
            "expected the sample grid and the training curves as PNG outputs"
        page.evaluate(SHOW_CELL, [NOTEBOOK, index])
        png = '.jp-OutputArea-output[data-mime-type="image/png"] img'
        img = page.locator(f'[data-e2e="baseline-plot"] {png}').first
        img.wait_for(state="visible", timeout=30_000)
        img.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0",
                               arg=img.element_handle(), timeout=30_000)
        width, height = img.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        box = img.bounding_box()
        assert box and box["width"] > 50 and box["height"] > 50, f"plot not laid out: {box}"

        page.screenshot(path=str(screenshot))
        timings["total"] = time.perf_counter() - start
        report(f"plot {width}x{height}px; screenshot: {screenshot}")
        report("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    except BaseException:
        failed = tmp_path / "failure.png"
        try:
            page.screenshot(path=str(failed))
            report(f"screenshot at failure: {failed}")
        except Exception as exc:  # the page may be gone
            report(f"no screenshot at failure ({exc})")
        report("browser console errors: " + ("\n".join(page.console_errors[-20:]) or "none"))
        report("JupyterLab log (tail):\n" + lab_server.log_tail())
        raise
