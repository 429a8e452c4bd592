"""What a run of the lab produced, as figures and checks (``clicklab run`` renders it at the end).

:func:`summarize` reads the streams of a build folder and the replay file; it returns a
:class:`RunSummary`: events replayed, windows per stream, CTR range per site, anomalies per site,
detections and false alarms per mode against the replay's labels, what the alerts did, and the
:class:`Check` s. A failed check (``ctrstream`` differs from the CTR recomputed with pandas from the
replay file) is part of the summary, so the user sees it with everything else; ``clicklab run`` then
exits non-zero. Plain pandas: no Flink.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def render(self) -> str:
        """The summary as ``clicklab run`` prints it."""
        lines = [f"events replayed: {self.events:,} from {self.dataset}"]
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
        if self.alerts is not None:
            from clicklab.alerts.report import summary_lines

            lines += summary_lines(self.alerts)
        return "\n".join(lines)


def ctr_check(dataset: Path, ctr: Any) -> Check:
    """``ctrstream`` against the CTR of every site and window recomputed with pandas from the replay file."""
    problems = compare_ctr(ctr, reference_ctr(dataset))
    if problems:
        return Check("ctrstream", False, "ctrstream differs from the CTR computed from the replay file:",
                     tuple(problems))
    return Check("ctrstream", True,
                 f"ctrstream matches the CTR computed independently from the replay file ({len(ctr):,} windows)")


def summarize(dataset: Path, build: Path, threshold: float = settings.ANOMALY_THRESHOLD) -> RunSummary:
    """The :class:`RunSummary` of the streams under ``build``, replayed from ``dataset``."""
    from clicklab.alerts import report as alerts_report

    dataset, build = Path(dataset), Path(build)
    streams = {name: read_stream(build, name) for name in WINDOW_STREAMS}
    out = RunSummary(dataset=dataset, events=len(read_events(dataset)),
                     windows={name: len(frame) for name, frame in streams.items()})
    ctr = streams["ctrstream"]
    if not ctr.empty:
        stats = ctr.groupby("site")["ctr"].agg(["min", "median", "max"])
        out.ctr_per_site = {str(site): (row["min"], row["median"], row["max"]) for site, row in stats.iterrows()}
        out.checks.append(ctr_check(dataset, ctr))
    _add_anomalies(out, dataset, build, threshold)
    out.alerts = alerts_report.read(build)
    return out


def _add_anomalies(out: RunSummary, dataset: Path, build: Path, threshold: float) -> None:
    """Anomalies per site, and against the replay's labels: detected, missed, false alarms per hour."""
    from clicklab.evaluation import compare_modes

    scored = read_stream(build, "destinationstream")
    if scored.empty:
        return
    flagged = read_stream(build, "anomalydetectionstream")
    counts = flagged.groupby("site").size() if len(flagged) else {}
    out.anomalies_per_site = {str(site): int(counts.get(site, 0)) for site in sorted(scored["site"].unique())}
    labels = read_labels(settings.labels_path_for(dataset))
    if labels.empty:
        return
    out.labelled = True
    report = compare_modes(scored, flagged, labels, threshold)
    out.modes = report.summary.to_dict("records")
    det = report.detections
    out.missed = [f"{row['site']} {row['kind']} at {row['start']}"
                  for _, row in det[~det["adaptive detected"].astype(bool)].iterrows()]
