"""Zeppelin's paragraph header: ``%name(key=value, ...)`` followed by the script.

This mirrors ``org.apache.zeppelin.notebook.ParagraphTextParser`` (Zeppelin 0.9/0.10) rule for rule,
so that what we parse is what Zeppelin parses and what we write Zeppelin reads back unchanged:

* the interpreter is ``%`` + ``\\w+(\\.\\w+)*`` at the very start of the text (leading whitespace
  allowed; ``\\w`` is ASCII, as in Java); no ``%`` prefix means the note's default interpreter;
* local properties are only recognised when ``(`` follows the name *directly*;
* inside the parenthesis: ``,`` separates properties, ``=`` separates key and value, ``"`` toggles
  quoting (the quote characters themselves are dropped), ``\\`` escapes the next character (``\\n``
  and ``\\t`` stand for newline and tab), keys and values are trimmed; a key without ``=`` is its own
  value (``%r.shiny(type=run)``, ``(isRecover)``);
* refused, as Zeppelin refuses them: a second ``=`` outside quotes, ``,`` before any key
  (``(a,b)``), an escape at the very end, and a missing ``)``;
* the script is the rest of the text, trimmed.

Example::

    >>> r = parse_paragraph('%flink.ssql(type=update, parallelism=1)\\nSELECT 1')
    >>> r.interpreter, r.properties, r.script
    ('flink.ssql', {'type': 'update', 'parallelism': '1'}, 'SELECT 1')
    >>> format_header('flink.ssql', {'type': 'append', 'template': 'a, b'})
    '%flink.ssql(type=append, template="a, b")'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: ``^(\\s*)%(\\w+(?:\\.\\w+)*)`` of ParagraphTextParser, with Java's ASCII ``\\w``.
_REPL = re.compile(r"^([\s]*)%([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)")
_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")


class LocalPropertyError(ValueError):
    """A ``%name(...)`` header Zeppelin would refuse; the message says why and where."""


@dataclass(frozen=True)
class ParseResult:
    """A paragraph's text split as Zeppelin splits it."""

    interpreter: str  # "" when the text has no %name: the note's default interpreter group
    script: str
    properties: dict[str, str] = field(default_factory=dict)
    has_properties: bool = False  # a "(...)" followed the name (possibly empty)


def _java_trim(text: str) -> str:
    """``String.trim()``: strips characters up to U+0020 at both ends (not other Unicode spaces)."""
    start, end = 0, len(text)
    while start < end and text[start] <= " ":
        start += 1
    while end > start and text[end - 1] <= " ":
        end -= 1
    return text[start:end]


def _parse_properties(text: str, pos: int, props: dict[str, str]) -> int:
    """Parse from the ``(`` at ``pos``; fill ``props``; return the index after the closing ``)``."""
    pos += 1
    key: str | None = None
    inside_quotes = False
    parse_key = True
    buf: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == ")" and not inside_quotes:
            if parse_key:
                key = _java_trim("".join(buf))
                if key:
                    props[key] = key
            else:
                props[key or ""] = _java_trim("".join(buf))
            return pos + 1
        if ch == "\\":
            if pos + 1 == len(text):
                raise LocalPropertyError("unfinished escape sequence at the end of the text")
            pos += 1
            nxt = text[pos]
            buf.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
        elif ch == '"':
            inside_quotes = not inside_quotes
        elif ch == "=" and not inside_quotes:
            if not parse_key:
                raise LocalPropertyError(f"a second '=' in one property at character {pos + 1}: quote the value")
            key = _java_trim("".join(buf))
            buf = []
            parse_key = False
        elif ch == "," and not inside_quotes:
            if key is None or not key.strip():
                raise LocalPropertyError(f"a property without a key before the ',' at character {pos + 1}")
            if parse_key:
                key = _java_trim("".join(buf))
                props[key] = key
            else:
                props[key] = _java_trim("".join(buf))
            key = None
            parse_key = True
            buf = []
        else:
            buf.append(ch)
        pos += 1
    raise LocalPropertyError("the local properties are not closed with ')'")


def parse_paragraph(text: str) -> ParseResult:
    """Split a paragraph's text into interpreter, local properties and script, as Zeppelin does."""
    match = _REPL.match(text)
    if not match:
        return ParseResult("", _java_trim(text))
    interpreter = match.group(2)
    pos = match.end()
    props: dict[str, str] = {}
    has_props = pos < len(text) and text[pos] == "("
    if has_props:
        pos = _parse_properties(text, pos, props)
    return ParseResult(interpreter, _java_trim(text[pos:]), props, has_props)


def parse_properties(text: str) -> dict[str, str]:
    """The properties of a bare ``key=value, ...`` list (what goes between the parentheses).

    >>> parse_properties('type=update, template="<b>{0}</b>, at {1}"')
    {'type': 'update', 'template': '<b>{0}</b>, at {1}'}
    """
    props: dict[str, str] = {}
    source = "(" + text + ")"
    end = _parse_properties(source, 0, props)
    if end != len(source):
        raise LocalPropertyError(f"unexpected text after ')' in {text!r}: escape ')' as '\\)' or quote the value")
    return props


_NEEDS_QUOTES = re.compile(r'[,=)(]')


def _format_token(token: str, what: str) -> str:
    if token != _java_trim(token):
        raise LocalPropertyError(f"{what} {token!r} starts or ends with whitespace, which Zeppelin trims away")
    escaped = token.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"' if _NEEDS_QUOTES.search(token) else escaped


def format_properties(props: dict[str, str]) -> str:
    """``key=value, ...`` that :func:`parse_properties` (and Zeppelin) read back as ``props``."""
    parts = []
    for key, value in props.items():
        if not key:
            raise LocalPropertyError(f"a local property needs a key (value {value!r})")
        # always key=value: a bare key is only accepted by Zeppelin as the last property
        parts.append(f"{_format_token(str(key), 'key')}={_format_token(str(value), 'value')}")
    return ", ".join(parts)


def format_header(interpreter: str, props: dict[str, str] | None = None) -> str:
    """``%interpreter(props)``, the parenthesis right after the name (Zeppelin needs it there)."""
    if not _NAME.fullmatch(interpreter):
        raise LocalPropertyError(f"{interpreter!r} is not an interpreter name Zeppelin recognises")
    return f"%{interpreter}" + (f"({format_properties(props)})" if props else "")
