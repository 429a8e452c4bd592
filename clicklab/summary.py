"""What a run of the lab produced, as figures and checks (``clicklab run`` renders it at the end).

:func:`summarize` reads the streams of a build folder and the replay file; it returns a
:class:`RunSummary`: events replayed, bad events per reason (``badevents``), windows per stream, CTR
range per site, anomalies per site, detections and false alarms per mode against the replay's labels,
what the alerts did, and the :class:`Check` s. A failed check (``ctrstream`` differs from the CTR
recomputed with pandas from the replay file) is part of the summary, so the user sees it with
everything else; ``clicklab run`` then exits non-zero. Plain pandas: no Flink.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import settings
from clicklab.results import compare_ctr, read_events, read_labels, read_stream, reference_ctr

#: The streams whose windows the summary counts.
WINDOW_STREAMS = ("impressionstream", "clickstream", "ctrstream")


@dataclass(frozen=True)
class Check:
    """One check of the run: passed or not, one line to show, and what differs when it failed."""

    name: str
    passed: bool
    message: str
    problems: tuple[str, ...] = ()


@dataclass
class RunSummary:
    """The figures and checks of one run (see the module's docstring)."""

    dataset: Path
    events: int
    windows: dict[str, int]
    ctr_per_site: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # min, median, max
    anomalies_per_site: dict[str, int] | None = None  # None: nothing was scored
    labelled: bool = False
    modes: list[dict[str, Any]] = field(default_factory=list)  # per mode: labelled, detected, false alarms ...
    missed: list[str] = field(default_factory=list)  # labelled anomalies the adaptive mode missed
    alerts: dict[str, Any] | None = None  # notebook 11's report (None: it did not run)
    checks: list[Check] = field(default_factory=list)
    live: bool = False  # the live lab: events came from the live generator (and no replay file to check against)
    latency: dict[str, float] = field(default_factory=dict)  # live: seconds from the burst's window end to ...
    bad_events: dict[str, int] = field(default_factory=dict)  # reason -> lines in badevents, most first
    sql_app: dict[str, Any] | None = None  # the SQL application's figures (clicklab.sqlapp.summarize); None: not run

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def render(self) -> str:
        """The summary as ``clicklab run`` prints it."""
        if self.live:
            lines = [f"events generated live: {self.events:,} (what the streams retain)"]
        else:
            lines = [f"events replayed: {self.events:,} from {self.dataset}"]
        lines.append(f"bad events: {sum(self.bad_events.values()):,} (badevents)")
        lines += [f"  {reason}: {n:,}" for reason, n in self.bad_events.items()]
        lines += [f"{name}: {count:,} windows" for name, count in self.windows.items()]
        if self.ctr_per_site:
            lines.append("CTR per site (%):  min  median  max")
            lines += [f"  {site}: {lo:.1f}  {mid:.1f}  {hi:.1f}" for site, (lo, mid, hi) in self.ctr_per_site.items()]
        for check in self.checks:
            lines.append(check.message)
            lines += [f"  {p}" for p in check.problems]
        if self.anomalies_per_site is not None:
            lines.append("anomalies per site (anomalydetectionstream):")
            lines += [f"  {site}: {n}" for site, n in self.anomalies_per_site.items()]
            if not self.labelled:
                lines.append("no labels file next to the dataset: detections not judged")
            for row in self.modes:
                (_, mode), *figures = row.items()
                lines.append(f"{mode}: " + ", ".join(f"{k} {v}" for k, v in figures))
            lines += [f"  missed (adaptive): {m}" for m in self.missed]
        if self.sql_app is not None:
            app = self.sql_app
            lines.append(f"SQL application (notebooks 20-23, build/sqlapp/): CTRSTREAM {app['ctr windows']:,} windows; "
                         f"DESTINATION_SQL_STREAM (ANOMALY_SCORE > 2): {len(app['anomalies'])} anomalies, "
                         f"{app['labelled windows flagged']} of {app['labelled windows']} labelled windows, "
                         f"{app['false alarms']} false alarms")
            lines += [f"  {when} CTRPERCENT {ctr:.1f} ANOMALY_SCORE {score:.2f}"
                      f"{' (labelled: extra clicks)' if labelled else ' (false alarm)'}"
                      for when, ctr, score, labelled in app["anomalies"]]
        if self.alerts is not None:
            from clicklab.alerts.report import summary_lines

            lines += summary_lines(self.alerts)
        if self.latency:
            lines.append("the burst, seconds after its first anomalous window ended: "
                         + ", ".join(f"{k} {v:.1f}" for k, v in self.latency.items())
                         + " (the e-mail once 11 follows the stream; `clicklab bench --live` times it alone)")
        return "\n".join(lines)


def ctr_check(dataset: Path, ctr: Any) -> Check:
    """``ctrstream`` against the CTR of every site and window recomputed with pandas from the replay file."""
    problems = compare_ctr(ctr, reference_ctr(dataset))
    if problems:
        return Check("ctrstream", False, "ctrstream differs from the CTR computed from the replay file:",
                     tuple(problems))
    return Check("ctrstream", True,
                 f"ctrstream matches the CTR computed independently from the replay file ({len(ctr):,} windows)")


def summarize(dataset: Path, build: Path, threshold: float = settings.ANOMALY_THRESHOLD,
              live: bool = False, read: Callable[[str], pd.DataFrame] | None = None) -> RunSummary:
    """The :class:`RunSummary` of the streams under ``build``, replayed from ``dataset`` (or ``live``).

    Live there is no replay file to recompute the CTR from (and a job's first window is partial: it
    starts mid-stream), so the CTR check is left out; the labels are the sessions the live generator
    played, and ``latency`` says how long after its window ended the last one showed as an anomaly row
    and as an e-mail. ``read(name)`` reads a stream (default: its folder under ``build``; on Kafka, its topic).
    """
    from clicklab.alerts import report as alerts_report

    dataset, build = Path(dataset), Path(build)
    committed = read  # live on topics: also each row's commit time (None: the folders' own)
    if read is None:
        def read(name: str) -> pd.DataFrame:
            return read_stream(build, name)
    streams = {name: read(name) for name in WINDOW_STREAMS}
    events = len(read("tickerstream")) if live else len(read_events(dataset))
    out = RunSummary(dataset=dataset, events=events, live=live,
                     windows={name: len(frame) for name, frame in streams.items()})
    ctr = streams["ctrstream"]
    if not ctr.empty:
        stats = ctr.groupby("site")["ctr"].agg(["min", "median", "max"])
        out.ctr_per_site = {str(site): (row["min"], row["median"], row["max"]) for site, row in stats.iterrows()}
        if not live:
            out.checks.append(ctr_check(dataset, ctr))
    out.bad_events = bad_event_counts(read("badevents"))
    _add_anomalies(out, dataset, build, threshold, read("destinationstream"), read("anomalydetectionstream"))
    out.alerts = alerts_report.read(build)
    if live:
        out.latency = burst_latency(build, committed)
    return out


def bad_event_counts(bad: pd.DataFrame) -> dict[str, int]:
    """Lines in ``badevents`` (its rows) per reason, the most frequent first (empty: none, or ``04`` did not run)."""
    if bad.empty:
        return {}
    counts = bad.groupby("reason").size().sort_values(ascending=False, kind="stable")
    return {str(reason): int(n) for reason, n in counts.items()}


def burst_latency(build: Path, read: Callable[[str], pd.DataFrame] | None = None) -> dict[str, float]:
    """Live: seconds from the end of the last session's first anomalous window to its anomaly row and e-mail."""
    from clicklab.alerts import local
    from clicklab.live.send import last_session
    from clicklab.live.watch import rows_committed, session_rows, window_start_s

    session = last_session(build)
    if session is None:
        return {}
    name = "anomalydetectionstream"
    rows = session_rows(read(name) if read is not None else rows_committed(build, name), session)
    if not len(rows):
        return {}
    first = rows.sort_values("rowtime").iloc[0]
    window_end = float(window_start_s(rows.loc[[first.name]]).iloc[0]) + settings.WINDOW_SECONDS
    out = {"anomaly row": float(first["committed_at"]) - window_end}
    mails = [p.stat().st_mtime for p in local.outbox_dir(build).glob("*.eml") if p.stat().st_mtime >= window_end]
    if mails:
        out["e-mail"] = min(mails) - window_end
    return out


def _add_anomalies(out: RunSummary, dataset: Path, build: Path, threshold: float, scored: pd.DataFrame,
                   flagged: pd.DataFrame) -> None:
    """Anomalies per site (``scored``: destinationstream, ``flagged``: anomalydetectionstream), and against the
    replay's labels: detected, missed, false alarms per hour."""
    from clicklab.evaluation import compare_modes

    if scored.empty:
        return
    counts = flagged.groupby("site").size() if len(flagged) else {}
    out.anomalies_per_site = {str(site): int(counts.get(site, 0)) for site in sorted(scored["site"].unique())}
    if out.live:
        from clicklab.live import send

        labels = send.labels(build)
    else:
        labels = read_labels(settings.labels_path_for(dataset))
    if labels.empty:
        return
    out.labelled = True
    report = compare_modes(scored, flagged, labels, threshold)
    out.modes = report.summary.to_dict("records")
    det = report.detections
    out.missed = [f"{row['site']} {row['kind']} at {row['start']}"
                  for _, row in det[~det["adaptive detected"].astype(bool)].iterrows()]


def add_sql_app(out: RunSummary, build: Path) -> None:
    """The SQL application's figures (:func:`clicklab.sqlapp.summarize`) and its check: ``DESTINATION_SQL_STREAM``
    flags every labelled window of the SQL lab's extra clicks (score > 2) and no other."""
    from clicklab import sqlapp

    figures = sqlapp.summarize(Path(build))
    if figures is None:
        out.checks.append(Check("sql app", False, "SQL application: its notebooks ran but CTRSTREAM is missing "
                                f"under {Path(build) / 'sqlapp'}"))
        return
    out.sql_app = figures
    flagged, labelled, false = figures["labelled windows flagged"], figures["labelled windows"], figures["false alarms"]
    passed = labelled > 0 and flagged == labelled and false == 0
    message = (f"SQL application flags the {labelled} extra-click windows with ANOMALY_SCORE > 2 and nothing else"
               if passed else f"SQL application: {flagged} of {labelled} extra-click windows flagged, "
               f"{false} false alarms:")
    out.checks.append(Check("sql app", passed, message))
