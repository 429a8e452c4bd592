"""The %name(key=value, ...) grammar, as Zeppelin's ParagraphTextParser reads it."""

from __future__ import annotations

import pytest

from clicklab.cells import parse_magic_line
from clicklab.zeppelin.localprops import (
    LocalPropertyError,
    format_header,
    format_properties,
    parse_paragraph,
    parse_properties,
)


def test_interpreter_properties_and_script():
    r = parse_paragraph("%flink.ssql(type=update, parallelism=1)\n\nSELECT 1\n")
    assert (r.interpreter, r.properties, r.script) == ("flink.ssql", {"type": "update", "parallelism": "1"}, "SELECT 1")


def test_no_prefix_means_the_default_interpreter_and_leading_whitespace_is_allowed():
    assert parse_paragraph("SELECT 1").interpreter == ""
    r = parse_paragraph("  \n%md\n# Title")
    assert (r.interpreter, r.script) == ("md", "# Title")


def test_properties_only_directly_after_the_name():
    r = parse_paragraph("%flink.ssql (type=update)\nSELECT 1")
    assert r.properties == {} and r.script.startswith("(type=update)")


def test_quotes_keep_separators_and_are_dropped():
    r = parse_paragraph('%flink.ssql(template="<h1>{1}</h1>, until (now)", type=single)\nSELECT 1')
    assert r.properties == {"template": "<h1>{1}</h1>, until (now)", "type": "single"}


def test_escapes():
    r = parse_paragraph('%sh(a=x\\,y, b=1\\n2\\t3, c=say \\"hi\\", d=back\\\\slash)\necho')
    assert r.properties == {"a": "x,y", "b": "1\n2\t3", "c": 'say "hi"', "d": "back\\slash"}


def test_key_without_value_is_its_own_value_and_keys_values_are_trimmed():
    assert parse_paragraph("%r.shiny( type = run )\nx").properties == {"type": "run"}
    assert parse_paragraph("%flink.ssql(type=update, isRecover)\nx").properties == {
        "type": "update", "isRecover": "isRecover"}


def test_real_zeppelin_header_with_a_template():
    text = "%flink.ssql(type=single,parallelism=1,refreshInterval=1000,template=<h1>{1}</h1> until <h2>{0}</h2>)\n"
    assert parse_paragraph(text + "select 1").properties["template"] == "<h1>{1}</h1> until <h2>{0}</h2>"


@pytest.mark.parametrize("text, message", [
    ("%flink.ssql(a=1=2)\nx", "second '='"),
    ("%flink.ssql(a,b=1)\nx", "without a key"),
    ("%flink.ssql(type=update\nSELECT 1", "not closed"),
    ("%flink.ssql(type=upd\\", "unfinished escape"),
    ('%flink.ssql(type="update)\nSELECT 1', "not closed"),
])
def test_malformed_properties_are_refused_as_zeppelin_refuses_them(text: str, message: str):
    with pytest.raises(LocalPropertyError, match=message):
        parse_paragraph(text)


@pytest.mark.parametrize("props", [
    {"type": "update"},
    {"type": "single", "template": "<h1>{1}</h1> until <h2>{0}</h2>", "parallelism": "1"},
    {"a": "x,y", "b": "1\n2\t3", "c": 'say "hi" (now)', "d": "back\\slash", "e": "k=v"},
    {"isRecover": "isRecover", "type": "update"},
])
def test_format_then_parse_gives_the_same_properties(props: dict[str, str]):
    text = format_header("flink.ssql", props) + "\nSELECT 1"
    assert parse_paragraph(text).properties == props
    assert parse_properties(format_properties(props)) == props


def test_values_zeppelin_would_trim_cannot_be_written():
    with pytest.raises(LocalPropertyError, match="whitespace"):
        format_properties({"template": " padded "})
    with pytest.raises(LocalPropertyError, match="interpreter name"):
        format_header("flink ssql", {})


def test_the_sql_magic_carries_zeppelin_properties():
    opts = parse_magic_line("--out ctr --max-rows 10 --type append --parallelism 1")
    assert (opts.out, opts.max_rows, opts.zeppelin) == ("ctr", 10, {"type": "append", "parallelism": "1"})
    opts = parse_magic_line("--zeppelin 'type=single, template=\"<b>{0}</b>, now\"'")
    assert opts.zeppelin == {"type": "single", "template": "<b>{0}</b>, now"}
    with pytest.raises(ValueError, match="--zeppelin"):
        parse_magic_line("--zeppelin 'a=1=2'")
    with pytest.raises(ValueError, match="unknown option"):
        parse_magic_line("--typo 1")
