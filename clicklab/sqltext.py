"""Pure text work on Flink SQL for the notebook magic: substitution, splitting, classification, changelogs.

No Flink here, so everything is tested quickly and on its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
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


def tokens(sql: str) -> Iterator[tuple[str, str]]:
    """The script as ``(kind, text)`` pieces: ``quoted``, ``comment``, ``semicolon`` or ``code``.

    The one scanner of this module: quotes (``'``, ``"``, backticks; a doubled quote is an escaped
    quote), ``--`` line comments and ``/* */`` block comments are recognised here and nowhere else.
    Joining the texts gives the script back.

    >>> list(tokens("SELECT 'a;b' -- c\\n;"))
    [('code', 'SELECT '), ('quoted', "'a;b'"), ('code', ' '), ('comment', '-- c'), ('code', '\\n'), ('semicolon', ';')]
    """
    i, n, start = 0, len(sql), 0
    while i < n:
        ch = sql[i]
        if ch in ("'", '"', "`"):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # doubled quote: an escaped quote
                        end += 2
                        continue
                    break
                end += 1
            kind, stop = "quoted", min(end + 1, n)
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            kind, stop = "comment", n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            kind, stop = "comment", n if end < 0 else end + 2
        elif ch == ";":
            kind, stop = "semicolon", i + 1
        else:
            i += 1
            continue
        if start < i:
            yield "code", sql[start:i]
        yield kind, sql[i:stop]
        i = start = stop
    if start < n:
        yield "code", sql[start:]


def split_statements(script: str) -> list[str]:
    """Split a script on semicolons that are outside quotes and comments; drop empty statements.

    >>> split_statements("SELECT ';' FROM t; -- a; comment\\nSHOW TABLES;")
    ["SELECT ';' FROM t", '-- a; comment\\nSHOW TABLES']
    """
    statements: list[str] = []
    current: list[str] = []
    for kind, text in tokens(script):
        if kind == "semicolon":
            statements.append("".join(current))
            current = []
        else:
            current.append(text)
    statements.append("".join(current))
    return [s.strip() for s in statements if strip_comments(s).strip()]


def strip_comments(sql: str) -> str:
    """The statement without ``--`` and ``/* */`` comments (quotes are respected)."""
    return "".join(text for kind, text in tokens(sql) if kind != "comment")


def names_used(sql: str) -> set[str]:
    """The identifiers a statement names, as written (Flink's identifiers are case-sensitive): words of its
    code and backtick-quoted names; string literals and comments are left out.

    >>> sorted(names_used("SELECT `time`, 'ctrstream' FROM impressionstream -- clickstream"))
    ['FROM', 'SELECT', 'impressionstream', 'time']
    """
    names: set[str] = set()
    for kind, text in tokens(sql):
        if kind == "code":
            names.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
        elif kind == "quoted" and text.startswith("`"):
            names.add(text.strip("`"))
    return names


def view_name(sql: str) -> str | None:
    """The view a ``CREATE [TEMPORARY] VIEW`` statement defines, else ``None``.

    >>> view_name("CREATE TEMPORARY VIEW IF NOT EXISTS v AS SELECT 1")
    'v'
    """
    m = re.match(r"create\s+(?:or\s+replace\s+)?(?:temporary\s+)?view\s+(?:if\s+not\s+exists\s+)?([`\w.]+)",
                 strip_comments(sql).strip(), re.IGNORECASE)
    return m.group(1).split(".")[-1].strip("`") if m else None


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
