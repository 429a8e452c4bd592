"""The notebooks as a user meets them: committed clean, and all of them run headless with papermill."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest

from clicklab import cells, notebook, results, runner, settings
from clicklab.exceptions import ClicklabError, DatasetError, NotebookError
from clicklab.generator import generate
from clicklab.kafka import broker, topics
from clicklab.scenario import load_scenario
from clicklab.summary import summarize

NOTEBOOKS = cells.lab_notebooks()
#: All but the cleanup notebook, which removes the streams the tests below read (it is tested last, on a copy).
PIPELINE = [p for p in NOTEBOOKS if not cells.info(p).cleanup]
#: The Studio lab's notebooks (00-12) and the SQL application's (20-23).
STUDIO = [p for p in NOTEBOOKS if not settings.is_sql_app_notebook(p)]
SQL_APP = [p for p in NOTEBOOKS if settings.is_sql_app_notebook(p)]


def test_the_lab_notebooks_are_there_in_order():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers == sorted(numbers)
    assert {"00", "01", "03", "04", "05", "06", "07"} <= set(numbers)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_a_parameters_cell(path: Path):
    assert cells.cells_with_outputs(path) == [], f"{path.name}: clear outputs before committing"
    nb = cells.read(path)
    tagged = [c for c in nb.cells if cells.PARAMETERS in cells.tags(c)]
    assert len(tagged) == 1, f"{path.name}: needs one cell tagged 'parameters'"
    assert "dataset =" in tagged[0].source and "build =" in tagged[0].source
    assert nb.cells[0].cell_type == "markdown", f"{path.name}: starts with prose"


def test_every_notebook_says_what_it_is_in_the_lab():
    infos = [cells.info(p) for p in NOTEBOOKS]
    assert all(i.step or i.about for i in infos), [i.path.name for i in infos if not (i.step or i.about)]
    assert [i.number for i in infos if i.cleanup] == [STUDIO[-1].name[:2]], "the Studio lab's last notebook cleans up"
    assert [p.name[:2] for p in SQL_APP] == ["20", "21", "22", "23"] and NOTEBOOKS == STUDIO + SQL_APP
    assert infos[4].step == ("#4: Generate the Impression Stream Data in real-time based on the browser action "
                              "value in the Ticker stream")


@pytest.mark.parametrize("where", ["README.md", "notebooks/00_overview.ipynb"])
def test_the_lab_table_matches_the_notebooks_metadata(where: str):
    table = cells.lab_table(STUDIO)
    path = settings.REPO / where
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        text = "\n".join(c.source for c in cells.read(path).cells if c.cell_type == "markdown")
    assert table in text, f"{where}: the lab table differs from the notebooks' metadata; it should read:\n{table}"


def test_the_readme_lists_the_sql_applications_notebooks():
    table = cells.lab_table(SQL_APP).replace("| Lab paragraph (Zeppelin note in Studio) |", "| SQL application |")
    text = (settings.REPO / "README.md").read_text(encoding="utf-8")
    assert table in text, f"README.md: the SQL application's table differs from the notebooks' metadata:\n{table}"


def test_the_forest_preset_reaches_only_the_notebooks_that_take_it(tmp_path: Path):
    params = {"dataset": "d", "build": "b", "forest_preset": "lab"}
    taking = [p.name[:2] for p in NOTEBOOKS if "forest_preset" in runner.notebook_parameters(p, params)]
    assert taking == ["02", "08", "09"]
    assert runner.notebook_parameters(NOTEBOOKS[0], {"dataset": "d"}) == {"dataset": "d"}
    with pytest.raises(ClicklabError, match="'huge'"):
        runner.run(build=tmp_path, only=["00"], forest_preset="huge")


def test_no_sql_cell_is_copied_between_notebooks():
    seen: dict[str, str] = {}
    for path in NOTEBOOKS:
        for sql in cells.sql_cells(path):
            key = " ".join(sql.split())
            assert key not in seen, f"{path.name} repeats a SQL cell of {seen.get(key)}"
            seen[key] = path.name


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """All notebooks but the cleanup, run headless on a 5-minute replay generated from the `tiny` scenario, with
    the streams where `make run` keeps them (the default: topics on the lab's broker, which the run starts)."""
    root = tmp_path_factory.mktemp("run")
    replay = generate(load_scenario("tiny"), 7, root / "tiny.jsonl.gz")
    build = root / "build"
    try:
        report = runner.run(dataset=replay.out_path, build=build, only=[p.name[:2] for p in PIPELINE])
        yield replay, build, report
    finally:
        broker.down(build)  # 12_cleanup stops it (the last test); this, when that test did not run


def read(build: Path, name: str) -> pd.DataFrame:
    """A stream of the run, from where the default backend keeps it (the run stopped the broker it started)."""
    broker.up(build)
    return notebook.reader(build)(name)


@pytest.mark.flink
def test_papermill_runs_every_notebook(small_run):
    _, _, report = small_run
    assert [p.name for p in report.executed] == [p.name for p in PIPELINE]
    for path in report.executed:
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, path.name


@pytest.mark.flink
def test_produced_streams_match_the_replay(small_run):
    replay, build, _ = small_run
    ctr = read(build, "ctrstream")
    reference = results.reference_ctr(replay.out_path)
    assert len(ctr) == len(reference) > 50
    assert results.compare_ctr(ctr, reference) == []
    counts = results.reference_counts(results.read_events(replay.out_path))
    imp = read(build, "impressionstream")
    assert imp["impressioncount"].sum() == counts["impressioncount"].sum()
    clk = read(build, "clickstream")
    assert clk["clickcount"].sum() == counts["clickcount"].sum()
    # the Studio-lab burst of the tiny scenario: 5 clicks and 1 impression per second -> 500 %
    burst = ctr[(ctr["site"] == "https://www.mysite.com") & (ctr["ctr"] >= 499)]
    assert len(burst) == 3


@pytest.mark.flink
def test_executed_notebooks_show_tables_and_plots(small_run):
    _, build, _ = small_run

    def outputs(name: str) -> list[dict]:
        nb = nbformat.read(build / "executed" / name, as_version=4)
        return [o for c in nb.cells for o in c.get("outputs", [])]

    assert any("image/png" in o.get("data", {}) for o in outputs("03_view_ticker.ipynb"))
    assert any("image/png" in o.get("data", {}) for o in outputs("07_view_ctr.ipynb"))
    assert any("text/html" in o.get("data", {}) for o in outputs("06_ctr_stream.ipynb"))
    text = "".join(o.get("text", "") for o in outputs("07_view_ctr.ipynb"))
    assert "✓ ctrstream equals the CTR counted independently with pandas over all" in text


@pytest.mark.flink
def test_summary_names_streams_and_sites(small_run):
    replay, build, _ = small_run
    summary = summarize(replay.out_path, build, read=lambda name: read(build, name))
    assert summary.ok and summary.events == replay.events
    assert summary.windows["ctrstream"] == len(read(build, "ctrstream"))
    text = summary.render()
    assert f"events replayed: {replay.events:,}" in text
    assert "https://shop.example.com" in text and "ctrstream matches" in text
    assert "anomalies per site" in text and "adaptive (ANOMALY_DECISIONS): labelled 2" in text
    # notebook 11 ran: the summary the run printed says what the alerts did (per channel, when there were any)
    anomalies = len(read(build, "anomalydetectionstream"))
    assert f"alerts ({anomalies} anomalies; local default)" in small_run[2].summary.render()
    # the SQL application's notebooks ran after the Studio lab's: their anomalies are in the run's summary
    rendered = small_run[2].summary.render()
    assert "SQL application flags the 2 extra-click windows with ANOMALY_SCORE > 2 and nothing else" in rendered
    assert "12:06:10 CTRPERCENT 400.0 ANOMALY_SCORE" in rendered and small_run[2].summary.ok


def test_a_failing_cell_names_notebook_and_cell(tmp_path: Path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("dataset = build = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise RuntimeError('boom in the third cell')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "42_broken.ipynb")
    with pytest.raises(NotebookError) as err:
        runner.run(dataset=settings.DEFAULT_DATASET, build=tmp_path / "build",
                   notebooks_dir=tmp_path)
    assert err.value.notebook == "42_broken.ipynb"
    assert err.value.cell == "In [4], cell 3 of the notebook"  # papermill adds a parameters cell
    assert "RuntimeError: boom in the third cell" in str(err.value)


def test_a_missing_dataset_is_refused_before_anything_runs(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"nothere\.jsonl\.gz"):
        runner.run(dataset=tmp_path / "nothere.jsonl.gz", build=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_only_selects_notebooks_by_number():
    chosen = runner.select(NOTEBOOKS, ["4", "06"])
    assert [p.name[:2] for p in chosen] == ["04", "06"]
    with pytest.raises(Exception, match="99"):
        runner.select(NOTEBOOKS, ["99"])


@pytest.mark.flink
def test_the_streams_can_be_kept_in_folders_on_request(small_run, tmp_path: Path):
    """`clicklab run --streams files`: the same steps on Flink's filesystem connector give the same ctrstream."""
    replay, _, _ = small_run
    files = tmp_path / "build"
    runner.run(dataset=replay.out_path, build=files, only=["01", "04", "05", "06"], backend="files")
    assert not (files / "kafka").exists(), "a run on files started the lab's broker"
    on_files = results.read_stream(files, "ctrstream")
    assert len(on_files) > 50 and results.compare_ctr(on_files, results.reference_ctr(replay.out_path)) == []


# Last in this module: it stops the broker and removes the topics the tests above read.
@pytest.mark.flink
def test_cleanup_runs_after_the_summary_and_removes_the_streams(small_run):
    replay, build, _ = small_run
    cleanup = [p.name[:2] for p in NOTEBOOKS if cells.info(p).cleanup]
    assert cleanup, "the lab ends with a cleanup notebook"
    assert topics.count(broker.up(build).bootstrap, "ctrstream") > 50
    report = runner.run(dataset=replay.out_path, build=build, only=cleanup)
    # the summary was computed from the streams before the notebook removed them
    text = report.summary.render()
    assert "ctrstream matches" in text and "anomalies per site" in text
    assert broker.status(build) is None, "12_cleanup left the lab's broker running"
    assert not settings.streams_dir(build).exists()
