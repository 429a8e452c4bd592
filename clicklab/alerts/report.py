"""What the alert step did: counts per channel, the report file, and the received e-mails rendered.

Notebook 11 writes ``<build>/alerts/report.json``; ``clicklab run`` reads it for its summary (it is
kept by the cleanup notebook, which only removes the streams).
"""

from __future__ import annotations

import email
import email.policy
import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab.alerts import handler

OUTCOMES = (handler.SENT, handler.SUPPRESSED, handler.DUPLICATE, handler.FAILURE)


def report_path(build: Path) -> Path:
    return Path(build) / "alerts" / "report.json"


def counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per channel: how many records were sent, suppressed (cooldown), duplicates and failed.

    Records that could not be read count under the channel ``malformed``.
    """
    out: dict[str, dict[str, int]] = {}
    for channel, part in table.groupby("channel", sort=True):
        if channel == "-":
            out["malformed"] = {"records": len(part)}
            continue
        got = part["outcome"].value_counts()
        out[str(channel)] = {o: int(got.get(o, 0)) for o in OUTCOMES}
    return out


def write(build: Path, table: pd.DataFrame, description: str, deliveries: pd.DataFrame | None = None,
          emails: list[Path] | None = None) -> Path:
    """Write the report for this run of the alert step; return its path."""
    path = report_path(build)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "destination": description,
        "records": int(table["record_id"].nunique()) if len(table) else 0,
        "per_channel": counts(table) if len(table) else {},
        "outcomes": json.loads(table.to_json(orient="records")) if len(table) else [],
        "sns_deliveries": json.loads(deliveries.to_json(orient="records")) if deliveries is not None else [],
        "emails": [str(p) for p in emails or []],
    }
    path.write_text(json.dumps(body, indent=1), encoding="utf-8")
    return path


def read(build: Path) -> dict[str, Any] | None:
    path = report_path(build)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def summary_lines(report: dict[str, Any]) -> list[str]:
    """For the run summary: alerts sent, suppressed and failed per channel, from :func:`read`'s report."""
    lines = [f"alerts ({report['records']} anomalies; {report['destination'].split(':')[0]}):"]
    for channel, c in report["per_channel"].items():
        if channel == "malformed":
            lines.append(f"  malformed records: {c['records']}")
        else:
            lines.append(f"  {channel}: sent {c['sent']}, suppressed {c['suppressed']}, "
                         f"already sent before {c['duplicate']}, failed {c['failed']}")
    if not report["per_channel"]:
        lines.append("  no anomalies: nothing to send")
    return lines


def render_email(path: Path) -> str:
    """An ``.eml`` file as HTML: its headers, and its HTML part (or its text, escaped)."""
    msg = email.message_from_bytes(Path(path).read_bytes(), policy=email.policy.default)
    head = "".join(f"<tr><th style='text-align:left'>{h}</th><td>{html.escape(str(msg[h] or ''))}</td></tr>"
                   for h in ("From", "To", "Date", "Subject"))
    part = msg.get_body(preferencelist=("html", "plain"))
    content = part.get_content() if part is not None else ""
    if part is None or part.get_content_type() != "text/html":
        content = f"<pre>{html.escape(content)}</pre>"
    return (f"<div style='border:1px solid #ccc;padding:6px;margin:6px 0'><table>{head}</table>"
            f"<div>{content}</div><small>{html.escape(Path(path).name)}</small></div>")
