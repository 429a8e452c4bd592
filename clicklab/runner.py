"""``clicklab run``: execute the lab's notebooks headless with papermill, in order.

Executed copies go to ``<build>/executed/``; the notebooks in ``notebooks/`` stay without outputs.
A failing cell raises :class:`NotebookError` naming the notebook, the cell (``In [N]``) and the cause.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from clicklab import settings
from clicklab.exceptions import ClicklabError, NotebookError
from clicklab.results import check_dataset, compare_ctr, read_events, read_stream, reference_ctr


def lab_notebooks(folder: Path = settings.NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``NN_topic.ipynb``), in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


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
def _stderr_to(log: Path) -> Iterator[None]:
    """Send this process's stderr (file descriptor 2), and so the kernel's and Flink's, to a log."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "ab") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, str]) -> None:
    """Run one notebook with papermill; a failing cell becomes a :class:`NotebookError`.

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
        injected = sum("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in executed)
        position = f"cell {exc.cell_index + 1 - injected} of the notebook"
        cell = f"In [{exc.exec_count}], {position}" if exc.exec_count else position
        evalue = str(exc.evalue).strip().splitlines()[0] if str(exc.evalue).strip() else ""
        raise NotebookError(notebook.name, cell, f"{exc.ename}: {evalue} (executed copy: {output})") from None


@dataclass
class RunReport:
    """What a run did, for the summary."""

    executed: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    summary: str = ""  # computed before the cleanup notebook removes the streams it reads


#: The lab's last notebook (``12_cleanup``) removes the streams: the summary is computed before it runs.
CLEANUP_SUFFIX = "_cleanup.ipynb"


def run(
    dataset: Path = settings.DEFAULT_DATASET,
    build: Path = settings.DEFAULT_BUILD,
    only: list[str] | None = None,
    notebooks_dir: Path = settings.NOTEBOOKS_DIR,
    echo: Callable[[str], None] = print,
) -> RunReport:
    """Execute the notebooks in order into ``<build>/executed/``, showing progress; then :func:`summary`
    (just before a cleanup notebook, if one is chosen)."""
    dataset = check_dataset(Path(dataset)).resolve()
    build = Path(build).resolve()
    out_dir = build / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = select(lab_notebooks(notebooks_dir), only)
    params = {"dataset": str(dataset), "build": str(build)}
    report = RunReport()
    start = time.monotonic()
    for k, notebook in enumerate(chosen, 1):
        if notebook.name.endswith(CLEANUP_SUFFIX) and not report.summary:
            report.summary = summary(dataset, build)
        echo(f"[{k}/{len(chosen)}] {notebook.name} ...")
        t0 = time.monotonic()
        output = out_dir / notebook.name
        execute_notebook(notebook, output, params)
        report.executed.append(output)
        now = time.monotonic()
        echo(f"[{k}/{len(chosen)}] {notebook.name} done in {now - t0:.1f} s (elapsed {now - start:.0f} s)")
    report.seconds = time.monotonic() - start
    report.summary = report.summary or summary(dataset, build)
    return report


def summary(dataset: Path, build: Path) -> str:
    """Events replayed, windows per stream, CTR range per site, and the check of ctrstream."""
    lines: list[str] = []
    events = read_events(dataset)
    lines.append(f"events replayed: {len(events):,} from {dataset}")
    for name in ("impressionstream", "clickstream", "ctrstream"):
        lines.append(f"{name}: {len(read_stream(build, name)):,} windows")
    ctr = read_stream(build, "ctrstream")
    if not ctr.empty:
        stats = ctr.groupby("site")["ctr"].agg(["min", "median", "max"])
        lines.append("CTR per site (%):  min  median  max")
        for site, row in stats.iterrows():
            lines.append(f"  {site}: {row['min']:.1f}  {row['median']:.1f}  {row['max']:.1f}")
        problems = compare_ctr(ctr, reference_ctr(dataset))
        if problems:
            raise ClicklabError("ctrstream differs from the CTR computed from the replay file:\n  "
                                + "\n  ".join(problems))
        lines.append(f"ctrstream matches the CTR computed independently from the replay file ({len(ctr):,} windows)")
    lines += anomaly_summary(dataset, build)
    from clicklab.alerts.report import summary_lines as alert_lines

    lines += alert_lines(build)
    return "\n".join(lines)


def anomaly_summary(dataset: Path, build: Path, threshold: float = settings.ANOMALY_THRESHOLD) -> list[str]:
    """Anomalies per site, and against the replay's labels: detected, missed, false alarms per hour."""
    from clicklab.evaluation import compare_modes
    from clicklab.results import read_labels

    scored = read_stream(build, "destinationstream")
    if scored.empty:
        return []
    flagged = read_stream(build, "anomalydetectionstream")
    lines = ["anomalies per site (anomalydetectionstream):"]
    counts = flagged.groupby("site").size() if len(flagged) else pd.Series(dtype=int)
    for site in sorted(scored["site"].unique()):
        lines.append(f"  {site}: {int(counts.get(site, 0))}")
    labels = read_labels(settings.labels_path_for(Path(dataset)))
    if labels.empty:
        return [*lines, "no labels file next to the dataset: detections not judged"]
    report = compare_modes(scored, flagged, labels, threshold)
    for row in report.summary.to_dict("records"):
        values = list(row.values())
        lines.append(f"{values[0]}: " + ", ".join(f"{k} {v}" for k, v in list(row.items())[1:]))
    det = report.detections
    for _, row in det[~det["adaptive detected"].astype(bool)].iterrows():
        lines.append(f"  missed (adaptive): {row['site']} {row['kind']} at {row['start']}")
    return lines


