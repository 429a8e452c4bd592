"""Live sessions: their definitions, as the generator schedules them, and their rows of ``labels.csv``.

A *session* is one KDG session played by the running live generator (requested with
:func:`clicklab.live.send.send`, ``clicklab send``). It has the schema of a scenario's ``anomalies:``
entry without ``start``: it multiplies the normal senders of ``site`` by ``rate_factor`` (0 silences
them) and adds its own ``senders`` for ``duration`` seconds. :func:`session_definition` takes one of
the scenario's anomaly definitions by its ``kind`` (e.g. ``studio-lab-burst``); :func:`template_session`
makes one of any template (its rate is taken as given: ``scale`` does not apply). Definitions are
checked with the scenario schema (:func:`_parse_session`).

The generator appends a row to ``<build>/live/labels.csv`` (``site,start,end,kind``, the replay labels
format) for each session it schedules (:func:`append_label`), with exactly the window in which the
session's traffic is sent, and cuts the rows of sessions still running when it stops short
(:func:`rewrite_labels`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from clicklab.exceptions import ClicklabError
from clicklab.generator import _plain
from clicklab.live.options import _iso_dt, _number, parse_duration
from clicklab.scenario import ARRIVALS, Anomaly, Scenario, parse_scenario
from clicklab.session_start import describe_start

__all__ = ["ScheduledSession", "session_definition", "template_session"]

LabelRow = tuple[str, str, str, str]


@dataclass(frozen=True)
class ScheduledSession:
    """A session the generator scheduled: its traffic changes during ``[start, end)`` (UTC)."""

    id: str
    site: str
    kind: str
    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{self.kind} on {self.site}: {_iso_dt(self.start)} to {_iso_dt(self.end)}{describe_start(self.start)}"


# --------------------------------------------------------------------------------------------
# definitions


def session_definition(scenario: Scenario, kind: str) -> dict[str, Any]:
    """The definition of the scenario's anomaly ``kind`` as a session (an ``anomalies:`` entry without start).

    Raises:
        ClicklabError: the scenario has no anomaly of that kind (the message lists the kinds).
    """
    for anomaly in scenario.anomalies:
        if anomaly.kind == kind:
            return _definition(anomaly)
    kinds = ", ".join(dict.fromkeys(a.kind for a in scenario.anomalies)) or "none"
    raise ClicklabError(f"--session: scenario {scenario.name!r} has no session {kind!r} (its sessions: {kinds})")


def template_session(template: Mapping[str, Any] | str, rate: float, duration: float | str,
                     arrivals: str = "poisson", kind: str = "custom") -> dict[str, Any]:
    """A session of one sender: ``template`` (a mapping or JSON text, with a ``site``) at ``rate`` records/s
    for ``duration`` seconds, added on top of the normal traffic; labelled ``kind``.

    Raises:
        ClicklabError: a value is invalid; the message names the option.
    """
    if isinstance(template, str):
        try:
            template = json.loads(template)
        except ValueError as exc:
            raise ClicklabError(f"--template: not valid JSON: {exc}") from None
    if not isinstance(template, Mapping):
        raise ClicklabError(f"--template: must be a JSON object, got {template!r}")
    site = template.get("site")
    if not isinstance(site, str) or not site.strip():
        raise ClicklabError("--template: needs a 'site' (a string): the label row and the pipeline key on it")
    _number("--rate", rate, minimum=0.0)
    seconds = parse_duration(duration, "--duration")
    if seconds <= 0:
        raise ClicklabError(f"--duration must be more than 0 seconds, got {duration!r}")
    if arrivals not in ARRIVALS:
        raise ClicklabError(f"--arrivals must be one of {', '.join(ARRIVALS)}, got {arrivals!r}")
    if not isinstance(kind, str) or not kind.strip():
        raise ClicklabError(f"--kind must be a non-blank string, got {kind!r}")
    definition = {
        "site": site, "kind": kind, "duration": seconds,
        "senders": [{"name": f"{kind}-sender", "template": dict(template), "rate": float(rate), "arrivals": arrivals}],
    }
    _parse_session(definition, [], "--template")
    return definition


def _definition(anomaly: Anomaly) -> dict[str, Any]:
    """An anomaly as a session definition (JSON-serialisable; its senders' start relative to the anomaly)."""
    return {
        "site": anomaly.site,
        "kind": anomaly.kind,
        "duration": anomaly.duration,
        "rate_factor": dict(anomaly.rate_factor),
        "senders": [
            {"name": s.name, "template": _plain(s.template), "rate": s.rate, "arrivals": s.arrivals,
             "start": s.start - anomaly.start, "duration": s.duration,
             "drift": None if s.drift is None else asdict(s.drift)}
            for s in anomaly.senders
        ],
    }


def _parse_session(definition: Any, normal: list[dict[str, Any]], source: str) -> Anomaly:
    """Validate a session definition with the scenario schema, as an anomaly at offset 0 of a scenario
    whose normal senders are ``normal`` (``rate_factor`` keys must match them)."""
    if not isinstance(definition, dict):
        raise ClicklabError(f"{source}: a session must be a JSON object, got {definition!r}")
    duration = definition.get("duration")
    _number(f"{source}: duration", duration, minimum=0.0, inclusive=False)
    senders = normal or [{"name": " normal", "template": {}, "rate": 0}]
    data = {"name": "session", "start_time": "2000-01-01T00:00:00Z", "duration": duration, "senders": senders,
            "anomalies": [{**definition, "start": 0}]}
    return parse_scenario(data, source=source).anomalies[0]


def _sender_dicts(scenario: Scenario) -> list[dict[str, Any]]:
    """The normal senders as minimal scenario entries (name, template, rate), to validate sessions against."""
    return [{"name": s.name, "template": _plain(s.template), "rate": s.rate} for s in scenario.senders]


# --------------------------------------------------------------------------------------------
# labels.csv


def label_row(session: ScheduledSession) -> LabelRow:
    """A session's row of ``labels.csv``: ``site,start,end,kind``."""
    return (session.site, _iso_dt(session.start), _iso_dt(session.end), session.kind)


def append_label(path: Path, session: ScheduledSession) -> None:
    """Append the session's row to the labels file ``path`` (with the header if the file is new)."""
    new = not path.exists()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if new:
        writer.writerow(["site", "start", "end", "kind"])
    writer.writerow(label_row(session))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(buf.getvalue())


def rewrite_labels(path: Path, changed: Mapping[tuple[str, ...], ScheduledSession]) -> None:
    """Replace the rows of the labels file ``path`` that are keys of ``changed`` by the rows of their sessions
    (atomically: hidden temporary file, then rename)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    rows = [label_row(changed[tuple(r)]) if tuple(r) in changed else r for r in rows]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
