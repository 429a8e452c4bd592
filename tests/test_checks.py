"""A learner's guard rails: re-runnable #1, the notebook to run first, and the "check your work" cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clicklab import checks, notebook, results, sqltext, streams
from clicklab.exceptions import ClicklabError
from tests.conftest import write_events

SITE = "https://www.mysite.com"


def replay(tmp_path: Path) -> Path:
    """Two windows of one site: 12:00:00 (2 clicks, 4 impressions), 12:00:10 (1 click, 1 impression)."""
    events = [("Click", SITE, "2023-08-23T12:00:01.000Z"), ("Click", SITE, "2023-08-23T12:00:02.000Z")]
    events += [("Impression", SITE, f"2023-08-23T12:00:0{i}.000Z") for i in range(3, 7)]
    events += [("Click", SITE, "2023-08-23T12:00:11.000Z"), ("Impression", SITE, "2023-08-23T12:00:12.000Z")]
    return write_events(tmp_path / "replay.jsonl", events)


def lab_on(tmp_path: Path) -> notebook.Lab:
    return notebook.Lab(replay(tmp_path), tmp_path / "build", t_env=None)


def write_stream(lab: notebook.Lab, name: str, rows: list[dict]) -> None:
    folder = lab.stream_path(name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-0").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_the_ctr_step_before_04_and_05_names_both_notebooks_to_run_first(tmp_path: Path):
    lab = lab_on(tmp_path)
    insert = next(s for s in sqltext.parse_script(
        "INSERT INTO ctrstream SELECT i.site FROM impressionstream AS i FULL OUTER JOIN clickstream AS c "
        "ON i.site = c.site"))
    with pytest.raises(ClicklabError) as err:
        lab.run(insert.sql)
    assert "impressionstream has not been written yet: run 04_impression_stream first" in str(err.value)
    assert "clickstream has not been written yet: run 05_click_stream first" in str(err.value)
    lab.stream_path("impressionstream").mkdir(parents=True)
    lab.stream_path("clickstream").mkdir(parents=True)
    assert lab.inputs(insert.sql, insert.target) == {"impressionstream", "clickstream"}
    lab._check_inputs(insert)  # both written: nothing to say


def test_a_view_passes_its_streams_on_and_tickerstream_is_never_missing(tmp_path: Path):
    lab = lab_on(tmp_path)
    lab._view_inputs["ctr_in_time_order"] = lab.inputs("SELECT * FROM ctrstream")
    sql = "INSERT INTO destinationstream SELECT * FROM RANDOM_CUT_FOREST(TABLE ctr_in_time_order PARTITION BY site)"
    with pytest.raises(ClicklabError, match="ctrstream has not been written yet: run 06_ctr_stream first"):
        lab.run(sql)
    assert lab.missing_input("tickerstream") is None
    assert lab.inputs("SELECT 'ctrstream', `time` FROM badevents -- clickstream") == {"badevents"}


def test_the_create_cell_drops_each_table_before_creating_it(tmp_path: Path):
    statements = sqltext.split_statements(lab_on(tmp_path).ddl)
    created = [s for s in statements if s.upper().startswith("CREATE")]
    assert len(created) >= len(streams.STREAM_NAMES)
    for name in streams.STREAM_NAMES:
        drops = [i for i, s in enumerate(statements) if s in streams.drop_statements(name)]
        create = next(i for i, s in enumerate(statements) if s.upper().startswith("CREATE") and f" {name} " in s)
        assert drops and max(drops) < create, f"{name}: no DROP before its CREATE"


@pytest.mark.flink
def test_create_tables_runs_twice_in_one_session(tmp_path: Path, t_env):
    lab = notebook.Lab(replay(tmp_path), tmp_path / "build", t_env)
    lab.create_tables()
    lab.create_tables()  # the learner runs #1 again: no "already exists"
    assert set(streams.STREAM_NAMES) <= set(t_env.list_tables()) | set(t_env.list_views())
    assert checks.work(lab, "01_create_tables").ok


def test_the_ctr_check_ticks_an_exact_ctrstream_and_crosses_a_wrong_window(tmp_path: Path):
    lab = lab_on(tmp_path)
    reference = results.reference_ctr(lab.dataset)
    assert reference["ctr"].tolist() == [50.0, 100.0]
    write_stream(lab, "ctrstream", reference.to_dict("records"))
    work = checks.work(lab, "07_view_ctr")
    assert work.ok and "over all 2 windows" in str(work), str(work)

    wrong = reference.assign(clickcount=[2, 2], ctr=[50.0, 200.0])
    write_stream(lab, "ctrstream", wrong.to_dict("records"))
    work = checks.work(lab, "07_view_ctr")
    assert not work.ok
    assert str(work).splitlines()[1].startswith("  ✗ ctrstream differs") and "clickcount differs" in str(work)


def test_a_check_that_cannot_run_is_a_cross_with_its_reason_not_a_traceback(tmp_path: Path):
    lab = lab_on(tmp_path)  # no session: the tables cannot be listed
    work = checks.work(lab, "01")
    assert not work.ok and "the check could not run: AttributeError" in str(work)
    with pytest.raises(ValueError, match="no checks for notebook '42_x'"):
        checks.work(lab, "42_x")


def test_crosses_are_found_in_an_executed_notebook_with_their_cell():
    executed = {"cells": [
        {"cell_type": "code", "execution_count": 3, "outputs": [{"output_type": "stream", "text": "✓ fine\n"}]},
        {"cell_type": "code", "execution_count": 7, "outputs": [
            {"output_type": "stream", "text": ["Check your work (07):\n", "  ✗ ctrstream differs\n"]}]},
    ]}
    assert checks.crosses(executed) == [(7, "✗ ctrstream differs")]


def test_a_plot_of_nothing_yet_says_why_instead_of_failing():
    import pandas as pd

    from clicklab import plots

    fig = plots.events_per_second(pd.DataFrame(columns=["site", "browseraction", "minute", "events_per_s"]))
    assert "No one-minute window has closed yet" in fig.axes[0].texts[0].get_text()
    fig = plots.ctr_by_site(pd.DataFrame(columns=["site", "time", "ctr"]))
    assert "No CTR window yet" in fig.axes[0].texts[0].get_text()


def test_a_forest_backend_the_keyed_pipeline_cannot_run_is_refused_in_words():
    """02/08's `forest_options = {"backend": "rrcf"}`: the keyed functions run the compact forest only; registering
    says so (before any Flink call) instead of failing inside a job."""
    from clicklab import udfs
    from clicklab.exceptions import ClicklabError
    from clicklab_udf.forest import ForestParams

    forest = ForestParams.preset("default", backend="rrcf")
    with pytest.raises(ClicklabError, match=r"backend .rrcf.: the keyed pipeline \(08, 09\) scores with the compact"):
        udfs.register(None, udfs.Detector(forest=forest))
