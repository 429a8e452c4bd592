"""A lab session that starts from fresh alert state: ``clicklab reset``, and notebook 11's ``fresh_state``.

The handler never sends a (site, window) twice, and it remembers what it sent in ``<build>/alerts/state.json``
across runs. That is right for a Lambda function, and wrong for a class: a rehearsal (or ``make run``) the day
before leaves the state behind, the class's own anomalies are then ``duplicate`` and no e-mail arrives.
:func:`reset` removes what the alert step keeps between runs and nothing else:

* the alert state (``alerts/state.json``, or the file ``ALERT_STATE_FILE`` names): what was sent and each
  site's cooldown; its lock file stays (empty; a handler running meanwhile may hold it);
* notebook 11's report (``alerts/report.json``), from which ``clicklab run`` sums up the alerts;
* the e-mails the local SMTP server received (``outbox/*.eml``).

The streams, the executed notebooks, the Flink cluster's files, the live generator's labels and the replay
file are kept, and :meth:`Reset.lines` says so. A DynamoDB state table (``ALERT_STATE_TABLE``) on AWS is never
touched here: delete its items in the console to send again. The local default creates that table in its own
moto server, and :func:`clicklab.alerts.destination.open_destination` with ``fresh_state`` empties it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from clicklab import settings
from clicklab.alerts import local, report

#: What the other entries of a build folder are (what :func:`reset` keeps, in words).
KEPT: dict[str, str] = {
    "streams": "the streams notebooks 01-10 wrote (12_cleanup removes them)",
    "executed": "the executed notebooks of `clicklab run`",
    "flink": "the Flink cluster's configuration, logs and savepoints",
    "live": "the live generator's labels (the bursts you sent) and status",
    "sqlapp": "the SQL application's streams (notebooks 20-23)",
    "udf": "the Java UDF jar",
    "zeppelin": "the exported Zeppelin notes",
    "lambda.zip": "the Lambda deployment zip",
}


def state_file(build: Path, env: dict[str, str] | None = None) -> Path:
    """The alert state file notebook 11 uses for ``build``: ``ALERT_STATE_FILE``, else ``<build>/alerts/state.json``."""
    env = dict(os.environ if env is None else env)
    return Path(env.get("ALERT_STATE_FILE") or Path(build) / "alerts" / "state.json")


@dataclass
class Reset:
    """What :func:`reset` removed and what it kept, each with what it is."""

    build: Path
    removed: list[tuple[Path, str]] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per thing removed or kept, in words."""
        if self.removed:
            out = [f"removed {path}: {what}" for path, what in self.removed]
        else:
            out = [f"nothing to remove: no alert state, alert report or received e-mail in {self.build}"]
        return out + [f"kept {where}: {what}" for where, what in self.kept]


def _describe_state(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        # keys: "<channel>|<site>|<window>" (alerts) and "<channel>|<site>" (sites), as handler.FileState writes
        sent = len({key.split("|", 1)[1] for key, a in data["alerts"].items() if a.get("status") == "sent"})
        sites = len({key.split("|", 1)[1] for key in data["sites"]})
        return (f"the alert state ({sent} anomal{'y' if sent == 1 else 'ies'} alerted, the cooldowns of {sites} "
                "site(s)): nothing counts as already sent any more")
    except (OSError, ValueError, KeyError, AttributeError, IndexError, TypeError):
        return "the alert state (unreadable, removed all the same)"


def _remove_state(path: Path) -> list[tuple[Path, str]]:
    """Remove the state file, and the temporary files of a write that was cut short, under the state's lock."""
    removed: list[tuple[Path, str]] = []
    if not path.parent.is_dir():
        return removed
    import fcntl

    with open(path.with_name(path.name + ".lock"), "a") as lock:  # as handler.FileState does
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                what = _describe_state(path)
                path.unlink()
                removed.append((path, what))
            for tmp in sorted(path.parent.glob(f"{path.name}*.tmp")):
                tmp.unlink(missing_ok=True)
                removed.append((tmp, "an unfinished write of the alert state"))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return removed


def reset(build: Path = settings.DEFAULT_BUILD, state: Path | None = None, state_table: str | None = None,
          dataset: Path | None = None) -> Reset:
    """Remove the alert state, notebook 11's report and the received e-mails of ``build``; keep everything else.

    ``state``: the state file (default :func:`state_file`). ``state_table``: a DynamoDB state table in use (it
    is listed as kept). ``dataset``: the replay file, listed as kept (default: the bundled one).
    """
    build = Path(build)
    state = Path(state) if state is not None else state_file(build)
    done = Reset(build)
    done.removed += _remove_state(state)
    path = report.report_path(build)
    if path.is_file():
        path.unlink()
        done.removed.append((path, "notebook 11's report (the alert counts of `clicklab run`'s summary)"))
    outbox = local.outbox_dir(build)
    mails = sorted(outbox.glob("*.eml")) + sorted(outbox.glob(".*.eml.tmp")) if outbox.is_dir() else []
    for mail in mails:
        with contextlib.suppress(FileNotFoundError):
            mail.unlink()
    if mails:
        done.removed.append((outbox / "*.eml", f"{len(mails)} e-mail(s) the local SMTP server received"))
    if state_table:
        done.kept.append((f"DynamoDB table {state_table} (ALERT_STATE_TABLE)",
                          "a table on AWS is never touched here: delete its items to send again (the local "
                          "default's table lives in notebook 11's moto server: fresh_state empties it)"))
    for entry in sorted(build.iterdir()) if build.is_dir() else []:
        if entry.name in ("alerts", "outbox"):
            for left in sorted(entry.iterdir()) if entry.is_dir() else []:
                lock = left.name.endswith(".lock")
                done.kept.append((str(left), "the alert state's lock file (empty)" if lock else "not the alert "
                                  "state, report or an e-mail"))
            continue
        done.kept.append((str(entry), KEPT.get(entry.name, "not the alert step's")))
    replay = Path(dataset) if dataset is not None else settings.DEFAULT_DATASET
    done.kept.append((str(replay), "the replay (reset removes nothing outside the build folder)"))
    return done
