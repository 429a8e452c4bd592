"""Shared fixtures. One Flink table environment (one JVM) serves every test of a run."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pytest


def write_events(path: Path, events: Iterable[tuple[str, str, str]]) -> Path:
    """Write (browseraction, site, event_time) tuples as a replay file (gzip if the name says so)."""
    lines = "".join(
        json.dumps({"browseraction": a, "site": s, "event_time": t}) + "\n" for a, s, t in events
    )
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(lines)
    else:
        path.write_text(lines, encoding="utf-8")
    return path


def client_env() -> dict[str, str]:
    """The environment for a clicklab subprocess: without what an in-process PyFlink UDF worker sets."""
    return {k: v for k, v in os.environ.items() if k != "PYFLINK_GATEWAY_DISABLED"}


@pytest.fixture(scope="session")
def t_env():
    """The run's one streaming table environment."""
    from clicklab.flink import create_table_env

    return create_table_env()
