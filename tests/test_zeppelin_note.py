"""Reading notes as Zeppelin writes them, writing them as Zeppelin reads them, and the load check."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clicklab.zeppelin import note as note_module
from clicklab.zeppelin.note import (
    NOTE_ID,
    PARAGRAPH_ID,
    Note,
    Paragraph,
    ZeppelinError,
    check_loads,
    from_json,
    parse_date,
    read_note,
    to_zpln,
    write_note,
)
from tests.conftest import shared_files, shared_path
from tests.fixtures.zeppelin_notes import DATE_FORMATS, EXPECTED, NOTES, dated_note, write_note_file

REAL_NOTES = shared_files("zeppelin-samples", suffixes=(".zpln", ".json"))


def note_text(paragraphs: list[dict], **fields) -> str:
    return json.dumps({"paragraphs": paragraphs, "name": "n", "id": "2ABCDEFGH", **fields})


@pytest.mark.parametrize("text, expected", [
    ("2022-04-08T16:00:29+0000", datetime(2022, 4, 8, 16, 0, 29, tzinfo=UTC)),  # Studio
    ("2022-04-08T18:00:29+0200", datetime(2022, 4, 8, 16, 0, 29, tzinfo=UTC)),
    ("Jan 9, 2017 11:55:42 AM", datetime(2017, 1, 9, 11, 55, 42, tzinfo=UTC)),  # 0.8
    ("Jan 9, 2017 12:01:42 PM", datetime(2017, 1, 9, 12, 1, 42, tzinfo=UTC)),
    ("Jan 9, 2017 12:01:42 AM", datetime(2017, 1, 9, 0, 1, 42, tzinfo=UTC)),
    ("Sep 30, 2016 14:05:01", datetime(2016, 9, 30, 14, 5, 1, tzinfo=UTC)),
    ("2021-07-26 04:43:24.025", datetime(2021, 7, 26, 4, 43, 24, 25000, tzinfo=UTC)),  # 0.9+
])
def test_each_of_zeppelins_date_formats(text: str, expected: datetime):
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["2022-04-08T16:00:29.123+0000", "26/07/2021 04:43", "Foo 9, 2017 11:55:42 AM", ""])
def test_dates_zeppelin_cannot_read_are_refused(text: str):
    with pytest.raises(ValueError, match="unparsable date"):
        parse_date(text)


def test_a_byte_order_mark_and_unknown_fields_are_accepted(tmp_path: Path):
    paragraph = {"text": "%md\nhi", "$$hashKey": "object:1", "focus": True, "dateUpdated": "Jan 9, 2017 1:02:03 PM"}
    text = note_text([paragraph], path="/n", futureField={"x": 1})
    path = tmp_path / "n_2ABCDEFGH.zpln"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    note = read_note(path)
    assert note.paragraphs[0].text == "%md\nhi"
    assert note.paragraphs[0].dates["dateUpdated"] == datetime(2017, 1, 9, 13, 2, 3, tzinfo=UTC)


@pytest.mark.parametrize("text, message", [
    ("not json {", "not JSON"),
    ("[1, 2]", "not an object"),
    ('{"name": "n"}', 'no "paragraphs"'),
    (note_text([{"text": "%md\nok"}, {"text": "%flink.ssql(type=update\nSELECT 1"}]), "paragraph 2: malformed local"),
    (note_text([{"text": "%md\nok", "dateCreated": "yesterday"}]), "paragraph 1: \"dateCreated\""),
    (note_text(["just text"]), "paragraph 1: a paragraph must be"),
])
def test_bad_input_is_refused_naming_the_file_and_paragraph(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.zpln"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ZeppelinError, match=message) as info:
        read_note(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", NOTES)
def test_our_notes_load_as_written_by_each_zeppelin(tmp_path: Path, kind: str):
    path = write_note_file(kind, tmp_path)
    expected = EXPECTED[kind]
    note = check_loads(path, strict=False)  # Zeppelin's own rules (not ours: ids, dates, file name)
    assert note.name == expected["name"] and note.default_interpreter_group == expected["group"]
    assert [p.parsed().interpreter for p in note.paragraphs] == expected["interpreters"]
    assert [p.title for p in note.paragraphs if p.title] == expected["titles"]
    assert note.paragraphs[0].dates["dateUpdated"] == datetime(*expected["dateUpdated"], tzinfo=UTC)
    assert all(len(p.dates) >= 2 for p in note.paragraphs)
    raw = path.read_bytes()
    if kind == "studio":
        assert raw.startswith(b"\xef\xbb\xbf") and b"\\u003d" not in raw and "Zürich".encode() in raw
    else:
        assert not raw.startswith(b"\xef\xbb\xbf") and b"\\u003d" in raw  # Gson's escapes


@pytest.mark.shared
@pytest.mark.parametrize("path", REAL_NOTES)
def test_real_notes_load(path: Path):
    note = check_loads(path, strict=False)
    assert note.paragraphs and all(p.text is not None for p in note.paragraphs)


def test_our_0_8_note_keeps_its_folder_in_the_name_has_no_default_group_and_a_paragraph_without_text(
        tmp_path: Path):
    path = write_note_file("zeppelin-0.8", tmp_path)
    assert path.name == "note.json" and path.parent.name == "2D5KQ7W3X"
    note = read_note(path)
    assert note.name == "Lab notes/Clicks per site (batch)"
    assert note.default_interpreter_group is None and note.version is None
    assert note.paragraphs[-1].text is None and note.paragraphs[-1].status == "READY"
    assert note.paragraphs[0].id == "20180303-090501_123456789"
    assert note.paragraphs[3].dates["dateFinished"] == datetime(2018, 3, 3, 13, 2, 3, tzinfo=UTC)  # 1:02:03 PM
    assert note.paragraphs[2].dates["dateCreated"] == datetime(2018, 3, 3, 12, 0, 0, tzinfo=UTC)  # 12:00:00 PM


@pytest.mark.shared
def test_the_0_8_note_keeps_its_folder_in_the_name_and_has_no_default_group():
    note = read_note(shared_path("zeppelin-samples", "2C35YU814-note.json"))
    assert note.name == "Zeppelin Tutorial/Using Flink for batch processing"
    assert note.default_interpreter_group is None
    assert [p.parsed().interpreter for p in note.paragraphs][:3] == ["md", "md", "sh"]


def test_the_fixtures_cover_each_of_zeppelins_date_formats():
    assert set(DATE_FORMATS) == {fmt for fmt, _ in note_module._DATE_PATTERNS}


@pytest.mark.parametrize("fmt", DATE_FORMATS)
def test_a_note_in_each_date_format_loads_and_only_0_9_dates_pass_our_strict_check(tmp_path: Path, fmt: str):
    text, expected = DATE_FORMATS[fmt]
    path = tmp_path / "dated_2JKM3NP4Q.zpln"
    path.write_text(dated_note(text), encoding="utf-8")
    note = check_loads(path, strict=False)
    assert set(note.paragraphs[0].dates.values()) == {datetime(*expected, tzinfo=UTC)}
    if fmt == "yyyy-MM-dd HH:mm:ss.SSS":
        check_loads(path)
    else:
        with pytest.raises(ZeppelinError, match=r"is not written as yyyy-MM-dd HH:mm:ss\.SSS"):
            check_loads(path)


def test_writing_is_deterministic_and_follows_zeppelins_conventions(tmp_path: Path):
    def build() -> Note:
        return Note(name="demo", paragraphs=[Paragraph(text="%md\n# Hi <b>", title="#1 First"),
                                             Paragraph(text="%flink.ssql(type=update)\nSELECT 'a' = 'a'")])

    first, second = to_zpln(build()), to_zpln(build())
    assert first == second
    data = json.loads(first)
    assert NOTE_ID.fullmatch(data["id"]) and len(data["id"]) == 9
    assert all(PARAGRAPH_ID.fullmatch(p["id"]) for p in data["paragraphs"])
    assert data["paragraphs"][0]["dateCreated"] == "2024-01-01 00:00:00.000"
    assert "\\u003c" in first and "\\u003d" in first  # escaped as Gson escapes them
    assert to_zpln(Note(name="demo", paragraphs=[Paragraph(text="%md\nother")])) != first  # id follows content
    path = write_note(build(), tmp_path)
    assert path.name == f"demo_{data['id']}.zpln"
    assert check_loads(path).paragraphs[0].title == "#1 First"


def test_source_date_epoch_sets_the_dates(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    data = json.loads(to_zpln(Note(name="demo", paragraphs=[Paragraph(text="%md\nx")])))
    assert data["paragraphs"][0]["dateUpdated"] == "2023-11-14 22:13:20.000"
    assert data["paragraphs"][0]["id"].startswith("paragraph_1700000000000_")


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _good(tmp_path: Path) -> dict:
    path = write_note(Note(name="good", paragraphs=[Paragraph(text="%md\nx"), Paragraph(text="%sh\nls")]), tmp_path)
    return json.loads(path.read_text())


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(info=None), '"info" must be an object'),
    (lambda d: d["paragraphs"][0].update(settings=None), 'paragraph 1: "settings" must be an object'),
    (lambda d: d["paragraphs"][1].update(config="x"), 'paragraph 2: "config" must be an object'),
    (lambda d: d["paragraphs"][0].update(status="DONE"), "unknown status"),
    (lambda d: d["paragraphs"][0].update(results={"code": "SUCCESS", "msg": [{"type": "PDF", "data": ""}]}),
     "result 1"),
    (lambda d: d["paragraphs"][1].update(id=d["paragraphs"][0]["id"]), "used twice"),
    (lambda d: d["paragraphs"][1].update(id="20170109-115501_192763014"), "paragraph_<epochMillis>_<n>"),
    (lambda d: d["paragraphs"][0].update(dateUpdated="Jan 9, 2017 11:55:42 AM"), "yyyy-MM-dd HH:mm:ss.SSS"),
    (lambda d: d["paragraphs"][1].update(text="%flink.ssql (type=update)\nSELECT 1"), "space between"),
    (lambda d: d.update(id="0OIL12345"), "9 characters"),
])
def test_check_loads_finds_what_zeppelin_would_trip_on(tmp_path: Path, change, message: str):
    data = _good(tmp_path)
    change(data)
    path = _write(tmp_path, f"good_{data['id']}.zpln", data)
    with pytest.raises(ZeppelinError, match=message):
        check_loads(path)


def test_check_loads_wants_the_name_id_file_name(tmp_path: Path):
    data = _good(tmp_path)
    with pytest.raises(ZeppelinError, match="should be 'good_"):
        check_loads(_write(tmp_path, "good.zpln", data))


def test_from_json_reads_the_old_result_field():
    note = from_json(note_text([{"text": "%sh\nls", "result": "plain"}]))
    assert note.paragraphs[0].results == {"code": "SUCCESS", "msg": [{"type": "TEXT", "data": "plain"}]}


@pytest.mark.parametrize("old, results", [
    ({"code": "SUCCESS", "type": "TABLE", "msg": "a\tb\n1\t2\n"},
     {"code": "SUCCESS", "msg": [{"type": "TABLE", "data": "a\tb\n1\t2\n"}]}),
    ({"code": "ERROR", "type": "TEXT", "msg": "boom"}, {"code": "ERROR", "msg": [{"type": "TEXT", "data": "boom"}]}),
    ({"type": "HTML", "msg": "<b>x</b>"}, {"code": "SUCCESS", "msg": [{"type": "HTML", "data": "<b>x</b>"}]}),
    ({"code": "SUCCESS", "msg": 3}, {"code": "SUCCESS", "msg": 3}),  # malformed: kept for the import to refuse
])
def test_from_json_reads_a_pre_0_7_result_as_one_result_message(old, results):
    note = from_json(note_text([{"text": "%sh\nls", "result": old}]))
    assert note.paragraphs[0].results == results


def test_the_0_7_results_field_wins_over_the_old_one():
    new = {"code": "SUCCESS", "msg": [{"type": "TEXT", "data": "new"}]}
    note = from_json(note_text([{"text": "%sh\nls", "results": new, "result": {"type": "TEXT", "msg": "old"}}]))
    assert note.paragraphs[0].results == new


@pytest.mark.parametrize("old", [{"code": "SUCCESS", "type": "TEXT", "msg": "x"}, {"msg": 3}, "plain", [1]])
def test_check_loads_lets_a_pre_0_7_result_through_as_zeppelin_does(tmp_path: Path, old):
    data = _good(tmp_path)
    data["paragraphs"][1]["result"] = old  # Zeppelin 0.9+ has no such field: Gson skips it
    check_loads(_write(tmp_path, f"good_{data['id']}.zpln", data))


def test_check_loads_refuses_the_old_one_message_form_in_the_results_field(tmp_path: Path):
    data = _good(tmp_path)
    data["paragraphs"][0]["results"] = {"code": "SUCCESS", "type": "TEXT", "msg": "x"}  # Gson: not a list
    with pytest.raises(ZeppelinError, match='paragraph 1: results "msg" must be a list'):
        check_loads(_write(tmp_path, f"good_{data['id']}.zpln", data))


@pytest.mark.parametrize("code, status", [("SUCCESS", "FINISHED"), ("ERROR", "ERROR"), (None, "READY")])
def test_a_paragraph_is_written_with_the_status_of_its_results(tmp_path: Path, code, status: str):
    results = {"code": code, "msg": [{"type": "TEXT", "data": "x"}]} if code else None
    path = write_note(Note(name="s", paragraphs=[Paragraph(text="%sh\nls", results=results)]), tmp_path)
    assert json.loads(path.read_text())["paragraphs"][0]["status"] == status
    assert check_loads(path).paragraphs[0].results == results
