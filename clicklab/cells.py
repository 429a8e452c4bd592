"""The notebooks' cell protocol: what a tag, a cell's metadata and a notebook's metadata mean.

One place for the conventions that the runner (``clicklab run``), the Zeppelin export and import, and
the tests share. Pure: nbformat and text, no Flink.

Cell tags:

* ``parameters``: papermill's parameters cell (one per notebook); ``injected-parameters``: the cell
  papermill inserts after it;
* ``local-only``: runs here only; the Zeppelin export leaves it out (starting the session, plots);
* ``studio-replace``: the export writes other paragraphs in its place, given in the cell's metadata
  ``zeppelin.replace.<target>`` (``studio`` or ``local``; one text or a list);
* ``zeppelin-title``: a markdown heading that is the next paragraph's title (the import writes these);
* ``zeppelin-not-runnable``: a raw cell holding a paragraph of an interpreter we do not run.

A cell's metadata ``zeppelin`` also keeps the paragraph's ``interpreter``, ``id`` and ``properties``.

A notebook's metadata ``clicklab`` says what the notebook is in the lab (:class:`NotebookInfo`):
``step``, the Studio lab's own title of the paragraph, as its text writes it (``#4: Generate the Impression
Stream Data in real-time based on ...``): the Zeppelin paragraph title of the notebook's first step and the
name of the job that fills its stream; ``about``, the table's first column for a notebook that is no lab
paragraph; ``fills``, the stream it fills or what it does; ``cleanup``, true for the notebook that removes
the streams (the runner computes its summary before it); ``live``, true for the notebooks ``clicklab run
--live`` runs.
:func:`lab_table` renders the lab's table from these; the
README and ``00_overview`` hold that table (``tests/test_notebooks.py`` checks they agree).

SQL cells start with :data:`MAGIC`; :func:`parse_magic_line` reads the options on that line.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from clicklab import settings
from clicklab.zeppelin.localprops import LocalPropertyError, parse_properties

PARAMETERS = "parameters"
INJECTED_PARAMETERS = "injected-parameters"
LOCAL_ONLY = "local-only"
STUDIO_REPLACE = "studio-replace"
TITLE = "zeppelin-title"
NOT_RUNNABLE = "zeppelin-not-runnable"

#: Cells the Zeppelin export leaves out (unless they carry a replacement).
EXPORT_SKIPS = frozenset({LOCAL_ONLY, PARAMETERS, INJECTED_PARAMETERS})

#: The SQL cell magic (``%flink_sql`` is its one-line form).
MAGIC = "%%flink_sql"
LINE_MAGIC = MAGIC[1:]

#: A lab notebook's file name: ``NN_topic.ipynb``.
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"


# ---------------------------------------------------------------------------------------------
# Cells


def tags(cell: Any) -> set[str]:
    """The cell's tags."""
    return set(cell.get("metadata", {}).get("tags", []))


def zeppelin_meta(cell: Any) -> dict[str, Any]:
    """The cell's ``zeppelin`` metadata (``{}`` when it has none or it is not a mapping)."""
    meta = cell.get("metadata", {}).get("zeppelin", {})
    return meta if isinstance(meta, dict) else {}


def replacement(cell: Any, target: str) -> list[str] | None:
    """The paragraph texts the export writes for this cell on ``target``; ``None``: the cell's own."""
    replace = zeppelin_meta(cell).get("replace")
    if not isinstance(replace, dict) or target not in replace:
        return None
    texts = replace[target]
    return [str(texts)] if isinstance(texts, str) else [str(t) for t in texts]


def has_replacement(cell: Any) -> bool:
    return bool(zeppelin_meta(cell).get("replace"))


def is_sql(cell: Any) -> bool:
    """A code cell that starts with the ``%%flink_sql`` or ``%flink_sql`` magic."""
    return cell.get("cell_type") == "code" and cell.source.lstrip().startswith((MAGIC, LINE_MAGIC))


def split_sql(cell: Any) -> tuple[str, str]:
    """A SQL cell's magic options and SQL: ``("--type append", "INSERT ...")``.

    ``%flink_sql SHOW TABLES`` (the line magic) has no options and its statement on the line.
    """
    stripped = cell.source.lstrip()
    header, _, body = stripped.partition("\n")
    if stripped.startswith(MAGIC):
        return header[len(MAGIC):].strip(), body
    if stripped.startswith(LINE_MAGIC):
        return "", header[len(LINE_MAGIC):]
    raise ValueError(f"not a {MAGIC} cell: {stripped[:40]!r}")


# ---------------------------------------------------------------------------------------------
# Notebooks


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def lab_notebooks(folder: Path = settings.NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``NN_topic.ipynb``), in order."""
    return sorted(Path(folder).glob(NOTEBOOK_GLOB))


@dataclass(frozen=True)
class NotebookInfo:
    """What a notebook is in the lab, from its metadata ``clicklab`` (see the module's docstring)."""

    path: Path
    step: str | None = None
    about: str | None = None
    fills: str = ""
    cleanup: bool = False
    live: bool = False

    @property
    def number(self) -> str:
        return self.path.name[:2]


def info(path: Path, nb: nbformat.NotebookNode | None = None) -> NotebookInfo:
    """The notebook's :class:`NotebookInfo`; a notebook without ``clicklab`` metadata has none of it."""
    nb = nb if nb is not None else read(path)
    meta = nb.metadata.get("clicklab", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{Path(path).name}: metadata 'clicklab' must be a mapping, not {type(meta).__name__}")
    unknown = set(meta) - {"step", "about", "fills", "cleanup", "live"}
    if unknown:
        raise ValueError(f"{Path(path).name}: unknown key(s) in metadata 'clicklab': {', '.join(sorted(unknown))}")
    return NotebookInfo(Path(path), meta.get("step"), meta.get("about"), meta.get("fills", ""),
                        bool(meta.get("cleanup", False)), bool(meta.get("live", False)))


def lab_table(notebooks: list[Path] | None = None) -> str:
    """The lab's table, lab paragraph -> notebook -> what it fills, rendered from the notebooks' metadata."""
    rows = ["| Lab paragraph (Zeppelin note in Studio) | Notebook | Stream it fills |", "|---|---|---|"]
    for path in lab_notebooks() if notebooks is None else notebooks:
        nb_info = info(path)
        first = nb_info.step or (f"({nb_info.about})" if nb_info.about else "")
        rows.append(f"| {first} | `{path.stem}` | {nb_info.fills} |".replace("|  |", "| |"))
    return "\n".join(rows)


def sql_cells(path: Path) -> list[str]:
    """The SQL of every ``%%flink_sql`` cell of a notebook, without the magic line, in order."""
    return [split_sql(cell)[1] for cell in read(path).cells if is_sql(cell)]


def cells_with_outputs(path: Path) -> list[int]:
    """Indexes of code cells that carry outputs or an execution count (none should be committed)."""
    return [
        i
        for i, cell in enumerate(read(path).cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]


# ---------------------------------------------------------------------------------------------
# The magic line


@dataclass(frozen=True)
class MagicOptions:
    """The options of a ``%%flink_sql`` line.

    ``zeppelin`` holds the paragraph's Zeppelin local properties (``type``, ``parallelism``,
    ``refreshInterval``, ...): the Zeppelin export writes them as ``%flink.ssql(type=append, ...)``
    and the import puts them back here. Locally they change nothing: every query result is shown as
    its current table (Zeppelin's ``type=update``), and the local session's parallelism stays.
    """

    max_rows: int = 20
    timeout: float = 60.0
    echo: bool = False
    out: str | None = None
    zeppelin: dict[str, str] = field(default_factory=dict)


def _magic_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=MAGIC, add_help=False, exit_on_error=False)
    p.add_argument("--max-rows", type=int, default=20, help="rows shown per query")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a query may run")
    p.add_argument("--echo", action="store_true", help="show the SQL after substitution")
    p.add_argument("--out", metavar="NAME", help="keep the last query's rows in this notebook variable")
    p.add_argument("--type", choices=["update", "append", "single"], help="Zeppelin result type (export only)")
    p.add_argument("--parallelism", type=int, help="Zeppelin paragraph parallelism (export only)")
    p.add_argument("--zeppelin", metavar="PROPS", help='Zeppelin local properties: "key=value, ..."')
    return p


def parse_magic_line(line: str) -> MagicOptions:
    """Parse a ``%%flink_sql`` line; a bad option raises ``ValueError`` naming it.

    >>> parse_magic_line('--max-rows 5 --type append --zeppelin "refreshInterval=2000"').zeppelin
    {'refreshInterval': '2000', 'type': 'append'}
    """
    try:
        args, rest = _magic_parser().parse_known_args(shlex.split(line))
    except (argparse.ArgumentError, ValueError) as exc:
        raise ValueError(f"{MAGIC}: {exc}") from None
    if rest:
        raise ValueError(f"{MAGIC}: unknown option(s) {' '.join(rest)}")
    props: dict[str, str] = {}
    if args.zeppelin:
        try:
            props = parse_properties(args.zeppelin)
        except LocalPropertyError as exc:
            raise ValueError(f"{MAGIC} --zeppelin {args.zeppelin!r}: {exc}") from None
    if args.type:
        props["type"] = args.type
    if args.parallelism is not None:
        if args.parallelism < 1:
            raise ValueError(f"{MAGIC} --parallelism {args.parallelism}: must be 1 or more")
        props["parallelism"] = str(args.parallelism)
    return MagicOptions(args.max_rows, args.timeout, args.echo, args.out, props)
