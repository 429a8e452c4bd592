"""Sessions requested from the running live generator (``clicklab send``), and the sessions it played, read back.

:func:`send` plays one KDG session (:mod:`clicklab.live.sessions`) in the running generator from the next
window boundary (:mod:`clicklab.session_start`: its windows are whole).
``send(build, session="studio-lab-burst")`` plays one of the scenario's anomaly definitions by its
``kind``; ``send(build, template=..., rate=..., duration=...)`` any template. The request is a JSON file
dropped atomically into ``<build>/live/sessions/``; the generator picks it up once its time is near,
starts the session at the request's time (or at the first moment not yet written, if later), answers
with the times it scheduled (``<id>.scheduled.json``, or ``<id>.error.json``) and appends a row to
``<build>/live/labels.csv``; the generator's side of these files is :func:`pick_up_requests` and
:func:`drop_stale_requests`. :func:`labels` and :func:`last_session` read the labels back;
:func:`send_when_warm` waits until the forest of the session's site has scored a few windows.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clicklab import settings
from clicklab.exceptions import ClicklabError
from clicklab.live import process
from clicklab.live.options import _iso_dt, _parse_iso, _read_json, _write_json, live_dir
from clicklab.live.sessions import ScheduledSession, template_session
from clicklab.live.watch import ReadCommitted, rows_committed, wait_for, window_start_s
from clicklab.session_start import next_window_start_ms

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SCORED_BEFORE_SENDING", "labels", "last_session", "send", "send_when_warm", "session_of"]

log = logging.getLogger(__name__)


def session_of(build: str | Path, session: str) -> dict[str, Any]:
    """The definition of ``session`` (a ``kind``) in the scenario of the generator registered for ``build``.

    Raises:
        ClicklabError: no generator is registered, or its scenario has no such session (listed in the message).
    """
    record = _read_json(live_dir(build) / "generator.json")
    if record is None:
        raise ClicklabError(f"no live generator is running for {build}: start it with "
                            f"`clicklab generate --live --build {build}`")
    sessions = record.get("sessions", {})
    if session not in sessions:
        raise ClicklabError(f"--session: scenario {record.get('scenario_name')!r} has no session {session!r} "
                            f"(its sessions: {', '.join(sessions) or 'none'})")
    return sessions[session]


def send(build: str | Path = settings.DEFAULT_BUILD, session: str | None = None, *,
         template: Mapping[str, Any] | str | None = None, rate: float | None = None,
         duration: float | str | None = None, arrivals: str = "poisson", kind: str = "custom",
         timeout_s: float = 10.0, align_s: float = settings.WINDOW_SECONDS) -> ScheduledSession:
    """Play one KDG session in the running live generator of ``build``, from the next window boundary (a multiple
    of ``align_s`` seconds, :mod:`clicklab.session_start`: its windows are whole); returns what it scheduled.

    Either ``session``, the ``kind`` of one of the generator's scenario anomalies (e.g.
    ``"studio-lab-burst"``, ``"sql-lab-extra-clicks"``), or ``template`` (a mapping or JSON text)
    with ``rate`` (records/s), ``duration`` (seconds, or ``30s``/``2m``) and ``arrivals``, labelled
    ``kind``. Waits until the generator has picked the request up (within one flush interval of the start).

    Raises:
        ClicklabError: bad arguments; no generator running (the one line says how to start one); the
            session is unknown or refused; or the generator did not answer within ``timeout_s``.
    """
    if (session is None) == (template is None):
        raise ClicklabError("give either --session KIND or --template JSON (with --rate and --duration)")
    definition: dict[str, Any] | None = None
    if template is not None:
        if rate is None or duration is None:
            raise ClicklabError("--template needs --rate (records/s) and --duration (seconds)")
        definition = template_session(template, rate, duration, arrivals, kind)
    elif rate is not None or duration is not None:
        raise ClicklabError("--rate and --duration go with --template; --session plays the scenario's definition")
    build = Path(build)
    info = process.status(build)
    if info is None or not info.running:
        raise ClicklabError(f"no live generator is running for {build}: start it with "
                            f"`clicklab generate --live --build {build}` (or clicklab.live.process.start_background)")
    if definition is None:
        definition = session_of(build, session)
    requested_ms = next_window_start_ms(round(time.time() * 1000), align_s)
    request_id = _submit(build, definition, requested_ms, scaled=template is None)
    folder = live_dir(build) / "sessions"
    see = f"see {live_dir(build) / 'generator.log'}"
    deadline, taken = time.monotonic() + timeout_s + max(0.0, requested_ms / 1000 - time.time()), False
    while True:
        for suffix in ("scheduled", "error"):
            answer = _read_json(folder / f"{request_id}.{suffix}.json")
            if answer is not None:
                (folder / f"{request_id}.{suffix}.json").unlink(missing_ok=True)
                if suffix == "error":
                    raise ClicklabError(f"the live generator refused the session: {answer.get('error')}")
                return ScheduledSession(id=request_id, site=answer["site"], kind=answer["kind"],
                                        start=_parse_iso(answer["start"]), end=_parse_iso(answer["end"]))
        if time.monotonic() > deadline:
            if taken:
                raise ClicklabError(f"the live generator took the session request but did not answer; {see}")
            try:
                (folder / f"{request_id}.request.json").unlink()  # withdraw it
            except FileNotFoundError:
                taken, deadline = True, time.monotonic() + 5.0  # the generator has it: the answer is on its way
                continue
            now = process.status(build)
            phase = f" (it is {now.phase}, {now.behind_s or 0:.0f} s behind real time)" if now else ""
            raise ClicklabError(f"the live generator did not pick up the session within {timeout_s:g} s{phase}; {see}")
        time.sleep(0.02)


def _submit(build: Path, definition: Mapping[str, Any], requested_ms: int, scaled: bool) -> str:
    """Drop a session request for the generator of ``build``; returns its id."""
    request_id = f"{requested_ms:013d}-{os.getpid()}-{secrets.token_hex(3)}"
    _write_json(live_dir(build) / "sessions" / f"{request_id}.request.json",
                {"id": request_id, "requested_ms": requested_ms, "scaled": scaled, "definition": dict(definition)})
    return request_id


# --------------------------------------------------------------------------------------------
# the generator's side: requests picked up and answered


def pick_up_requests(folder: Path, before_ms: int,
                     schedule: Callable[[Mapping[str, Any], int, bool, str], ScheduledSession]) -> None:
    """Schedule the requests in ``folder`` whose time is before ``before_ms`` (the end of the next batch) with
    ``schedule(definition, requested_ms, scaled, request_id)``; answer each (``<id>.scheduled.json``, or
    ``<id>.error.json`` if it is refused) and delete it."""
    for path in sorted(folder.glob("*.request.json")):
        if path.name.startswith("."):
            continue
        request_id = path.name[: -len(".request.json")]
        try:
            request = json.loads(path.read_text(encoding="utf-8"))
            requested = int(request["requested_ms"])
            if requested >= before_ms:
                continue
            session = schedule(request["definition"], requested, bool(request.get("scaled", True)), request_id)
            answer: dict[str, Any] = {"id": request_id, "site": session.site, "kind": session.kind,
                                      "start": _iso_dt(session.start), "end": _iso_dt(session.end)}
        except FileNotFoundError:
            continue  # withdrawn by send() after its timeout
        except (ClicklabError, ValueError, KeyError, TypeError) as exc:
            log.warning("session request %s refused: %s", request_id, exc)
            answer = {"id": request_id, "error": str(exc)}
        path.unlink(missing_ok=True)
        _write_json(folder / f"{request_id}.{'error' if 'error' in answer else 'scheduled'}.json", answer)


def drop_stale_requests(folder: Path, now_ms: int) -> None:
    """Delete the requests in ``folder`` made before ``now_ms`` (a generator's start): they were meant for an
    earlier one."""
    for path in folder.glob("*.request.json"):
        try:
            requested = int(json.loads(path.read_text(encoding="utf-8"))["requested_ms"])
        except (OSError, ValueError, KeyError, TypeError):
            requested = 0
        if requested < now_ms:
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# the live lab's sessions, read back


def labels(build: str | Path = settings.DEFAULT_BUILD) -> Any:
    """The sessions the live generator played (``<build>/live/labels.csv``), as replay labels (a DataFrame)."""
    from clicklab.results import read_labels

    return read_labels(live_dir(build) / "labels.csv")


def last_session(build: str | Path = settings.DEFAULT_BUILD, kind: str | None = None) -> ScheduledSession | None:
    """The last session (of ``kind``) the live generator played, from its labels; ``None`` if there is none."""
    rows = labels(build)
    if kind is not None:
        rows = rows[rows["kind"] == kind]
    if not len(rows):
        return None
    row = rows.iloc[-1]
    return ScheduledSession(id="", site=row["site"], kind=row["kind"], start=row["start"].to_pydatetime(),
                            end=row["end"].to_pydatetime())


#: Scored windows of its site before :func:`send_when_warm` plays a session: past the forest's warm-up, the
#: adaptive threshold needs a few ordinary scores of the site to know what is unusual for it (with one or two,
#: its level is still the spread of two numbers, and a burst can pass under it). Live, a job reads the windows
#: from its start on, so the forest is as young as that: with the ``lab`` forest (12 samples, 4 windows of
#: warm-up) 8 scores fill its sample, and only a full sample gives its highest score, about ``log2(13)`` = 3.7
#: (with 10 points, 3.46), well over the spike ceiling of 3.23 (:func:`clicklab_udf.threshold.options_for`).
SCORED_BEFORE_SENDING = 8


def send_when_warm(build: str | Path = settings.DEFAULT_BUILD, session: str = "studio-lab-burst",
                   timeout_s: float = 180.0, read: ReadCommitted | None = None,
                   since: float | None = None) -> ScheduledSession:
    """Play a session once its site's forest has emitted :data:`SCORED_BEFORE_SENDING` scores (its warm-up is
    over in ``destinationstream`` and the threshold has seen a few ordinary windows), and once the site is out of
    the refractory period of an earlier anomaly (a false alarm before the burst would otherwise keep the burst's
    windows from being anomalies: the adaptive threshold reports one change once). Says what it waits for.

    ``since`` (epoch s; ``Lab.job_started("destinationstream")``): count only scores committed from then on, those
    of the scoring job now running. A learner who runs 08 again starts a new forest and threshold, while the rows
    of the replaced job stay in the streams: counted, they would send the burst into the new forest's warm-up.
    """
    from clicklab_udf.threshold import AdaptiveThreshold

    site = session_of(build, session)["site"]
    refractory = AdaptiveThreshold().refractory

    def rows(name: str) -> pd.DataFrame:
        return read(name) if read is not None else rows_committed(Path(build), name)

    def scored() -> pd.DataFrame:
        frame = rows("destinationstream")
        if since is not None and len(frame) and "committed_at" in frame:
            frame = frame[frame["committed_at"] >= since]
        return frame[(frame["site"] == site) & (frame["score"] > 0)] if len(frame) else frame

    job = "" if since is None else f" of the scoring job started at {datetime.fromtimestamp(since, UTC):%H:%M:%S} UTC"
    wait_for(f"{SCORED_BEFORE_SENDING} scores for {site} in destinationstream{job} (the forest's warm-up, then a "
             "few ordinary windows)", lambda: len(scored()) >= SCORED_BEFORE_SENDING, timeout_s)

    def quiet_windows() -> int | None:
        """Scored windows of the site since its last anomaly (None: no anomaly yet)."""
        flagged = rows("anomalydetectionstream")
        flagged = flagged[flagged["site"] == site] if len(flagged) else flagged
        if not len(flagged):
            return None
        mine = scored()
        return int((window_start_s(mine) > window_start_s(flagged).max()).sum())

    quiet = quiet_windows()
    if quiet is not None and quiet < refractory:
        print(f"{site} had an anomaly {quiet} window(s) ago: its next {refractory} windows are not reported "
              f"(the refractory period), so the session waits about {(refractory - quiet) * settings.WINDOW_SECONDS} s",
              flush=True)
        wait_for(f"{site} out of the refractory period of its last anomaly", lambda: (
            (q := quiet_windows()) is None or q >= refractory), (refractory + 6) * settings.WINDOW_SECONDS)
    return send(build, session=session)
