"""The lab's "Environment Cleanup", locally: remove the streams; check nothing of the alerts still listens.

The local alert servers (moto and SMTP) are threads of notebook 11's kernel and ended with it: there is
nothing to stop here. :func:`clean_up` checks that nothing answers on the ports notebook 11 recorded in its
report. What a user who ran the lab on AWS deletes is listed in :data:`AWS_RESOURCES` (notebook 12 shows it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from clicklab import settings, streams
from clicklab.alerts import local, report
from clicklab.alerts.destination import recorded_ports
from clicklab.kafka import broker, notes

#: What the AWS lab created, in the order to delete it (the console page, and what to look for).
AWS_RESOURCES: tuple[tuple[str, str], ...] = (
    ("Managed Service for Apache Flink Studio notebook", "Managed Apache Flink > Studio: stop, then delete it"),
    (f"Kinesis data streams ({', '.join(streams.STREAM_NAMES)})", "Kinesis > Data streams: delete each"),
    ("Lambda function (the alert handler, lambda_function.lambda_handler)", "Lambda > Functions: delete"),
    ("SNS topic and its e-mail and SMS subscriptions", "SNS > Topics and Subscriptions: delete"),
    ("DynamoDB table named by ALERT_STATE_TABLE (if you used one)", "DynamoDB > Tables: delete"),
    ("Glue database of the Studio notebook, S3 bucket with the UDF jar", "Glue > Databases; S3: empty, delete"),
    ("IAM roles and policies of the notebook and the Lambda function", "IAM > Roles: delete"),
    ("CloudFormation stack of the Kinesis Data Generator, its Cognito user",
     "CloudFormation > Stacks: delete the stack"),
)


@dataclass
class Cleanup:
    """What :func:`clean_up` did and found."""

    ports: dict[str, int] = field(default_factory=dict)  # the local servers' ports, from notebook 11's report
    listening: list[str] = field(default_factory=list)  # those of them that still accept connections
    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    dataset: Path | None = None  # the replay file, kept

    def kept_lines(self) -> list[str]:
        """What is kept, each with what it is and how to remove it, in words."""
        out = [f"kept {path}: {_KEPT.get(path.name, 'not removed by the cleanup')}" for path in self.kept]
        if self.dataset is not None:
            out.append(f"kept {self.dataset}: the replay file the lab reads (the cleanup never touches it)")
        return out

    def lines(self) -> list[str]:
        if not self.ports:
            out = ["no local alert servers recorded (notebook 11 did not run on this build, or sent to a configured "
                   "destination); the local servers run in notebook 11's kernel and end with it"]
        else:
            where = ", ".join(f"{name} on port {port}" for name, port in self.ports.items())
            if self.listening:
                out = [f"still listening: {', '.join(self.listening)}: notebook 11's kernel is still running (its "
                       "last cell stops the servers; so does shutting the kernel down), or another program took "
                       "the port since"]
            else:
                out = [f"the local servers ({where}) ended with notebook 11's kernel: nothing listens on their "
                       "ports"]
        out += [f"removed {p}" for p in self.removed]
        return out + self.kept_lines()


#: What the cleanup keeps, in words (:meth:`Cleanup.kept_lines`).
_KEPT = {
    "streams": "the streams (remove_streams = False)",
    "alerts": "the alert state and report; notebook 11 starts from fresh state (fresh_state = True, its "
              "default), `clicklab reset` clears them, fresh_state = False continues from them",
    "outbox": "the e-mails the local SMTP server received (`clicklab reset` removes them)",
    "executed": "the executed notebooks of `clicklab run`",
    "live": "the live generator's labels: the bursts that were sent",
    "sqlapp": "the SQL application's streams (notebooks 20-23)",
}


def clean_up(build: Path = settings.DEFAULT_BUILD, remove_streams: bool = True,
             dataset: Path | None = None) -> Cleanup:
    """Remove ``build/streams`` (and the lab broker's topics, once it is stopped); check that nothing listens on the
    local servers' ports any more.

    The servers ran in notebook 11's kernel and ended with it; nothing is stopped here. The alert state and
    report, the outbox, the executed notebooks, the live generator's labels and the replay file (``dataset``)
    are kept, and :meth:`Cleanup.lines` says so (``clicklab reset`` clears the alert state, the report and the
    outbox). A ``build/alerts/run/`` folder (the pid files of an older version) is removed.
    """
    build = Path(build)
    recorded = report.read(build)
    ports = recorded_ports(recorded.get("destination", "")) if recorded else {}
    done = Cleanup(ports=ports, listening=[f"{name} on port {port}" for name, port in ports.items()
                                           if local.port_open(port)], dataset=Path(dataset) if dataset else None)
    streams = settings.streams_dir(build)
    if remove_streams and streams.exists():
        shutil.rmtree(streams)
        done.removed.append(streams)
    if remove_streams and broker.status(build) is None:
        done.removed += notes.remove_topics(build)
    old_run = build / "alerts" / "run"
    if old_run.is_dir():
        shutil.rmtree(old_run)
        done.removed.append(old_run)
    for kept in (build / "alerts", local.outbox_dir(build), build / "executed", build / "live", build / "sqlapp",
                 *([] if remove_streams else [streams])):
        if kept.exists():
            done.kept.append(kept)
    return done
