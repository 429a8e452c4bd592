"""Cell outputs <-> Zeppelin paragraph results (``TABLE`` as tab-separated text, ``IMG`` as base64 PNG, ``TEXT``).

Export turns a notebook cell's outputs into a paragraph's ``results``; import does the reverse. A
table keeps its exact tab-separated text in the output under ``text/tab-separated-values``, so a
note goes through import and export unchanged; a pandas table (``text/html``) becomes ``TABLE``.

Example::

    >>> msg = outputs_to_results([{"output_type": "stream", "name": "stdout", "text": "3 rows"}])
    >>> msg
    {'code': 'SUCCESS', 'msg': [{'type': 'TEXT', 'data': '3 rows'}]}
    >>> results_to_outputs(msg)[0]["text"]
    '3 rows'
"""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Any

TSV = "text/tab-separated-values"


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
            msgs.append({"type": "TEXT", "data": f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"})
        elif kind in ("display_data", "execute_result"):
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


def results_to_outputs(results: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Zeppelin results as nbformat (v4) outputs: tables, images, HTML and text."""
    if not results:
        return []
    outputs: list[dict[str, Any]] = []
    error = results.get("code") == "ERROR"
    for msg in results.get("msg") or []:
        kind, data = msg.get("type", "TEXT"), str(msg.get("data", ""))
        if kind == "TABLE":
            outputs.append({"output_type": "display_data", "metadata": {},
                            "data": {TSV: data, "text/html": tsv_to_html(data), "text/plain": data}})
        elif kind == "IMG":
            outputs.append({"output_type": "display_data", "metadata": {}, "data": {"image/png": data}})
        elif kind == "SVG":
            outputs.append({"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": data}})
        elif kind == "HTML":
            outputs.append({"output_type": "display_data", "metadata": {}, "data": {"text/html": data}})
        elif kind == "TEXT":
            outputs.append({"output_type": "stream", "name": "stderr" if error else "stdout", "text": data})
        else:  # ANGULAR, NETWORK, NULL: kept as text, with their type
            outputs.append({"output_type": "display_data", "metadata": {"zeppelin": {"type": kind}},
                            "data": {"text/plain": data}})
    return outputs
