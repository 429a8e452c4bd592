"""Bad events never stop the pipeline and are never lost: the checks (SQL and Python), the fuzzer, and the
pipeline on the replay with 1,000 fuzzed bad lines mixed in, against a clean run."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from clicklab import badevents, cells, results, settings, sqltext, streams
from clicklab.summary import RunSummary, summarize

GOOD = {"browseraction": "Click", "site": "https://www.mysite.com", "event_time": "2023-08-23T12:00:00.094Z"}


def line(**changes: object) -> str:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}, allow_nan=True)


@pytest.mark.parametrize(("text", "expected"), [
    (line(), None),
    (line(extra=1), None),  # other fields are no concern of the lab's
    ("", streams.REASON_MALFORMED),
    (line()[:-3], streams.REASON_MALFORMED),
    (line() + " junk", streams.REASON_MALFORMED),
    ("[1, 2]", streams.REASON_MALFORMED),
    (line(site=...), "missing field site"),
    (line(event_time=None), "missing field event_time"),
    (line(browseraction=3), "mistyped field browseraction: not a string"),
    (line(site={"x": 1}), "mistyped field site: not a string"),
    (line(event_time=1692795600), "mistyped field event_time: not a string"),
    (line(event_time="2023-08-23T12:00:00Z"), streams.REASON_EVENT_TIME),
    (line(event_time="2023-08-23 12:00:00.094"), streams.REASON_EVENT_TIME),
    (line(event_time=float("nan")), streams.REASON_NONFINITE.format(field="event_time")),
    (line(ctr=float("-inf")), "non-finite number in field ctr: NaN or Infinity where a finite value must be"),
    (line(browseraction="click"), streams.REASON_UNKNOWN_ACTION),
])
def test_reason_names_what_is_wrong_and_the_field(text: str, expected: str | None):
    assert badevents.reason(text) == expected


def test_event_time_is_read_as_flinks_to_timestamp_reads_it():
    assert badevents.parse_event_time("1970-01-01T00:00:01.500Z") == 1500
    # java.time's SMART resolver moves a day up to 31 back to the month's end
    feb30, feb28 = (badevents.parse_event_time(f"2023-02-{d}T00:00:00.000Z") for d in (30, 28))
    assert feb30 == feb28
    # and 24:00 (exactly) is the next day's midnight
    new_year = badevents.parse_event_time("2024-01-01T00:00:00.000Z")
    assert badevents.parse_event_time("2023-12-31T24:00:00.000Z") == new_year
    for bad in ("2023-02-32T00:00:00.000Z", "2023-13-01T00:00:00.000Z", "2023-01-01T24:00:00.001Z",
                "2023-01-01T24:01:00.000Z", "2023-01-01T23:59:60.000Z", "0000-01-01T00:00:00.000Z",
                "2023-01-01T00:00:00.000", "2023-01-01T00:00:00.00Z"):
        assert badevents.parse_event_time(bad) is None, bad


def test_late_is_behind_the_watermark_and_bad_lines_do_not_move_it():
    def at(t: str, **changes: object) -> str:
        return line(event_time=f"2023-08-23T12:00:{t}Z", **changes)

    lines = [at("10.000"), at("59.000", browseraction="Buy"), at("09.500"), at("08.999"), at("11.000"), at("10.000")]
    reasons = [c.reason for c in badevents.split(lines, delay_s=1)]
    # the unknown browseraction at :59 moves nothing; :08.999 is behind :10 - 1 s; :10 is behind :11 - 1 s
    assert reasons == [None, streams.REASON_UNKNOWN_ACTION, None, streams.REASON_LATE, None, streams.REASON_LATE]


def test_the_fuzzer_is_seeded_makes_every_kind_and_python_finds_exactly_its_lines():
    good = badevents.read_lines(settings.DEFAULT_DATASET)[:3000]
    mixed, bad = badevents.mix(good, 1000, seed=5)
    assert (mixed, bad) == badevents.mix(good, 1000, seed=5)
    assert mixed != badevents.mix(good, 1000, seed=6)[0]
    assert len(mixed) == 4000 and mixed[0] == good[0]
    assert [m for m in mixed if badevents.reason(m) is None and m in good] == [g for g in good if g in mixed]
    assert Counter(b.kind for b in bad).keys() == set(badevents.KINDS)
    reasons = {b.reason for b in bad}
    for f in streams.EVENT_FIELDS:
        assert streams.REASON_MISSING.format(field=f) in reasons and streams.REASON_MISTYPED.format(field=f) in reasons
    found = [(c.line, c.reason) for c in badevents.split(mixed) if c.reason]
    assert Counter(found) == Counter((b.line, b.reason) for b in bad)


def test_read_events_and_the_reference_ctr_leave_the_bad_lines_out(tmp_path: Path):
    clean, fuzzed = tmp_path / "clean.jsonl", tmp_path / "fuzzed.jsonl.gz"
    badevents.mix_file(settings.DEFAULT_DATASET, clean, 0, end="2023-08-23T12:05:00Z")
    assert len(badevents.mix_file(settings.DEFAULT_DATASET, fuzzed, 300, seed=2, end="2023-08-23T12:05:00Z")) == 300
    pd.testing.assert_frame_equal(results.read_events(fuzzed), results.read_events(clean))
    assert results.compare_ctr(results.reference_ctr(fuzzed), results.reference_ctr(clean)) == []


#: Lines at the edge of the fast path (streams.canonical_line_regex): each must get from it what the full checks
#: give it. Written as Python literals; \r, \t, \x01 and \x7f are the characters themselves.
TRICKY = [
    line(),
    '{"browseraction":"Impression","site":"s","event_time":"2023-08-23T12:00:00.000Z"}',  # no spaces at all
    '   {  "browseraction"  :  "Click" ,  "site" : "s" , "event_time" : "2023-08-23T12:00:00.000Z"  }   ',
    line(site=""),
    line(site="a,b:c}{[]"),  # JSON's punctuation inside the string
    '{"browseraction": "Click", "site": "caf\u00e9 \u2028", "event_time": "2023-08-23T12:00:00.000Z"}',  # raw
    '{"browseraction": "Click", "site": "caf\\u00e9", "event_time": "2023-08-23T12:00:00.000Z"}',  # escaped
    line(site='a"b'), line(site="a\\b"),  # an escaped quote, an escaped backslash
    '{"browseraction": "Click", "site": "a\x7fb", "event_time": "2023-08-23T12:00:00.000Z"}',
    '{"browseraction": "Click", "site": "a\x01b", "event_time": "2023-08-23T12:00:00.000Z"}',  # a raw control char
    line().replace(" ", "\t"), line() + "\t", line() + " \r",  # other whitespace (read, a CRLF line loses its \r)
    line(event_time="2023-13-01T00:00:00.000Z"), line(event_time="2023-02-30T00:00:00.000Z"),
    line(event_time="2023-01-01T24:00:00.000Z"), line(event_time="2023-01-01T24:00:00.001Z"),
    line(event_time="2023-08-23T12:00:00.0941Z"),
    line(browseraction="click"), line(browseraction="Clicks"), line(browseraction=""),
    json.dumps({"site": GOOD["site"], "browseraction": "Click", "event_time": GOOD["event_time"]}),  # order
    line(extra="x"), line(site=None), line(site=7),
    line()[:-1] + ', "site": "other"}',  # a second site: JSON_VALUE takes one of them
    line() + " x", line() + line(), line()[:-1],
    line(event_time=float("nan")),
]


def test_the_fast_path_lets_through_only_good_events_and_reads_their_fields_as_json_does():
    fast = re.compile(streams.canonical_line_regex())
    taken = 0
    for text in TRICKY:
        if not fast.match(text):
            continue
        pieces = text.split('"')
        if badevents.parse_event_time(pieces[11]) is None:
            assert badevents.reason(text) == streams.REASON_EVENT_TIME, text
            continue
        taken += 1
        assert badevents.reason(text) is None, text
        record = json.loads(text)
        assert [pieces[4 * i + 3] for i in range(3)] == [record[f] for f in streams.EVENT_FIELDS], text
    assert taken == 9  # the plain lines above; every escape, odd space, order or extra goes the full way


def test_lines_are_read_as_flink_reads_them(tmp_path: Path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"a\r\nb \r\n\r\nc\td\n")
    assert badevents.read_lines(path) == ["a", "b ", "", "c\td"]


def test_every_line_of_the_replay_takes_the_fast_path():
    fast = re.compile(streams.canonical_line_regex())
    lines = badevents.read_lines(settings.DEFAULT_DATASET)
    assert len(lines) > 100_000 and all(fast.match(text) for text in lines)


@pytest.mark.flink
def test_flink_gives_every_tricky_line_the_full_checks_reason_time_and_fields(t_env, tmp_path: Path):
    path = tmp_path / "tricky.txt"
    path.write_text("\n".join(TRICKY) + "\n", encoding="utf-8")
    tricky = badevents.read_lines(path)  # as Flink reads them
    t_env.execute_sql("DROP TEMPORARY TABLE IF EXISTS tricky")
    t_env.execute_sql(f"CREATE TEMPORARY TABLE tricky (line STRING) WITH ("
                      f"'connector' = 'filesystem', 'path' = '{path}', 'format' = 'raw')")
    columns = [streams.ticker_column_sql(f, fast_path=streams.fast_path_sql()) for f in streams.EVENT_FIELDS]
    full_rowtime = (f"CASE WHEN {streams.reason_sql(fast=False)} IS NULL THEN {streams.full_event_time_sql()}"
                    f" ELSE {streams.BAD_ROWTIME} END")
    pairs = [(streams.reason_sql(), streams.reason_sql(fast=False)),
             (f"CAST({streams.event_time_sql()} AS STRING)", f"CAST({streams.full_event_time_sql()} AS STRING)"),
             (f"CAST({streams.rowtime_sql()} AS STRING)", f"CAST({full_rowtime} AS STRING)")]
    pairs += [(c, f"JSON_VALUE(line, '$.{f}')") for c, f in zip(columns, streams.EVENT_FIELDS, strict=True)]
    select = ", ".join(f"{a}, {b}" for a, b in pairs)
    rows = [tuple(r) for r in t_env.execute_sql(f"SELECT line, {select} FROM tricky").collect()]
    assert sorted(r[0] for r in rows) == sorted(tricky) and len(tricky) == len(TRICKY)
    good = 0
    for row in rows:
        text, values = row[0], row[1:]
        fast, full = values[0::2], values[1::2]
        if full[0] is None:  # a good event: its fields matter as well as its reason and time
            good += 1
            assert fast == full, text
        else:
            assert fast[:3] == full[:3], text
        assert full[0] == badevents.reason(text), text
    assert good == 18


def test_the_sql_checks_carry_the_reasons_and_tickerstream_is_a_view_of_the_good_events(tmp_path: Path):
    sql = streams.reason_sql()
    for text in (streams.REASON_MALFORMED, streams.REASON_EVENT_TIME, streams.REASON_MISSING.format(field="site"),
                 streams.REASON_MISTYPED.format(field="event_time"), streams.REASON_UNKNOWN_ACTION):
        assert streams.sql_string(text) in sql
    ddl = streams.local_ddl("tickerstream", tmp_path, tmp_path / "replay.jsonl.gz")
    table, view = sqltext.split_statements(ddl)
    assert table.startswith("CREATE TABLE tickerstream_raw (\n  line STRING,") and "'format' = 'raw'" in table
    assert "json." not in table and f"ELSE {streams.BAD_ROWTIME} END" in table
    assert view.startswith("CREATE VIEW tickerstream AS") and "CURRENT_WATERMARK(rowtime)" in view
    assert streams.drop_statements("tickerstream") == ["DROP VIEW IF EXISTS tickerstream",
                                                        "DROP TABLE IF EXISTS tickerstream_raw"]
    # Kinesis records carry no event_time (the arrival time is theirs): it is not required there
    kinesis = streams.kinesis_ddl("tickerstream")
    assert "missing field event_time" not in kinesis and "'format' = 'raw'" in kinesis
    assert "'stream' = 'tickerstream'" in kinesis and "METADATA FROM 'timestamp'" in kinesis


def test_04_writes_badevents_with_the_late_reason_as_its_own_job():
    path = settings.NOTEBOOKS_DIR / "04_impression_stream.ipynb"
    inserts = [s for sql in cells.sql_cells(path) for s in sqltext.parse_script(sql) if s.kind == sqltext.INSERT]
    assert [s.target for s in inserts] == ["impressionstream", "badevents"]
    assert streams.sql_string(streams.REASON_LATE) in inserts[1].sql
    assert "badevents" in cells.info(path).fills
    from clicklab.notebook import job_name

    assert job_name("badevents") != job_name("impressionstream")  # live: submitting one never cancels the other


def test_the_summary_shows_bad_events_per_reason():
    summary = RunSummary(dataset=Path("x.jsonl"), events=10, windows={})
    assert "bad events: 0 (badevents)" in summary.render()
    summary.bad_events = {streams.REASON_MALFORMED: 3, "missing field site": 1}
    text = summary.render()
    assert "bad events: 4 (badevents)" in text
    assert f"  {streams.REASON_MALFORMED}: 3\n  missing field site: 1" in text


# ---------------------------------------------------------------------------------------------
# The pipeline on the replay with fuzzed bad lines (Flink)

#: A slice of the replay with a labelled anomaly (the Studio lab's burst at 13:05) after the forest's warm-up.
SLICE = ("2023-08-23T12:52:00Z", "2023-08-23T13:07:00Z")
#: The notebooks whose SQL fills the streams up to anomalydetectionstream (their DDL and INSERT statements).
PIPELINE = ("04", "05", "06", "08", "09")


def run_pipeline(dataset: Path, build: Path) -> None:
    """The notebooks' DDL and INSERT statements in a session of their own, in order (`clicklab run` without
    papermill: one JVM for all)."""
    from clicklab.flink import create_table_env
    from clicklab.notebook import Lab

    lab = Lab(dataset, build, create_table_env())
    lab.create_tables()
    lab.register_functions()
    variables = lab.variables()
    for path in cells.lab_notebooks():
        if path.name[:2] not in PIPELINE:
            continue
        for sql in cells.sql_cells(path):
            for st in sqltext.parse_script(sqltext.substitute(sql, variables)):
                if st.kind != sqltext.QUERY:
                    lab.run(st.sql)


@pytest.fixture(scope="module")
def runs(t_env, tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("badevents")
    clean, fuzzed = root / "clean.jsonl.gz", root / "fuzzed.jsonl.gz"
    badevents.mix_file(settings.DEFAULT_DATASET, clean, 0, start=SLICE[0], end=SLICE[1])
    bad = badevents.mix_file(settings.DEFAULT_DATASET, fuzzed, 1000, seed=11, start=SLICE[0], end=SLICE[1])
    for name, dataset in (("clean", clean), ("fuzzed", fuzzed)):
        run_pipeline(dataset, root / name)
    return {"root": root, "bad": bad, "fuzzed": fuzzed, "clean": clean}


def stream(runs: dict, name: str, which: str) -> pd.DataFrame:
    frame = results.read_stream(runs["root"] / which, name)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.mark.flink
def test_badevents_holds_exactly_the_fuzzed_lines_with_their_reasons(runs):
    bad: list[badevents.BadLine] = runs["bad"]
    got = results.read_stream(runs["root"] / "fuzzed", "badevents")
    assert len(got) == 1000
    assert Counter(zip(got["line"], got["reason"], strict=True)) == Counter((b.line, b.reason) for b in bad)
    assert set(bad_kind.kind for bad_kind in bad) == set(badevents.KINDS)
    # rowtime: the event time when event_time parses, else NULL
    parsed = {c.line: c.event_ms for c in badevents.split(b.line for b in bad)}
    for _, row in got.iterrows():
        expected = parsed[row["line"]]
        if expected is None:
            assert pd.isna(row["rowtime"]), row["line"]
        else:
            assert row["rowtime"] == pd.Timestamp(expected, unit="ms", tz="UTC"), row["line"]
    assert results.read_stream(runs["root"] / "clean", "badevents").empty


@pytest.mark.flink
def test_the_good_events_give_the_clean_runs_windows_ctr_and_anomalies(runs):
    for name in ("impressionstream", "clickstream", "ctrstream", "destinationstream", "anomalydetectionstream"):
        pd.testing.assert_frame_equal(stream(runs, name, "fuzzed"), stream(runs, name, "clean"), obj=name)
    anomalies = stream(runs, "anomalydetectionstream", "clean")
    assert (anomalies["site"] == "https://www.mysite.com").any(), "the slice keeps the labelled burst"


@pytest.mark.flink
def test_the_summary_counts_the_bad_events_and_the_ctr_check_passes(runs):
    summary = summarize(runs["fuzzed"], runs["root"] / "fuzzed")
    assert summary.ok, summary.render()
    assert summary.bad_events == dict(Counter(b.reason for b in runs["bad"]).most_common())
    assert "bad events: 1,000 (badevents)" in summary.render()
    assert summarize(runs["clean"], runs["root"] / "clean").bad_events == {}
