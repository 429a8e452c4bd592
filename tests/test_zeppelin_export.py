"""clicklab export-zeppelin: the lab's notebooks as one Zeppelin note for Studio or a local Zeppelin."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from clicklab import cells, javaudf, settings, streams
from clicklab.cli import parser
from clicklab.zeppelin.export import START_POSITIONS, ExportOptions, export_lab, export_notebooks, lab_titles
from clicklab.zeppelin.importer import import_note
from clicklab.zeppelin.localprops import parse_paragraph
from clicklab.zeppelin.note import ZeppelinError, check_loads, read_note
from tests.conftest import shared_path

#: Tables of the note: the lab's six streams and badevents (tickerstream's raw table reads its Kinesis stream).
STREAMS = len(streams.STREAM_NAMES)

#: The Studio lab's paragraph titles, as its text writes them (../shared/lab/paragraph-titles.md; #6, which the
#: text never shows, in the same form).
LAB_TITLES = [
    "#1 Create all the Streaming tables",
    "#2: Create the UDF (User Defined Function)",
    "#3: View the Ticker Stream Data in real-time",
    "#4: Generate the Impression Stream Data in real-time based on the browser action value in the Ticker stream",
    "#5: Generate the Click Stream Data in real-time based on the browser action value in the Ticker stream",
    "#6: Generate the CTR Stream Data in real-time",
    "#7: Analyze the Click Through Rate in real-time",
    "#8: Generate the Anomaly Score in real-time with User Defined Function RANDOM_CUT_FOREST",
    "#9: Create a Stream with the Anomaly data in real-time",
    "#10: View and Analyze the Anomalies in real-time",
]
T1, T2, T4, T7, T8, T9 = (LAB_TITLES[i - 1] for i in (1, 2, 4, 7, 8, 9))


def export(tmp_path: Path, **options) -> tuple[Path, dict]:
    result = export_lab(ExportOptions(build=tmp_path / "build", **options), tmp_path / "out")
    return result.path, json.loads(result.path.read_text(encoding="utf-8"))


def paragraph(data: dict, title: str) -> dict:
    return next(p for p in data["paragraphs"] if p.get("title") == title)


def test_export_is_byte_identical_twice_and_named_name_id(tmp_path: Path):
    first, data = export(tmp_path)
    text = first.read_bytes()
    second, _ = export(tmp_path)
    assert second == first and second.read_bytes() == text
    assert first.name == f"{data['name']}_{data['id']}.zpln"
    assert list((tmp_path / "out").glob("*.zpln")) == [first]  # the earlier export of this note was replaced
    check_loads(first)


@pytest.mark.parametrize("target", ["studio", "local"])
def test_the_notes_paragraph_titles_are_the_studio_labs_in_lab_order(tmp_path: Path, target: str):
    assert list(lab_titles(cells.lab_notebooks()).values())[:10] == LAB_TITLES
    _, data = export(tmp_path, target=target)
    titles = [p["title"] for p in data["paragraphs"] if p.get("title", "").startswith("#")]
    assert titles == LAB_TITLES  # each once, in order, and no other "#..." title
    assert all(p["config"]["title"] is True for p in data["paragraphs"] if p.get("title") in LAB_TITLES)


def _shared_titles() -> dict[str, str]:
    """``#N`` -> the title on each ``- #N...`` line of ../shared/lab/paragraph-titles.md (skips without ../shared)."""
    text = shared_path("lab", "paragraph-titles.md").read_text(encoding="utf-8")
    titles = [line[2:].strip() for line in text.splitlines() if re.match(r"- #\d+\b", line)]
    found = {title.split()[0].rstrip(":"): title for title in titles}
    assert list(found) == [f"#{n}" for n in range(1, 11)], f"paragraph-titles.md lists {list(found)}"
    return found


@pytest.mark.shared
def test_the_notebooks_titles_are_those_of_the_labs_text():
    shared = _shared_titles()
    assert "not shown" in shared.pop("#6")  # the lab's text never shows #6's title: nothing to compare it with
    ours = {title.split()[0].rstrip(":"): title for title in lab_titles(cells.lab_notebooks()).values()}
    assert {n: ours.get(n) for n in shared} == shared


def test_markdown_sql_and_local_only_cells(tmp_path: Path):
    _, data = export(tmp_path)
    texts = [p["text"] for p in data["paragraphs"]]
    interpreters = {parse_paragraph(t).interpreter for t in texts}
    assert {"md", "flink.ssql"} <= interpreters
    code = [t for t in texts if not t.startswith("%md")]
    assert not any("clicklab.notebook.start" in t or "dataset = " in t for t in code)  # local-only left out
    assert not any("{window_seconds}" in t for t in texts if not t.startswith("%md"))  # resolved
    step4 = paragraph(data, T4)["text"]
    assert step4.startswith("%flink.ssql(type=append)\nINSERT INTO impressionstream")
    assert "INTERVAL '10' SECOND" in step4
    assert paragraph(data, T8)["text"].startswith("%flink.ssql(type=append, parallelism=1)\n")
    assert paragraph(data, T7)["text"].startswith("%flink.ssql(type=update)\n")


def test_studio_note_registers_the_java_udf_and_keeps_the_labs_threshold(tmp_path: Path):
    _, data = export(tmp_path)
    step2 = paragraph(data, T2)["text"]
    assert step2 == f"%flink.ssql(type=update)\nCREATE TEMPORARY FUNCTION IF NOT EXISTS RANDOM_CUT_FOREST AS " \
                    f"'{javaudf.JAVA_UDF_CLASS}'"
    step9 = paragraph(data, T9)["text"]
    assert "IS_ANOMALY" not in step9 and f"WHERE score > {settings.ANOMALY_THRESHOLD}" in step9
    # Studio's Flink (1.15-1.19) has no process table functions: 08 is the jar's scalar function, on one worker
    sql = [p["text"] for p in data["paragraphs"] if p["text"].startswith("%flink.ssql")]
    assert not any("PARTITION BY site" in t for t in sql)
    assert any("RANDOM_CUT_FOREST(ctr, site)" in t and "parallelism=1" in t for t in sql)


@pytest.mark.parametrize("version", ["1.15", "1.18"])
def test_studio_tables_use_the_kinesis_connector_4_options(tmp_path: Path, version: str):
    _, data = export(tmp_path, flink_version=version, region="eu-west-1")
    ddl = paragraph(data, T1)["text"]
    for stream in ("tickerstream", "impressionstream", "clickstream", "ctrstream", "destinationstream",
                   "anomalydetectionstream"):
        assert f"'stream' = '{stream}'" in ddl
    assert ddl.count("'connector' = 'kinesis'") == STREAMS and ddl.count("'aws.region' = 'eu-west-1'") == STREAMS
    assert ddl.count("'scan.stream.initpos' = 'TRIM_HORIZON'") == STREAMS  # the lab sends traffic before it runs #1
    assert "rowtime TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL" in ddl
    assert "stream.arn" not in ddl and "filesystem" not in ddl and "'format' = 'json'" in ddl


def test_studio_tables_for_flink_1_19_use_the_connector_5_options(tmp_path: Path):
    with pytest.raises(ZeppelinError, match="--account-id"):
        export(tmp_path, flink_version="1.19")
    _, data = export(tmp_path, flink_version="1.19", region="eu-west-1", account_id="123456789012")
    ddl = paragraph(data, T1)["text"]
    assert "'stream.arn' = 'arn:aws:kinesis:eu-west-1:123456789012:stream/ctrstream'" in ddl
    assert ddl.count("'source.init.position' = 'TRIM_HORIZON'") == STREAMS - 1
    assert ddl.count("'scan.stream.initpos' = 'TRIM_HORIZON'") == 1  # tickerstream, kinesis-legacy
    # tickerstream reads the arrival time, which only the legacy source exposes (FLINK-36671)
    assert "'connector' = 'kinesis-legacy',\n  'stream' = 'tickerstream'" in ddl


def test_local_note_uses_the_filesystem_tables_and_our_python_functions(tmp_path: Path):
    _, data = export(tmp_path, target="local")
    ddl = paragraph(data, T1)["text"]
    assert ddl.count("'connector' = 'filesystem'") == STREAMS and str(settings.DEFAULT_DATASET.resolve()) in ddl
    assert paragraph(data, T2)["text"].startswith("%flink.pyflink\n")
    texts = [p["text"] for p in data["paragraphs"]]
    assert any("ANOMALY_DECISIONS(TABLE scores_in_time_order PARTITION BY site)" in t for t in texts)
    assert any("RANDOM_CUT_FOREST(TABLE ctr_in_time_order PARTITION BY site, DESCRIPTOR(ctr))" in t for t in texts)
    assert data["name"] != export(tmp_path, target="studio")[1]["name"]


def _executed_copy(build: Path, notebook: Path) -> None:
    """An executed copy as papermill writes it: an injected-parameters cell and outputs."""
    nb = nbformat.read(str(notebook), as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell("dataset = 'x'", metadata={"tags": ["injected-parameters"]}))
    sql = [c for c in nb.cells if c.source.startswith("%%flink_sql")]
    sql[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="INSERT INTO impressionstream: 3 rows\n")]
    frame = pd.DataFrame({"site": ["a", "b"], "impressioncount": [5, 7]})
    png = base64.b64encode(b"\x89PNG fake image bytes").decode()
    sql[1].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="2 rows (0.1 s)\n"),
        nbformat.v4.new_output("display_data", data={"text/html": frame.to_html(), "text/plain": str(frame)}),
        nbformat.v4.new_output("display_data", data={"image/png": png}),
    ]
    (build / "executed").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(build / "executed" / notebook.name))


def test_with_results_takes_the_executed_outputs(tmp_path: Path):
    _executed_copy(tmp_path / "build", settings.NOTEBOOKS_DIR / "04_impression_stream.ipynb")
    _, data = export(tmp_path, with_results=True)
    insert = paragraph(data, T4)
    assert insert["status"] == "FINISHED"
    assert insert["results"] == {"code": "SUCCESS",
                                 "msg": [{"type": "TEXT", "data": "INSERT INTO impressionstream: 3 rows\n"}]}
    select = next(p for p in data["paragraphs"] if p["text"].endswith("SELECT * FROM impressionstream LIMIT 10"))
    msgs = select["results"]["msg"]
    assert msgs[1] == {"type": "TABLE", "data": "site\timpressioncount\na\t5\nb\t7\n"}
    assert msgs[2]["type"] == "IMG" and base64.b64decode(msgs[2]["data"]).startswith(b"\x89PNG")
    assert all("results" not in p for p in data["paragraphs"] if p["text"].startswith("%md"))


@pytest.mark.parametrize("target", ["studio", "local"])
def test_round_trip_export_import_export_gives_the_same_note(tmp_path: Path, target: str):
    _executed_copy(tmp_path / "build", settings.NOTEBOOKS_DIR / "04_impression_stream.ipynb")
    first, _ = export(tmp_path, target=target, with_results=True)
    notebook = import_note(first, tmp_path / "imported")
    again = export_notebooks([notebook], ExportOptions(target=target, with_results=True, build=tmp_path / "build"),
                             tmp_path / "again")
    assert again.path.name == first.name
    assert again.path.read_bytes() == first.read_bytes()
    original = read_note(first)
    assert [(p.title, p.text) for p in again.note.paragraphs] == [(p.title, p.text) for p in original.paragraphs]


def test_exports_whatever_numbered_notebooks_exist(tmp_path: Path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for path in cells.lab_notebooks()[:5]:
        shutil.copy(path, notebooks / path.name)
    extra = nbformat.v4.new_notebook()
    extra.cells = [nbformat.v4.new_markdown_cell("# 13 Extra step\n\nMore."),
                   nbformat.v4.new_code_cell("%%flink_sql\nSELECT {window_seconds}, {not_a_variable}")]
    nbformat.write(extra, str(notebooks / "13_extra.ipynb"))
    result = export_lab(ExportOptions(build=tmp_path / "build"), tmp_path / "out", notebooks_dir=notebooks)
    last = result.note.paragraphs[-1]
    assert last.title == "13 Extra step"
    assert last.text == "%flink.ssql(type=update)\nSELECT 10, ${not_a_variable}"
    assert any("{not_a_variable} is not a lab variable" in w for w in result.warnings)


def test_bad_options_are_refused():
    with pytest.raises(ZeppelinError, match="--target"):
        ExportOptions(target="cloud")
    with pytest.raises(ZeppelinError, match="--flink-version"):
        ExportOptions(flink_version="1.12")


# ---------------------------------------------------------------------------------------------
# where the Kinesis tables start reading


def _ddl(tmp_path: Path, **options) -> str:
    return paragraph(export(tmp_path, **options)[1], T1)["text"]


@pytest.mark.parametrize("version", ["1.15", "1.18"])
def test_start_position_latest_and_at_timestamp_with_the_connector_4_options(tmp_path: Path, version: str):
    latest = _ddl(tmp_path, flink_version=version, start_position="LATEST")
    assert latest.count("'scan.stream.initpos' = 'LATEST'") == STREAMS
    ddl = _ddl(tmp_path, flink_version=version, start_position="AT_TIMESTAMP",
               start_timestamp="2024-05-01T14:00:00+02:00")
    assert ddl.count("'scan.stream.initpos' = 'AT_TIMESTAMP'") == STREAMS
    assert ddl.count("'scan.stream.initpos-timestamp' = '2024-05-01T12:00:00.000Z'") == STREAMS
    assert "source.init" not in ddl


def test_start_position_at_timestamp_with_the_connector_5_options(tmp_path: Path):
    ddl = _ddl(tmp_path, flink_version="1.19", account_id="123456789012", start_position="AT_TIMESTAMP",
               start_timestamp="1714564800")
    assert ddl.count("'source.init.position' = 'AT_TIMESTAMP'") == STREAMS - 1
    assert ddl.count("'source.init.timestamp' = '2024-05-01T12:00:00.000Z'") == STREAMS - 1
    # tickerstream on kinesis-legacy keeps the 4.x names
    assert ddl.count("'scan.stream.initpos' = 'AT_TIMESTAMP'") == 1
    assert ddl.count("'scan.stream.initpos-timestamp' = '2024-05-01T12:00:00.000Z'") == 1


def test_start_position_options_are_checked():
    with pytest.raises(ZeppelinError, match="--start-position 'EARLIEST'"):
        ExportOptions(start_position="EARLIEST")
    with pytest.raises(ZeppelinError, match="needs --start-timestamp"):
        ExportOptions(start_position="AT_TIMESTAMP")
    with pytest.raises(ZeppelinError, match="--start-timestamp 'yesterday'"):
        ExportOptions(start_position="AT_TIMESTAMP", start_timestamp="yesterday")
    with pytest.raises(ZeppelinError, match="is for --start-position AT_TIMESTAMP, not LATEST"):
        ExportOptions(start_position="LATEST", start_timestamp="2024-05-01T12:00:00Z")
    assert ExportOptions(start_position="AT_TIMESTAMP", start_timestamp="2024-05-01 12:00").start_timestamp == \
        "2024-05-01T12:00:00.000Z"  # naive: UTC


def test_the_export_command_offers_the_start_positions_with_trim_horizon_by_default():
    action = next(a for a in parser()._subparsers._group_actions[0].choices["export-zeppelin"]._actions
                  if a.dest == "start_position")
    assert tuple(action.choices) == START_POSITIONS and action.default == "TRIM_HORIZON"
    args = parser().parse_args(["export-zeppelin", "--start-position", "AT_TIMESTAMP", "--start-timestamp",
                                "2024-05-01T12:00:00Z"])
    assert (args.start_position, args.start_timestamp) == ("AT_TIMESTAMP", "2024-05-01T12:00:00Z")


# ---------------------------------------------------------------------------------------------
# the forest's parameters (--params): Studio's RANDOM_CUT_FOREST reads them as job parameters rcf.*


def _forest_paragraphs(data: dict) -> tuple[int, int, int, list[dict]]:
    """(index of 08's heading, of the paragraph setting the parameters, of #8's INSERT) and the paragraphs."""
    ps = data["paragraphs"]
    heading = next(i for i, p in enumerate(ps) if p["text"].startswith("%md\n# 08 "))
    setting = next(i for i, p in enumerate(ps) if p["text"].startswith("%flink.pyflink")
                   and ("global-job-parameters" in p["text"] or "javaudf.configure(st_env" in p["text"]))
    scoring = next(i for i, p in enumerate(ps) if "INSERT INTO destinationstream" in p["text"])
    return heading, setting, scoring, ps


def _job_parameters(code: str) -> dict[str, str]:
    value = re.search(r'"pipeline\.global-job-parameters",\s*"([^"]*)"', code).group(1)
    return dict(item.split(":", 1) for item in value.split(","))


@pytest.mark.parametrize(("params", "samples", "warmup", "seconds", "scored"), [  # the SQL lab's 100, 12, 100000, 1
    (None, 12, 4, "40 s", True),  # Studio's default: the lab's set
    ("lab", 12, 4, "40 s", True),
    ("default", 256, 65, "10 min 50 s", False),
])
def test_studio_note_sets_the_forest_parameters_before_8_and_says_how_long_it_warms_up(
        tmp_path: Path, params: str | None, samples: int, warmup: int, seconds: str, scored: bool):
    _, data = export(tmp_path, params=params)
    heading, setting, scoring, ps = _forest_paragraphs(data)
    name = params or "lab"
    # order: 08's heading, what the set is, the code that sets it, ..., #8, then the warm-up
    assert heading + 2 == setting < scoring and ps[scoring]["title"] == T8
    assert ps[setting - 1]["text"].startswith(f"%md\n**The forest's parameters** (`clicklab export-zeppelin "
                                              f"--params {name}`): 100 trees, {samples} samples")
    assert _job_parameters(ps[setting]["text"]) == {
        "rcf.number_of_trees": "100", "rcf.sub_sample_size": str(samples), "rcf.time_decay": "100000.0",
        "rcf.shingle_size": "1", "rcf.seed": "42", "rcf.warmup": str(warmup)}
    warm = ps[scoring + 1]["text"]
    assert warm.startswith(f"%md\n**Warm-up** (`--params {name}`, {samples} samples)")
    assert f"the first {warmup} windows" in warm and f"{seconds} of its traffic" in warm
    assert ("comes after the warm-up and is scored" in warm) is scored
    assert ("falls inside it" in warm and "`--params lab` (a warm-up of 40 s)" in warm) is not scored
    # 08's Studio note keeps saying what the paragraph right after it does: #8, at parallelism 1
    assert "the next paragraph runs at parallelism 1" in ps[scoring - 1]["text"]
    assert sum("global-job-parameters" in p["text"] for p in ps) == 2  # the md and the code, nowhere else


def test_local_note_sets_forest_parameters_only_when_asked(tmp_path: Path):
    _, data = export(tmp_path, target="local")
    assert not any("javaudf.configure(st_env" in p["text"] or "**Warm-up**" in p["text"] for p in data["paragraphs"])
    _, data = export(tmp_path, target="local", params="lab")
    _, setting, scoring, ps = _forest_paragraphs(data)
    assert setting < scoring and 'javaudf.configure(st_env, ForestParams.preset("lab"), javaudf.build_jar())' in \
        ps[setting]["text"]
    assert "FROM RANDOM_CUT_FOREST(TABLE" in ps[scoring]["text"]
    assert ps[scoring + 1]["text"].startswith("%md\n**Warm-up** (`--params lab`, 12 samples)")


def test_an_unknown_parameter_set_is_refused_naming_the_option():
    with pytest.raises(ZeppelinError, match=r"--params 'fast': choose one of default, lab"):
        ExportOptions(params="fast")
    assert (ExportOptions().forest_preset, ExportOptions(target="local").forest_preset) == ("lab", None)
