"""Tests for clicklab.live (generator, sink, sessions, send, process, folders): the live tickerstream, its sessions,
labels, background process and rotation.

Most runs use a fake clock (minutes of traffic in a moment); a few run seconds in real time: the
reader that polls the folder, ``send`` against a running generator, and the background process.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clicklab import settings
from clicklab.cli import parser
from clicklab.exceptions import ClicklabError
from clicklab.live import folders, options, process, sink
from clicklab.live import generator as live_generator
from clicklab.live import send as live_send
from clicklab.live import sessions as live_sessions
from clicklab.live.generator import LiveGenerator
from clicklab.live.options import LiveOptions
from clicklab.live.sink import FILE_RE
from clicklab.scenario import Scenario, load_scenario, parse_scenario
from clicklab.session_start import next_window_start_ms
from tests.conftest import client_env

MYSITE = "https://www.mysite.com"
SHOP = "https://shop.example.com"
T0 = 1_796_000_000.0  # 2026-11-29T23:33:20Z: the fake clock's start (epoch seconds)
T0_MS = round(T0 * 1000)


class FakeClock:
    """Epoch seconds that move only when the generator waits: minutes of traffic in a moment."""

    def __init__(self, start: float = T0) -> None:
        self.t = start

    def time(self) -> float:
        return self.t

    def wait(self, seconds: float) -> None:
        self.t += max(seconds, 0.001)


def scenario(*senders: dict[str, Any], anomalies: list[dict[str, Any]] | None = None) -> Scenario:
    return parse_scenario({"name": "t", "start_time": "2023-08-23T12:00:00Z", "duration": 600,
                           "senders": list(senders), "anomalies": anomalies or []}, source="<test>")


def sender(name: str, action: str = "Impression", site: str = MYSITE, rate: float = 5.0, **extra: Any) -> dict:
    return {"name": name, "template": {"browseraction": action, "site": site}, "rate": rate, **extra}


def run(build: Path, sc: Scenario, start: float = T0, **options: Any) -> live_generator.LiveResult:
    """Run the generator on a fake clock from ``start`` (epoch s) with ``options`` (LiveOptions fields)."""
    clock = FakeClock(start)
    return LiveGenerator(sc, build, LiveOptions(**options), clock=clock.time, wait=clock.wait).run()


def ms(event_time: str) -> int:
    return round(datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp() * 1000)


def stream_files(build: Path) -> list[Path]:
    return sorted(p for p in options.tickerstream_dir(build).iterdir())


def records(build: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in stream_files(build) for line in p.read_text().splitlines()]


def times(recs: list[dict[str, Any]], **match: Any) -> np.ndarray:
    return np.array([ms(r["event_time"]) for r in recs if all(r.get(k) == v for k, v in match.items())])


def labels(build: Path) -> list[list[str]]:
    with (options.live_dir(build) / "labels.csv").open(newline="") as fh:
        return list(csv.reader(fh))


class Running(threading.Thread):
    """A generator's run in a thread; ``join`` re-raises what it raised, ``result`` is its LiveResult."""

    def __init__(self, gen: LiveGenerator) -> None:
        super().__init__(daemon=True)
        self.gen, self.error, self.result = gen, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.gen.run()
        except BaseException as exc:  # re-raised in join
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


@pytest.fixture(scope="module")
def lab() -> Scenario:
    return load_scenario("lab")


# --------------------------------------------------------------------------------------------
# files: names, order, completeness


def test_files_hold_their_flush_interval_in_time_order(tmp_path: Path) -> None:
    result = run(tmp_path, scenario(sender("imp", rate=5, arrivals="constant"), sender("clk", "Click", rate=40)),
                 duration_s=20)
    files = stream_files(tmp_path)
    assert [p.name for p in files] == sorted(p.name for p in files) and len(files) == 40 == result.files
    previous = 0
    for path in files:
        m = FILE_RE.match(path.name)
        assert m, path.name
        lo = int(m[1])
        lines = path.read_text().splitlines()
        t = [ms(json.loads(line)["event_time"]) for line in lines]
        assert t == sorted(t) and lo <= t[0] and t[-1] < lo + 500  # the interval [lo, lo + 0.5 s)
        assert t[0] >= previous
        previous = t[-1]
        assert json.loads(lines[0]).keys() == {"browseraction", "site", "event_time"}
    assert result.live_start_ms == T0_MS and result.end_ms == T0_MS + 20_000
    assert not list(options.tickerstream_dir(tmp_path).glob(".*"))


def test_a_reader_polling_the_folder_only_sees_complete_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_generator, "ROTATE_EVERY_S", 0.2)
    monkeypatch.setattr(settings, "LIVE_FOLDER_SECONDS", 1.0)  # files older than a second move to the archive
    sc = scenario(sender("imp", rate=4000), sender("clk", "Click", rate=400))
    gen = LiveGenerator(sc, tmp_path, LiveOptions(flush_s=0.1, duration_s=3, keep_s=1))
    thread = Running(gen)
    folder = options.tickerstream_dir(tmp_path)
    seen: dict[str, tuple[int, int, int]] = {}
    while True:
        alive = thread.is_alive()
        names = os.listdir(folder) if folder.is_dir() else []
        for name in names:
            if name.startswith(".") or name in seen:
                continue  # hidden: in progress
            assert FILE_RE.match(name), f"a data file with an unfinished name: {name}"
            try:
                data = (folder / name).read_bytes()
            except FileNotFoundError:
                continue  # archived meanwhile
            assert data.endswith(b"\n"), f"{name} ends in a partial line"
            t = [ms(json.loads(line)["event_time"]) for line in data.splitlines()]
            seen[name] = (t[0], t[-1], len(t))
        if not alive:
            break
        time.sleep(0.002)
    thread.join()
    written = thread.result.files  # 30, or fewer if a busy machine made it catch up in one file
    assert len(seen) >= 15 and written >= 20
    spans = [seen[name] for name in sorted(seen)]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "files out of time order"
    # housekeeping keeps about (1 s + its period) / flush_s files in the folder (the rest move to .archive)
    assert len(os.listdir(folder)) <= 1.2 / 0.1 + 3 < written


# --------------------------------------------------------------------------------------------
# rates


def test_constant_rate_is_exact_and_scale_multiplies_it(tmp_path: Path) -> None:
    run(tmp_path / "a", scenario(sender("c", rate=5, arrivals="constant")), duration_s=20)
    t = times(records(tmp_path / "a"))
    assert t.size == 100 and t[0] == T0_MS and np.all(np.diff(t) == 200)
    run(tmp_path / "b", scenario(sender("c", rate=5, arrivals="constant")), duration_s=20, scale=3)
    assert times(records(tmp_path / "b")).size == 300


def test_poisson_rate_within_bounds(tmp_path: Path) -> None:
    run(tmp_path, scenario(sender("p", rate=400), sender("q", "Click", rate=40)), duration_s=60)
    recs = records(tmp_path)
    imp, clk = times(recs, browseraction="Impression"), times(recs, browseraction="Click")
    assert abs(imp.size - 24_000) < 5 * 155 and abs(clk.size - 2_400) < 5 * 49
    per_second = np.bincount((imp - T0_MS) // 1000, minlength=60)
    assert 0.4 < per_second.var() / per_second.mean() < 1.6, "Poisson counts: variance close to the mean"


def test_drift_phase_counts_from_the_first_event(tmp_path: Path) -> None:
    drift = {"amplitude": 0.5, "period": 120, "phase": 0}
    run(tmp_path, scenario(sender("d", rate=200, drift=drift)), duration_s=120)
    t = (times(records(tmp_path)) - T0_MS) / 1000
    first, second = np.sum(t < 60), np.sum(t >= 60)  # expected 12000 +- 100*120/pi: 15820 and 8180
    assert abs(first - 15_820) < 650 and abs(second - 8_180) < 500


def test_same_seed_and_start_give_the_same_files(tmp_path: Path) -> None:
    sc = scenario(sender("p", rate=50), sender("q", "Click", rate=5))
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        run(tmp_path / name, sc, duration_s=10, seed=seed)
    content = {n: [(p.name, p.read_bytes()) for p in stream_files(tmp_path / n)] for n in "abc"}
    assert content["a"] == content["b"] and content["a"] != content["c"]


# --------------------------------------------------------------------------------------------
# backfill


def test_backfill_covers_exactly_the_past_and_joins_the_live_part(tmp_path: Path) -> None:
    sc = scenario(sender("c", rate=10, arrivals="constant"), sender("p", "Click", rate=20))
    result = run(tmp_path, sc, backfill_s=options.parse_duration("90s"), duration_s=10)
    recs = records(tmp_path)
    const = times(recs, browseraction="Impression")
    assert const.size == 1000 and const[0] == T0_MS - 90_000 and const[-1] == T0_MS + 10_000 - 100
    assert np.all(np.diff(const) == 100), "no gap, overlap or duplicate where the backfill meets the live part"
    poisson = times(recs, browseraction="Click")
    assert poisson.min() >= T0_MS - 90_000 and poisson.max() < T0_MS + 10_000
    assert result.first_ms == T0_MS - 90_000 and result.live_start_ms == T0_MS
    assert result.backfill_events == int(np.sum(const < T0_MS) + np.sum(poisson < T0_MS))
    starts = [int(FILE_RE.match(p.name)[1]) for p in stream_files(tmp_path)]
    assert starts == [T0_MS - 90_000, *range(T0_MS, T0_MS + 10_000, 500)], "the past in one file, then live"


class StallingClock(FakeClock):
    """A fake clock whose wait at ``at`` (epoch s) lasts ``stall`` seconds longer; records commit times."""

    def __init__(self, at: float, stall: float) -> None:
        super().__init__()
        self.at, self.stall, self.commits = at, stall, []

    def wait(self, seconds: float) -> None:
        super().wait(seconds)
        if self.t >= self.at and self.stall:
            self.t, self.stall = self.t + self.stall, 0


def test_a_late_generator_catches_up_in_one_file_and_keeps_files_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = StallingClock(T0 + 5, 3.2)
    replace = os.replace

    def commit(src: Any, dst: Any) -> None:
        replace(src, dst)
        if FILE_RE.match(Path(dst).name):
            clock.commits.append(round(clock.t * 1000))

    monkeypatch.setattr(sink.os, "replace", commit)
    sc = scenario(sender("c", rate=10, arrivals="constant"))
    LiveGenerator(sc, tmp_path, LiveOptions(duration_s=12), clock=clock.time, wait=clock.wait).run()
    files = stream_files(tmp_path)
    starts = [int(FILE_RE.match(p.name)[1]) - T0_MS for p in files]
    assert starts[:11] == [*range(0, 5000, 500), 8000], "at 8.2 s, [4.5, 8) is over and goes into one file"
    assert len(files[9].read_text().splitlines()) == 35
    assert clock.commits[9:12] == [T0_MS + 8200, T0_MS + 8600, T0_MS + 9000]
    assert np.all(np.diff(clock.commits) >= 0.8 * 500), "files at least 0.8 flush intervals apart"
    t = times(records(tmp_path))
    assert t.size == 120 and np.all(np.diff(t) == 100), "no gap, no overlap"


def test_a_restart_continues_after_the_newest_record(tmp_path: Path) -> None:
    sc = scenario(sender("c", rate=10, arrivals="constant"))
    run(tmp_path, sc, duration_s=30)  # up to T0 + 30 s
    run(tmp_path, sc, start=T0 + 40, backfill_s=60, duration_s=5)  # its backfill would reach back to T0 - 20 s
    t = times(records(tmp_path))
    assert np.all(np.diff(t) > 0), "the second run never writes a record older than the first run's"
    second = t[t > T0_MS + 29_900]
    assert second[0] == T0_MS + 29_901 and second[-1] < T0_MS + 45_000 and second.size == 151


# --------------------------------------------------------------------------------------------
# sessions and labels


def request(build: Path, definition: dict[str, Any], at: float, scaled: bool = True) -> str:
    (options.live_dir(build) / "sessions").mkdir(parents=True, exist_ok=True)
    return live_send._submit(build, definition, round(at * 1000), scaled)


def test_studio_lab_burst_replaces_the_site_traffic_and_writes_its_label(tmp_path: Path, lab: Scenario) -> None:
    burst = live_sessions.session_definition(lab, "studio-lab-burst")
    run(tmp_path / "plain", lab, duration_s=70)
    rid = request(tmp_path / "burst", burst, T0 + 20.25)
    result = run(tmp_path / "burst", lab, duration_s=70)
    start, end = T0_MS + 20_250, T0_MS + 50_250
    assert [(s.site, s.kind) for s in result.sessions] == [(MYSITE, "studio-lab-burst")]
    assert labels(tmp_path / "burst") == [["site", "start", "end", "kind"],
                                          [MYSITE, options._iso(start), options._iso(end), "studio-lab-burst"]]
    answer = json.loads((options.live_dir(tmp_path / "burst") / "sessions" / f"{rid}.scheduled.json").read_text())
    assert (answer["start"], answer["end"]) == (options._iso(start), options._iso(end))
    recs, plain = records(tmp_path / "burst"), records(tmp_path / "plain")
    imp, clk = times(recs, site=MYSITE, browseraction="Impression"), times(recs, site=MYSITE, browseraction="Click")
    inside = lambda t: t[(t >= start) & (t < end)]  # noqa: E731
    assert np.array_equal(inside(imp), np.arange(start, end, 1000)), "1 impression/s, normal ones silenced"
    assert np.array_equal(inside(clk), np.arange(start, end, 200)), "5 clicks/s, normal ones silenced"
    # on the other sites, and on mysite outside the files that hold the session, the traffic is the same as
    # without it (the split at the session's start changes the draws of the rest of that file's interval)
    def outside(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rs if r["site"] != MYSITE or not start - 250 <= ms(r["event_time"]) < end + 250]
    assert outside(recs) == outside(plain)
    assert np.sum(times(plain, site=MYSITE, browseraction="Impression") >= start) > 200  # it had normal traffic


def test_sql_lab_session_adds_three_clicks_per_second_on_top(tmp_path: Path, lab: Scenario) -> None:
    extra = live_sessions.session_definition(lab, "sql-lab-extra-clicks")
    run(tmp_path / "plain", lab, duration_s=40)
    request(tmp_path / "sql", extra, T0 + 10)
    run(tmp_path / "sql", lab, duration_s=40)
    plain, recs = records(tmp_path / "plain"), records(tmp_path / "sql")
    added = [r for r in recs if r not in plain]
    assert len(recs) - len(plain) == 60 == len(added)
    t = times(added, site=MYSITE, browseraction="Click")
    assert np.array_equal(t, np.repeat(np.arange(T0_MS + 10_000, T0_MS + 30_000, 1000), 3))
    assert labels(tmp_path / "sql")[1] == [MYSITE, options._iso(T0_MS + 10_000), options._iso(T0_MS + 30_000),
                                           "sql-lab-extra-clicks"]


def test_scale_applies_to_scenario_sessions_not_to_templates(tmp_path: Path, lab: Scenario) -> None:
    request(tmp_path, live_sessions.session_definition(lab, "sql-lab-extra-clicks"), T0 + 1)
    bot = live_sessions.template_session({"browseraction": "Click", "site": SHOP, "bot": 1}, 4, "5s", "constant", "bot")
    request(tmp_path, bot, T0 + 2, scaled=False)
    run(tmp_path, lab, duration_s=25, scale=2)
    recs = records(tmp_path)
    assert times(recs, bot=1).size == 20
    grid = times(recs, site=MYSITE, browseraction="Click")
    assert np.sum(np.isin(grid, np.arange(T0_MS + 1000, T0_MS + 21_000, 500))) >= 3 * 2 * 20  # 3 senders at 2/s


def test_a_session_cut_short_by_a_stop_ends_its_label_there(tmp_path: Path, lab: Scenario) -> None:
    request(tmp_path, live_sessions.session_definition(lab, "studio-lab-burst"), T0 + 5)
    result = run(tmp_path, lab, duration_s=15)
    assert labels(tmp_path)[1] == [MYSITE, options._iso(T0_MS + 5000), options._iso(T0_MS + 15_000),
                                   "studio-lab-burst"]
    assert result.sessions[0].end == datetime.fromtimestamp(T0 + 15, UTC)


def test_a_session_with_an_unknown_rate_factor_is_refused_by_the_generator(tmp_path: Path, lab: Scenario) -> None:
    bad = {**live_sessions.session_definition(lab, "click-drop"), "rate_factor": {"Scroll": 0}}
    rid = request(tmp_path, bad, T0 + 1)
    run(tmp_path, lab, duration_s=3)
    error = json.loads((options.live_dir(tmp_path) / "sessions" / f"{rid}.error.json").read_text())["error"]
    assert "rate_factor.Scroll" in error and "\n" not in error
    assert not (options.live_dir(tmp_path) / "labels.csv").exists()


def test_send_plays_a_session_in_the_running_generator(tmp_path: Path) -> None:
    tiny = load_scenario("tiny")
    thread = Running(LiveGenerator(tiny, tmp_path, LiveOptions(flush_s=0.1, duration_s=2.5)))
    try:
        deadline = time.monotonic() + 5
        while (process.status(tmp_path) is None or process.status(tmp_path).phase != "live") and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        before = time.time()
        session = live_send.send(tmp_path, template='{"browseraction": "Click", "site": "https://www.mysite.com", '
                               '"bot": true}', rate=20, duration=1, arrivals="constant", kind="bot", align_s=0.5)
        after = time.time()
        assert after - before < 2.5, "picked up within a flush interval of its start (or a little more when busy)"
        assert before <= session.start.timestamp() <= after and round(session.start.timestamp() * 1000) % 500 == 0
        assert (session.end - session.start).total_seconds() == 1 and session.kind == "bot"
        with pytest.raises(ClicklabError, match=r"no session 'nope' \(its sessions: studio-lab-burst, click-drop\)"):
            live_send.send(tmp_path, session="nope")
        info = process.status(tmp_path)
        assert info is not None and info.running and info.pid == os.getpid() and info.phase == "live"
    finally:
        thread.join()
    t = times(records(tmp_path), bot=True)
    start = round(session.start.timestamp() * 1000)
    assert np.array_equal(t, np.arange(start, start + 1000, 50))
    assert labels(tmp_path)[1] == [MYSITE, options._iso(start), options._iso(start + 1000), "bot"]
    assert process.status(tmp_path) is None, "a stopped generator unregisters"


@pytest.mark.parametrize("now_ms", [T0_MS, T0_MS + 1, T0_MS + 3_600, T0_MS + 9_999, T0_MS + 10_000, 1_796_000_123_456])
def test_a_session_starts_on_the_next_window_boundary(now_ms: int) -> None:
    start = next_window_start_ms(now_ms)
    assert start % (settings.WINDOW_SECONDS * 1000) == 0, "a multiple of the window length"
    assert now_ms <= start < now_ms + settings.WINDOW_SECONDS * 1000, "not in the past, within one window"
    assert next_window_start_ms(now_ms, 0) == now_ms, "align 0: now"


def test_send_schedules_a_session_from_the_next_window_boundary_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``send`` against a stand-in generator that starts a session when asked (as the real one does, see
    test_studio_lab_burst_...): the scheduled start is a window boundary, not in the past, and the printed
    description says its windows are whole."""
    sessions = options.live_dir(tmp_path) / "sessions"
    sessions.mkdir(parents=True)
    monkeypatch.setattr(process, "status", lambda build: type("Info", (), {"running": True})())
    monkeypatch.setattr(live_send, "session_of", lambda build, kind: {"site": MYSITE, "kind": kind, "duration": 30})
    submit, asked = live_send._submit, []

    def generator(build: Path, definition: dict[str, Any], requested_ms: int, scaled: bool) -> str:
        request_id = submit(build, definition, requested_ms, scaled)
        asked.append(requested_ms)
        start = max(requested_ms, round(time.time() * 1000))  # the generator: at the request's time, never before now
        (sessions / f"{request_id}.request.json").unlink()
        (sessions / f"{request_id}.scheduled.json").write_text(json.dumps(
            {"id": request_id, "site": MYSITE, "kind": definition["kind"], "start": options._iso(start),
             "end": options._iso(start + 30_000)}))
        return request_id

    monkeypatch.setattr(live_send, "_submit", generator)
    before = time.time()
    session = live_send.send(tmp_path, session="studio-lab-burst")
    start_ms = round(session.start.timestamp() * 1000)
    assert asked == [start_ms], "the generator was asked for the boundary, and started there"
    assert start_ms % (settings.WINDOW_SECONDS * 1000) == 0 and start_ms >= before * 1000
    assert start_ms < (before + settings.WINDOW_SECONDS) * 1000
    says = f"(starts on a {settings.WINDOW_SECONDS}-second window boundary: its windows are whole)"
    assert str(session).endswith(says)
    off = live_sessions.ScheduledSession("x", MYSITE, "custom", session.start + timedelta(milliseconds=250),
                                         session.end)
    assert "boundary" not in str(off)


def test_send_without_a_running_generator_fails_in_one_line(tmp_path: Path) -> None:
    for _ in range(2):  # nothing registered; then a stale registration of a process that is gone
        with pytest.raises(ClicklabError) as info:
            live_send.send(tmp_path, session="studio-lab-burst")
        message = str(info.value)
        assert "no live generator is running" in message and "clicklab generate --live" in message
        assert "\n" not in message
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        options.live_dir(tmp_path).mkdir(parents=True, exist_ok=True)
        (options.live_dir(tmp_path) / "generator.json").write_text(json.dumps({"pid": dead.pid, "token": "x"}))
    proc = subprocess.run([sys.executable, "-m", "clicklab", "send", "--build", str(tmp_path), "--session", "x"],
                          capture_output=True, text=True, timeout=60, env=client_env())
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("clicklab send: no live generator is running")


def test_a_second_generator_for_the_same_build_is_refused(tmp_path: Path) -> None:
    options.live_dir(tmp_path).mkdir(parents=True)
    me = {"pid": os.getpid(), "proc_start": process._proc_start(os.getpid()), "token": "other"}
    (options.live_dir(tmp_path) / "generator.json").write_text(json.dumps(me))
    with pytest.raises(ClicklabError, match=f"pid {os.getpid()}.* already running"):
        run(tmp_path, scenario(sender("c")), duration_s=1)
    with pytest.raises(ClicklabError, match="runs in this process"):
        process.stop(tmp_path)


# --------------------------------------------------------------------------------------------
# the background process


@pytest.mark.server  # a detached process that runs until stopped; about 2 s, more on a busy machine
def test_start_background_status_and_stop_leave_no_process_and_no_tmp(tmp_path: Path) -> None:
    info = process.start_background(tmp_path, scenario="tiny", flush_s=0.1, backfill_s=30, scale=20)
    pid = info.pid
    try:
        assert info.running and info.log == options.live_dir(tmp_path) / "generator.log"
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"generate" in cmdline and b"--live" in cmdline
        deadline = time.monotonic() + 10
        while (now := process.status(tmp_path)) is not None and now.phase != "live" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert now is not None and now.events > 0 and now.files > 0 and now.last_event_time
        with pytest.raises(ClicklabError, match="already running"):
            process.start_background(tmp_path, scenario="tiny")
    finally:
        assert process.stop(tmp_path) is True
    assert not Path(f"/proc/{pid}").exists(), "stopped and reaped"
    assert process.status(tmp_path) is None and process.stop(tmp_path) is False
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    for path in stream_files(tmp_path):
        assert path.read_bytes().endswith(b"\n")
    assert "live generator pid" in info.log.read_text()


def test_stop_does_not_signal_a_process_that_is_not_a_live_generator(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        options.live_dir(tmp_path).mkdir(parents=True)
        record = {"pid": other.pid, "proc_start": process._proc_start(other.pid), "token": "t"}
        (options.live_dir(tmp_path) / "generator.json").write_text(json.dumps(record))
        assert process.status(tmp_path).running  # type: ignore[union-attr]
        assert process.stop(tmp_path) is False
        assert other.poll() is None, "left alone"
        assert process.status(tmp_path) is None
    finally:
        other.kill()
        other.wait()


# --------------------------------------------------------------------------------------------
# rotation


def test_rotate_deletes_only_old_committed_files(tmp_path: Path) -> None:
    now = time.time()
    for name, age in (("old.jsonl", 700), ("new.jsonl", 10), (".old.jsonl.tmp", 700), ("_SUCCESS", 700),
                      ("part-0-1", 601)):
        (tmp_path / name).write_text("x\n")
        os.utime(tmp_path / name, (now - age, now - age))
    (tmp_path / "sub").mkdir()
    os.utime(tmp_path / "sub", (now - 700, now - 700))
    assert folders.rotate(tmp_path, 600) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".old.jsonl.tmp", "_SUCCESS", "new.jsonl", "sub"]
    assert folders.rotate(tmp_path, 5, now=now + 100) == 1
    assert folders.rotate(tmp_path / "missing") == 0


# --------------------------------------------------------------------------------------------
# options and the command line


@pytest.mark.parametrize(("call", "names"), [
    (lambda: LiveOptions(scale=0), "--scale"),
    (lambda: LiveOptions(flush_s=0), "--flush"),
    (lambda: LiveOptions(backfill_s=-1), "--backfill"),
    (lambda: LiveOptions(duration_s=0), "--duration"),
    (lambda: LiveOptions(seed=-1), "--seed"),
    (lambda: LiveOptions(keep_s=0.5), "--keep"),
    (lambda: options.parse_duration("3x", "--backfill"), "--backfill: '3x'"),
    (lambda: options.parse_duration("-5", "--duration"), "--duration: '-5'"),
    (lambda: live_sessions.template_session("{", 1, 1), "--template: not valid JSON"),
    (lambda: live_sessions.template_session({"browseraction": "Click"}, 1, 1), "--template: needs a 'site'"),
    (lambda: live_sessions.template_session({"site": "s", "event_time": "x"}, 1, 1), "event_time"),
    (lambda: live_sessions.template_session({"site": "s"}, -1, 1), "--rate"),
    (lambda: live_sessions.template_session({"site": "s"}, 1, "0"), "--duration"),
    (lambda: live_sessions.template_session({"site": "s"}, 1, 1, "bursty"), "--arrivals"),
    (lambda: live_send.send(Path("nowhere"), "x", template={"site": "s"}), "either --session"),
    (lambda: live_send.send(Path("nowhere"), template={"site": "s"}, rate=1), "--rate"),
    (lambda: live_sessions.session_definition(load_scenario("tiny"), "sql-lab-extra-clicks"),
     "studio-lab-burst, click"),
])
def test_bad_options_name_themselves(call: Any, names: str) -> None:
    with pytest.raises(ClicklabError, match=names.replace("(", r"\(")) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("argv", "message"), [
    (["generate"], "--out is required"),
    (["generate", "--out", "x.jsonl", "--backfill", "1m"], "--backfill is an option of the live generator"),
    (["generate", "--live", "--out", "x.jsonl"], "--out is not used with --live"),
    (["generate", "--live", "--scale", "0"], "--scale must be"),
    (["generate", "--live", "--duration", "soon"], "--duration: 'soon'"),
    (["generate", "--live", "--stop", "--status"], "not both"),
    (["generate", "--live", "--bootstrap", "127.0.0.1:1", "--streams", "files"], "--streams files, not both"),
    (["generate", "--streams", "files", "--out", "x.jsonl"], "--streams is an option of the live generator"),
])
def test_cli_generate_errors(argv: list[str], message: str) -> None:
    args = parser().parse_args(argv)
    with pytest.raises(ClicklabError, match=message):
        args.func(args)


def test_a_background_generator_is_told_where_tickerstream_is_not_left_to_its_environment() -> None:
    """The detached ``generate --live`` gets ``--bootstrap`` or ``--streams files``: it never starts a broker
    because the environment it inherited says nothing (the default is Kafka)."""
    assert options.LiveOptions().cli_args()[-2:] == ["--streams", "files"]
    assert options.LiveOptions(bootstrap="127.0.0.1:9092").cli_args()[-2:] == ["--bootstrap", "127.0.0.1:9092"]


def test_batches_into_a_topic_are_shorter_than_files_unless_a_flush_is_given() -> None:
    """Into a topic a batch every 0.1 s (the interval adds to every window's latency); files every 0.5 s."""
    assert options.LiveOptions().flush_s == options.FLUSH_S == 0.5
    assert options.LiveOptions(bootstrap="127.0.0.1:9092").flush_s == options.KAFKA_FLUSH_S == 0.1
    assert options.LiveOptions(bootstrap="127.0.0.1:9092", flush_s=0.3).flush_s == 0.3
    with pytest.raises(ClicklabError, match="--keep must be at least two flush intervals"):
        options.LiveOptions(keep_s=0.5)


def test_cli_status_and_stop_with_nothing_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for flag, text in (("--status", "no live generator is registered"), ("--stop", "no live generator was running")):
        args = parser().parse_args(["generate", "--live", flag, "--build", str(tmp_path)])
        args.func(args)
        assert text in capsys.readouterr().out
