"""clicklab run also writes the local Zeppelin note of the run, with its results, and checks it loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clicklab import settings
from clicklab.zeppelin.note import check_loads
from tests.conftest import client_env, write_events

pytestmark = pytest.mark.flink


def test_run_writes_the_checked_local_note_with_results(tmp_path: Path):
    dataset = write_events(tmp_path / "tiny.jsonl", [
        ("Impression", "https://a.example", "2024-01-01T00:00:01.000Z"),
        ("Click", "https://a.example", "2024-01-01T00:00:02.000Z"),
        ("Impression", "https://b.example", "2024-01-01T00:00:13.000Z"),
    ])
    build = tmp_path / "build"
    result = subprocess.run(
        [sys.executable, "-m", "clicklab", "run", "--only", "03", "--dataset", str(dataset), "--build", str(build)],
        capture_output=True, text=True, env=client_env(), timeout=600, cwd=settings.REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    [path] = list((build / "zeppelin").glob("*.zpln"))
    assert f"loads-checked): {path}" in result.stdout
    note = check_loads(path)
    step3 = next(p for p in note.paragraphs if p.title == "#3: View the Ticker Stream Data in real-time")
    assert str(dataset.resolve()) in next(p.text for p in note.paragraphs if p.title and p.title.startswith("#1 "))
    table = next(m["data"] for m in step3.results["msg"] if m["type"] == "TABLE")
    assert table.splitlines()[0] == "browseraction\tsite\trowtime" and len(table.splitlines()) == 4
