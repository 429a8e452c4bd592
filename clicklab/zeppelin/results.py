"""Cell outputs <-> Zeppelin paragraph results (``TABLE`` as tab-separated text, ``IMG`` as base64 PNG, ``TEXT``).

Export turns a notebook cell's outputs into a paragraph's ``results``; import does the reverse. A
table keeps its exact tab-separated text in the output under ``text/tab-separated-values``, so a
note goes through import and export unchanged; a pandas table (``text/html``) becomes ``TABLE``.

A failed paragraph (``code: ERROR``) keeps failing: its ``TEXT`` messages become nbformat ``error``
outputs (the text as the traceback, which is what Jupyter shows), its other messages carry
``metadata.zeppelin.code: ERROR``; both export back as ``ERROR``. An error output of a cell that raised
in Jupyter exports as ``ERROR`` with the text ``ename: evalue``.

Example::

    >>> msg = outputs_to_results([{"output_type": "stream", "name": "stdout", "text": "3 rows"}])
    >>> msg
    {'code': 'SUCCESS', 'msg': [{'type': 'TEXT', 'data': '3 rows'}]}
    >>> results_to_outputs(msg)[0]["text"]
    '3 rows'
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any

from clicklab.zeppelin.note import ZeppelinError

TSV = "text/tab-separated-values"
#: A Java or Python exception name at the start of an error text (``org.apache...ValidationException: ...``).
_EXCEPTION_NAME = re.compile(r"([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*): ")


class _TableParser(HTMLParser):
    """The cells of the first ``<table>``: a list of rows, each with (is_header, text) cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[bool, str]]] = []
        self._cell: list[str] | None = None
        self._header = False
        self._depth = 0
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if tag == "table":
            self._depth += 1
        elif tag == "tr" and self._depth:
            self.rows.append([])
        elif tag in ("td", "th") and self._depth and self.rows:
            self._cell, self._header = [], tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append((self._header, "".join(self._cell).strip()))
            self._cell = None
        elif tag == "table" and self._depth:
            self._depth -= 1
            self._done = self._depth == 0

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_table_to_tsv(text: str) -> str | None:
    """A pandas ``DataFrame`` HTML table as Zeppelin ``TABLE`` text (header line, then rows; no index).

    >>> html_table_to_tsv('<table><thead><tr><th></th><th>site</th></tr></thead>'
    ...                   '<tbody><tr><th>0</th><td>a</td></tr></tbody></table>')
    'site\\na\\n'
    """
    parser = _TableParser()
    parser.feed(text)
    rows = [r for r in parser.rows if r]
    if not rows:
        return None
    # pandas writes the index as a leading <th> in each body row and an empty first header cell
    body = rows[1:]
    drop_index = bool(body) and all(r[0][0] for r in body) and rows[0][0][1] == ""
    table = [[cell for _, cell in (r[1:] if drop_index else r)] for r in rows]
    table = [r for r in table if any(r)] if drop_index else table  # pandas' index-name row
    return "".join("\t".join(c.replace("\t", " ").replace("\n", " ") for c in r) + "\n" for r in table)


def tsv_to_html(tsv: str) -> str:
    """A Zeppelin ``TABLE`` text as an HTML table (the first line is the header)."""
    lines = [line.split("\t") for line in tsv.rstrip("\n").split("\n")] if tsv.strip() else []
    if not lines:
        return "<table></table>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in lines[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in lines[1:])
    return f'<table class="dataframe"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def error_output(text: str) -> dict[str, Any]:
    """A Zeppelin error text as an nbformat ``error`` output: Jupyter shows the traceback, here the text itself.

    >>> out = error_output("java.lang.IllegalStateException: no table\\n")
    >>> out["ename"], out["evalue"], error_text(out) == out["traceback"][0]
    ('java.lang.IllegalStateException', 'no table\\n', True)
    """
    m = _EXCEPTION_NAME.match(text)
    ename, evalue = (m.group(1), text[m.end():]) if m else ("Error", text)
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [text]}


def error_text(out: dict[str, Any]) -> str:
    """The Zeppelin text of an ``error`` output: the text of one :func:`error_output` wrote, else ``ename: evalue``
    (a cell that raised in Jupyter: its traceback is colored, over many lines).

    >>> error_text({"output_type": "error", "ename": "ValueError", "evalue": "boom",
    ...             "traceback": ["\\x1b[0;31m---\\x1b[0m", "\\x1b[0;31mValueError\\x1b[0m: boom"]})
    'ValueError: boom'
    """
    traceback = out.get("traceback") or []
    if len(traceback) == 1 and isinstance(traceback[0], str):
        ours = error_output(traceback[0])
        if (ours["ename"], ours["evalue"]) == (out.get("ename"), out.get("evalue")):
            return traceback[0]
    return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"


def outputs_to_results(outputs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A cell's outputs as Zeppelin results; ``None`` when there are none."""
    msgs: list[dict[str, str]] = []
    code = "SUCCESS"
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            msgs.append({"type": "TEXT", "data": _text(out.get("text", ""))})
        elif kind == "error":
            code = "ERROR"
            msgs.append({"type": "TEXT", "data": error_text(out)})
        elif kind in ("display_data", "execute_result"):
            zmeta = (out.get("metadata") or {}).get("zeppelin")
            if isinstance(zmeta, dict) and zmeta.get("code") == "ERROR":  # a failed paragraph's table, image ...
                code = "ERROR"
            data = out.get("data", {})
            if TSV in data:
                msgs.append({"type": "TABLE", "data": _text(data[TSV])})
            elif "image/png" in data:
                msgs.append({"type": "IMG", "data": _text(data["image/png"]).replace("\n", "")})
            elif "image/svg+xml" in data:
                msgs.append({"type": "SVG", "data": _text(data["image/svg+xml"])})
            elif "text/html" in data:
                table = html_table_to_tsv(_text(data["text/html"]))
                msgs.append({"type": "TABLE", "data": table} if table is not None
                            else {"type": "HTML", "data": _text(data["text/html"])})
            elif "text/markdown" in data:
                msgs.append({"type": "TEXT", "data": _text(data["text/markdown"])})
            elif "text/plain" in data:
                kind_meta = out.get("metadata", {}).get("zeppelin", {}).get("type", "TEXT")
                msgs.append({"type": kind_meta, "data": _text(data["text/plain"])})
    if not msgs:
        return None
    return {"code": code, "msg": msgs}


def check_results(results: Any, where: str = "results") -> list[dict[str, str]]:
    """The messages of a paragraph's saved results (0.7+ form), or a :class:`ZeppelinError` naming ``where``.

    The note reader has turned a pre-0.7 ``result`` (one message, ``msg`` a string) into this form.
    Unknown codes and message types are let through (kept as text, with their type).
    """
    if not isinstance(results, dict):
        raise ZeppelinError(f"{where}: malformed saved result: an object is needed, not {_short(results)}")
    if results.get("code") is not None and not isinstance(results["code"], str):
        raise ZeppelinError(f"{where}: malformed saved result: \"code\" must be a string, not "
                            f"{_short(results['code'])}")
    msgs = results.get("msg")
    if msgs is None:
        return []
    if not isinstance(msgs, list):
        raise ZeppelinError(f"{where}: malformed saved result: \"msg\" must be a list of messages (before "
                            f"Zeppelin 0.7, one text with a \"type\"), not {_short(msgs)}")
    out = []
    for i, msg in enumerate(msgs, 1):
        if not isinstance(msg, dict):
            raise ZeppelinError(f"{where}: malformed saved result: message {i} must be an object, not {_short(msg)}")
        kind, data = msg.get("type", "TEXT"), msg.get("data", "")
        if not isinstance(kind, str) or not isinstance(data, str):
            raise ZeppelinError(f"{where}: malformed saved result: message {i} needs a string \"type\" and "
                                f"a string \"data\", not {_short(msg)}")
        out.append({"type": kind, "data": data})
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def results_to_outputs(results: dict[str, Any] | None, where: str = "results") -> list[dict[str, Any]]:
    """Zeppelin results as nbformat (v4) outputs: tables, images, HTML and text; errors as ``error`` outputs.

    Malformed results raise :class:`ZeppelinError` naming ``where`` (the file and paragraph).
    """
    if results is None or results == {}:
        return []
    msgs = check_results(results, where)
    outputs: list[dict[str, Any]] = []
    error = results.get("code") == "ERROR"
    for msg in msgs:
        kind, data = msg["type"], msg["data"]
        if kind == "TEXT":
            outputs.append(error_output(data) if error
                           else {"output_type": "stream", "name": "stdout", "text": data})
            continue
        if kind == "TABLE":
            out = {"output_type": "display_data", "metadata": {},
                   "data": {TSV: data, "text/html": tsv_to_html(data), "text/plain": data}}
        elif kind == "IMG":
            out = {"output_type": "display_data", "metadata": {}, "data": {"image/png": data}}
        elif kind == "SVG":
            out = {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": data}}
        elif kind == "HTML":
            out = {"output_type": "display_data", "metadata": {}, "data": {"text/html": data}}
        else:  # ANGULAR, NETWORK, NULL: kept as text, with their type
            out = {"output_type": "display_data", "metadata": {"zeppelin": {"type": kind}},
                   "data": {"text/plain": data}}
        if error:  # a table, image ... of a failed paragraph: the export reads the code back from here
            out["metadata"].setdefault("zeppelin", {})["code"] = "ERROR"
        outputs.append(out)
    return outputs
