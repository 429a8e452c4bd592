"""The Studio lab's notebooks on Kafka topics (``clicklab run --streams kafka``, ``$CLICKLAB_STREAMS=kafka``): the
same notebooks, their streams on the lab's broker; the figures and checks of a run hold as on files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clicklab import cells, notebook, runner, settings
from clicklab.exceptions import ClicklabError
from clicklab.kafka import broker, notes

pytestmark = [pytest.mark.flink, pytest.mark.server]

#: The notebooks that fill the streams (00, 02, 03, 07 and 10 only show things; 11 alerts, 12 cleans up).
STEPS = ["01", "04", "05", "06", "08", "09"]


def test_the_backend_is_chosen_in_one_place_and_a_wrong_one_is_named(monkeypatch):
    monkeypatch.delenv(notebook.BACKEND_VARIABLE, raising=False)
    assert notebook.stream_backend() == "kafka"  # `make run`, `make lab`: the streams are topics
    monkeypatch.setenv(notebook.BACKEND_VARIABLE, "Files")
    assert notebook.stream_backend() == "files" and notebook.stream_backend("kafka") == "kafka"
    monkeypatch.setenv(notebook.BACKEND_VARIABLE, "kinesis")
    with pytest.raises(ClicklabError, match=r"\$CLICKLAB_STREAMS must be one of kafka, files, got 'kinesis'"):
        notebook.stream_backend()


@pytest.fixture(scope="module")
def kafka_run(kafka_build: Path):
    report = runner.run(dataset=settings.DEFAULT_DATASET, build=kafka_build, only=STEPS, backend="kafka")
    return kafka_build, report


def _outputs(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


def test_the_steps_on_topics_give_the_figures_of_files(kafka_run):
    """Every notebook's own check passed (papermill stops at one that fails); ctrstream equals the CTR counted
    independently from the replay; every CTR row is scored; the decisions are those of a run on files
    (docs/scoring.md: 5 of 5 labelled anomalies within one window, 1 false alarm adaptive, 17 fixed)."""
    build, report = kafka_run
    assert [p.name[:2] for p in report.executed] == STEPS
    summary = report.summary
    assert summary.ok, summary.render()
    assert [c.name for c in summary.checks] == ["ctrstream"], summary.render()
    assert summary.windows["ctrstream"] == 2_160 and summary.bad_events == {}
    modes = {row["mode"]: row for row in summary.modes}
    assert summary.missed == [] and set(modes) == {"adaptive (ANOMALY_DECISIONS)", "fixed (score > 2)"}, summary.modes
    figures = {mode: (row["labelled"], row["detected within one window"], row["false alarms"])
               for mode, row in modes.items()}
    assert figures == {"adaptive (ANOMALY_DECISIONS)": (5, 5, 1), "fixed (score > 2)": (5, 5, 17)}, summary.render()
    assert "rows written to topic impressionstream" in _outputs(build / "executed" / "04_impression_stream.ipynb")
    assert all(notes.written_marker(build, s).is_file() for s in ("impressionstream", "clickstream", "ctrstream"))
    held = json.loads(notes.replay_marker(build).read_text())
    assert held["lines"] > 10_000 and held["dataset"] == str(settings.DEFAULT_DATASET.resolve())


def test_a_step_run_before_its_input_says_which_notebook_to_run_first(kafka_run, tmp_path, monkeypatch):
    """A fresh build on the same broker: the topics hold rows, but no step of this build wrote them."""
    build, _ = kafka_run
    fresh = tmp_path / "build"
    (fresh / "kafka").mkdir(parents=True)
    (fresh / "kafka" / "jars").symlink_to((build / "kafka" / "jars").resolve())
    monkeypatch.setenv(broker.BOOTSTRAP_ENV, broker.bootstrap(build))
    lab = notebook.start(settings.DEFAULT_DATASET, fresh, backend="kafka")
    ctr = next(c for c in cells.sql_cells(next(settings.NOTEBOOKS_DIR.glob("06_*.ipynb")))
               if "INSERT INTO ctrstream" in c)
    with pytest.raises(ClicklabError, match="clickstream has not been written yet: run 05_click_stream first"):
        lab.run(ctr)
    assert not notes.written_marker(fresh, "ctrstream").exists()


def test_removing_the_topics_waits_for_the_broker_to_stop(tmp_path):
    build = tmp_path / "build"
    data = broker.dirs(build).data
    data.mkdir(parents=True)
    notes.written_marker(build, "ctrstream").parent.mkdir(parents=True)
    notes.written_marker(build, "ctrstream").touch()
    notes.replay_marker(build).write_text("{}")
    removed = notes.remove_topics(build)
    assert set(removed) == {data, notes.written_marker(build, "x").parent, notes.replay_marker(build)}
    assert not any(p.exists() for p in removed) and notes.remove_topics(build) == []
