"""The learner's path, in a real browser: every notebook as a person runs it in JupyterLab (``make test-browser``).

JupyterLab runs from this checkout on 127.0.0.1 (free port, token) over a copy of ``notebooks/`` and drives
them with Playwright and Debian's Chromium (:mod:`tests.jupyterlab`): each notebook in the lab's order is
opened, run with *Run > Run All Cells*, and must show no error, leave no cell unrun and print no "check your
work" cross; a second *Run All Cells* in the same kernel must do the same (a learner runs cells twice).
Screenshots of each notebook go to ``build/screenshots/<mode>/``.

* Replay: 00-12, then the SQL application, 20-23.
* Live: ``tests/test_browser_live.py``.

Without Chromium every test here is skipped with one line saying how to install it (``.ci/run`` installs it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import jupyterlab
from tests.browserlab import (
    EMAIL_SENTENCE,
    NEEDS_A_BROWSER,
    STUDIO,
    USUAL_WORDS,
    lab_root,
    open_lab,
    run_notebook,
    sql_app_notebooks,
)
from tests.conftest import client_env

pytestmark = [pytest.mark.browser, pytest.mark.flink, pytest.mark.server, NEEDS_A_BROWSER]


@pytest.fixture(scope="module")
def replay_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[jupyterlab.Browser]:
    env = {k: v for k, v in client_env().items() if k != "CLICKLAB_LIVE"}
    root = lab_root(tmp_path_factory.mktemp("replay"))
    try:
        yield from open_lab(root, env, "replay")
    finally:
        from clicklab.kafka import broker

        broker.down(root / "build")  # only if a test failed before 12, which stops it


def test_a_step_run_too_early_says_in_the_page_which_notebook_to_run_first(replay_lab: jupyterlab.Browser) -> None:
    """Before anything ran (this test comes first), 06 stops at its INSERT naming 04 and 05."""
    run = replay_lab.run_all("06_ctr_stream")
    replay_lab.server.shut_down_kernels()
    shown = run.problems()
    assert shown and "run 04_impression_stream first" in shown[0] and "run 05_click_stream first" in shown[0], shown


@pytest.mark.parametrize("notebook", STUDIO + sql_app_notebooks())
def test_replay_notebook_runs_twice_in_jupyterlab(replay_lab: jupyterlab.Browser, notebook: str) -> None:
    run = run_notebook(replay_lab, notebook)
    if notebook == "11_alerts":
        assert EMAIL_SENTENCE in run.text(), "11 shows no e-mail of the lab's alert"
        assert USUAL_WORDS in run.text(), "11's e-mails do not say what was usual for the site"
