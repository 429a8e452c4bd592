"""The lab's window and CTR SQL, taken from the notebooks, on a replay small enough to count by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clicklab import cells, notebook, results, settings, sqltext
from tests.conftest import write_events

A, B = "https://a.example", "https://b.example"
T0 = 1692792000  # 2023-08-23T12:00:00Z

EVENTS = [
    ("Impression", A, "2023-08-23T12:00:00.000Z"),
    ("Click", A, "2023-08-23T12:00:05.000Z"),
    ("Impression", A, "2023-08-23T12:00:09.999Z"),  # last millisecond of the first window
    ("Impression", A, "2023-08-23T12:00:10.000Z"),  # first millisecond of the second window
    ("Click", B, "2023-08-23T12:00:12.000Z"),
    ("Click", B, "2023-08-23T12:00:19.999Z"),
    ("Impression", B, "2023-08-23T12:00:20.000Z"),
    ("Impression", B, "2023-08-23T12:00:21.000Z"),
    ("Impression", B, "2023-08-23T12:00:22.000Z"),
    ("Impression", B, "2023-08-23T12:00:23.000Z"),
    ("Click", B, "2023-08-23T12:00:25.000Z"),
    ("Click", A, "2023-08-23T12:00:29.999Z"),
    ("Impression", A, "2023-08-23T12:00:30.000Z"),
    ("Impression", A, "2023-08-23T12:00:31.000Z"),
    ("Click", A, "2023-08-23T12:00:32.000Z"),
    ("Click", A, "2023-08-23T12:00:33.000Z"),
    ("Click", A, "2023-08-23T12:00:34.000Z"),
    ("Impression", A, "2023-08-23T12:00:39.500Z"),
]

# Counted by hand: (site, window start in epoch seconds) -> (clicks, impressions, CTR %).
EXPECTED = {
    (A, T0 + 0): (1, 2, 50.0),
    (A, T0 + 10): (0, 1, 0.0),  # impressions, no clicks: CTR 0
    (A, T0 + 20): (1, 0, 100.0),  # a click, no impressions: counted as one impression
    (A, T0 + 30): (3, 3, 100.0),
    (B, T0 + 10): (2, 0, 200.0),  # two clicks, no impressions
    (B, T0 + 20): (1, 4, 25.0),
}


def _insert_sql(number: str) -> str:
    """The notebook's INSERT cells (the SQL that fills its streams; 04 also fills badevents), as one script."""
    path = next(settings.NOTEBOOKS_DIR.glob(f"{number}_*.ipynb"))
    inserts = [c for c in cells.sql_cells(path) if sqltext.parse_script(c)[0].kind == sqltext.INSERT]
    assert inserts, path
    return ";\n".join(inserts)


@pytest.fixture(scope="module")
def tiny_lab(t_env, tmp_path_factory) -> notebook.Lab:
    root = tmp_path_factory.mktemp("tiny")
    dataset = write_events(root / "tiny.jsonl.gz", EVENTS)
    lab = notebook.Lab(dataset, root / "build", t_env)
    lab.create_tables()
    for number in ("04", "05", "06"):
        lab.run(sqltext.substitute(_insert_sql(number), lab.variables()))
    return lab


@pytest.mark.flink
def test_impression_and_click_windows(tiny_lab):
    imp = tiny_lab.stream("impressionstream")
    got = {(r.site, int(r.rowtime.timestamp())): r.impressioncount for r in imp.itertuples()}
    assert got == {(A, T0): 2, (A, T0 + 10): 1, (A, T0 + 30): 3, (B, T0 + 20): 4}
    clk = tiny_lab.stream("clickstream")
    got = {(r.site, int(r.rowtime.timestamp())): r.clickcount for r in clk.itertuples()}
    assert got == {(A, T0): 1, (A, T0 + 20): 1, (A, T0 + 30): 3, (B, T0 + 10): 2, (B, T0 + 20): 1}


@pytest.mark.flink
def test_ctr_per_site_and_window_including_one_sided_windows(tiny_lab):
    ctr = tiny_lab.stream("ctrstream")
    got = {(r.site, r.time): (r.clickcount, r.impressioncount, r.ctr) for r in ctr.itertuples()}
    assert got == EXPECTED
    assert len(ctr) == len(EXPECTED)  # no duplicates


@pytest.mark.flink
def test_reference_computation_agrees(tiny_lab):
    ref = results.reference_ctr(tiny_lab.dataset)
    assert {(r.site, r.time): (r.clickcount, r.impressioncount, r.ctr) for r in ref.itertuples()} == EXPECTED
    assert results.compare_ctr(tiny_lab.stream("ctrstream"), ref) == []


@pytest.mark.flink
def test_compare_ctr_reports_a_wrong_window(tiny_lab):
    ctr = tiny_lab.stream("ctrstream")
    broken = ctr[ctr["site"] == A].copy()
    broken.loc[broken.index[0], "ctr"] = 42.0
    problems = results.compare_ctr(broken, results.reference_ctr(tiny_lab.dataset))
    assert any("ctr differs" in p and "42.0" in p for p in problems)
    assert sum("missing in ctrstream" in p and B in p for p in problems) == 2


@pytest.mark.flink
def test_rerunning_a_step_overwrites_its_stream(tiny_lab):
    tiny_lab.run(sqltext.substitute(_insert_sql("06"), tiny_lab.variables()))
    assert len(tiny_lab.stream("ctrstream")) == len(EXPECTED)


@pytest.mark.flink
def test_query_results_are_bounded_and_updating_queries_materialized(tiny_lab):
    [out] = tiny_lab.run("SELECT site, `time` FROM ctrstream", max_rows=2)
    assert out.shown == 2 and len(out.frame) == len(EXPECTED)
    [out] = tiny_lab.run("SELECT site, COUNT(*) AS n FROM tickerstream GROUP BY site")
    assert "updating result" in out.message
    assert dict(zip(out.frame["site"], out.frame["n"], strict=True)) == {A: 11, B: 7}
    [out] = tiny_lab.run("SELECT * FROM tickerstream", max_changes=5)
    assert len(out.frame) == 5 and "row limit" in out.message


@pytest.mark.flink
def test_sql_errors_are_one_line_with_flinks_reason(tiny_lab):
    from clicklab.exceptions import SqlError

    with pytest.raises(SqlError) as err:
        tiny_lab.run("SELECT nosuchcolumn FROM ctrstream")
    assert "nosuchcolumn" in str(err.value) and "\tat " not in str(err.value)
    with pytest.raises(ValueError, match=r"tickerstream is where the events come in.*read, never written"):
        tiny_lab.run("INSERT INTO tickerstream SELECT * FROM tickerstream")


@pytest.mark.flink
def test_magic_substitutes_variables_and_keeps_rows(tiny_lab, monkeypatch, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from clicklab import magics

    shell = InteractiveShell.instance()
    magics.load(shell, tiny_lab)  # the magic holds its session
    shell.user_ns["wanted"] = A
    monkeypatch.setenv("MIN_CTR", "60")
    shell.run_cell_magic(
        "flink_sql", "--out rows --max-rows 1",
        "SELECT `time`, ctr FROM ctrstream WHERE site = '{wanted}' AND ctr > ${MIN_CTR}",
    )
    rows = shell.user_ns["rows"]
    assert isinstance(rows, pd.DataFrame)
    assert sorted(rows["time"]) == [T0 + 20, T0 + 30]
    assert "2 rows, first 1 shown" in capsys.readouterr().out
    with pytest.raises(KeyError, match="nosuch"):
        shell.run_cell_magic("flink_sql", "", "SELECT {nosuch}")


def test_dataset_errors_name_the_path(tmp_path: Path):
    from clicklab.exceptions import DatasetError

    with pytest.raises(DatasetError, match=str(tmp_path / "missing.jsonl")):
        results.check_dataset(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl.*not readable"):
        results.check_dataset(bad)
    other = tmp_path / "other.jsonl"
    other.write_text('{"site": "x"}\n')
    with pytest.raises(DatasetError, match="browseraction"):
        results.check_dataset(other)


def test_the_magic_without_a_session_says_what_to_run():
    from IPython.core.interactiveshell import InteractiveShell

    from clicklab.magics import load_ipython_extension

    shell = InteractiveShell.instance()
    load_ipython_extension(shell)  # %load_ext clicklab.magics before any session
    with pytest.raises(RuntimeError, match=r"clicklab\.notebook\.start"):
        shell.run_cell_magic("flink_sql", "", "SHOW TABLES")
