"""Pure text work on Flink SQL for the notebook magic: substitution, splitting, classification.

No Flink here, so everything is tested quickly and on its own.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VAR = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(sql: str, variables: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${NAME}`` by the environment variable NAME and ``{name}`` by the Python variable.

    ``{{`` and ``}}`` stand for literal braces. A missing name raises ``KeyError`` naming it, so a
    typo never reaches Flink as an empty string. Environment variables are for secrets (topic ARNs,
    credentials): the notebook then holds only the name.

    >>> substitute("SELECT * FROM {table} WHERE x > ${LIMIT}", {"table": "t"}, {"LIMIT": "3"})
    'SELECT * FROM t WHERE x > 3'
    """
    env = os.environ if environ is None else environ

    def env_value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise KeyError(f"environment variable ${{{name}}} is not set")
        return env[name]

    def var_value(match: re.Match[str]) -> str:
        text = match.group(0)
        if text in ("{{", "}}"):
            return text[0]
        name = match.group(1)
        if name not in variables:
            raise KeyError(f"Python variable {{{name}}} is not defined in the notebook")
        return str(variables[name])

    return _VAR.sub(var_value, _ENV.sub(env_value, sql))


def split_statements(script: str) -> list[str]:
    """Split a script on semicolons that are outside quotes and comments; drop empty statements.

    >>> split_statements("SELECT ';' FROM t; -- a; comment\\nSHOW TABLES;")
    ["SELECT ';' FROM t", '-- a; comment\\nSHOW TABLES']
    """
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(script)
    quote: str | None = None
    while i < n:
        ch = script[i]
        if quote:
            current.append(ch)
            if ch == quote:
                if i + 1 < n and script[i + 1] == quote:  # doubled quote is an escaped quote
                    current.append(script[i + 1])
                    i += 1
                else:
                    quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
            current.append(ch)
        elif script.startswith("--", i):
            end = script.find("\n", i)
            end = n if end < 0 else end
            current.append(script[i:end])
            i = end
            continue
        elif script.startswith("/*", i):
            end = script.find("*/", i + 2)
            end = n if end < 0 else end + 2
            current.append(script[i:end])
            i = end
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if strip_comments(s).strip()]


def strip_comments(sql: str) -> str:
    """The statement without ``--`` and ``/* */`` comments (quotes are respected)."""
    out: list[str] = []
    i, n = 0, len(sql)
    quote: str | None = None
    while i < n:
        ch = sql[i]
        if quote:
            out.append(ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
            out.append(ch)
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


#: Kinds of statement, as the magic treats them.
DDL = "ddl"  # CREATE, DROP, ALTER, USE, SET, RESET, LOAD, UNLOAD: run at once, nothing to show
INSERT = "insert"  # INSERT INTO / OVERWRITE, EXECUTE STATEMENT SET: a job that writes a stream
QUERY = "query"  # SELECT, WITH, VALUES: a job whose rows are shown
INFO = "info"  # SHOW, DESCRIBE, DESC, EXPLAIN: metadata shown as a table

_KINDS = {
    "create": DDL, "drop": DDL, "alter": DDL, "use": DDL, "set": DDL, "reset": DDL,
    "load": DDL, "unload": DDL, "add": DDL, "remove": DDL,
    "insert": INSERT, "execute": INSERT, "begin": INSERT,
    "select": QUERY, "with": QUERY, "values": QUERY, "(": QUERY,
    "show": INFO, "describe": INFO, "desc": INFO, "explain": INFO,
}


@dataclass(frozen=True)
class Statement:
    """One classified statement: its text, kind and, for INSERT, the table it writes."""

    sql: str
    kind: str
    target: str | None = None


def classify(sql: str) -> Statement:
    """Classify one statement.

    >>> classify("INSERT INTO ctrstream SELECT 1")
    Statement(sql='INSERT INTO ctrstream SELECT 1', kind='insert', target='ctrstream')
    """
    text = strip_comments(sql).strip()
    if not text:
        raise ValueError("empty SQL statement")
    first = "(" if text.startswith("(") else re.split(r"\s+", text, maxsplit=1)[0].lower()
    kind = _KINDS.get(first)
    if kind is None:
        raise ValueError(f"unsupported SQL statement starting with {first.upper()!r}: {text[:60]}")
    target = None
    if kind == INSERT:
        m = re.match(r"insert\s+(?:into|overwrite)\s+(?:table\s+)?([`\w.]+)", text, re.IGNORECASE)
        if m:
            target = m.group(1).split(".")[-1].strip("`")
    return Statement(sql=sql, kind=kind, target=target)


def parse_script(script: str) -> list[Statement]:
    """Split and classify a cell's SQL."""
    return [classify(s) for s in split_statements(script)]


# Row kinds of a Flink changelog: +I insert, -U update-before, +U update-after, -D delete.
INSERT_KIND, UPDATE_BEFORE, UPDATE_AFTER, DELETE = "+I", "-U", "+U", "-D"


def materialize(changes: Iterable[tuple[str, tuple]]) -> list[tuple]:
    """Apply a changelog to an empty table and return its rows in first-insertion order.

    That is what Zeppelin's ``type=update`` shows for a query whose rows change (a running
    aggregation): the current result, not the history of changes.

    >>> materialize([("+I", ("a", 1)), ("+I", ("b", 1)), ("-U", ("a", 1)), ("+U", ("a", 2))])
    [('a', 2), ('b', 1)]
    """
    rows: dict[int, tuple] = {}
    index: dict[tuple, list[int]] = {}
    next_id = 0
    freed: int | None = None  # slot of the row an update-before removed: its update-after goes there
    for kind, row in changes:
        if kind in (INSERT_KIND, UPDATE_AFTER):
            slot = freed if kind == UPDATE_AFTER and freed is not None else next_id
            if slot == next_id:
                next_id += 1
            rows[slot] = row
            index.setdefault(row, []).append(slot)
            freed = None
        elif kind in (UPDATE_BEFORE, DELETE):
            ids = index.get(row)
            if not ids:
                raise ValueError(f"changelog retracts a row that is not in the result: {row!r}")
            slot = ids.pop()
            del rows[slot]
            freed = slot if kind == UPDATE_BEFORE else None
        else:
            raise ValueError(f"unknown row kind {kind!r}")
    return [rows[i] for i in sorted(rows)]


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
    p = argparse.ArgumentParser(prog="%%flink_sql", add_help=False, exit_on_error=False)
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
    from clicklab.zeppelin.localprops import LocalPropertyError, parse_properties

    try:
        args, rest = _magic_parser().parse_known_args(shlex.split(line))
    except (argparse.ArgumentError, ValueError) as exc:
        raise ValueError(f"%%flink_sql: {exc}") from None
    if rest:
        raise ValueError(f"%%flink_sql: unknown option(s) {' '.join(rest)}")
    props: dict[str, str] = {}
    if args.zeppelin:
        try:
            props = parse_properties(args.zeppelin)
        except LocalPropertyError as exc:
            raise ValueError(f"%%flink_sql --zeppelin {args.zeppelin!r}: {exc}") from None
    if args.type:
        props["type"] = args.type
    if args.parallelism is not None:
        if args.parallelism < 1:
            raise ValueError(f"%%flink_sql --parallelism {args.parallelism}: must be 1 or more")
        props["parallelism"] = str(args.parallelism)
    return MagicOptions(args.max_rows, args.timeout, args.echo, args.out, props)
