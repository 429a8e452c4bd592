"""What the browser tests share: the lab's notebooks, a lab folder, JupyterLab and a browser on it, and a
notebook run that fails naming each error, unrun cell and cross (``tests/test_browser.py``,
``tests/test_browser_live.py``; the driver is :mod:`tests.jupyterlab`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from clicklab import settings
from tests import jupyterlab

#: Skips a browser test with one line saying how to install what is missing (``.ci/run`` installs it).
NEEDS_A_BROWSER = pytest.mark.skipif(bool(jupyterlab.missing()), reason=jupyterlab.missing() or "")

SCREENSHOTS = settings.REPO / "build" / "screenshots"
STUDIO = ["00_overview", "01_create_tables", "02_register_udf", "03_view_ticker", "04_impression_stream",
          "05_click_stream", "06_ctr_stream", "07_view_ctr", "08_anomaly_scores", "09_anomaly_stream",
          "10_view_anomalies", "11_alerts", "12_cleanup"]
EMAIL_SENTENCE = "Anomaly detected with a click through rate of"
#: ... and what the alert says was usual for the site (issue 23): the burst is above it.
USUAL_WORDS = "is usual: above the site's usual range"


def sql_app_notebooks() -> list[str]:
    """The SQL application's notebooks (20 on), in order."""
    return sorted(p.stem for p in settings.NOTEBOOKS_DIR.glob("2[0-9]_*.ipynb"))


def lab_root(tmp: Path) -> Path:
    """A folder as the checkout looks to the notebooks: a copy of ``notebooks/``, ``data`` and an empty ``build``."""
    shutil.copytree(settings.NOTEBOOKS_DIR, tmp / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (tmp / "data").symlink_to(settings.REPO / "data")
    (tmp / "build").mkdir()
    return tmp


def run_notebook(browser: jupyterlab.Browser, notebook: str, twice: bool = True, **options: object
                 ) -> jupyterlab.NotebookRun:
    """Run all cells of ``notebook`` from the UI (and, ``twice``, once more in the same kernel); fail naming
    the notebook and the cell of every error shown, cell not run and cross."""
    run = browser.run_all(notebook, **options)
    problems = run.problems()
    if twice and not problems:
        again = browser.run_all(notebook, reopen=False)
        problems = [f"(second run) {p}" for p in again.problems()]
    browser.server.shut_down_kernels()
    assert not problems, "\n".join(problems) + f"\n(screenshot: {run.screenshot})"
    return run


def open_lab(root: Path, env: dict[str, str], mode: str) -> Iterator[jupyterlab.Browser]:
    """JupyterLab on ``root`` with the kernels' environment ``env``, and a browser on it; both stopped after."""
    server = jupyterlab.start_server(root, env, root / "jupyterlab.log")
    try:
        with jupyterlab.Browser(server, SCREENSHOTS / mode) as browser:
            yield browser
    finally:
        server.stop()
