"""The six streams of the lab and its dead-letter stream ``badevents``, defined once.

The AWS lab creates six Kinesis data streams and one Flink table on each. Here every stream is a
table on Flink's filesystem connector (JSON lines) under ``build/streams/<stream>/``, except
``tickerstream``, which reads the replay file (:func:`local_ddl`).

**Bad events.** tickerstream's lines are read as raw text (table ``tickerstream_raw``, format ``raw``),
and checked in SQL (:func:`reason_sql`): the ``reason`` column names what is wrong with a line (malformed
JSON, a missing or mistyped field, NaN/Infinity, an unknown ``browseraction``), NULL for a good event.
``tickerstream`` is a view of the good events that are not late (``CURRENT_WATERMARK``), with the lab's
columns, so the lab's SQL reads it as before; ``04_impression_stream`` writes the others, with their
reason, to ``badevents``. A bad line's ``rowtime`` is the epoch, so it never moves the watermark.

In live mode (:func:`live_ddl`) tickerstream is a folder the live generator writes to (a file about every
half second), and every table watches its folder for new files, commits what it writes at each checkpoint
(``settings.LIVE_CHECKPOINT_INTERVAL``, 500 ms), and uses the live watermarks (see :class:`Stream`).
The Studio export (:func:`kinesis_ddl`) has seven tables too: the six streams and ``badevents``, each on the
Kinesis stream of its name (``scripts/clickstream-lab.yaml`` creates all seven).
Notebooks, the CLI, the tests and the Zeppelin export all take names, columns and DDL from this module.

Example::

    >>> from clicklab.streams import STREAMS
    >>> [c.name for c in STREAMS["ctrstream"].columns]
    ['site', 'time', 'ctr', 'clickcount', 'impressioncount']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clicklab import settings


@dataclass(frozen=True)
class Column:
    """One column of a stream: its name, Flink SQL type and meaning."""

    name: str
    type: str
    doc: str


@dataclass(frozen=True)
class Stream:
    """One of the lab's streams.

    ``watermark`` is the column that carries event time when the stream is read (or ``None``),
    ``watermark_delay_s`` how late rows may be on a replay. ``computed`` columns are derived when
    reading (tickerstream's ``rowtime``) and never written.

    ``raw_table`` (tickerstream only): the table that reads the stream's lines as text; the stream itself is
    then a view of its good events (see the module's docstring). ``job``: the name of the job that fills
    the stream when it is not the lab title of its notebook (``filled_by``).

    ``live_watermark_s`` is the watermark delay live. Live, every stream arrives in time order, a file
    about every half second, so one second is enough: the CTR join then writes a window whose clicks and impressions
    both arrived at once, and a one-sided window when the next window arrives. On a replay a whole
    stream is read at once, in no particular order of its files, hence the longer ``watermark_delay_s``.

    tickerstream's delays are ``settings.WATERMARK_DELAY_SECONDS`` (a replay, and the Kinesis DDL of the
    Studio export) and ``settings.LIVE_WATERMARK_DELAY_SECONDS`` (live): 1 second each, where the lab's
    tickerstream waits 0 seconds.
    """

    name: str
    doc: str
    columns: tuple[Column, ...]
    computed: tuple[tuple[str, str], ...] = ()
    watermark: str | None = None
    watermark_delay_s: int = 0
    filled_by: str = ""
    live_watermark_s: int = 1
    raw_table: str | None = None
    job: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns] + [name for name, _ in self.computed]


W = settings.WINDOW_SECONDS

#: How tickerstream reads ``event_time`` (quotes doubled for SQL): ISO-8601, UTC, milliseconds.
EVENT_TIME_PATTERN = "yyyy-MM-dd''T''HH:mm:ss.SSS''Z''"

# ---------------------------------------------------------------------------------------------
# Bad events: the checks of a tickerstream line, in SQL (and in Python in :mod:`clicklab.badevents`)

#: The table that reads tickerstream's lines as text; ``tickerstream`` is the view of its good events.
TICKER_RAW_TABLE = "tickerstream_raw"
#: The fields of a tickerstream event: each must be there and a string.
EVENT_FIELDS = ("browseraction", "site", "event_time")
#: The values of ``browseraction``.
BROWSER_ACTIONS = ("Click", "Impression")
#: ``rowtime`` of a bad line: the epoch, so that it never moves the watermark (and a NULL rowtime would stop the job).
BAD_ROWTIME = "TIMESTAMP '1970-01-01 00:00:00.000'"

#: Reasons, in the order they are checked; a line gets the first that applies.
REASON_NONFINITE = "non-finite number in field {field}: NaN or Infinity where a finite value must be"
REASON_MALFORMED = "malformed JSON: the line is not one JSON object"
REASON_MISSING = "missing field {field}"
REASON_MISTYPED = "mistyped field {field}: not a string"
REASON_EVENT_TIME = "mistyped field event_time: not an ISO-8601 UTC time such as 2023-08-23T13:46:30.123Z"
REASON_UNKNOWN_ACTION = "unknown browseraction: neither 'Click' nor 'Impression'"
REASON_LATE = "late: event_time behind the watermark"

#: The form of ``event_time`` (``TO_TIMESTAMP`` alone also takes ``2023-08-23 13:46:30.123``, whatever its pattern).
EVENT_TIME_REGEX = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
#: A NaN or Infinity where a JSON value stands (Python's ``json.dumps`` writes them; JSON has no such value); group 1
#: is the field's name. Java's and Python's regular expressions read it alike.
NONFINITE_PATTERN = r'"([^"\\]*)"\s*:\s*-?(?:NaN|Infinity)'


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal (quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


#: The whitespace the fast path takes between tokens: spaces only (a tab or a line break: the full checks).
_SPACE = " *"
#: A JSON string with no escape, quote or control character: its text is its value, as ``JSON_VALUE`` reads it.
_PLAIN_STRING = r'"[^"\\\x00-\x1F]*"'
#: The value patterns of the fast path, by field (any other field: a plain string).
_FAST_VALUES = {
    "browseraction": '"(?:' + "|".join(BROWSER_ACTIONS) + ')"',
    "event_time": '"' + EVENT_TIME_REGEX.strip("^$") + '"',
}
#: The computed column of tickerstream's raw table that says a line takes the fast path.
FAST_PATH_COLUMN = "fast_path"


def canonical_line_regex(fields: tuple[str, ...] = EVENT_FIELDS) -> str:
    """The regular expression of a line in the usual shape: the fast path of :func:`reason_sql`.

    One JSON object of ``fields`` in that order, each a string with no escape, quote or control character
    (``browseraction`` one of :data:`BROWSER_ACTIONS`, ``event_time`` of :data:`EVENT_TIME_REGEX`), spaces as the
    only whitespace, nothing else. Every line it matches (and whose event time parses) passes the full checks:
    ``tests/test_badevents.py`` holds the two against each other on tricky lines, in Python and in Flink. The
    replay's and the generators' lines all match it, so a good event costs one regular expression instead of the
    full checks' JSON parses (about 27); ``clicklab bench``'s ``pipeline_events_per_s`` shows what that saves.

    >>> import re
    >>> line = '{"browseraction": "Click", "site": "a", "event_time": "2023-08-23T12:00:00.000Z"}'
    >>> bool(re.match(canonical_line_regex(), line)), bool(re.match(canonical_line_regex(), line.replace(" ", chr(9))))
    (True, False)
    """
    members = [f'"{f}"{_SPACE}:{_SPACE}{_FAST_VALUES.get(f, _PLAIN_STRING)}' for f in fields]
    return "^" + _SPACE + r"\{" + _SPACE + f"{_SPACE},{_SPACE}".join(members) + _SPACE + r"\}" + _SPACE + "$"


def fast_path_sql(column: str = "line", fields: tuple[str, ...] = EVENT_FIELDS) -> str:
    """TRUE when the line is in the usual shape (:func:`canonical_line_regex`)."""
    return f"REGEXP({column}, {sql_string(canonical_line_regex(fields))})"


def fast_value_sql(field: str, column: str = "line", fields: tuple[str, ...] = EVENT_FIELDS) -> str:
    """A field's value from a line in the usual shape (and only there): the text between its quotes.

    Split on ``"``, such a line's pieces are ``{``, name, ``:``, value, ``,``, name, ...: value *i* is piece 4i + 3.
    """
    return f"SPLIT_INDEX({column}, '\"', {4 * fields.index(field) + 3})"


def _to_timestamp(text: str) -> str:
    return f"TO_TIMESTAMP({text}, '{EVENT_TIME_PATTERN}')"


def _fast_event_time_sql(column: str = "line", fields: tuple[str, ...] = EVENT_FIELDS) -> str:
    """The event time of a line in the usual shape (NULL when it does not parse)."""
    return _to_timestamp(fast_value_sql("event_time", column, fields))


def full_event_time_sql(column: str = "line") -> str:
    """The event time as the full checks read it: ``JSON_VALUE``, then the form, then ``TO_TIMESTAMP`` (else NULL)."""
    value = f"JSON_VALUE({column}, '$.event_time')"
    return f"CASE WHEN REGEXP({value}, {sql_string(EVENT_TIME_REGEX)}) THEN {_to_timestamp(value)} END"


def reason_sql(column: str = "line", fields: tuple[str, ...] = EVENT_FIELDS, fast: bool = True) -> str:
    """The SQL expression that gives a raw tickerstream line's reason (NULL: a good event, maybe late).

    ``fields``: those the line must have (Kinesis records carry no ``event_time``: their arrival time is theirs).
    The first WHEN is the fast path: a line in the usual shape (:func:`canonical_line_regex`) whose event time
    parses is good, with no JSON function; every other line takes the full checks, in the order of the reasons
    (``fast=False``: the full checks alone, which give every line the same reason).
    Lateness is not decided here: it needs the watermark (``CURRENT_WATERMARK``), which a computed column cannot
    see; the view ``tickerstream`` and ``04``'s ``INSERT INTO badevents`` split late events off.
    """
    line = column

    def value(field: str) -> str:
        return f"JSON_VALUE({line}, '$.{field}')"

    good = fast_path_sql(line, fields)
    if "event_time" in fields:
        good += f" AND {_fast_event_time_sql(line, fields)} IS NOT NULL"
    nonfinite = f"REGEXP_EXTRACT({line}, {sql_string(NONFINITE_PATTERN)}, 1)"
    prefix, suffix = REASON_NONFINITE.split("{field}")
    whens = [f"WHEN {good} THEN CAST(NULL AS STRING)"] if fast else []
    whens += [
        f"WHEN NOT ({line} IS JSON OBJECT) AND {nonfinite} IS NOT NULL"
        f" THEN CONCAT({sql_string(prefix)}, {nonfinite}, {sql_string(suffix)})",
        # Flink's JSON parser ignores what follows the object: `{...} junk` must end with the object's brace
        f"WHEN NOT ({line} IS JSON OBJECT) OR TRIM({line}) NOT LIKE '%}}' THEN {sql_string(REASON_MALFORMED)}",
    ]
    whens += [f"WHEN NOT JSON_EXISTS({line}, '$.{f}') THEN {sql_string(REASON_MISSING.format(field=f))}"
              for f in fields]  # absent or null
    whens += [f"WHEN JSON_QUERY({line}, '$.{f}' WITH ARRAY WRAPPER) NOT LIKE '[\"%'"
              f" THEN {sql_string(REASON_MISTYPED.format(field=f))}" for f in fields]  # ["text"]: a string
    if "event_time" in fields:
        whens.append(f"WHEN {full_event_time_sql(line)} IS NULL THEN {sql_string(REASON_EVENT_TIME)}")
    actions = ", ".join(sql_string(a) for a in BROWSER_ACTIONS)
    whens.append(f"WHEN {value('browseraction')} NOT IN ({actions}) THEN {sql_string(REASON_UNKNOWN_ACTION)}")
    body = "\n".join(f"    {w}" for w in whens)
    return f"CASE\n{body}\n  END"


def event_time_sql(column: str = "line") -> str:
    """A raw line's event time as ``TIMESTAMP(3)`` when its ``event_time`` is an ISO-8601 UTC time, else NULL.

    From the fast path's piece for a line in the usual shape (:func:`canonical_line_regex`), else ``JSON_VALUE``.
    """
    return (f"CASE WHEN {fast_path_sql(column)} THEN {_fast_event_time_sql(column)}"
            f" ELSE {full_event_time_sql(column)} END")


def rowtime_sql(column: str = "line") -> str:
    """A raw line's ``rowtime``: its event time when it is a good event, else :data:`BAD_ROWTIME` (from ``column``
    alone: a computed column cannot name another)."""
    return (f"CASE WHEN {fast_path_sql(column)} THEN COALESCE({_fast_event_time_sql(column)}, {BAD_ROWTIME})"
            f" WHEN {reason_sql(column, fast=False)} IS NULL THEN {full_event_time_sql(column)} ELSE {BAD_ROWTIME} END")


STREAMS: dict[str, Stream] = {
    s.name: s
    for s in (
        Stream(
            name="tickerstream",
            doc="Raw click and impression events, as the Kinesis Data Generator sends them.",
            columns=(
                Column("browseraction", "STRING", "'Click' or 'Impression'"),
                Column("site", "STRING", "the site the event belongs to"),
                Column("event_time", "STRING", "when the event happened, ISO-8601 UTC: 2023-08-23T13:46:30.123Z"),
            ),
            # computed on the raw table (tickerstream_raw), from the line: a bad line's is the epoch
            computed=(("rowtime", "CASE WHEN reason IS NULL THEN TO_TIMESTAMP(event_time) ELSE epoch END"),),
            watermark="rowtime",
            watermark_delay_s=settings.WATERMARK_DELAY_SECONDS,
            filled_by="the replay dataset",
            live_watermark_s=settings.LIVE_WATERMARK_DELAY_SECONDS,
            raw_table=TICKER_RAW_TABLE,
        ),
        Stream(
            name="impressionstream",
            doc=f"Impressions per site in {W}-second tumbling windows.",
            columns=(
                Column("site", "STRING", "site"),
                Column("rowtime", "TIMESTAMP(3)", "window start (UTC)"),
                Column("impressioncount", "BIGINT", "impressions in the window"),
            ),
            watermark="rowtime",
            watermark_delay_s=settings.WINDOW_STREAM_WATERMARK_SECONDS,
            filled_by="04_impression_stream",
        ),
        Stream(
            name="clickstream",
            doc=f"Clicks per site in {W}-second tumbling windows.",
            columns=(
                Column("site", "STRING", "site"),
                Column("rowtime", "TIMESTAMP(3)", "window start (UTC)"),
                Column("clickcount", "BIGINT", "clicks in the window"),
            ),
            watermark="rowtime",
            watermark_delay_s=settings.WINDOW_STREAM_WATERMARK_SECONDS,
            filled_by="05_click_stream",
        ),
        Stream(
            name="ctrstream",
            doc="Click-through rate per site and window: clicks / impressions * 100.",
            columns=(
                Column("site", "STRING", "site"),
                Column("time", "BIGINT", "window start, epoch seconds (as in the lab's output)"),
                Column("ctr", "DOUBLE", "click-through rate in percent"),
                Column("clickcount", "BIGINT", "clicks in the window (0 when there were none)"),
                Column("impressioncount", "BIGINT", "impressions in the window (0 when none)"),
            ),
            # read back with event time, so scoring can take each site's windows in time order
            computed=(("rowtime", "CAST(TO_TIMESTAMP_LTZ(`time`, 0) AS TIMESTAMP(3))"),),
            watermark="rowtime",
            watermark_delay_s=settings.CTR_WATERMARK_SECONDS,
            filled_by="06_ctr_stream",
        ),
        Stream(
            name="destinationstream",
            doc="Every CTR with its Random Cut Forest anomaly score.",
            columns=(
                Column("site", "STRING", "site"),
                Column("time", "BIGINT", "window start, epoch seconds"),
                Column("ctr", "DOUBLE", "click-through rate in percent"),
                Column("score", "DOUBLE", "anomaly score (about 1 for normal points; 0 while warming up)"),
            ),
            computed=(("rowtime", "CAST(TO_TIMESTAMP_LTZ(`time`, 0) AS TIMESTAMP(3))"),),
            watermark="rowtime",
            watermark_delay_s=settings.WINDOW_SECONDS,
            filled_by="08_anomaly_scores",
        ),
        Stream(
            name="anomalydetectionstream",
            doc="The CTRs whose anomaly score is over the threshold.",
            columns=(
                Column("site", "STRING", "site"),
                Column("rowtime", "TIMESTAMP(3)", "window start (UTC)"),
                Column("ctrpercent", "DOUBLE", "click-through rate in percent"),
                Column("anomaly_score", "DOUBLE", "anomaly score"),
                Column("expected", "DOUBLE", "the site's usual CTR before this window, percent (NULL: not known yet)"),
                Column("usual_low", "DOUBLE", "the low end of the site's usual CTR range, percent (never below 0)"),
                Column("usual_high", "DOUBLE", "the high end of the site's usual CTR range, percent"),
                Column("grade", "DOUBLE", "how unusual, 0-1: from the site's ordinary score to the forest's ceiling"),
            ),
            filled_by="09_anomaly_stream",
        ),
        Stream(
            name="badevents",
            doc="The dead-letter stream: tickerstream's lines that are no good event, or late, with the reason.",
            columns=(
                Column("line", "STRING", "the line as it was read"),
                Column("reason", "STRING", "what is wrong with it, naming the field (see clicklab.streams)"),
                Column("rowtime", "TIMESTAMP(3)", "its event time (UTC) when event_time parses, else NULL"),
            ),
            filled_by="04_impression_stream",
            job="#4 Bad events",
        ),
    )
}

#: The streams in the lab's order.
STREAM_NAMES: tuple[str, ...] = tuple(STREAMS)


def stream_path(build: Path, name: str) -> Path:
    """Directory of a local stream."""
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}; the lab's streams are {', '.join(STREAMS)}")
    return settings.streams_dir(build) / name


#: Column names that are reserved words in Flink SQL and must be quoted with backticks.
RESERVED = frozenset({"time", "timestamp", "value", "date", "user", "year", "month", "day"})


def _quote(name: str) -> str:
    return f"`{name}`" if name.lower() in RESERVED else name


def local_ddl(name: str, build: Path, dataset: Path) -> str:
    """``CREATE TABLE`` for one stream on the local filesystem connector (JSON lines).

    ``tickerstream`` reads ``dataset`` (a JSON-lines file, optionally gzip-compressed) as text: its DDL is two
    statements, the raw table and the view of its good events (see :func:`ticker_view_sql`); the others
    live in ``<build>/streams/<name>/``.
    """
    return table_ddl(name, local_options(name, build, dataset))


def local_options(name: str, build: Path, dataset: Path) -> dict[str, str]:
    """The filesystem options of a replay stream (:func:`local_ddl`): ``dataset`` for tickerstream, else its folder."""
    path = Path(dataset) if name == "tickerstream" else stream_path(build, name)
    options = {
        "connector": "filesystem",
        "path": str(Path(path).resolve()),
        "format": "json",
        "json.timestamp-format.standard": "SQL",
        "json.fail-on-missing-field": "true" if name == "tickerstream" else "false",
        "json.ignore-parse-errors": "false",
    }
    return raw_format(name, options)


def live_options(name: str, build: Path, exclude: list[str] | None = None) -> dict[str, str]:
    """The filesystem options of a live stream: watched for new files, committed every second.

    ``exclude`` names files of the folder a job must not read: those already there when it starts (see
    :func:`live_ddl`).
    """
    options = {
        "connector": "filesystem",
        "path": str(stream_path(build, name).resolve()),
        "format": "json",
        "json.timestamp-format.standard": "SQL",
        "json.fail-on-missing-field": "true" if name == "tickerstream" else "false",
        "json.ignore-parse-errors": "false",
        "source.monitor-interval": settings.LIVE_MONITOR_INTERVAL,
    }
    if name != "tickerstream":  # written by a job of the lab
        options["sink.rolling-policy.rollover-interval"] = settings.LIVE_ROLLOVER
        options["sink.rolling-policy.check-interval"] = settings.LIVE_ROLLOVER
    if exclude:
        import re

        folder = re.escape(options["path"])
        names = "|".join(re.escape(n) for n in sorted(exclude))
        options["source.path.regex-pattern"] = f"(?!{folder}/({names})$).*"
    return raw_format(name, options)


def live_ddl(name: str, build: Path, exclude: list[str] | None = None) -> str:
    """``CREATE TABLE`` for one stream in live mode: every stream is a folder under ``<build>/streams/``.

    tickerstream's folder is where the live generator writes (``clicklab generate --live``). ``exclude``:
    files the table does not read. A live job reads only the files that appear after it starts, as a
    Kinesis consumer at ``LATEST``: Flink's file source reads the files it finds at once in no particular
    order, and its watermark follows the newest event read, so older ones would be dropped as late and
    the first windows be partial. The session re-creates its tables with the files of the moment before
    each job (:meth:`clicklab.lab.Lab.run`).
    """
    return table_ddl(name, live_options(name, build, exclude), live=True)


def all_live_ddl(build: Path) -> str:
    """The live ``CREATE TABLE`` statements of the streams, as one script."""
    return "\n\n".join(live_ddl(n, build) + ";" for n in STREAM_NAMES)


def raw_format(name: str, options: dict[str, str]) -> dict[str, str]:
    """A stream read as text (:attr:`Stream.raw_table`) takes format ``raw``: one line, one value; no JSON options."""
    if not STREAMS[name].raw_table:
        return options
    return {k: ("raw" if k == "format" else v) for k, v in options.items() if not k.startswith("json.")}


def drop_statements(name: str) -> list[str]:
    """The statements that drop a stream's table (tickerstream: its view and its raw table)."""
    raw = STREAMS[name].raw_table
    return [f"DROP VIEW IF EXISTS {name}", f"DROP TABLE IF EXISTS {raw}"] if raw else [f"DROP TABLE IF EXISTS {name}"]


def ticker_column_sql(field: str, fields: tuple[str, ...] = EVENT_FIELDS, fast_path: str = FAST_PATH_COLUMN) -> str:
    """A field of a raw line as the view reads it: the fast path's piece when ``fast_path`` (a column or an
    expression) is true and ``field`` is one of its ``fields``, else ``JSON_VALUE``."""
    full = f"JSON_VALUE(line, '$.{field}')"
    if field not in fields:
        return full
    return f"CASE WHEN {fast_path} THEN {fast_value_sql(field, 'line', fields)} ELSE {full} END"


def ticker_view_sql(name: str = "tickerstream", fields: tuple[str, ...] = EVENT_FIELDS) -> str:
    """``CREATE VIEW tickerstream``: the good events of its raw table, not late, with the lab's columns.

    ``CURRENT_WATERMARK(rowtime)`` is the watermark this operator has seen (NULL before the first one): an event
    at or behind it would fall into a window the watermark has closed, which would drop it silently; the view
    leaves it out and ``04`` writes it to ``badevents``. Every window behind the view sees a watermark no newer
    than the view's, so a window never drops an event that the view let through. A column's value is the fast
    path's piece when the line took it (:data:`FAST_PATH_COLUMN`, ``fields`` in the raw table's order), else
    ``JSON_VALUE``.
    """
    stream = STREAMS[name]
    raw = stream.raw_table
    columns = ",\n       ".join(f"{ticker_column_sql(c.name, fields)} AS {_quote(c.name)}" for c in stream.columns)
    return (f"CREATE VIEW {name} AS\nSELECT {columns},\n       rowtime\nFROM {raw}\n"
            f"WHERE reason IS NULL\n  AND (CURRENT_WATERMARK(rowtime) IS NULL OR rowtime > CURRENT_WATERMARK(rowtime))")


def _create_raw_table(name: str, options: dict[str, str], arrival_time: str | None = None, live: bool = False) -> str:
    """tickerstream's raw table (its lines as text, their reason and event time) and its view of the good events."""
    stream = STREAMS[name]
    fields = EVENT_FIELDS if arrival_time is None else tuple(f for f in EVENT_FIELDS if f != "event_time")
    reason = reason_sql("line", fields)
    if arrival_time:  # Kinesis: the arrival time is the event time, never late by much, never NULL
        rowtime = "rowtime TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL"
    else:
        rowtime = f"rowtime AS {rowtime_sql()}"
    delay = stream.live_watermark_s if live else stream.watermark_delay_s
    lines = ["  line STRING", f"  {FAST_PATH_COLUMN} AS {fast_path_sql('line', fields)}", f"  reason AS {reason}",
             f"  parsed_time AS {event_time_sql()}", f"  {rowtime}",
             f"  WATERMARK FOR rowtime AS rowtime - INTERVAL '{delay}' SECOND"]
    with_clause = ",\n".join(f"  '{k}' = '{v}'" for k, v in options.items())
    body = ",\n".join(lines)
    return f"CREATE TABLE {stream.raw_table} (\n{body}\n) WITH (\n{with_clause}\n);\n\n{ticker_view_sql(name, fields)}"


def interval_seconds(seconds: int) -> str:
    """A SQL interval of ``seconds``: ``INTERVAL '60' SECOND``, or whole days (``INTERVAL '99' DAY``). Flink takes
    two digits a field (a longer one needs a precision its planner refuses: "DAY_INTERVAL_TYPES precision")."""
    if 0 <= seconds <= 99:
        return f"INTERVAL '{seconds}' SECOND"
    if seconds % 86_400 == 0 and seconds // 86_400 <= 99:
        return f"INTERVAL '{seconds // 86_400}' DAY"
    raise ValueError(f"a watermark delay of {seconds} s: give 0-99 seconds or 1-99 whole days")


def table_ddl(name: str, options: dict[str, str], arrival_time: str | None = None, live: bool = False,
              delay_s: int | None = None) -> str:
    """``CREATE TABLE`` of a stream from :data:`STREAMS` with connector ``options``.

    ``arrival_time`` names a computed column read instead from the record's arrival time (Kinesis metadata);
    ``live`` takes the live watermark; ``delay_s`` another delay (not for a stream read as text). A stream with a
    :attr:`Stream.raw_table` gives two statements (see :func:`ticker_view_sql`).
    """
    stream = STREAMS[name]
    if stream.raw_table:
        return _create_raw_table(name, options, arrival_time, live)
    lines = [f"  {_quote(c.name)} {c.type}" for c in stream.columns]
    for col, expr in stream.computed:
        if col == arrival_time:
            lines.append(f"  {_quote(col)} TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL")
        else:
            lines.append(f"  {_quote(col)} AS {expr}")
    if stream.watermark:
        delay = delay_s if delay_s is not None else stream.live_watermark_s if live else stream.watermark_delay_s
        lines.append(
            f"  WATERMARK FOR {_quote(stream.watermark)} AS {_quote(stream.watermark)}"
            f" - {interval_seconds(delay)}"
        )
    with_clause = ",\n".join(f"  '{k}' = '{v}'" for k, v in options.items())
    body = ",\n".join(lines)
    return f"CREATE TABLE {name} (\n{body}\n) WITH (\n{with_clause}\n)"


def all_local_ddl(build: Path, dataset: Path) -> str:
    """The DDL of all the streams, as one script of statements separated by semicolons."""
    return ";\n\n".join(local_ddl(name, build, dataset) for name in STREAMS) + ";"


#: Flink versions the Kinesis DDL is written for: Managed Service for Apache Flink (Studio) runs 1.15 and
#: 1.18 with the ``kinesis`` connector of ``flink-sql-connector-kinesis`` 4.x; 1.19 and later use the AWS
#: connectors 5.x, whose ``kinesis`` source takes a stream ARN.
KINESIS_FLINK_VERSIONS = ("1.15", "1.18", "1.19")

#: Streams whose event time in Kinesis is the record's arrival time (Kinesis ``ApproximateArrivalTimestamp``),
#: as in the lab: the Kinesis Data Generator's records carry no time of their own. The other streams
#: carry their window start in the record and keep their event time from it.
KINESIS_ARRIVAL_TIME = {"tickerstream": "rowtime"}


def _flink_version(version: str) -> tuple[int, int]:
    try:
        major, minor = (int(x) for x in str(version).split(".")[:2])
    except ValueError:
        raise ValueError(f"Flink version {version!r}: expected MAJOR.MINOR such as 1.15") from None
    if (major, minor) < (1, 13):
        raise ValueError(f"Flink version {version}: the Kinesis SQL connector needs Flink 1.13 or later")
    return major, minor


def kinesis_ddl(name: str, flink_version: str = "1.15", region: str = "us-east-1",
                account_id: str | None = None, start_position: str = "LATEST",
                start_timestamp: str | None = None) -> str:
    """``CREATE TABLE`` for one stream on Amazon Kinesis Data Streams, for Managed Service for Apache Flink.

    Same columns and watermarks as :func:`local_ddl`, from :data:`STREAMS`; the Kinesis stream has the
    stream's name; JSON records with ISO-8601 timestamps. ``tickerstream``'s event time is the
    arrival timestamp (metadata key ``timestamp``) instead of the replay's ``event_time``.

    Connector options by Flink version (Flink / AWS connector docs, table connector "Kinesis"):

    * up to 1.18 (connector 4.x): ``'connector' = 'kinesis'``, ``'stream'``, ``'aws.region'``,
      ``'scan.stream.initpos'``;
    * 1.19 and later (connector 5.x): ``'connector' = 'kinesis'``, ``'stream.arn'``, ``'aws.region'``,
      ``'source.init.position'``. Its new source cannot read metadata columns yet (FLINK-36671; the
      docs say to use ``kinesis-legacy`` meanwhile), so ``tickerstream``, which needs the arrival
      time, uses ``'connector' = 'kinesis-legacy'`` with the 4.x option names: both identifiers
      come with ``flink-sql-connector-kinesis`` 5.x. The ARN needs ``account_id``.

    ``start_timestamp`` (with ``start_position`` ``AT_TIMESTAMP``) goes to ``scan.stream.initpos-timestamp``
    (4.x, ``kinesis-legacy``) or ``source.init.timestamp`` (5.x), in their default format
    ``yyyy-MM-dd'T'HH:mm:ss.SSSXXX``.
    """
    major_minor = _flink_version(flink_version)
    new_connector = major_minor >= (1, 19)
    arrival = KINESIS_ARRIVAL_TIME.get(name)
    if new_connector and not arrival:
        if not account_id:
            raise ValueError(f"Flink {flink_version}: the Kinesis connector 5.x needs the stream's ARN, "
                             "so an AWS account id (12 digits)")
        if not (account_id.isdigit() and len(account_id) == 12):
            raise ValueError(f"AWS account id {account_id!r}: expected 12 digits")
        options = {
            "connector": "kinesis",
            "stream.arn": f"arn:aws:kinesis:{region}:{account_id}:stream/{name}",
            "aws.region": region,
            "source.init.position": start_position,
        }
        if start_timestamp:
            options["source.init.timestamp"] = start_timestamp
    else:
        options = {
            "connector": "kinesis-legacy" if new_connector else "kinesis",
            "stream": name,
            "aws.region": region,
            "scan.stream.initpos": start_position,
        }
        if start_timestamp:
            options["scan.stream.initpos-timestamp"] = start_timestamp
    options.update({"format": "json", "json.timestamp-format.standard": "ISO-8601"})
    return table_ddl(name, raw_format(name, options), arrival_time=arrival)


def all_kinesis_ddl(flink_version: str = "1.15", region: str = "us-east-1", account_id: str | None = None,
                    start_position: str = "LATEST", start_timestamp: str | None = None) -> str:
    """The Kinesis DDL of all the streams, as one script (each table dropped first, as the lab does)."""
    return "\n\n".join(
        "".join(f"{drop};\n" for drop in drop_statements(name)) +
        f"{kinesis_ddl(name, flink_version, region, account_id, start_position, start_timestamp)};" for name in STREAMS
    )


# ---------------------------------------------------------------------------------------------
# The Kinesis Data Analytics SQL application (notebooks 20-23): its source and in-application streams

#: The SQL application's input stream, as Kinesis Data Analytics names it.
SQL_APP_SOURCE = "SOURCE_SQL_STREAM_001"

#: The SQL application's streams, named and typed as the application declares them (``CREATE OR REPLACE STREAM``),
#: each with ``ROWTIME``, which every Kinesis Data Analytics stream has without declaring it. There ``ROWTIME`` is
#: the time a row arrived (the source) or was emitted (a window's row: when its window closed); here it is event
#: time: the event's ``event_time`` in the source, and a window's end in a window's row. Every one is a table on
#: the filesystem connector under ``<build>/sqlapp/<name in lower case>/`` (:func:`sql_app_ddl`); the source reads
#: the SQL lab's replay (``data/scenarios/sql_lab.yaml``).
SQL_APP_STREAMS: dict[str, Stream] = {
    s.name: s
    for s in (
        Stream(
            name=SQL_APP_SOURCE,
            doc="The application's input: the Kinesis Data Generator's click and impression records.",
            columns=(
                Column("browseraction", "STRING", "'Click' or 'Impression'"),
                Column("site", "STRING", "the site (the SQL lab has one)"),
                Column("event_time", "STRING", "when the event happened, ISO-8601 UTC (Kinesis: its arrival time)"),
            ),
            computed=(("ROWTIME", f"TO_TIMESTAMP(event_time, '{EVENT_TIME_PATTERN}')"),),
            watermark="ROWTIME",
            watermark_delay_s=settings.WATERMARK_DELAY_SECONDS,
            filled_by="the SQL lab's replay",
        ),
        Stream(
            name="CLICKSTREAM",
            doc=f"Clicks per {W}-second window (CLICKPUMP).",
            columns=(
                Column("ROWTIME", "TIMESTAMP(3)", "the window's end (UTC): when Kinesis Data Analytics emits its row"),
                Column("CLICKCOUNT", "DOUBLE", "clicks in the window"),
            ),
            watermark="ROWTIME",
            watermark_delay_s=settings.WINDOW_STREAM_WATERMARK_SECONDS,
            filled_by="21_pumps",
        ),
        Stream(
            name="IMPRESSIONSTREAM",
            doc=f"Impressions per {W}-second window (IMPRESSIONPUMP).",
            columns=(
                Column("ROWTIME", "TIMESTAMP(3)", "the window's end (UTC)"),
                Column("IMPRESSIONCOUNT", "DOUBLE", "impressions in the window"),
            ),
            watermark="ROWTIME",
            watermark_delay_s=settings.WINDOW_STREAM_WATERMARK_SECONDS,
            filled_by="21_pumps",
        ),
        Stream(
            name="CTRSTREAM",
            doc="Click-through rate per window, clicks / impressions x 100 (CTRPUMP).",
            columns=(
                Column("ROWTIME", "TIMESTAMP(3)", "the window's end (UTC)"),
                Column("CTR", "DOUBLE", "click-through rate in percent"),
            ),
            watermark="ROWTIME",
            watermark_delay_s=settings.CTR_WATERMARK_SECONDS,
            filled_by="21_pumps",
        ),
        Stream(
            name="DESTINATION_SQL_STREAM",
            doc="The windows whose anomaly score is over 2 (OUTPUT_PUMP): what the application sends to its Lambda.",
            columns=(
                Column("ROWTIME", "TIMESTAMP(3)", "the window's end (UTC)"),
                Column("CTRPERCENT", "DOUBLE", "click-through rate in percent"),
                Column("ANOMALY_SCORE", "DOUBLE", "the Random Cut Forest's anomaly score"),
            ),
            filled_by="22_output_pump",
        ),
    )
}

#: The SQL application's streams in the application's order.
SQL_APP_STREAM_NAMES: tuple[str, ...] = tuple(SQL_APP_STREAMS)


def sql_app_path(build: Path, name: str) -> Path:
    """Directory of a SQL-application stream: ``<build>/sqlapp/<name in lower case>/``."""
    if name not in SQL_APP_STREAMS or name == SQL_APP_SOURCE:
        written = ", ".join(n for n in SQL_APP_STREAMS if n != SQL_APP_SOURCE)
        raise ValueError(f"unknown in-application stream {name!r}; the SQL application writes {written}")
    return Path(build) / "sqlapp" / name.lower()


def sql_app_ddl(name: str, build: Path, dataset: Path) -> str:
    """``CREATE TABLE`` of one SQL-application stream (the source reads ``dataset``, JSON lines, gzip or not)."""
    stream = SQL_APP_STREAMS[name]
    path = Path(dataset) if name == SQL_APP_SOURCE else sql_app_path(build, name)
    options = {
        "connector": "filesystem",
        "path": str(Path(path).resolve()),
        "format": "json",
        "json.timestamp-format.standard": "SQL",
        "json.fail-on-missing-field": "true" if name == SQL_APP_SOURCE else "false",
        "json.ignore-parse-errors": "false",
    }
    lines = [f"  {_quote(c.name)} {c.type}" for c in stream.columns]
    lines += [f"  {_quote(col)} AS {expr}" for col, expr in stream.computed]
    if stream.watermark:
        lines.append(f"  WATERMARK FOR {stream.watermark} AS {stream.watermark}"
                     f" - INTERVAL '{stream.watermark_delay_s}' SECOND")
    with_clause = ",\n".join(f"  '{k}' = '{v}'" for k, v in options.items())
    body = ",\n".join(lines)
    return f"CREATE TABLE {name} (\n{body}\n) WITH (\n{with_clause}\n)"


def all_sql_app_ddl(build: Path, dataset: Path) -> str:
    """The DDL of the SQL application's streams, as one script (each table dropped first: ``CREATE OR REPLACE``)."""
    return "\n\n".join(f"DROP TABLE IF EXISTS {n};\n{sql_app_ddl(n, build, dataset)};" for n in SQL_APP_STREAMS)
