"""A Zeppelin note -> one Jupyter notebook (``clicklab import-zeppelin``).

* ``%md`` -> markdown cells;
* Flink SQL (``%flink.ssql``, ``%flink.bsql``, ``%ssql``/``%bsql`` in a ``flink`` note) -> ``%%flink_sql`` cells whose
  ``--zeppelin "..."`` option keeps the paragraph's local properties (the export writes them back);
* ``%flink.pyflink``, ``%flink.ipyflink``, ``%ipyflink`` ... -> Python cells; a first setup cell (tagged
  ``local-only``, left out by the export) starts the local Flink session and names its table environment
  ``st_env``, as Studio does;
* any other interpreter (``%sh``, ``%spark...``, ``%flink`` Scala, ``%flink.conf``, or no prefix in a note
  whose default interpreter is one of those) -> a *raw* cell with the paragraph's text verbatim, interpreter
  line included, tagged ``zeppelin-not-runnable``: Jupyter and papermill do not run raw cells;
* a paragraph title -> a markdown heading cell tagged ``zeppelin-title`` (the export makes it the next
  paragraph's title again); saved results -> cell outputs (tables, images, HTML, text; a failed
  paragraph's text as an ``error`` output), see :mod:`clicklab.zeppelin.results`.

Each cell keeps the paragraph's interpreter and id in its metadata (``zeppelin``). Nothing of a paragraph's
text is lost: the SQL only has its braces doubled (``{`` -> ``{{``), which the magic reads back as ``{``.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import nbformat

from clicklab import cells, settings
from clicklab.zeppelin.localprops import format_properties
from clicklab.zeppelin.note import Note, Paragraph, ZeppelinError, read_note
from clicklab.zeppelin.results import results_to_outputs

#: Zeppelin's default interpreter group (``zeppelin.interpreter.group.default``) for notes that name none.
DEFAULT_GROUP = "spark"
FLINK_SQL = ("ssql", "bsql")
FLINK_PYTHON = ("pyflink", "ipyflink")

SETUP = '''# Parameters (papermill overrides these)
dataset = "{dataset}"  # the replay file the lab's tickerstream reads
build = "{build}"'''

START = '''import clicklab.notebook

lab = clicklab.notebook.start(dataset, build, create_tables=False)  # a Flink session and the %%flink_sql magic
st_env = lab.t_env  # the table environment, named as in Zeppelin's Flink interpreter'''


def resolve_interpreter(interpreter: str, default_group: str | None) -> str:
    """The interpreter a paragraph runs on: ``ssql`` -> ``flink.ssql`` in a flink note, ``""`` -> the group."""
    group = default_group or DEFAULT_GROUP
    if not interpreter:
        return group
    if "." not in interpreter and interpreter in (*FLINK_SQL, *FLINK_PYTHON) and group == "flink":
        return f"flink.{interpreter}"
    if "." not in interpreter and interpreter in FLINK_PYTHON:
        return f"flink.{interpreter}"  # %ipyflink without its group
    return interpreter


def _escape_braces(sql: str) -> str:
    return sql.replace("{", "{{").replace("}", "}}")


def _kind(resolved: str) -> str:
    if resolved == "md" or resolved.endswith(".md"):
        return "markdown"
    group, _, name = resolved.rpartition(".")
    if group == "flink" and name in FLINK_SQL:
        return "sql"
    if group == "flink" and name in FLINK_PYTHON:
        return "python"
    return "raw"


def paragraph_cells(p: Paragraph, default_group: str | None, source: str = "<note>") -> list[Any]:
    """The cells of one paragraph: an optional title cell, then the paragraph's cell.

    Malformed saved results raise :class:`ZeppelinError` naming ``source`` (the note's file) and the paragraph.
    """
    parsed = p.parsed()
    outputs = [nbformat.from_dict(o) for o in results_to_outputs(p.results, f"{source}, paragraph {p.number}")]
    resolved = resolve_interpreter(parsed.interpreter, default_group)
    kind = _kind(resolved)
    meta: dict[str, Any] = {"interpreter": resolved, "id": p.id}
    if parsed.properties and kind != "sql":
        meta["properties"] = dict(parsed.properties)
    out = []
    if p.title:
        out.append(nbformat.v4.new_markdown_cell(f"### {p.title}", metadata={"tags": [cells.TITLE]}))
    if kind == "markdown" and not parsed.properties:
        cell = nbformat.v4.new_markdown_cell(parsed.script)
    elif kind == "sql":
        line = cells.MAGIC
        if parsed.properties:
            line += " --zeppelin " + shlex.quote(format_properties(parsed.properties))
        text = line + ("\n" + _escape_braces(parsed.script) if parsed.script else "")
        cell = nbformat.v4.new_code_cell(text, outputs=outputs)
    elif kind == "python":
        cell = nbformat.v4.new_code_cell(parsed.script, outputs=outputs)
    else:
        cell = nbformat.v4.new_raw_cell(p.text or "")
        cell.metadata["tags"] = [cells.NOT_RUNNABLE]
        if p.results:
            meta["results"] = p.results
    cell.metadata["zeppelin"] = meta
    out.append(cell)
    return out


def note_to_notebook(note: Note, dataset: str = "../data/lab_replay.jsonl.gz",
                     build: str = "../build") -> nbformat.NotebookNode:
    """The notebook of a note (see the module's docstring for the mapping)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["zeppelin"] = {"name": note.name.rsplit("/", 1)[-1], "id": note.id,
                               "defaultInterpreterGroup": note.default_interpreter_group or DEFAULT_GROUP,
                               "source": Path(note.source).name}
    intro = nbformat.v4.new_markdown_cell(
        f"*Imported from the Zeppelin note `{Path(note.source).name}` by `clicklab import-zeppelin`.* "
        "SQL paragraphs run here with `%%flink_sql`; paragraphs of other interpreters are kept as raw cells "
        "(not run). `clicklab export-zeppelin --notebook <this file>` writes the note back.",
        metadata={"tags": [cells.LOCAL_ONLY]})
    params = nbformat.v4.new_code_cell(SETUP.format(dataset=dataset, build=build),
                                       metadata={"tags": [cells.PARAMETERS, cells.LOCAL_ONLY]})
    start = nbformat.v4.new_code_cell(START, metadata={"tags": [cells.LOCAL_ONLY]})
    nb.cells = [intro, params, start]
    for p in note.paragraphs:
        nb.cells.extend(paragraph_cells(p, note.default_interpreter_group, note.source))
    for i, cell in enumerate(nb.cells):
        cell.id = f"z{i:03d}"
    return nb


def notebook_name(note: Note) -> str:
    name = note.name.rsplit("/", 1)[-1].strip() or note.id or Path(note.source).stem
    return re.sub(r"[^\w.() -]+", "_", name).strip() or "note"


def import_note(path: Path, out_dir: Path) -> Path:
    """Read a ``.zpln`` / ``note.json`` and write ``<out_dir>/<note name>.ipynb``; return its path."""
    note = read_note(Path(path))
    out_dir = Path(out_dir)
    nb = note_to_notebook(note, os.path.relpath(settings.DEFAULT_DATASET, out_dir.resolve()),
                          os.path.relpath(settings.DEFAULT_BUILD, out_dir.resolve()))
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise ZeppelinError(f"{path}: the notebook written from it is not valid: {exc.message}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{notebook_name(note)}.ipynb"
    nbformat.write(nb, str(out))
    return out
