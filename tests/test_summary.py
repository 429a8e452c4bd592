"""The run summary as figures and checks, on streams written by hand (no Flink), and how `clicklab run` ends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clicklab import results, runner, settings
from clicklab.summary import RunSummary, summarize
from tests.conftest import write_events

SITE_A, SITE_B = "https://a.example", "https://b.example"


def write_stream(build: Path, name: str, rows: list[dict]) -> None:
    folder = settings.streams_dir(build) / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-0").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def replay(tmp_path: Path) -> Path:
    # event_time as the replay writes it (with milliseconds): anything else is a bad event (clicklab.badevents)
    events = [("Impression", SITE_A, f"2023-08-23T12:00:0{i}.000Z") for i in range(4)]
    events += [("Click", SITE_A, "2023-08-23T12:00:05.000Z"), ("Impression", SITE_B, "2023-08-23T12:00:12.000Z"),
               ("Click", SITE_B, "2023-08-23T12:00:13.000Z"), ("Click", SITE_B, "2023-08-23T12:00:14.000Z")]
    return write_events(tmp_path / "r.jsonl", events)


def ctr_rows(replay: Path) -> list[dict]:
    return json.loads(results.reference_ctr(replay).to_json(orient="records"))


def test_figures_and_a_passing_check(tmp_path: Path, replay: Path):
    build = tmp_path / "build"
    write_stream(build, "ctrstream", ctr_rows(replay))
    summary = summarize(replay, build)
    assert summary.ok and summary.events == 8
    assert summary.windows == {"impressionstream": 0, "clickstream": 0, "ctrstream": 2}
    assert summary.ctr_per_site == {SITE_A: (25.0, 25.0, 25.0), SITE_B: (200.0, 200.0, 200.0)}
    assert summary.anomalies_per_site is None and summary.alerts is None  # 08 and 11 did not run
    text = summary.render()
    assert text.splitlines()[0] == f"events replayed: 8 from {replay}"
    assert f"  {SITE_B}: 200.0  200.0  200.0" in text
    assert "ctrstream matches the CTR computed independently from the replay file (2 windows)" in text


def test_a_failing_check_is_shown_with_what_differs(tmp_path: Path, replay: Path):
    build = tmp_path / "build"
    rows = ctr_rows(replay)
    rows[0]["clickcount"] += 1
    write_stream(build, "ctrstream", rows)
    summary = summarize(replay, build)
    assert not summary.ok and [c.name for c in summary.failed()] == ["ctrstream"]
    text = summary.render()
    assert "ctrstream differs from the CTR computed from the replay file:" in text
    assert "clickcount differs for site" in text and "expected 1, ctrstream has 2" in text
    assert "CTR per site" in text  # the figures are still there


def test_anomalies_without_labels_say_so(tmp_path: Path, replay: Path):
    build = tmp_path / "build"
    write_stream(build, "ctrstream", ctr_rows(replay))
    write_stream(build, "destinationstream", [{"site": r["site"], "time": r["time"], "ctr": r["ctr"], "score": 3.0}
                                              for r in ctr_rows(replay)])
    write_stream(build, "anomalydetectionstream", [{"site": SITE_B, "rowtime": "2023-08-23 12:00:10",
                                                    "ctrpercent": 200.0, "anomaly_score": 3.0}])
    summary = summarize(replay, build)
    assert summary.anomalies_per_site == {SITE_A: 0, SITE_B: 1} and not summary.labelled
    assert "no labels file next to the dataset: detections not judged" in summary.render()


def test_clicklab_run_prints_the_summary_then_fails_on_a_failed_check(tmp_path: Path, replay: Path, monkeypatch,
                                                                        capsys):
    from clicklab import cli, flink
    from clicklab.zeppelin import export

    build = tmp_path / "build"
    rows = ctr_rows(replay)
    rows[1]["ctr"] = 1.0
    write_stream(build, "ctrstream", rows)
    monkeypatch.setattr(flink, "check_java", lambda: 17)
    monkeypatch.setattr(runner, "run", lambda **kw: runner.RunReport(summary=summarize(replay, build)))
    monkeypatch.setattr(export, "export_lab", lambda *a, **kw: type("R", (), {"path": tmp_path / "n.zpln"}))
    assert cli.main(["run", "--dataset", str(replay), "--build", str(build)]) == 1
    out, err = capsys.readouterr()
    assert "ctr differs for site" in out and "events replayed: 8" in out
    assert "clicklab run: check failed: ctrstream differs" in err and "Traceback" not in err


def test_a_summary_without_checks_is_ok():
    assert RunSummary(dataset=Path("x"), events=0, windows={}).ok


def test_live_latency_reads_the_folders_commit_times_unless_given_a_reader(tmp_path: Path):
    """Live, the summary says how long after its window the burst's anomaly row showed: from the row's file's
    commit time on files, from the reader's ``committed_at`` on topics."""
    import os

    import pandas as pd

    from clicklab.summary import burst_latency

    live = tmp_path / "live"
    live.mkdir()
    (live / "labels.csv").write_text("site,start,end,kind\nhttps://www.mysite.com,2026-12-07T13:01:30.000Z,"
                                     "2026-12-07T13:02:00.000Z,studio-lab-burst\n", encoding="utf-8")
    window_end = pd.Timestamp("2026-12-07T13:01:40Z").timestamp()
    row = {"site": "https://www.mysite.com", "rowtime": "2026-12-07 13:01:30", "ctrpercent": 500.0,
           "anomaly_score": 3.6}
    folder = settings.streams_dir(tmp_path) / "anomalydetectionstream"
    folder.mkdir(parents=True)
    path = folder / "part-0"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    os.utime(path, (window_end + 2.5, window_end + 2.5))
    assert burst_latency(tmp_path) == {"anomaly row": pytest.approx(2.5)}

    def read(name: str) -> pd.DataFrame:
        return pd.DataFrame([{**row, "committed_at": window_end + 1.25}])

    assert burst_latency(tmp_path, read) == {"anomaly row": pytest.approx(1.25)}
    summary = summarize(tmp_path / "none.jsonl", tmp_path, live=True)  # the folders: their commit times
    assert summary.latency == {"anomaly row": pytest.approx(2.5)}
