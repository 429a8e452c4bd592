"""The command line as a user types it (in a subprocess, as from a shell)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import client_env, shared_path


def clicklab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clicklab", *args], capture_output=True, text=True,
                          timeout=300, env=client_env())


def test_run_refuses_a_missing_dataset_naming_it(tmp_path: Path):
    proc = clicklab("run", "--dataset", str(tmp_path / "gone.jsonl.gz"), "--build", str(tmp_path / "b"))
    assert proc.returncode == 1
    assert "gone.jsonl.gz" in proc.stderr and "Traceback" not in proc.stderr


def test_generate_writes_events_and_labels_and_prints_the_rate(tmp_path: Path):
    out = tmp_path / "t.jsonl.gz"
    proc = clicklab("generate", "--scenario", "tiny", "--seed", "3", "--out", str(out), "--progress")
    assert proc.returncode == 0, proc.stderr
    assert "events/s" in proc.stdout and "events/s" in proc.stderr  # final figure, and progress
    assert out.is_file() and (tmp_path / "t.labels.csv").is_file()


def test_generate_refuses_a_bad_scenario_naming_file_sender_and_field(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nstart_time: '2023-08-23T12:00:00Z'\nduration: 60\n"
        "senders:\n  - name: clicks\n    template: {browseraction: Click, site: x}\n    rate: -1\n"
    )
    proc = clicklab("generate", "--scenario", str(bad), "--out", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 1
    assert "bad.yaml" in proc.stderr and "clicks" in proc.stderr and "rate" in proc.stderr
    assert "Traceback" not in proc.stderr


#: A row of ``clicklab evaluate``'s table: series, mode ("adaptive", "fixed > 2"), windows, detected, median
#: delay h, false alarms, normal days, false alarms per day.
ROW = re.compile(r"^\s*(\S+)\s+(adaptive|fixed > \S+)\s+(\d+)\s+(\d+)\s+\S+\s+(\d+)\s+\S+\s+\S+\s*$")


def evaluate_table(stdout: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(series, mode) -> (windows, detected, false alarms), from the table ``clicklab evaluate`` prints."""
    rows = {}
    for line in stdout.splitlines():
        m = ROW.match(line)
        if m:
            rows[m[1], m[2]] = (int(m[3]), int(m[4]), int(m[5]))
    return rows


#: Where the injected anomalies of ``synthetic/daily_cycle.csv`` start (point index) and how many points they last.
ANOMALIES = {"spike": (700, 1), "level shift": (1300, 24), "dropout": (1900, 12), "dip": (2500, 1)}


def write_labelled_series(root: Path, points: int = 3000) -> tuple[Path, Path]:
    """Two 5-minute series in NAB's layout, ``data/synthetic/<name>.csv`` (``timestamp,value``), and their
    labels in NAB's ``combined_windows.json`` format; returns (data folder, labels file).

    ``daily_cycle``: a daily sine with noise and the four :data:`ANOMALIES`, all after the forest's warm-up
    (256 points): a spike (+120), a level shift (+40 for 2 h), a dropout to 0 (1 h) and a dip (-120), each
    labelled from 1 h before to 1 h after. ``flat_noise``: noise around a level, no anomaly (``[]``).
    """
    rng = np.random.default_rng(7)
    times = pd.date_range("2024-03-04 00:00:00", periods=points, freq="5min")
    stamps = times.strftime("%Y-%m-%d %H:%M:%S")
    hours = np.arange(points) / 12
    cycle = 50 + 20 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 1.5, points)
    for (start, length), change in zip(ANOMALIES.values(), (+120, +40, None, -120), strict=True):
        cycle[start:start + length] = 0.0 if change is None else cycle[start:start + length] + change
    flat = 20 + rng.normal(0, 1.0, points)
    data = root / "data"
    (data / "synthetic").mkdir(parents=True)
    for name, values in (("daily_cycle", cycle), ("flat_noise", flat)):
        pd.DataFrame({"timestamp": stamps, "value": values.round(2)}).to_csv(data / "synthetic" / f"{name}.csv",
                                                                              index=False)
    hour = pd.Timedelta(hours=1)
    windows = {
        "synthetic/daily_cycle.csv": [[f"{times[s] - hour}.000000", f"{times[s + n - 1] + hour}.000000"]
                                      for s, n in ANOMALIES.values()],
        "synthetic/flat_noise.csv": [],
    }
    labels = root / "labels" / "combined_windows.json"
    labels.parent.mkdir()
    labels.write_text(json.dumps(windows, indent=4), encoding="utf-8")
    return data, labels


#: A row of ``clicklab evaluate``'s NAB table: corpus, series, windows, detector, standard score, [threshold,] TP,
#: FN, FP, low FP, low FN.
NAB_ROW = re.compile(r"^\s*(\S+)\s+(\d+)\s+(\d+)\s+(scores \(best threshold\)|adaptive|fixed > \S+)\s+(\S+)"
                     r"(?:\s+(\S+))?\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s*$")


def nab_table(stdout: str) -> dict[tuple[str, str], tuple[int, int, float, int, int, int]]:
    """(corpus, detector) -> (series, windows, standard score, TP, FN, FP), from ``clicklab evaluate``'s NAB table."""
    rows = {}
    for line in stdout.splitlines():
        m = NAB_ROW.match(line)
        if m:
            rows[m[1], m[4]] = (int(m[2]), int(m[3]), float(m[5]), int(m[7]), int(m[8]), int(m[9]))
    return rows


def test_evaluate_in_process_prints_detections_and_nab_scores(tmp_path: Path):
    """`clicklab evaluate --in-process` (no JVM): both tables, for our series and the bundled replay's sites."""
    data, labels = write_labelled_series(tmp_path)
    proc = clicklab("evaluate", "--in-process", "--data", str(data), "--labels", str(labels), "--trees", "30",
                    "--nab-results", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    assert "scored 5/5 series in process" in proc.stderr  # 2 series and the replay's 3 sites
    rows = evaluate_table(proc.stdout)
    assert rows["TOTAL", "adaptive"][0] == 4 and rows["TOTAL", "fixed > 2"][:2] == (4, 4), proc.stdout
    nab = nab_table(proc.stdout)
    detectors = ("scores (best threshold)", "adaptive", "fixed > 2")
    assert set(nab) == {(c, d) for c in ("synthetic", "lab-replay") for d in detectors}, proc.stdout
    assert nab["synthetic", "adaptive"][:2] == (2, 4) and nab["lab-replay", "adaptive"][:2] == (3, 5)
    for corpus in ("synthetic", "lab-replay"):  # the best threshold is at least as good as the threshold 2
        assert nab[corpus, "scores (best threshold)"][2] >= nab[corpus, "fixed > 2"][2], proc.stdout
    written = sorted(p.relative_to(tmp_path / "results").as_posix() for p in (tmp_path / "results").rglob("*.csv"))
    assert written == [f"{d}/synthetic/{n}.csv" for d in ("adaptive", "fixed", "scores")
                       for n in ("daily_cycle", "flat_noise")]


def test_evaluate_refuses_labels_without_data(tmp_path: Path):
    proc = clicklab("evaluate", "--in-process", "--labels", str(tmp_path / "w.json"))
    assert proc.returncode == 1 and "--labels needs --data" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.flink
def test_evaluate_scores_labelled_series_through_flink(tmp_path: Path):
    """`clicklab evaluate` on series of our own with injected anomalies, through the Flink job."""
    data, labels = write_labelled_series(tmp_path)
    proc = clicklab("evaluate", "--data", str(data), "--labels", str(labels), "--build", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    rows = evaluate_table(proc.stdout)
    assert set(rows) == {(s, m) for s in ("synthetic/daily_cycle.csv", "synthetic/flat_noise.csv", "TOTAL")
                         for m in ("adaptive", "fixed > 2")}, proc.stdout
    windows, detected, false_alarms = rows["TOTAL", "adaptive"]
    # measured: all 4 detected in both modes; 3 false alarms adaptive in 20 days of normal data (one on the flat
    # series: the sustained-change rule reads a slow drift of the noise's scores as a change), 32 fixed
    assert windows == 4 and detected >= 3 and false_alarms <= 3, proc.stdout
    assert rows["synthetic/flat_noise.csv", "adaptive"][:2] == (0, 0)
    fixed_windows, fixed_detected, fixed_false_alarms = rows["TOTAL", "fixed > 2"]
    assert fixed_windows == 4 and fixed_detected >= 3 and 5 * false_alarms <= fixed_false_alarms, proc.stdout


@pytest.mark.flink
@pytest.mark.shared
def test_evaluate_scores_nab_series_through_flink(tmp_path: Path):
    """`clicklab evaluate` on two real labelled NAB series (../shared/nab), through the Flink job."""
    nab_data = shared_path("nab", "data", "realTraffic")
    nab_labels = shared_path("nab", "labels", "combined_windows.json")
    data = tmp_path / "data" / "realTraffic"
    data.mkdir(parents=True)
    for name in ("speed_7578.csv", "occupancy_t4013.csv"):
        (data / name).write_bytes((nab_data / name).read_bytes())
    proc = clicklab("evaluate", "--data", str(tmp_path / "data"), "--labels", str(nab_labels),
                    "--build", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    rows = evaluate_table(proc.stdout)
    assert ("realTraffic/speed_7578.csv", "adaptive") in rows, proc.stdout
    windows, detected, false_alarms = rows["TOTAL", "adaptive"]
    # speed_7578 has 4 labelled windows, occupancy_t4013 2; measured: 6 detected, 1 false alarm
    assert windows == 6 and detected >= 4 and false_alarms <= 3, proc.stdout


def test_reset_clears_the_alert_state_report_and_outbox_and_says_what_it_keeps(tmp_path: Path):
    """`clicklab reset` before a class: a rehearsal's alerts no longer count as sent; the streams stay."""
    build = tmp_path / "build"
    (build / "alerts").mkdir(parents=True)
    (build / "alerts" / "report.json").write_text("{}")
    (build / "outbox").mkdir()
    (build / "outbox" / "20260101T120000-1-00001.eml").write_text("Subject: Anomaly Detected\n\nbody\n")
    (build / "streams" / "ctrstream").mkdir(parents=True)
    state = tmp_path / "elsewhere" / "state.json"  # ALERT_STATE_FILE: the state notebook 11 uses then
    state.parent.mkdir()
    state.write_text(json.dumps({"version": 1, "alerts": {"sns|https://www.mysite.com|2023-08-23T13:05:00.000Z":
                                                          {"status": "sent"}}, "sites": {}}))
    env = {**client_env(), "ALERT_STATE_FILE": str(state)}
    env.pop("ALERT_STATE_TABLE", None)
    proc = subprocess.run([sys.executable, "-m", "clicklab", "reset", "--build", str(build)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"fresh alert state for {build}: the next alerts are sent, none counts as already sent"
    assert lines[1] == (f"removed {state}: the alert state (1 anomaly alerted, the cooldowns of 0 site(s)): "
                        "nothing counts as already sent any more")
    assert lines[2].startswith(f"removed {build / 'alerts' / 'report.json'}: notebook 11's report")
    assert lines[3] == f"removed {build / 'outbox' / '*.eml'}: 1 e-mail(s) the local SMTP server received"
    assert f"kept {build / 'streams'}: the streams notebooks 01-10 wrote (12_cleanup removes them)" in lines
    assert lines[-1].startswith("kept ") and lines[-1].endswith("lab_replay.jsonl.gz: the replay (reset removes "
                                                                "nothing outside the build folder)")
    assert not state.exists() and not (build / "alerts" / "report.json").exists()
    assert list((build / "outbox").iterdir()) == [] and (build / "streams" / "ctrstream").is_dir()
    again = subprocess.run([sys.executable, "-m", "clicklab", "reset", "--build", str(build)], capture_output=True,
                           text=True, timeout=300, env=env)
    assert again.returncode == 0 and again.stdout.splitlines()[1] == (
        f"nothing to remove: no alert state, alert report or received e-mail in {build}")


def test_export_zeppelin_takes_the_forest_parameter_set(tmp_path: Path):
    from clicklab.cli import PARAMETER_SETS, main
    from clicklab.zeppelin import forestparams

    assert PARAMETER_SETS == forestparams.PARAMETER_SETS
    notes = {}
    for params in ("lab", "default"):
        out = tmp_path / params
        assert main(["export-zeppelin", "--params", params, "--out", str(out), "--build", str(tmp_path)]) == 0
        notes[params] = next(out.glob("*.zpln")).read_text(encoding="utf-8")
    assert "rcf.sub_sample_size:12" in notes["lab"] and "rcf.sub_sample_size:256" in notes["default"]
    assert "for the first 65 windows of that site" in notes["default"]
    assert "for the first 4 windows of that site" in notes["lab"]
