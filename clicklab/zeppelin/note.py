"""The Zeppelin note: read ``.zpln`` (0.9+) and ``note.json`` (0.8), write ``.zpln``, check it loads.

Reading accepts what Zeppelin and Managed Service for Apache Flink Studio write: a UTF-8 byte-order
mark or none, each of Zeppelin's date formats, fields we do not know (``$$hashKey``, ``path``,
``runtimeInfos`` ...), which are ignored. Writing is deterministic: the same note gives the same
bytes (ids are derived from the content, dates are fixed), so an export can be diffed.

Example::

    >>> note = Note(name="demo", paragraphs=[Paragraph(text="%md\\nhello")])
    >>> text = to_zpln(note)
    >>> from_json(text, "demo.zpln").paragraphs[0].text
    '%md\\nhello'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from clicklab.exceptions import ClicklabError
from clicklab.zeppelin.localprops import LocalPropertyError, parse_paragraph


class ZeppelinError(ClicklabError, ValueError):
    """A note that cannot be read, or that Zeppelin would not load. Names the file and paragraph."""


#: Zeppelin's ``IdHashes`` dictionary: note ids are 9 characters from it (no 0, I, L, O).
ID_ALPHABET = "123456789ABCDEFGHJKMNPQRSTUVWXYZ"
NOTE_ID = re.compile(r"[1-9A-HJKMNP-Z]{9}")
PARAGRAPH_ID = re.compile(r"paragraph_(\d{13})_(-?\d+)")  # Zeppelin before 0.9 wrote negative n too
#: How Zeppelin 0.9+ writes dates (``GsonNoteParser``: ``setDateFormat("yyyy-MM-dd HH:mm:ss.SSS")``).
WRITE_DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
DATE_FIELDS = ("dateUpdated", "dateCreated", "dateStarted", "dateFinished")
#: ``org.apache.zeppelin.scheduler.Job.Status``.
STATUSES = ("READY", "PENDING", "RUNNING", "FINISHED", "ERROR", "ABORT")
#: ``InterpreterResult.Code`` and ``InterpreterResult.Type``.
RESULT_CODES = ("SUCCESS", "INCOMPLETE", "ERROR", "KEEP_PREVIOUS_RESULT")
RESULT_TYPES = ("TEXT", "HTML", "ANGULAR", "TABLE", "IMG", "SVG", "NULL", "NETWORK")
ZEPPELIN_VERSION = "0.10.1"

_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_MONTH_RE = r"([A-Za-z]{3,9})"
# NotebookImportDeserializer.DATE_FORMATS, in its order. SimpleDateFormat.parse reads a prefix of
# the text and ignores what follows, so the patterns are anchored at the start only.
_DATE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("yyyy-MM-dd'T'HH:mm:ssZ", re.compile(r"(\d{1,4})-(\d{1,2})-(\d{1,2})T(\d{1,2}):(\d{1,2}):(\d{1,2})([+-]\d{4})")),
    ("MMM d, yyyy h:mm:ss a",
     re.compile(_MONTH_RE + r" (\d{1,2}), (\d{1,4}) (\d{1,2}):(\d{1,2}):(\d{1,2}) ([AaPp][Mm])")),
    ("MMM dd, yyyy HH:mm:ss", re.compile(_MONTH_RE + r" (\d{1,2}), (\d{1,4}) (\d{1,2}):(\d{1,2}):(\d{1,2})")),
    ("yyyy-MM-dd HH:mm:ss.SSS", re.compile(r"(\d{1,4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})\.(\d{1,3})")),
)


def _month(name: str) -> int:
    key = name[:3].lower()
    full = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
            "october", "november", "december"]
    if key not in _MONTHS or (len(name) > 3 and name.lower() != full[_MONTHS[key] - 1]):
        raise ValueError(f"unknown month {name!r}")
    return _MONTHS[key]


def parse_date(text: str) -> datetime:
    """A date as Zeppelin's ``NotebookImportDeserializer`` reads it (the first format that fits).

    Dates without a zone are taken as UTC (Zeppelin takes the server's zone).

    >>> parse_date("Jan 9, 2017 11:55:42 AM"), parse_date("2022-04-08T16:00:29+0000").hour
    (datetime.datetime(2017, 1, 9, 11, 55, 42, tzinfo=datetime.timezone.utc), 16)
    """
    for fmt, pattern in _DATE_PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        g = m.groups()
        try:
            if fmt.startswith("yyyy-MM-dd'T'"):
                y, mo, d, h, mi, s, zone = g
                sign = 1 if zone[0] == "+" else -1
                offset = sign * (int(zone[1:3]) * 60 + int(zone[3:5]))
                local = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s),
                                 tzinfo=timezone(timedelta(minutes=offset)))
                return local.astimezone(UTC)
            if fmt.startswith("MMM d, yyyy h"):
                mon, d, y, h, mi, s, ampm = g
                hour = int(h) % 12 + (12 if ampm.lower() == "pm" else 0)
                if int(h) > 12:
                    raise ValueError("hour over 12 with AM/PM")
                return datetime(int(y), _month(mon), int(d), hour, int(mi), int(s), tzinfo=UTC)
            if fmt.startswith("MMM dd"):
                mon, d, y, h, mi, s = g
                return datetime(int(y), _month(mon), int(d), int(h), int(mi), int(s), tzinfo=UTC)
            y, mo, d, h, mi, s, ms = g
            return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int(ms) * 1000, tzinfo=UTC)
        except ValueError:
            continue
    formats = ", ".join(f for f, _ in _DATE_PATTERNS)
    raise ValueError(f"unparsable date {text!r}; Zeppelin reads {formats}")


def format_date(when: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss.SSS``, the format Zeppelin 0.9+ writes."""
    return when.astimezone(UTC).strftime(WRITE_DATE_FORMAT)[:-3]


@dataclass
class Paragraph:
    """One paragraph: its text (interpreter line + script), title, results and id."""

    text: str | None
    title: str | None = None
    id: str = ""
    results: dict[str, Any] | None = None  # as saved (the import checks its form)
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "READY"
    dates: dict[str, datetime | None] = field(default_factory=dict)
    number: int = 0  # 1-based position in the note, for messages

    def parsed(self):
        """The text split as Zeppelin splits it (see :mod:`clicklab.zeppelin.localprops`)."""
        return parse_paragraph(self.text or "")


@dataclass
class Note:
    """A Zeppelin note: a name, an id and paragraphs (plus the default interpreter group)."""

    name: str
    paragraphs: list[Paragraph]
    id: str = ""
    default_interpreter_group: str | None = None
    version: str | None = None
    source: str = ""  # the file it was read from


def _where(source: str, number: int | None = None) -> str:
    return f"{source}, paragraph {number}" if number else source


def from_json(text: str, source: str = "<note>") -> Note:
    """Read a note's JSON text (``.zpln`` or 0.8 ``note.json``); refuse what Zeppelin would refuse."""
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ZeppelinError(f"{source}: not a Zeppelin note: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ZeppelinError(f"{source}: not a Zeppelin note: the JSON is a {type(data).__name__}, not an object")
    if "paragraphs" not in data:
        raise ZeppelinError(f"{source}: not a Zeppelin note: no \"paragraphs\" field")
    if not isinstance(data["paragraphs"], list):
        raise ZeppelinError(f"{source}: \"paragraphs\" must be a list, not {json.dumps(data['paragraphs'])[:40]}")
    for key in ("name", "id", "defaultInterpreterGroup", "version"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ZeppelinError(f"{source}: \"{key}\" must be a string")
    paragraphs = []
    for number, raw in enumerate(data["paragraphs"], 1):
        paragraphs.append(_paragraph_from_json(raw, source, number))
    name = data.get("name") or ""
    return Note(name=name, paragraphs=paragraphs, id=data.get("id") or "",
                default_interpreter_group=data.get("defaultInterpreterGroup"),
                version=data.get("version"), source=source)


def _paragraph_from_json(raw: Any, source: str, number: int) -> Paragraph:
    where = _where(source, number)
    if not isinstance(raw, dict):
        raise ZeppelinError(f"{where}: a paragraph must be a JSON object")
    text = raw.get("text")
    if text is not None and not isinstance(text, str):
        raise ZeppelinError(f"{where}: \"text\" must be a string")
    title = raw.get("title")
    if title is not None and not isinstance(title, str):
        raise ZeppelinError(f"{where}: \"title\" must be a string")
    try:
        parse_paragraph(text or "")
    except LocalPropertyError as exc:
        first = (text or "").strip().splitlines()[0][:80] if (text or "").strip() else ""
        raise ZeppelinError(f"{where}: malformed local properties in {first!r}: {exc}") from None
    dates: dict[str, datetime | None] = {}
    for key in DATE_FIELDS:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ZeppelinError(f"{where}: \"{key}\" must be a date string, not {value!r}")
        try:
            dates[key] = parse_date(value)
        except ValueError as exc:
            raise ZeppelinError(f"{where}: \"{key}\": {exc}") from None
    results = raw["results"] if "results" in raw else _old_result(raw.get("result"))  # "result" before 0.7
    config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    return Paragraph(text=text, title=title, id=str(raw.get("id") or ""), results=results, config=config,
                     status=str(raw.get("status") or "READY"), dates=dates, number=number)


def _old_result(result: Any) -> Any:
    """A pre-0.7 ``result`` (one message: ``{"code", "type", "msg": "<text>"}``, or a bare text) in the 0.7+
    ``results`` form.

    Anything else is returned as it is. Zeppelin 0.9+ has no ``result`` field (Gson skips it; 0.7 and 0.8
    kept it as an untyped ``Object``), so :func:`check_loads` does not check it; the import, which reads it,
    refuses a malformed one (:func:`clicklab.zeppelin.results.results_to_outputs`).

    >>> _old_result({"code": "SUCCESS", "type": "TABLE", "msg": "a\\tb\\n"})
    {'code': 'SUCCESS', 'msg': [{'type': 'TABLE', 'data': 'a\\tb\\n'}]}
    """
    if isinstance(result, str):
        return {"code": "SUCCESS", "msg": [{"type": "TEXT", "data": result}]}
    if isinstance(result, dict) and isinstance(result.get("msg"), str) and isinstance(result.get("type", ""), str):
        return {"code": result.get("code", "SUCCESS"), "msg": [{"type": result.get("type") or "TEXT",
                                                                 "data": result["msg"]}]}
    return result


def read_note(path: Path) -> Note:
    """Read a ``.zpln`` or ``note.json`` file (UTF-8, with or without a byte-order mark)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ZeppelinError(f"{path}: cannot read the note: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ZeppelinError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return from_json(text, str(path))


# -- writing ----------------------------------------------------------------------------------------


def derive_note_id(*parts: str) -> str:
    """A 9-character note id from Zeppelin's id alphabet, derived from ``parts`` (same parts, same id)."""
    digest = int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        digest, r = divmod(digest, len(ID_ALPHABET))
        chars.append(ID_ALPHABET[r])
    return "".join(chars)


def base_time() -> datetime:
    """The date written into exported notes: ``SOURCE_DATE_EPOCH`` if set, else a fixed date."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), UTC)
        except ValueError:
            raise ZeppelinError(f"SOURCE_DATE_EPOCH must be whole seconds, not {epoch!r}") from None
    return datetime(2024, 1, 1, tzinfo=UTC)


def derive_paragraph_id(note_id: str, index: int, text: str, base: datetime) -> str:
    """``paragraph_<epochMillis>_<n>`` as Zeppelin writes them; millis and n derived, never random."""
    millis = int(base.timestamp() * 1000) + index * 1000
    n = int.from_bytes(hashlib.sha256(f"{note_id}\0{index}\0{text}".encode()).digest()[:4], "big") & 0x7FFFFFFF
    return f"paragraph_{millis}_{n}"


def _editor(interpreter: str) -> tuple[str, str]:
    name = interpreter.split(".")[-1]
    if name == "md":
        return "markdown", "ace/mode/markdown"
    if name in ("ssql", "bsql", "sql"):
        return "sql", "ace/mode/sql"
    if "py" in name:
        return "python", "ace/mode/python"
    if name == "sh":
        return "sh", "ace/mode/sh"
    return "scala", "ace/mode/scala"


def paragraph_json(p: Paragraph, default_group: str, base: datetime) -> dict[str, Any]:
    """The paragraph as Zeppelin 0.10 writes it, fields in Gson's order, no nulls where objects go."""
    interpreter = p.parsed().interpreter or default_group
    language, mode = _editor(interpreter)
    config: dict[str, Any] = {
        "editorSetting": {"language": language, "editOnDblClick": language == "markdown",
                          "completionKey": "TAB", "completionSupport": language != "markdown"},
        "colWidth": 12.0,
        "editorMode": mode,
        "fontSize": 9.0,
        "results": {},
        "enabled": True,
    }
    if language == "markdown":
        config["editorHide"] = True
        config["tableHide"] = False
    if p.title:
        config["title"] = True
    config.update(p.config)
    out: dict[str, Any] = {}
    if p.title:
        out["title"] = p.title
    date = format_date(base)
    out.update({
        "text": p.text or "",
        "user": "anonymous",
        "dateUpdated": date,
        "progress": 0,
        "config": config,
        "settings": {"params": {}, "forms": {}},
    })
    if p.results:
        out["results"] = p.results
    out.update({
        "apps": [],
        "runtimeInfos": {},
        "progressUpdateIntervalMs": 500,
        "jobName": p.id,
        "id": p.id,
        "dateCreated": date,
    })
    if p.results:
        out["dateStarted"] = date
        out["dateFinished"] = date
    failed = isinstance(p.results, dict) and p.results.get("code") == "ERROR"
    out["status"] = ("ERROR" if failed else "FINISHED") if p.results else "READY"  # as Zeppelin sets a failed run
    return out


def _gson_escape(text: str) -> str:
    # Gson escapes these HTML-sensitive characters inside strings; they never occur outside strings
    # in JSON, so replacing them in the whole text is safe.
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("=", "\\u003d"), ("'", "\\u0027")):
        text = text.replace(ch, esc)
    return text


def to_zpln(note: Note, base: datetime | None = None) -> str:
    """The note as a Zeppelin 0.10 ``.zpln`` text. Fills in a derived note id and paragraph ids."""
    base = base or base_time()
    group = note.default_interpreter_group or "flink"
    if not note.id:
        note.id = derive_note_id(note.name, *[f"{p.title or ''}\0{p.text or ''}" for p in note.paragraphs])
    for index, p in enumerate(note.paragraphs):
        if not PARAGRAPH_ID.fullmatch(p.id or ""):
            p.id = derive_paragraph_id(note.id, index, p.text or "", base)
    data = {
        "paragraphs": [paragraph_json(p, group, base) for p in note.paragraphs],
        "name": note.name,
        "id": note.id,
        "defaultInterpreterGroup": group,
        "version": ZEPPELIN_VERSION,
        "noteParams": {},
        "noteForms": {},
        "angularObjects": {},
        "config": {"isZeppelinNotebookCronEnable": False},
        "info": {},
    }
    return _gson_escape(json.dumps(data, indent=2, ensure_ascii=False))


def note_file_name(name: str, note_id: str) -> str:
    """``<name>_<id>.zpln``, as Zeppelin's ``NotebookRepo.buildNoteFileName`` names a note at the root."""
    check_note_name(name)
    return f"{name}_{note_id}.zpln"


def check_note_name(name: str) -> None:
    if not name.strip() or "/" in name or "\\" in name or name in (".", ".."):
        raise ZeppelinError(f"note name {name!r}: Zeppelin needs a non-empty name without '/' or '\\'")


def write_note(note: Note, out_dir: Path, base: datetime | None = None) -> Path:
    """Write ``<out_dir>/<name>_<id>.zpln``; older exports of the same name in ``out_dir`` are removed."""
    text = to_zpln(note, base)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / note_file_name(note.name, note.id)
    for old in out_dir.glob("*.zpln"):
        if old != path and old.name.rsplit("_", 1)[0] == note.name:
            old.unlink()
    path.write_text(text, encoding="utf-8")
    return path


# -- checking ---------------------------------------------------------------------------------------

_OBJECT_FIELDS_NOTE = ("noteParams", "noteForms", "angularObjects", "config", "info")
_OBJECT_FIELDS_PARAGRAPH = ("config", "settings", "runtimeInfos")


def check_loads(path: Path, strict: bool = True) -> Note:
    """Check that Zeppelin would load this note file; return it, or raise listing every problem.

    The rules are Zeppelin's own, read in its source (apache/zeppelin, zeppelin-zengine,
    ``org.apache.zeppelin.notebook``):

    * ``GsonNoteParser.fromJson`` / ``Note.fromJson``: the text must be JSON of a ``Note``; Gson
      fails on a field of the wrong JSON type (a string where an object goes, ...);
    * ``NotebookImportDeserializer``: every date is in one of ``yyyy-MM-dd'T'HH:mm:ssZ``,
      ``MMM d, yyyy h:mm:ss a``, ``MMM dd, yyyy HH:mm:ss``, ``yyyy-MM-dd HH:mm:ss.SSS``;
    * ``Note.fromJson`` then calls ``info.remove(..)`` and, per paragraph, ``settings.convertOldInput()``
      and ``Paragraph.parseText()``: ``info`` and each ``settings`` must not be null, and every
      paragraph text must pass ``ParagraphTextParser`` (the local-property grammar);
    * ``Paragraph.isEnabled`` reads ``config``: not null; ``Job.Status``: a known status;
      ``InterpreterResult``: a known code and message types.

    ``strict`` adds the rules of what we write (and what Zeppelin 0.9+ itself writes): a note id of
    9 characters from ``1-9A-HJKMNP-Z`` (``IdHashes``), unique paragraph ids
    ``paragraph_<epochMillis>_<n>``, dates as ``yyyy-MM-dd HH:mm:ss.SSS``, local properties
    right after the interpreter name (``%flink.ssql (type=update)`` would send the parenthesis
    to Flink as SQL), and the file named ``<name>_<id>.zpln`` (``NotebookRepo.buildNoteFileName``).
    """
    path = Path(path)
    note = read_note(path)  # JSON, paragraphs list, dates, local properties
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    problems: list[str] = []
    for key in _OBJECT_FIELDS_NOTE:
        if key in data and not isinstance(data[key], dict):
            problems.append(f"\"{key}\" must be an object, not {json.dumps(data[key])}")
    ids: set[str] = set()
    for p, raw in zip(note.paragraphs, data["paragraphs"], strict=True):
        where = f"paragraph {p.number}"
        for key in _OBJECT_FIELDS_PARAGRAPH:
            if key in raw and not isinstance(raw[key], dict):
                problems.append(f"{where}: \"{key}\" must be an object, not {json.dumps(raw[key])}")
        settings = raw.get("settings")
        if isinstance(settings, dict):
            for key in ("params", "forms"):
                if key in settings and not isinstance(settings[key], dict):
                    problems.append(f"{where}: \"settings.{key}\" must be an object")
        if "apps" in raw and not isinstance(raw["apps"], list):
            problems.append(f"{where}: \"apps\" must be a list")
        if raw.get("status") is not None and raw["status"] not in STATUSES:
            problems.append(f"{where}: unknown status {raw['status']!r} (Zeppelin knows {', '.join(STATUSES)})")
        problems += [f"{where}: {m}" for m in _check_results(raw.get("results"))]
        if strict:
            if not isinstance(raw.get("text"), str):
                problems.append(f"{where}: no text")
            if not PARAGRAPH_ID.fullmatch(p.id):
                problems.append(f"{where}: id {p.id!r} is not paragraph_<epochMillis>_<n>")
            if p.id in ids:
                problems.append(f"{where}: id {p.id!r} is used twice")
            ids.add(p.id)
            for key in DATE_FIELDS:
                value = raw.get(key)
                if value is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}", value):
                    problems.append(f"{where}: {key} {value!r} is not written as yyyy-MM-dd HH:mm:ss.SSS")
            if re.match(r"^\s*%[A-Za-z0-9_.]+[ \t]+\(", p.text or ""):
                problems.append(f"{where}: a space between the interpreter name and '(': the properties would be "
                                "run as code")
    if strict:
        if not NOTE_ID.fullmatch(note.id):
            problems.append(f"note id {note.id!r} is not 9 characters of 1-9A-HJKMNP-Z")
        try:
            expected = note_file_name(note.name, note.id)
        except ZeppelinError as exc:
            problems.append(str(exc))
        else:
            if path.name != expected:
                problems.append(f"file name {path.name!r} should be {expected!r} (<name>_<id>.zpln)")
    if problems:
        raise ZeppelinError(f"{path}: fails the Zeppelin note checks:\n  " + "\n  ".join(problems))
    return note


def _check_results(results: Any) -> list[str]:
    if results is None:
        return []
    if not isinstance(results, dict):
        return ["\"results\" must be an object"]
    problems = []
    if results.get("code") not in RESULT_CODES:
        problems.append(f"results code {results.get('code')!r} is not one of {', '.join(RESULT_CODES)}")
    msgs = results.get("msg", [])
    if not isinstance(msgs, list):
        return [*problems, "results \"msg\" must be a list"]
    for i, m in enumerate(msgs, 1):
        if not isinstance(m, dict) or m.get("type") not in RESULT_TYPES or not isinstance(m.get("data"), str):
            problems.append(f"result {i}: needs a type of {', '.join(RESULT_TYPES)} and a string data")
    return problems
