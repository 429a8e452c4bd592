"""The command line as a user types it (in a subprocess, as from a shell)."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import client_env


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


def test_evaluate_scores_nab_series_through_flink(tmp_path: Path):
    """`clicklab evaluate` on two real labelled NAB series (../shared/nab), through the Flink job."""
    from clicklab import settings

    nab = settings.REPO.parent / "shared" / "nab"
    data = tmp_path / "data" / "realTraffic"
    data.mkdir(parents=True)
    for name in ("speed_7578.csv", "occupancy_t4013.csv"):
        (data / name).write_bytes((nab / "data" / "realTraffic" / name).read_bytes())
    proc = clicklab("evaluate", "--data", str(tmp_path / "data"), "--labels",
                    str(nab / "labels" / "combined_windows.json"), "--build", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("realTraffic/speed_7578.csv" in ln and "adaptive" in ln for ln in lines)
    total = next(ln.split() for ln in lines if ln.split()[:2] == ["TOTAL", "adaptive"])
    windows, detected = int(total[2]), int(total[3])
    assert windows == 6 and detected >= 4  # speed_7578 has 4 labelled windows, occupancy_t4013 2
