"""What ``deploy.py``, ``teardown.py`` and ``producer.py`` share: boto3 sessions and the stack's status.

Every script takes ``--endpoint-url`` (any AWS-compatible endpoint, e.g. a local moto server) and ``--region``;
without ``--endpoint-url`` boto3 finds credentials as usual (environment, profile, instance role). Against an
endpoint with no credentials configured, moto's dummy ones are used.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python scripts/deploy.py`: clicklab from this checkout
    sys.path.insert(0, str(REPO))

import boto3  # noqa: E402
import botocore.exceptions  # noqa: E402

from clicklab.exceptions import ClicklabError  # noqa: E402

TEMPLATE = Path(__file__).resolve().with_name("clickstream-lab.yaml")
DEFAULT_STACK = "clickstream-lab"
DEFAULT_REGION = "us-east-1"
#: moto accepts any credentials; used only with --endpoint-url when none are configured.
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
POLL_S = 2.0


class AwsLabError(ClicklabError):
    """A step of the AWS route failed; the message names the stack, resource, bucket or stream."""


@dataclass
class Aws:
    """boto3 clients for one region and endpoint."""

    region: str = DEFAULT_REGION
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        self.session = boto3.session.Session(region_name=self.region)
        if self.endpoint_url and self.session.get_credentials() is None:
            self.session = boto3.session.Session(region_name=self.region, **DUMMY_CREDENTIALS)
        self._clients: dict[str, Any] = {}

    def client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = self.session.client(name, endpoint_url=self.endpoint_url)
        return self._clients[name]

    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]


T = TypeVar("T")


def run_main(script: str, work: Callable[[], T]) -> T | int:
    """What a script's ``main`` does around its work: ``work()``'s result, or exit code 1 with one line on
    standard error naming ``script`` and the cause (an :class:`AwsLabError` or another clicklab error, or no AWS
    credentials), or 130 when interrupted."""
    try:
        return work()
    except ClicklabError as exc:  # AwsLabError, and clicklab's own (a scenario, the Lambda zip)
        print(f"{script}: {exc}", file=sys.stderr)
        return 1
    except botocore.exceptions.NoCredentialsError:
        print(f"{script}: no AWS credentials (configure them, or give --endpoint-url for a local endpoint)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{script}: interrupted", file=sys.stderr)
        return 130


def error_text(exc: Exception) -> str:
    """A botocore error as one line: its code and message."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', exc)}"
    return f"{type(exc).__name__}: {exc}"


def find_stack(cfn: Any, stack: str) -> dict[str, Any] | None:
    """The stack's description, or None when there is no such stack (or it was deleted)."""
    try:
        found = cfn.describe_stacks(StackName=stack)["Stacks"]
    except botocore.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise AwsLabError(f"stack {stack}: {error_text(exc)}") from None
    if not found or found[0]["StackStatus"] == "DELETE_COMPLETE":
        return None
    return found[0]


def outputs(description: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}


def failed_resources(cfn: Any, stack: str) -> list[str]:
    """``LogicalId (Type): reason`` of every resource event that failed, oldest first."""
    try:
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    except botocore.exceptions.ClientError:
        return []
    failed = [e for e in reversed(events) if e.get("ResourceStatus", "").endswith("_FAILED")
              and e.get("LogicalResourceId") != e.get("StackName")]
    return [f"{e['LogicalResourceId']} ({e.get('ResourceType', '?')}): "
            f"{e.get('ResourceStatusReason', 'no reason given')}" for e in failed]


def wait_stack(cfn: Any, stack: str, done: str, timeout_s: float = 1800.0) -> dict[str, Any] | None:
    """Wait until ``stack`` (name or id) reaches ``done`` (``CREATE_COMPLETE``, ``UPDATE_COMPLETE``,
    ``DELETE_COMPLETE``); any other final status is an :class:`AwsLabError` naming the resources that failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = cfn.describe_stacks(StackName=stack)["Stacks"]
        status = found[0]["StackStatus"] if found else "DELETE_COMPLETE"
        if status == done:
            return found[0] if found else None
        if not status.endswith("_IN_PROGRESS"):
            reasons = failed_resources(cfn, stack) or [found[0].get("StackStatusReason") or "no reason given"]
            raise AwsLabError(f"stack {stack}: {status} (wanted {done}); failed: " + "; ".join(reasons))
        if time.monotonic() > deadline:
            raise AwsLabError(f"stack {stack}: still {status} after {timeout_s:.0f} s")
        time.sleep(POLL_S)


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object (and version) of ``bucket``; the count deleted. A bucket that is gone: 0."""
    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            keys = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return 0
        raise AwsLabError(f"S3 bucket {bucket}: cannot empty it: {error_text(exc)}") from None
    return deleted
