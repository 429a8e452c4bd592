"""The feed that lets a fault strike between two halves of ctrstream (clicklab.feed), without Flink."""

from __future__ import annotations

import json

import pytest

from clicklab import feed, settings, streams
from clicklab.exceptions import ClicklabError


def _row(site: str, time_s: int, ctr: float = 1.5) -> dict:
    return {"site": site, "time": time_s, "ctr": ctr, "clickcount": 1, "impressioncount": 2}


@pytest.fixture()
def build(tmp_path):
    """A build whose ctrstream holds two committed part files out of order, a hidden file in progress, a blank line."""
    folder = streams.stream_path(tmp_path, "ctrstream")
    folder.mkdir(parents=True)
    step = settings.WINDOW_SECONDS
    rows = [_row(f"https://s{s}.example.com", 1000 + w * step) for w in range(20) for s in (2, 1)]
    half = len(rows) // 2
    (folder / "part-b-0").write_text("\n".join(json.dumps(r) for r in rows[half:]) + "\n\n")
    (folder / "part-a-0").write_text("\n".join(json.dumps(r) for r in reversed(rows[:half])) + "\n")
    (folder / ".part-c.inprogress").write_text(json.dumps(_row("https://hidden.example.com", 1)) + "\n")
    return tmp_path


def test_set_aside_sorts_the_committed_rows_by_time_and_site_and_empties_the_folder(build):
    path = feed.set_aside(build)
    lines = path.read_text().splitlines()
    keys = [(json.loads(x)["time"], json.loads(x)["site"]) for x in lines]
    assert len(lines) == 40 and keys == sorted(keys)
    assert "hidden" not in path.read_text()
    assert list(streams.stream_path(build, "ctrstream").iterdir()) == []


def test_the_halves_split_at_a_window_and_end_rows_release_exactly_what_is_counted(build):
    feed.set_aside(build)
    fed = feed.load(build)
    step, delay = settings.WINDOW_SECONDS, streams.STREAMS["ctrstream"].watermark_delay_s
    first = [json.loads(x) for x in fed.first]
    second = [json.loads(x) for x in fed.second]
    # no window is cut in two; each half ends with the end site's row, read last
    assert max(r["time"] for r in first[:-1]) < min(r["time"] for r in second[:-1])
    assert first[-1]["site"] == second[-1]["site"] == feed.END_SITE
    assert first[-1]["time"] == max(r["time"] for r in first[:-1]) + step
    assert second[-1]["time"] >= max(r["time"] for r in second[:-1]) + delay
    # the first half's watermark (its end row's time less the delay) releases these rows, and no others
    watermark = first[-1]["time"] - delay
    assert fed.released_by_first == sum(r["time"] <= watermark for r in first) > 0
    # every row is scored once, plus the first half's end row; the second half's is never released
    assert fed.total == 40 + 1 == len(first) + len(second) - 1


def test_an_empty_stream_or_one_window_is_refused_with_what_to_do(tmp_path):
    streams.stream_path(tmp_path, "ctrstream").mkdir(parents=True)
    with pytest.raises(ClicklabError, match="run 04, 05 and 06 first"):
        feed.set_aside(tmp_path)
    with pytest.raises(ClicklabError, match=r"run faults\.run_upstream first"):
        feed.load(tmp_path / "elsewhere")
    feed.write(tmp_path, "one-window.json", [json.dumps(_row("https://a.example.com", 10))])
    feed.set_aside(tmp_path)
    with pytest.raises(ClicklabError, match="one window"):
        feed.load(tmp_path)


def test_a_file_appears_whole_and_rows_are_counted_from_committed_files_only(build):
    folder = feed.clear(build)
    feed.write(build, feed.FIRST_FILE, ["{}", "{}", "{}"])
    assert [p.name for p in folder.iterdir()] == [feed.FIRST_FILE]
    (folder / ".in-progress").write_text("{}\n{}\n")
    assert feed.committed_rows(build, "ctrstream") == 3


def test_consolidate_leaves_one_file_in_time_order_with_every_row(build):
    folder = streams.stream_path(build, "ctrstream")
    before = sorted(json.loads(x)["time"] for p in folder.glob("part-*") for x in p.read_text().splitlines() if x)
    out = feed.consolidate(build, "ctrstream")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [out.name]
    times = [json.loads(x)["time"] for x in out.read_text().splitlines()]
    assert times == before and feed.committed_rows(build, "ctrstream") == 40
