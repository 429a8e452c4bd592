"""``clicklab run``: execute the lab's notebooks headless with papermill, in order.

Executed copies go to ``<build>/executed/``; the notebooks in ``notebooks/`` stay without outputs.
A failing cell raises :class:`NotebookError` naming the notebook, the cell (``In [N]``) and the cause.
Progress goes to the ``clicklab.runner`` logger; the run ends with a :class:`clicklab.summary.RunSummary`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from clicklab import cells, checks, settings
from clicklab.exceptions import ClicklabError, NotebookError
from clicklab.results import check_dataset
from clicklab.summary import RunSummary, add_sql_app, summarize

log = logging.getLogger(__name__)


def select(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """Keep the notebooks whose number is in ``only`` (``["04", "6"]``); all when ``only`` is empty."""
    if not only:
        return notebooks
    wanted = {o.zfill(2) for o in only}
    chosen = [p for p in notebooks if p.name[:2] in wanted]
    missing = wanted - {p.name[:2] for p in chosen}
    if missing:
        have = ", ".join(p.name[:2] for p in notebooks)
        raise ClicklabError(f"no notebook numbered {', '.join(sorted(missing))} (there are {have})")
    return chosen


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr (file descriptor 2), and so the kernel's and Flink's, to a log."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, object]) -> None:
    """Run one notebook with papermill; a failing cell, or a check of its "check your work" cell that printed a
    cross (:func:`clicklab.checks.crosses`), becomes a :class:`NotebookError`.

    The kernel's own log (Flink's start-up lines, Jupyter's warnings) goes to ``<output>.log``.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    # A PyFlink job with Python UDFs run in this process (local mode runs the UDF worker in-process)
    # leaves PYFLINK_GATEWAY_DISABLED set; a kernel inheriting it could not start Flink.
    os.environ.pop("PYFLINK_GATEWAY_DISABLED", None)
    try:
        with _stderr_to(output.with_suffix(".log")):
            papermill.execute_notebook(
                str(notebook), str(output), parameters=parameters, cwd=str(notebook.parent),
                progress_bar=False, log_output=False, kernel_name="python3",
            )
    except PapermillExecutionError as exc:
        # papermill inserts a cell of injected parameters: count cells as in the user's notebook file
        executed = nbformat.read(str(output), as_version=4).cells[: exc.cell_index]
        injected = sum(cells.INJECTED_PARAMETERS in cells.tags(c) for c in executed)
        position = f"cell {exc.cell_index + 1 - injected} of the notebook"
        cell = f"In [{exc.exec_count}], {position}" if exc.exec_count else position
        evalue = str(exc.evalue).strip().splitlines()[0] if str(exc.evalue).strip() else ""
        raise NotebookError(notebook.name, cell, f"{exc.ename}: {evalue} (executed copy: {output})") from None
    failed = checks.crosses(nbformat.read(str(output), as_version=4))
    if failed:
        count, line = failed[0]
        raise NotebookError(notebook.name, f"In [{count}]", f"check your work: {line} (executed copy: {output})")


@dataclass
class RunReport:
    """What a run did."""

    executed: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    summary: RunSummary | None = None  # computed before the cleanup notebook removes the streams it reads


#: What ``clicklab run --live`` passes to the live notebooks besides ``dataset``, ``build`` and ``live``:
#: no cooldown, so the burst's own alert goes out even if an earlier window of the site was alerted.
LIVE_PARAMETERS: dict[str, object] = {"cooldown_seconds": 0, "live_figure_s": 6}
#: ``clicklab run --live``: how long each view query of the notebooks shows a live stream.
LIVE_QUERY_SECONDS = 8


def run(
    dataset: Path = settings.DEFAULT_DATASET,
    build: Path = settings.DEFAULT_BUILD,
    only: list[str] | None = None,
    notebooks_dir: Path = settings.NOTEBOOKS_DIR,
    live: bool = False,
    linger_s: float = 0.0,
    forest_preset: str | None = None,
    backend: str | None = None,
) -> RunReport:
    """Execute the notebooks in order into ``<build>/executed/``, logging progress; then
    :func:`clicklab.summary.summarize` (just before the cleanup notebook, if it is chosen).

    ``live``: the live lab, headless. The cluster and the live generator are started first; the
    notebooks marked ``live`` in their metadata run with ``live=True`` (their jobs keep running on the
    cluster; ``10`` sends the lab's burst once the forest has warmed up and waits for its anomaly,
    ``11`` follows the stream until its e-mail is in); the cleanup notebook, and in any case this
    function, stop the generator and the cluster. A step that does not happen in time fails its cell.
    ``linger_s``: live, keep everything running that long before the cleanup notebook (to look around).
    ``forest_preset``: the forest's named parameter set (``default`` or ``lab``, see
    :data:`clicklab_udf.forest.PRESETS`), passed to the notebooks whose parameters have ``forest_preset``
    (``None``: each notebook's own choice, ``lab`` live and ``default`` on a replay).
    ``backend``: where the Studio lab's streams are kept, ``kafka`` or ``files`` (``None``: ``$CLICKLAB_STREAMS``
    decides, :func:`clicklab.notebook.stream_backend`); the kernels inherit the choice. On Kafka the notebooks
    start the lab's broker when it is not running, and the run stops it at its end (the topics stay in
    ``<build>/kafka/data`` for the next run); one started before the run is left running.

    The SQL application's notebooks (``20_`` on) run after the Studio lab's, cleanup included (they keep their
    streams in ``<build>/sqlapp/``, which the cleanup leaves); their figures and check join the summary.
    """
    dataset = check_dataset(Path(dataset)).resolve()
    build = Path(build).resolve()
    out_dir = build / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = cells.lab_notebooks(notebooks_dir)
    if live:
        notebooks = [p for p in notebooks if cells.info(p).live]
    chosen = select(notebooks, only)
    params: dict[str, object] = {"dataset": str(dataset), "build": str(build)}
    if forest_preset is not None:
        from clicklab_udf.forest import PRESETS

        if forest_preset not in PRESETS:
            raise ClicklabError(f"forest parameter set {forest_preset!r}: choose one of {', '.join(PRESETS)}")
        params["forest_preset"] = forest_preset
    from clicklab import cluster, notebook
    from clicklab.kafka import broker
    from clicklab.live import process

    store = notebook.stream_backend(backend)
    read = notebook.reader(build, store, with_time=live) if store == "kafka" else None  # files: the summary's own
    saved = {notebook.BACKEND_VARIABLE: store}  # the kernels inherit the choice
    if live:
        saved[notebook.QUERY_SECONDS_VARIABLE] = str(LIVE_QUERY_SECONDS)
    with _environment(saved):
        if not live:
            # $CLICKLAB_KAFKA_BOOTSTRAP: no broker of the lab's runs, and broker.down stops none
            started_broker = store == "kafka" and broker.status(build) is None
            try:
                return _execute(chosen, dataset, build, params, read=read)
            finally:
                if started_broker:  # a replay leaves no process: the topics stay in <build>/kafka/data
                    broker.down(build)
        try:
            log.info("live: starting the cluster, the streams and the live generator ...")
            notebook.start_live(build, backend=store)
            return _execute(chosen, dataset, build, {**params, "live": True, **LIVE_PARAMETERS}, live=True,
                            linger_s=linger_s, read=read)
        finally:
            process.stop(build)
            cluster.down(build)
            if store == "kafka":
                broker.down(build)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the run (the notebooks' kernels inherit them), and put them back after."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _execute(chosen: list[Path], dataset: Path, build: Path, params: dict[str, object],
             live: bool = False, linger_s: float = 0.0,
             read: Callable[[str], pd.DataFrame] | None = None) -> RunReport:
    out_dir = build / "executed"
    report = RunReport()
    start = time.monotonic()
    for k, notebook in enumerate(chosen, 1):
        if report.summary is None and cells.info(notebook).cleanup:
            if linger_s > 0:
                log.info("live: everything keeps running for %.0f s (the Flink web UI: clicklab cluster status)",
                         linger_s)
                time.sleep(linger_s)
            report.summary = summarize(dataset, build, live=live, read=read)
        log.info("[%d/%d] %s ...", k, len(chosen), notebook.name)
        t0 = time.monotonic()
        output = out_dir / notebook.name
        execute_notebook(notebook, output, notebook_parameters(notebook, params))
        report.executed.append(output)
        now = time.monotonic()
        log.info("[%d/%d] %s done in %.1f s (elapsed %.0f s)", k, len(chosen), notebook.name, now - t0, now - start)
    report.seconds = time.monotonic() - start
    if report.summary is None:
        report.summary = summarize(dataset, build, live=live, read=read)
    if any(settings.is_sql_app_notebook(p) for p in chosen):
        add_sql_app(report.summary, build)
    return report


#: Parameters only some notebooks take: passed to a notebook only when its parameters cell defines them.
OPTIONAL_PARAMETERS = ("forest_preset",)


def notebook_parameters(notebook: Path, params: dict[str, object]) -> dict[str, object]:
    """``params`` without the :data:`OPTIONAL_PARAMETERS` that ``notebook``'s parameters cell does not define."""
    optional = [k for k in OPTIONAL_PARAMETERS if k in params]
    if not optional:
        return params
    nb = cells.read(notebook)
    source = "\n".join(c.source for c in nb.cells if cells.PARAMETERS in cells.tags(c))
    missing = [k for k in optional if not any(line.startswith(f"{k} =") for line in source.splitlines())]
    return {k: v for k, v in params.items() if k not in missing}
