"""The lab's "Environment Cleanup", locally: stop the local servers, remove the streams.

What a user who ran the lab on AWS deletes is listed in :data:`AWS_RESOURCES` (notebook 12 shows it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from clicklab import settings
from clicklab.alerts import local

#: What the AWS lab created, in the order to delete it (the console page, and what to look for).
AWS_RESOURCES: tuple[tuple[str, str], ...] = (
    ("Managed Service for Apache Flink Studio notebook", "Managed Apache Flink > Studio: stop, then delete it"),
    ("Kinesis data streams (tickerstream, clickstream, impressionstream, ctrstream, destinationstream, "
     "anomalydetectionstream)", "Kinesis > Data streams: delete each"),
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
    """What :func:`clean_up` did."""

    stopped: list[str] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"stopped {s}" for s in self.stopped] or ["no local alert server was running"]
        out += [f"removed {p}" for p in self.removed]
        out += [f"kept {p}" for p in self.kept]
        return out


def clean_up(build: Path = settings.DEFAULT_BUILD, remove_streams: bool = True) -> Cleanup:
    """Stop the local moto and SMTP servers left under ``build``; remove ``build/streams``.

    The alert state and report, the outbox and the executed notebooks are kept (delete ``build/`` for a
    fresh start: the alerts will then be sent again).
    """
    build = Path(build)
    done = Cleanup(stopped=local.stop_stale(build))
    streams = settings.streams_dir(build)
    if remove_streams and streams.exists():
        shutil.rmtree(streams)
        done.removed.append(streams)
    for kept in (build / "alerts", local.outbox_dir(build)):
        if kept.exists():
            done.kept.append(kept)
    return done
