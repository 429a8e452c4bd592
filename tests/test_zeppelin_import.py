"""clicklab import-zeppelin: notes written by others become notebooks, and export back to notes that load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from clicklab import settings
from clicklab.cells import parse_magic_line
from clicklab.sqltext import substitute
from clicklab.zeppelin.export import ExportOptions, export_notebooks
from clicklab.zeppelin.importer import import_note, resolve_interpreter
from clicklab.zeppelin.note import ZeppelinError, check_loads, read_note
from clicklab.zeppelin.results import outputs_to_results, results_to_outputs
from tests.conftest import client_env, shared_files, shared_path
from tests.fixtures.zeppelin_notes import EXPECTED, NOTES, TABLE_0_6, png_pixel, write_note_file

REAL_NOTES = shared_files("zeppelin-samples", suffixes=(".zpln", ".json"))


def paragraph_cells(nb: nbformat.NotebookNode) -> list:
    """The cells that stand for paragraphs (not the setup cells, not the title headings)."""
    return [c for c in nb.cells if not {"local-only", "zeppelin-title"} & set(c.metadata.get("tags", []))]


def cell_script(cell) -> str:
    """What the cell runs, with the magic line read back and the SQL braces undone."""
    if cell.cell_type == "code" and cell.source.startswith("%%flink_sql"):
        _, _, body = cell.source.partition("\n")
        return substitute(body, {}, {})
    return cell.source


def result_messages(results: dict | None) -> list[tuple[str, str]]:
    return [(m["type"], m["data"]) for m in (results or {}).get("msg", [])]


def failed(results: dict | None) -> bool:
    return (results or {}).get("code") == "ERROR"


def assert_imports_without_losing_text_and_reexports_to_a_note_that_loads(path: Path, tmp_path: Path) -> None:
    """What import and export must keep of any note: texts, properties, interpreters, titles, code cells' results."""
    note = read_note(path)
    notebook = import_note(path, tmp_path / "imported")
    nb = nbformat.read(str(notebook), as_version=4)
    nbformat.validate(nb)
    cells = paragraph_cells(nb)
    assert len(cells) == len(note.paragraphs)
    for p, cell in zip(note.paragraphs, cells, strict=True):
        parsed = p.parsed()
        if cell.cell_type == "raw":
            assert cell.source == (p.text or "")  # verbatim, interpreter line included
        else:
            assert cell_script(cell) == parsed.script
        if cell.cell_type == "code" and cell.source.startswith("%%flink_sql"):
            assert parse_magic_line(cell.source.split("\n", 1)[0][len("%%flink_sql"):]).zeppelin == parsed.properties
    titles = [c.source for c in nb.cells if "zeppelin-title" in c.metadata.get("tags", [])]
    assert titles == [f"### {p.title}" for p in note.paragraphs if p.title]
    again = export_notebooks([notebook], ExportOptions(with_results=True, build=tmp_path / "build"), tmp_path / "again")
    reloaded = check_loads(again.path)  # strict: ids, dates, names as Zeppelin 0.10 writes them
    assert [p.title for p in reloaded.paragraphs] == [p.title for p in note.paragraphs]
    assert [p.parsed().script for p in reloaded.paragraphs] == [p.parsed().script for p in note.paragraphs]
    group = nb.metadata["zeppelin"]["defaultInterpreterGroup"]
    assert reloaded.default_interpreter_group == group
    for before, after, cell in zip(note.paragraphs, reloaded.paragraphs, cells, strict=True):
        old, new = before.parsed(), after.parsed()
        # the same interpreter runs it (a paragraph without prefix still takes the note's default group)
        assert resolve_interpreter(new.interpreter, group) == resolve_interpreter(old.interpreter,
                                                                                  note.default_interpreter_group)
        if old.properties:
            assert new.properties == old.properties  # local properties kept, of every interpreter
        if cell.cell_type == "code":
            assert result_messages(after.results) == result_messages(before.results)
            assert failed(after.results) == failed(before.results)  # a failed paragraph stays failed


@pytest.mark.parametrize("kind", NOTES)
def test_our_notes_import_without_losing_text_and_reexport_to_notes_that_load(tmp_path: Path, kind: str):
    path = write_note_file(kind, tmp_path / "notes")
    assert_imports_without_losing_text_and_reexports_to_a_note_that_loads(path, tmp_path)
    nb = nbformat.read(str(tmp_path / "imported" / f"{EXPECTED[kind]['notebook name']}.ipynb"), as_version=4)
    assert [c.cell_type for c in paragraph_cells(nb)] == EXPECTED[kind]["kinds"]


@pytest.mark.shared
@pytest.mark.parametrize("path", REAL_NOTES)
def test_real_notes_import_without_losing_text_and_reexport_to_notes_that_load(tmp_path: Path, path: Path):
    assert_imports_without_losing_text_and_reexports_to_a_note_that_loads(path, tmp_path)


def test_our_streaming_note_keeps_sql_properties_and_results_and_keeps_scala_raw(tmp_path: Path):
    nb = nbformat.read(str(import_note(write_note_file("zeppelin-0.10", tmp_path), tmp_path / "nb")), 4)
    single = next(c for c in nb.cells if "type=single" in c.source)
    assert single.source == ("%%flink_sql --zeppelin 'type=single, parallelism=1, refreshInterval=1000, "
                             "template=<h2>{0}</h2> clicks since {1}'\n"
                             "SELECT COUNT(*), MIN(event_time) FROM clicks")
    assert single.metadata["zeppelin"]["interpreter"] == "flink.ssql"
    assert single.outputs[0]["metadata"]["zeppelin"]["type"] == "ANGULAR"
    quoted = next(c for c in nb.cells if "jobName" in c.source)
    props = parse_magic_line(quoted.source.split("\n", 1)[0][len("%%flink_sql"):]).zeppelin
    assert props == {"type": "append", "jobName": "clicks, per window", "parallelism": "2", "template": "a=b"}
    table = next(c for c in nb.cells if "GROUP BY site" in c.source and c.outputs)
    assert table.source.endswith("WHERE site <> '{{none}}' GROUP BY site")
    assert table.outputs[0]["data"]["text/tab-separated-values"] == "site\tclicks\nshop\t3\nnews\t5\n"
    assert "<th>site</th>" in table.outputs[0]["data"]["text/html"]
    form = next(c for c in nb.cells if "${{site=shop}}" in c.source)
    assert form.metadata["zeppelin"]["interpreter"] == "flink.ssql"  # %ssql in a flink note
    plot = next(c for c in nb.cells if "plt.show()" in c.source)
    assert plot.cell_type == "code" and plot.outputs[0]["data"]["image/png"] == png_pixel()
    schema = next(c for c in nb.cells if "print_schema" in c.source)
    assert [o["output_type"] for o in schema.outputs] == ["stream", "display_data"]
    assert schema.outputs[1]["data"] == {"text/html": "<b>3 columns</b>"}
    scala = next(c for c in nb.cells if c.source.startswith("%flink \n"))
    assert scala.cell_type == "raw" and "zeppelin-not-runnable" in scala.metadata["tags"]
    raw = {c.metadata["zeppelin"]["interpreter"] for c in nb.cells if c.cell_type == "raw"}
    assert raw == {"flink", "flink.conf", "spark.pyspark", "sh"}
    no_prefix = next(c for c in nb.cells if c.source == "println(senv.getParallelism)")
    assert no_prefix.metadata["zeppelin"]["interpreter"] == "flink"


@pytest.mark.shared
def test_streaming_tutorial_sql_keeps_its_properties_and_results(tmp_path: Path):
    path = shared_path("zeppelin-samples", "5. Streaming Data Analytics_2EYT7Q6R8.zpln")
    nb = nbformat.read(str(import_note(path, tmp_path)), 4)
    single = next(c for c in nb.cells if "type=single" in c.source)
    assert single.source.startswith("%%flink_sql --zeppelin 'type=single, parallelism=1, refreshInterval=1000, "
                                    "template=<h1>{1}</h1> until <h2>{0}</h2>'\n")
    assert single.metadata["zeppelin"]["interpreter"] == "flink.ssql"
    assert single.outputs[0]["metadata"]["zeppelin"]["type"] == "ANGULAR"
    scala = next(c for c in nb.cells if c.source.startswith("%flink \n"))
    assert scala.cell_type == "raw" and "zeppelin-not-runnable" in scala.metadata["tags"]


def test_our_0_8_note_shell_scala_and_no_prefix_are_kept_not_run_and_tables_become_metadata(tmp_path: Path):
    nb = nbformat.read(str(import_note(write_note_file("zeppelin-0.8", tmp_path), tmp_path / "nb")), 4)
    assert nb.metadata["zeppelin"]["name"] == "Clicks per site (batch)"
    assert nb.metadata["zeppelin"]["defaultInterpreterGroup"] == "spark"  # 0.8 names none: Zeppelin's default
    raw = [c for c in nb.cells if c.cell_type == "raw"]
    assert {c.metadata["zeppelin"]["interpreter"] for c in raw} == {"sh", "flink", "spark"}
    assert next(c for c in raw if c.source.startswith("sc.")).metadata["zeppelin"]["interpreter"] == "spark"
    assert raw[-1].source == "" and "results" not in raw[-1].metadata["zeppelin"]  # the paragraph without text
    tables = [m for c in raw for m in c.metadata["zeppelin"].get("results", {}).get("msg", []) if m["type"] == "TABLE"]
    assert [t["data"] for t in tables] == ["site\tclicks\timpressions\nshop\t3\t40\nnews\t5\t61\n"]
    assert '### "Clicks" per site' in [c.source for c in nb.cells]
    assert "`3 < 40` & `5 < 61`" in nb.cells[-2].source  # Gson's escapes read back


@pytest.mark.shared
def test_0_8_note_shell_and_scala_are_kept_not_run_and_tables_become_outputs(tmp_path: Path):
    nb = nbformat.read(str(import_note(shared_path("zeppelin-samples", "2C35YU814-note.json"), tmp_path)), 4)
    assert nb.metadata["zeppelin"]["name"] == "Using Flink for batch processing"
    raw = [c for c in nb.cells if c.cell_type == "raw"]
    assert {c.metadata["zeppelin"]["interpreter"] for c in raw} == {"sh", "flink"}
    tables = [m for c in raw for m in c.metadata["zeppelin"].get("results", {}).get("msg", []) if m["type"] == "TABLE"]
    assert tables and tables[0]["data"].startswith("Month\t1998\t1999\t2000\n")


def test_our_studio_note_with_a_byte_order_mark_imports_as_sql_cells(tmp_path: Path):
    path = write_note_file("studio", tmp_path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    nb = nbformat.read(str(import_note(path, tmp_path / "nb")), 4)
    sql = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%flink_sql")]
    assert len(sql) == 3 and all(c.source.startswith("%%flink_sql --zeppelin type=update\n") for c in sql)
    assert sql[0].outputs[0]["text"] == "Table has been created.\n"
    error = "org.apache.flink.table.api.ValidationException: Object 'no_such_table' not found\n"
    assert sql[2].outputs[0] == {"output_type": "error", "ename": "org.apache.flink.table.api.ValidationException",
                                 "evalue": "Object 'no_such_table' not found\n", "traceback": [error]}
    assert nb.cells[3].cell_type == "markdown" and "Zürich" in nb.cells[3].source  # "%md " read as %md
    setup = [c for c in nb.cells if "local-only" in c.metadata.get("tags", [])]
    assert "st_env = lab.t_env" in setup[-1].source and "parameters" in setup[1].metadata["tags"]


@pytest.mark.shared
def test_studio_note_with_a_byte_order_mark_imports_as_sql_cells(tmp_path: Path):
    path = shared_path("zeppelin-samples", "replicator.zpln")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    nb = nbformat.read(str(import_note(path, tmp_path)), 4)
    sql = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%flink_sql")]
    assert len(sql) == 4 and all(c.source.startswith("%%flink_sql --zeppelin type=update\n") for c in sql)
    assert sql[0].outputs[0]["text"] == "Table has been dropped.\nTable has been created.\n"
    setup = [c for c in nb.cells if "local-only" in c.metadata.get("tags", [])]
    assert "st_env = lab.t_env" in setup[-1].source and "parameters" in setup[1].metadata["tags"]


@pytest.mark.parametrize("group, text, interpreter, cell_type", [
    (None, "sc.version", "spark", "raw"),  # a note naming no group: Zeppelin's default, spark
    ("flink", "senv.getParallelism", "flink", "raw"),  # the Flink group's default: Scala
    ("spark", "sc.version", "spark", "raw"),
    ("sh", "ls /tmp", "sh", "raw"),
    ("md", "# plain *markdown*", "md", "markdown"),
])
def test_a_paragraph_without_prefix_takes_the_notes_default_group(tmp_path: Path, group, text, interpreter,
                                                                   cell_type):
    note = {"paragraphs": [{"text": text}], "name": "plain", "id": "2ABCDEFGH"}
    if group:
        note["defaultInterpreterGroup"] = group
    path = tmp_path / "plain_2ABCDEFGH.zpln"
    path.write_text(json.dumps(note), encoding="utf-8")
    nb = nbformat.read(str(import_note(path, tmp_path / "nb")), 4)
    [cell] = paragraph_cells(nb)
    assert (cell.cell_type, cell.metadata["zeppelin"]["interpreter"], cell.source) == (cell_type, interpreter, text)
    again = check_loads(export_notebooks([tmp_path / "nb" / "plain.ipynb"], ExportOptions(), tmp_path / "z").path)
    assert again.default_interpreter_group == (group or "spark")
    assert again.paragraphs[0].text == (f"%md\n{text}" if group == "md" else text)


def write_paragraphs(tmp_path: Path, *paragraphs: dict) -> Path:
    path = tmp_path / "note.json"
    path.write_text(json.dumps({"paragraphs": list(paragraphs), "name": "old", "id": "2ABCDEFGH"}), encoding="utf-8")
    return path


def test_a_pre_0_7_result_imports(tmp_path: Path):
    old = {"code": "SUCCESS", "type": "TABLE", "msg": "site\tclicks\nshop\t3\n"}
    path = write_paragraphs(tmp_path, {"text": "%flink.ssql\nSELECT 1", "result": old})
    nb = nbformat.read(str(import_note(path, tmp_path / "nb")), 4)
    assert paragraph_cells(nb)[0].outputs[0]["data"]["text/tab-separated-values"] == old["msg"]


@pytest.mark.parametrize("old, outputs", [
    ({"code": "SUCCESS", "type": "TEXT", "msg": "3 rows\n"},
     [{"output_type": "stream", "name": "stdout", "text": "3 rows\n"}]),
    ({"code": "SUCCESS", "msg": "no type: TEXT\n"},
     [{"output_type": "stream", "name": "stdout", "text": "no type: TEXT\n"}]),
    ({"code": "SUCCESS", "type": "HTML", "msg": "<b>3</b>"},
     [{"output_type": "display_data", "metadata": {}, "data": {"text/html": "<b>3</b>"}}]),
    ({"code": "SUCCESS", "type": "IMG", "msg": png_pixel()},
     [{"output_type": "display_data", "metadata": {}, "data": {"image/png": png_pixel()}}]),
    ({"code": "ERROR", "type": "TEXT", "msg": "java.lang.RuntimeException: boom"},
     [{"output_type": "error", "ename": "java.lang.RuntimeException", "evalue": "boom",
       "traceback": ["java.lang.RuntimeException: boom"]}]),
    ("a bare text", [{"output_type": "stream", "name": "stdout", "text": "a bare text"}]),
])
def test_a_pre_0_7_result_is_read_as_one_result_message(tmp_path: Path, old, outputs: list):
    path = write_paragraphs(tmp_path, {"text": "%flink.pyflink\nprint(3)", "result": old})
    nb = nbformat.read(str(import_note(path, tmp_path / "nb")), 4)
    assert paragraph_cells(nb)[0].outputs == outputs
    again = export_notebooks([tmp_path / "nb" / "old.ipynb"], ExportOptions(with_results=True, build=tmp_path / "b"),
                             tmp_path / "z")
    results = check_loads(again.path).paragraphs[0].results
    assert results == read_note(path).paragraphs[0].results  # written back in the 0.7+ form, same message
    assert len(results["msg"]) == 1


def test_our_0_6_note_keeps_its_one_result_per_paragraph_in_the_0_7_form(tmp_path: Path):
    nb = nbformat.read(str(import_note(write_note_file("zeppelin-0.6", tmp_path), tmp_path / "nb")), 4)
    cells = paragraph_cells(nb)
    assert [c.metadata["zeppelin"].get("results") for c in cells[1:]] == [
        {"code": "SUCCESS", "msg": [{"type": "TEXT", "data": "8 /tmp/clicks.csv\n"}]},
        {"code": "SUCCESS", "msg": [{"type": "TEXT", "data": "n: Long = 8\n"}]},
        {"code": "SUCCESS", "msg": [{"type": "TABLE", "data": TABLE_0_6}]},
        {"code": "ERROR", "msg": [{"type": "TEXT", "data": "cat: /tmp/no_such_file: No such file or directory\n"
                                                           "ExitValue: 1"}]},
        None,  # never ran
    ]
    assert cells[3].metadata["zeppelin"]["interpreter"] == "sql"  # Spark SQL: kept, not run


@pytest.mark.parametrize("field, value, message", [
    ("result", {"code": "SUCCESS", "type": "TEXT", "msg": 3}, '"msg" must be a list of messages'),
    ("result", {"code": "SUCCESS", "type": 7, "msg": "x"}, '"msg" must be a list of messages'),
    ("result", ["x"], "an object is needed"),
    ("results", {"code": "SUCCESS", "type": "TEXT", "msg": "old form, new field"}, '"msg" must be a list'),
    ("results", "text", "an object is needed"),
    ("results", {"code": 0, "msg": []}, '"code" must be a string'),
    ("results", {"code": "SUCCESS", "msg": ["x"]}, "message 1 must be an object"),
    ("results", {"code": "SUCCESS", "msg": [{"type": "TEXT", "data": "ok"}, {"type": "TEXT", "data": 5}]},
     'message 2 needs a string "type" and a string "data"'),
])
@pytest.mark.parametrize("text", ["%flink.ssql\nSELECT 1", "%sh\nls"])  # a code cell, a raw cell
def test_a_malformed_result_is_refused_naming_the_file_and_paragraph(tmp_path: Path, field: str, value, message: str,
                                                                      text: str):
    path = write_paragraphs(tmp_path, {"text": "%md\nfine"}, {"text": text, field: value})
    with pytest.raises(ZeppelinError, match=message) as info:
        import_note(path, tmp_path / "nb")
    assert str(info.value).startswith(f"{path}, paragraph 2: malformed saved result: ")
    assert not (tmp_path / "nb").exists()


def test_a_failed_paragraph_stays_failed_through_import_and_export(tmp_path: Path):
    path = write_note_file("studio", tmp_path)
    nb = import_note(path, tmp_path / "nb")
    again = export_notebooks([nb], ExportOptions(with_results=True, build=tmp_path / "build"), tmp_path / "z")
    assert check_loads(again.path).paragraphs[3].results["code"] == "ERROR"
    assert again.note.paragraphs[3].results == read_note(path).paragraphs[3].results  # exactly
    assert json.loads(again.path.read_text())["paragraphs"][3]["status"] == "ERROR"


@pytest.mark.parametrize("results", [
    {"code": "ERROR", "msg": [{"type": "TEXT", "data": "Fail to execute line 1: print(x)\nTraceback ...\n"}]},
    {"code": "ERROR", "msg": [{"type": "TEXT", "data": "partial output\n"},
                              {"type": "TEXT", "data": "org.apache.flink.table.api.SqlParserException: SQL parse "
                                                       "failed. Encountered \"FROM\"\n\tat org.apache..."},
                              {"type": "TEXT", "data": "Error: with a name, then \x1b[31mcolour\x1b[0m\n"},
                              {"type": "TEXT", "data": ""}]},
    {"code": "ERROR", "msg": [{"type": "TABLE", "data": "a\tb\n1\t2\n"}, {"type": "HTML", "data": "<b>no</b>"},
                              {"type": "ANGULAR", "data": "{{x}}"}, {"type": "IMG", "data": png_pixel()}]},
    {"code": "SUCCESS", "msg": [{"type": "TEXT", "data": "java.lang.RuntimeException: printed, not raised\n"}]},
])
def test_error_results_round_trip_exactly_and_make_valid_notebooks(tmp_path: Path, results: dict):
    outputs = results_to_outputs(results)
    nbformat.validate(nbformat.from_dict({**nbformat.v4.new_notebook(),
                                          "cells": [nbformat.v4.new_code_cell("x", outputs=outputs)]}))
    assert outputs_to_results(outputs) == results
    path = write_paragraphs(tmp_path, {"text": "%flink.pyflink\nprint(x)", "results": results})
    first = export_notebooks([import_note(path, tmp_path / "nb")], ExportOptions(with_results=True,
                                                                                build=tmp_path / "b"), tmp_path / "z")
    second = export_notebooks([import_note(first.path, tmp_path / "nb2")],
                              ExportOptions(with_results=True, build=tmp_path / "b"), tmp_path / "z2")
    assert first.note.paragraphs[0].results == results
    assert second.path.read_bytes() == first.path.read_bytes()


def test_a_cell_that_raised_in_jupyter_exports_as_a_failed_paragraph(tmp_path: Path):
    raised = {"output_type": "error", "ename": "ValueError", "evalue": "no rows for 'shop'", "traceback": [
        "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
        "\x1b[0;31mValueError\x1b[0m                                Traceback (most recent call last)",
        "Cell \x1b[0;32mIn[3], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m \x1b[38;5;28;01mraise\x1b[39;00m ...",
        "\x1b[0;31mValueError\x1b[0m: no rows for 'shop'"]}
    one_line = {**raised, "traceback": ["\x1b[0;31mValueError\x1b[0m: no rows for 'shop'"]}  # %xmode Minimal
    nb = nbformat.v4.new_notebook(metadata={"zeppelin": {"name": "raised", "defaultInterpreterGroup": "flink"}})
    nb.cells = [nbformat.v4.new_code_cell("print('before')\nraise ValueError(\"no rows for 'shop'\")", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="before\n"), nbformat.from_dict(raised)]),
        nbformat.v4.new_code_cell("raise ValueError(\"no rows for 'shop'\")", outputs=[nbformat.from_dict(one_line)])]
    nbformat.validate(nb)
    nbformat.write(nb, str(tmp_path / "raised.ipynb"))
    out = export_notebooks([tmp_path / "raised.ipynb"], ExportOptions(with_results=True, build=tmp_path / "b"),
                           tmp_path / "z")
    first, second = check_loads(out.path).paragraphs
    assert first.results == {"code": "ERROR", "msg": [{"type": "TEXT", "data": "before\n"},
                                                      {"type": "TEXT", "data": "ValueError: no rows for 'shop'"}]}
    assert second.results == {"code": "ERROR", "msg": [{"type": "TEXT", "data": "ValueError: no rows for 'shop'"}]}
    assert [p["status"] for p in json.loads(out.path.read_text())["paragraphs"]] == ["ERROR", "ERROR"]


def test_interpreters_without_group_no_prefix_and_braces(tmp_path: Path):
    note = {"paragraphs": [
        {"text": "%ipyflink\nprint(st_env)"},
        {"text": "SELECT '{x}' AS braces"},  # no prefix: the note's default, flink -> the Scala interpreter
        {"text": "%ssql(type=update)\nSELECT '{x}', '${y}'"},
        {"text": "%flink.conf\nflink.execution.jars /x.jar"},
        {"text": "%spark.pyspark\nsc.version", "title": "Spark"},
        {"text": "%flink.bsql\nSHOW TABLES"},
    ], "name": "mixed", "id": "2ABCDEFGH", "defaultInterpreterGroup": "flink"}
    path = tmp_path / "mixed_2ABCDEFGH.zpln"
    path.write_text(json.dumps(note), encoding="utf-8")
    nb = nbformat.read(str(import_note(path, tmp_path)), 4)
    cells = paragraph_cells(nb)
    assert (cells[0].cell_type, cells[0].metadata["zeppelin"]["interpreter"]) == ("code", "flink.ipyflink")
    assert cells[1].cell_type == "raw" and cells[1].metadata["zeppelin"]["interpreter"] == "flink"
    assert cells[2].source == "%%flink_sql --zeppelin type=update\nSELECT '{{x}}', '${{y}}'"
    assert cell_script(cells[2]) == "SELECT '{x}', '${y}'"
    assert [c.cell_type for c in cells[3:5]] == ["raw", "raw"] and cells[3].source == note["paragraphs"][3]["text"]
    assert cells[5].metadata["zeppelin"]["interpreter"] == "flink.bsql"
    again = export_notebooks([tmp_path / "mixed.ipynb"], ExportOptions(), tmp_path / "again")
    texts = [p.text for p in check_loads(again.path).paragraphs]
    assert texts == ["%flink.ipyflink\nprint(st_env)", "SELECT '{x}' AS braces", "%flink.ssql(type=update)\n"
                     "SELECT '{x}', '${y}'", "%flink.conf\nflink.execution.jars /x.jar", "%spark.pyspark\nsc.version",
                     "%flink.bsql(type=update)\nSHOW TABLES"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clicklab", *args], capture_output=True, text=True,
                          env=client_env(), timeout=120, cwd=settings.REPO)


@pytest.mark.parametrize("content, message", [
    ("this is not json", "not JSON"),
    ('{"name": "x", "id": "2ABCDEFGH"}', 'no "paragraphs"'),
    ('{"paragraphs": [{"text": "%md\\nfine"}, {"text": "%flink.ssql(type=update,=x,\\nSELECT 1"}]}',
     "paragraph 2: malformed local properties"),
    ('{"paragraphs": [{"text": "%md\\nfine"}, {"text": "%flink.ssql\\nSELECT 1", "result": {"code": "SUCCESS", '
     '"type": "TEXT", "msg": 3}}]}', "paragraph 2: malformed saved result"),
])
def test_cli_refuses_bad_notes_with_file_and_paragraph_and_no_traceback(tmp_path: Path, content: str, message: str):
    bad = tmp_path / "bad note.zpln"
    bad.write_text(content, encoding="utf-8")
    result = run_cli("import-zeppelin", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert str(bad) in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_cli_export_and_import(tmp_path: Path):
    result = run_cli("export-zeppelin", "--target", "studio", "--out", str(tmp_path / "z"), "--build",
                     str(tmp_path / "build"))
    assert result.returncode == 0, result.stderr
    [note] = list((tmp_path / "z").glob("*.zpln"))
    assert str(note) in result.stdout and "checked" in result.stdout
    result = run_cli("import-zeppelin", str(note), "--out", str(tmp_path / "nb"))
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "nb").glob("*.ipynb"))) == 1
    result = run_cli("export-zeppelin", "--flink-version", "1.19", "--out", str(tmp_path / "z"))
    assert result.returncode == 1 and "--account-id" in result.stderr and "Traceback" not in result.stderr
