"""clicklab import-zeppelin: notes written by others become notebooks, and export back to notes that load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from clicklab import settings
from clicklab.sqltext import parse_magic_line, substitute
from clicklab.zeppelin.export import ExportOptions, export_notebooks
from clicklab.zeppelin.importer import import_note
from clicklab.zeppelin.note import check_loads, read_note
from tests.conftest import client_env

SAMPLES = settings.REPO.parent / "shared" / "zeppelin-samples"
SAMPLE_FILES = sorted(p for p in SAMPLES.glob("*") if p.suffix in (".zpln", ".json"))


def paragraph_cells(nb: nbformat.NotebookNode) -> list:
    """The cells that stand for paragraphs (not the setup cells, not the title headings)."""
    return [c for c in nb.cells if not {"local-only", "zeppelin-title"} & set(c.metadata.get("tags", []))]


def cell_script(cell) -> str:
    """What the cell runs, with the magic line read back and the SQL braces undone."""
    if cell.cell_type == "code" and cell.source.startswith("%%flink_sql"):
        _, _, body = cell.source.partition("\n")
        return substitute(body, {}, {})
    return cell.source


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_real_notes_import_without_losing_text_and_reexport_to_notes_that_load(tmp_path: Path, path: Path):
    note = read_note(path)
    notebook = import_note(path, tmp_path / "imported")
    nb = nbformat.read(str(notebook), as_version=4)
    nbformat.validate(nb)
    cells = paragraph_cells(nb)
    assert len(cells) == len(note.paragraphs)
    for p, cell in zip(note.paragraphs, cells, strict=True):
        parsed = p.parsed()
        if cell.cell_type == "raw":
            assert cell.source == p.text  # verbatim, interpreter line included
        else:
            assert cell_script(cell) == parsed.script
        if cell.cell_type == "code" and cell.source.startswith("%%flink_sql"):
            assert parse_magic_line(cell.source.split("\n", 1)[0][len("%%flink_sql"):]).zeppelin == parsed.properties
    titles = [c.source for c in nb.cells if "zeppelin-title" in c.metadata.get("tags", [])]
    assert titles == [f"### {p.title}" for p in note.paragraphs if p.title]
    again = export_notebooks([notebook], ExportOptions(with_results=True), tmp_path / "again")
    reloaded = check_loads(again.path)  # strict: ids, dates, names as Zeppelin 0.10 writes them
    assert [p.title for p in reloaded.paragraphs] == [p.title for p in note.paragraphs]
    assert [p.parsed().script for p in reloaded.paragraphs] == [p.parsed().script for p in note.paragraphs]


def test_streaming_tutorial_sql_keeps_its_properties_and_results(tmp_path: Path):
    nb = nbformat.read(str(import_note(SAMPLES / "5. Streaming Data Analytics_2EYT7Q6R8.zpln", tmp_path)), 4)
    single = next(c for c in nb.cells if "type=single" in c.source)
    assert single.source.startswith("%%flink_sql --zeppelin 'type=single, parallelism=1, refreshInterval=1000, "
                                    "template=<h1>{1}</h1> until <h2>{0}</h2>'\n")
    assert single.metadata["zeppelin"]["interpreter"] == "flink.ssql"
    assert single.outputs[0]["metadata"]["zeppelin"]["type"] == "ANGULAR"
    scala = next(c for c in nb.cells if c.source.startswith("%flink \n"))
    assert scala.cell_type == "raw" and "zeppelin-not-runnable" in scala.metadata["tags"]


def test_0_8_note_shell_and_scala_are_kept_not_run_and_tables_become_outputs(tmp_path: Path):
    nb = nbformat.read(str(import_note(SAMPLES / "2C35YU814-note.json", tmp_path)), 4)
    assert nb.metadata["zeppelin"]["name"] == "Using Flink for batch processing"
    raw = [c for c in nb.cells if c.cell_type == "raw"]
    assert {c.metadata["zeppelin"]["interpreter"] for c in raw} == {"sh", "flink"}
    tables = [m for c in raw for m in c.metadata["zeppelin"].get("results", {}).get("msg", []) if m["type"] == "TABLE"]
    assert tables and tables[0]["data"].startswith("Month\t1998\t1999\t2000\n")


def test_studio_note_with_a_byte_order_mark_imports_as_sql_cells(tmp_path: Path):
    assert (SAMPLES / "replicator.zpln").read_bytes().startswith(b"\xef\xbb\xbf")
    nb = nbformat.read(str(import_note(SAMPLES / "replicator.zpln", tmp_path)), 4)
    sql = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%flink_sql")]
    assert len(sql) == 4 and all(c.source.startswith("%%flink_sql --zeppelin type=update\n") for c in sql)
    assert sql[0].outputs[0]["text"] == "Table has been dropped.\nTable has been created.\n"
    setup = [c for c in nb.cells if "local-only" in c.metadata.get("tags", [])]
    assert "st_env = lab.t_env" in setup[-1].source and "parameters" in setup[1].metadata["tags"]


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
