"""Notebooks -> one Zeppelin note (``clicklab export-zeppelin``).

Each numbered notebook becomes a run of paragraphs, in order:

* markdown cells -> ``%md`` paragraphs;
* ``%%flink_sql`` cells -> ``%flink.ssql(<properties>)`` paragraphs: the cell's Zeppelin properties
  (``--type append``, ``--parallelism 1``, ``--zeppelin "..."``), else ``type=update``; ``{name}``
  is resolved here (``{ddl}`` is the Kinesis DDL for ``studio``, the filesystem DDL for ``local``);
  a ``{name}`` that is not a lab variable becomes the Zeppelin form ``${name}``, which Zeppelin asks for;
* other code cells -> ``%flink.pyflink`` paragraphs, with Studio's ``st_env`` for ``lab.t_env``;
* cells tagged ``local-only`` (papermill parameters, starting the local session, local plots) are
  left out, unless their metadata ``zeppelin.replace.<target>`` gives the paragraph(s) to write
  instead (tagged ``studio-replace`` so it shows in Jupyter): ``02``'s registration becomes
  ``CREATE TEMPORARY FUNCTION RANDOM_CUT_FOREST AS '<JAVA_UDF_CLASS>'`` in Studio;
* a markdown cell tagged ``zeppelin-title`` (what the import writes for a titled paragraph) is the
  title of the next paragraph. Lab notebooks' first step paragraph gets the Studio lab's own paragraph title
  (``#4: Generate the Impression Stream Data in real-time based on ...``), from the notebook's metadata
  ``clicklab.step``; the job names of ``clicklab.notebook.job_name`` come from the same metadata.

The tags and metadata are the cell protocol of :mod:`clicklab.cells`.

In Studio the tables read their Kinesis streams from ``TRIM_HORIZON`` by default: the lab sends traffic
before it runs the paragraphs, and a table at ``LATEST`` would miss it. ``--start-position LATEST`` or
``--start-position AT_TIMESTAMP --start-timestamp 2024-05-01T12:00:00Z`` changes that
(:func:`clicklab.streams.kinesis_ddl` writes the option under the name of the Flink version's connector).

The forest's parameters: ``--params lab|default`` (:data:`~clicklab.zeppelin.forestparams.PARAMETER_SETS`,
``lab`` by default for Studio) writes paragraphs that set them for #8's job and say how long each site's
forest warms up before it scores (:mod:`clicklab.zeppelin.forestparams`).

``--with-results`` adds each notebook's last outputs (from ``build/executed/NN_*.ipynb``, or the
notebook's own outputs) as paragraph results.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from clicklab import cells, javaudf, settings, sqltext, streams
from clicklab.zeppelin import forestparams
from clicklab.zeppelin.localprops import LocalPropertyError, format_header, parse_paragraph
from clicklab.zeppelin.note import Note, Paragraph, ZeppelinError, check_loads, write_note
from clicklab.zeppelin.results import outputs_to_results

TARGETS = ("studio", "local")
SQL_INTERPRETERS = ("flink.ssql", "flink.bsql")
PYTHON_INTERPRETERS = ("flink.pyflink", "flink.ipyflink")
#: Where a Kinesis table starts reading: the connectors' initial positions.
START_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
DEFAULT_START_POSITION = "TRIM_HORIZON"


def connector_timestamp(value: str | float) -> str:
    """An ISO-8601 time (``2024-05-01T12:00:00Z``, offsets allowed; naive means UTC) or epoch seconds, in the
    connectors' default timestamp format ``yyyy-MM-dd'T'HH:mm:ss.SSSXXX`` (UTC): ``2024-05-01T12:00:00.000Z``."""
    text = str(value).strip()
    try:
        when = datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ZeppelinError(f"--start-timestamp {text!r}: expected an ISO-8601 time such as "
                                "2024-05-01T12:00:00Z, or epoch seconds") from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class ExportOptions:
    """What to export for: ``studio`` (Kinesis, the Java UDF jar) or ``local`` (a self-hosted Zeppelin)."""

    target: str = "studio"
    flink_version: str = "1.15"
    region: str = "us-east-1"
    account_id: str | None = None
    start_position: str = DEFAULT_START_POSITION
    start_timestamp: str | None = None
    with_results: bool = False
    params: str | None = None  # the forest's parameter set (forestparams.PARAMETER_SETS); None: the target's default
    dataset: Path = settings.DEFAULT_DATASET
    build: Path = settings.DEFAULT_BUILD

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ZeppelinError(f"--target {self.target!r}: choose one of {', '.join(TARGETS)}")
        if self.flink_version not in streams.KINESIS_FLINK_VERSIONS:
            raise ZeppelinError(f"--flink-version {self.flink_version!r}: choose one of "
                                f"{', '.join(streams.KINESIS_FLINK_VERSIONS)}")
        if self.start_position not in START_POSITIONS:
            raise ZeppelinError(f"--start-position {self.start_position!r}: choose one of {', '.join(START_POSITIONS)}")
        if self.start_position == "AT_TIMESTAMP":
            if not self.start_timestamp:
                raise ZeppelinError("--start-position AT_TIMESTAMP needs --start-timestamp (e.g. 2024-05-01T12:00:00Z)")
            object.__setattr__(self, "start_timestamp", connector_timestamp(self.start_timestamp))
        elif self.start_timestamp:
            raise ZeppelinError(f"--start-timestamp is for --start-position AT_TIMESTAMP, not {self.start_position}")
        if self.params is not None:
            forestparams.preset(self.params)  # refuses an unknown name, naming --params

    @property
    def forest_preset(self) -> str | None:
        """The parameter set the note writes: ``params``, else the target's default (``lab`` for Studio)."""
        return self.params or forestparams.DEFAULT_PARAMS[self.target]


@dataclass
class ExportResult:
    path: Path
    note: Note
    warnings: list[str] = field(default_factory=list)


def lab_note_name(options: ExportOptions) -> str:
    if options.target == "studio":
        return f"Clickstream anomaly detection (Studio, Flink {options.flink_version})"
    return "Clickstream anomaly detection (local Zeppelin)"


def variables(options: ExportOptions) -> dict[str, Any]:
    """The ``{name}`` values of the export: the lab's (from :class:`clicklab.lab.Lab`) for the target."""
    from clicklab.notebook import Lab

    values = Lab(options.dataset, options.build, t_env=None).variables()  # no Flink needed for these
    if options.target == "studio":
        try:
            values["ddl"] = streams.all_kinesis_ddl(options.flink_version, options.region, options.account_id,
                                                    options.start_position, options.start_timestamp)
        except ValueError as exc:
            raise ZeppelinError(f"{exc}: give it with --account-id") from None
        # Kinesis streams are live: windows arrive in time order (see 08; Studio's 08 and 09 are the scalar forms)
        values["ctr_input"], values["scores_input"] = "ctrstream", "destinationstream"
    else:
        values["ddl"] = "\n\n".join(
            "".join(f"{drop};\n" for drop in streams.drop_statements(n))
            + f"{streams.local_ddl(n, options.build, options.dataset)};"
            for n in streams.STREAM_NAMES)
    values["java_udf_class"] = javaudf.JAVA_UDF_CLASS
    values["java_udf_jar"] = javaudf.JAVA_UDF_JAR.name
    return values


class _Resolver(Mapping[str, Any]):
    """``{name}`` -> the lab's value; an unknown name -> the Zeppelin form ``${name}`` (and a warning)."""

    def __init__(self, values: dict[str, Any], where: str, warnings: list[str]) -> None:
        self.values, self.where, self.warnings = values, where, warnings

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        if key in self.values:
            return self.values[key]
        self.warnings.append(f"{self.where}: {{{key}}} is not a lab variable; written as the Zeppelin form ${{{key}}}")
        return "${" + key + "}"

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


class _KeepEnv(Mapping[str, str]):
    """``${NAME}`` stays as written: in Zeppelin it is a form the user fills in (never a secret in the note)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return "${" + key + "}"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def lab_titles(notebooks: list[Path]) -> dict[str, str]:
    """Notebook number -> lab paragraph title, from each notebook's metadata (:class:`clicklab.cells.NotebookInfo`)."""
    titles: dict[str, str] = {}
    for path in notebooks:
        step = cells.info(path).step
        if step and re.match(r"\d\d_", path.name):
            titles[path.name[:2]] = step
    return titles


def _first_heading(nb: nbformat.NotebookNode) -> str | None:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#+\s+(.+?)\s*$", cell.source, re.MULTILINE)
            if m:
                return m.group(1)
    return None


def _resolve_sql(script: str, values: dict[str, Any], where: str, warnings: list[str]) -> str:
    try:
        return sqltext.substitute(script, _Resolver(values, where, warnings), _KeepEnv())
    except KeyError as exc:  # not reached: the resolver knows every name
        raise ZeppelinError(f"{where}: {exc}") from None


def _sql_paragraph(header_line: str, body: str, interpreter: str, values: dict[str, Any], where: str,
                   warnings: list[str]) -> str:
    try:
        opts = cells.parse_magic_line(header_line)
    except ValueError as exc:
        raise ZeppelinError(f"{where}: {exc}") from None
    props = dict(opts.zeppelin) or {"type": "update"}
    sql = _resolve_sql(body, values, where, warnings).strip()
    return f"{format_header(interpreter, props)}\n{sql}"


def _replacement(text: str, values: dict[str, Any], where: str, warnings: list[str]) -> str:
    """A replacement paragraph's text, its SQL resolved like a cell's."""
    try:
        parsed = parse_paragraph(text)
    except LocalPropertyError as exc:
        raise ZeppelinError(f"{where}: replacement paragraph: {exc}") from None
    if parsed.interpreter in SQL_INTERPRETERS:
        sql = _resolve_sql(parsed.script, values, where, warnings)
        return f"{format_header(parsed.interpreter, parsed.properties or {'type': 'update'})}\n{sql}"
    if parsed.interpreter == "md":
        return f"%md\n{_resolve_sql(parsed.script, values, where, warnings)}"
    return text.strip()


def cell_paragraphs(cell: Any, target: str, values: dict[str, Any], where: str,
                    warnings: list[str]) -> list[str] | None:
    """The paragraph texts for one cell (``[]``: left out; ``None``: a title cell)."""
    tags, zmeta = cells.tags(cell), cells.zeppelin_meta(cell)
    replace = cells.replacement(cell, target)
    if replace is not None:
        return [_replacement(t, values, where, warnings) for t in replace]
    if cells.TITLE in tags:
        return None
    if tags & cells.EXPORT_SKIPS:
        return []
    source = cell.source
    if cell.cell_type == "markdown":
        return [f"%md\n{source.strip()}"]
    if cell.cell_type == "raw":
        return [source] if cells.NOT_RUNNABLE in tags else []
    interpreter = zmeta.get("interpreter", "")
    if cells.is_sql(cell):
        header, body = cells.split_sql(cell)
        sql_interpreter = interpreter if interpreter in SQL_INTERPRETERS else "flink.ssql"
        return [_sql_paragraph(header, body, sql_interpreter, values, where, warnings)]
    py_interpreter = interpreter if interpreter in PYTHON_INTERPRETERS else "flink.pyflink"
    props = zmeta.get("properties") or {}
    code = source.replace("lab.t_env", "st_env").strip()
    return [f"{format_header(py_interpreter, props)}\n{code}"]


def _executed_cells(path: Path, options: ExportOptions, nb: nbformat.NotebookNode) -> list[Any]:
    """The notebook's cells with outputs: its executed copy's when it matches, else its own."""
    executed = Path(options.build) / "executed" / path.name
    if not executed.exists():
        return list(nb.cells)
    run = nbformat.read(str(executed), as_version=4)
    ran = [c for c in run.cells if cells.INJECTED_PARAMETERS not in cells.tags(c)]
    if [c.source for c in ran] != [c.source for c in nb.cells]:
        return list(nb.cells)  # the notebook changed since it ran: its outputs do not belong to it
    return ran


def _add_forest_paragraphs(paragraphs: list[Paragraph], first: int, preset: str, target: str, where: str) -> None:
    """Put the forest's parameter paragraphs into the scoring notebook's paragraphs (``paragraphs[first:]``):
    the parameters after its heading, the warm-up right after the paragraph that writes the scores (#8)."""
    before, after = forestparams.scoring_paragraphs(preset, target)
    insert = re.compile(rf"^\s*INSERT\s+INTO\s+`?{forestparams.SCORES_STREAM}\b", re.IGNORECASE | re.MULTILINE)
    step = next((i for i in range(first, len(paragraphs)) if not (paragraphs[i].text or "").startswith("%md")
                 and insert.search(paragraphs[i].text or "")), None)
    if step is None:
        raise ZeppelinError(f"{where}: no paragraph writes {forestparams.SCORES_STREAM} (INSERT INTO); the forest's "
                            f"parameters (--params {preset}) go before it")
    paragraphs[step + 1:step + 1] = [Paragraph(text=text) for text in after]
    head = first + 1 if (paragraphs[first].text or "").startswith("%md") and first < step else first
    paragraphs[head:head] = [Paragraph(text=text) for text in before]


def notebooks_to_note(notebooks: list[Path], options: ExportOptions, name: str,
                      default_group: str = "flink", forest_preset: str | None = None) -> tuple[Note, list[str]]:
    """Build the note of ``notebooks`` (in the order given).

    ``forest_preset`` (a name of :data:`~clicklab.zeppelin.forestparams.PARAMETER_SETS`) adds the paragraphs that
    set the forest's parameters to the notebook that fills ``destinationstream`` (see
    :mod:`clicklab.zeppelin.forestparams`)."""
    values = variables(options)
    titles = lab_titles(notebooks)
    warnings: list[str] = []
    paragraphs: list[Paragraph] = []
    for path in notebooks:
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as exc:
            raise ZeppelinError(f"{path}: not a readable notebook: {exc}") from None
        number = path.name[:2] if re.match(r"\d\d_", path.name) else None
        step_title = titles.get(number or "")
        if step_title is None and number not in (None, "00"):
            step_title = _first_heading(nb)
        nb_cells = _executed_cells(path, options, nb) if options.with_results else list(nb.cells)
        pending_title: str | None = None
        first = len(paragraphs)
        for index, cell in enumerate(nb_cells, 1):
            where = f"{path.name}, cell {index}"
            texts = cell_paragraphs(cell, options.target, values, where, warnings)
            if texts is None:
                pending_title = re.sub(r"^#+\s*", "", cell.source.strip())
                continue
            for k, text in enumerate(texts):
                title = pending_title
                pending_title = None
                if title is None and step_title and not text.startswith("%md"):
                    title, step_title = step_title, None
                results = None
                if options.with_results and cell.cell_type == "code" and k == len(texts) - 1 \
                        and not cells.has_replacement(cell):
                    results = outputs_to_results(cell.get("outputs", []))
                paragraphs.append(Paragraph(text=text, title=title, results=results))
        mine = [p for p in paragraphs[first:] if p.title is None]
        if step_title and mine:  # no step paragraph (all prose): the title goes after the heading
            mine[1 if len(mine) > 1 else 0].title = step_title
        if forest_preset and path.stem == streams.STREAMS[forestparams.SCORES_STREAM].filled_by:
            _add_forest_paragraphs(paragraphs, first, forest_preset, options.target, path.name)
    return Note(name=name, paragraphs=paragraphs, default_interpreter_group=default_group), warnings


def export_lab(options: ExportOptions, out_dir: Path | None = None,
               notebooks_dir: Path = settings.NOTEBOOKS_DIR, check: bool = True) -> ExportResult:
    """Export the numbered notebooks to ``<out_dir>/<name>_<id>.zpln`` and check that it loads.

    The SQL application's notebooks (``20_`` on, :func:`clicklab.settings.is_sql_app_notebook`) are no Studio
    paragraphs: they stay out of the note."""
    notebooks = [p for p in cells.lab_notebooks(notebooks_dir) if not settings.is_sql_app_notebook(p)]
    if not notebooks:
        raise ZeppelinError(f"{notebooks_dir}: no numbered notebooks (NN_topic.ipynb) to export")
    note, warnings = notebooks_to_note(notebooks, options, lab_note_name(options), forest_preset=options.forest_preset)
    path = write_note(note, Path(out_dir or Path(options.build) / "zeppelin"))
    if check:
        check_loads(path)
    return ExportResult(path, note, warnings)


def export_notebooks(paths: list[Path], options: ExportOptions, out_dir: Path, check: bool = True) -> ExportResult:
    """Export any notebooks (e.g. ones ``import-zeppelin`` wrote) as one note, named after the first.

    No forest parameter paragraphs are added: a note exported from the lab has them as cells already."""
    first = nbformat.read(str(paths[0]), as_version=4)
    meta = first.metadata.get("zeppelin", {})
    name = meta.get("name") or paths[0].stem
    note, warnings = notebooks_to_note(paths, options, name, meta.get("defaultInterpreterGroup") or "flink")
    path = write_note(note, Path(out_dir))
    if check:
        check_loads(path)
    return ExportResult(path, note, warnings)
