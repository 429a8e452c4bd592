""""Check your work": the last cell of each step notebook tells the learner whether the step did its job.

``print(checks.work(lab, "06_ctr_stream"))`` prints a tick (✓) or a cross (✗) per check, in plain words:
the stream exists and has rows, the CTR of a known window, the burst flagged. On a replay the checks
compare with the replay file (exact counts); live they wait, up to ``wait_s`` seconds, for what a
running job should show (rows of windows that closed after the job started), and compare what has
closed with an independent count of the live events. A failed check prints a cross with what was
expected and what was seen; it never raises (the learner reads it). ``clicklab run`` and the browser
test fail on a cross (:func:`crosses` finds them in an executed notebook).

Each check is a function of the lab session returning :class:`Tick` s, registered in :data:`CHECKS` by the
notebook's number.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from clicklab import results, settings, streams
from clicklab.live.watch import session_rows, window_start_s
from clicklab.settings import labels_path_for

if TYPE_CHECKING:
    from clicklab.notebook import Lab

TICK, CROSS = "✓", "✗"
W = settings.WINDOW_SECONDS


@dataclass(frozen=True)
class Tick:
    """One check: passed or not, and the sentence the learner reads."""

    ok: bool
    text: str

    def __str__(self) -> str:
        return f"{TICK if self.ok else CROSS} {self.text}"


@dataclass
class Work:
    """The checks of one notebook."""

    notebook: str
    ticks: list[Tick] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.ticks)

    def __str__(self) -> str:
        head = f"Check your work ({self.notebook}): " + ("all done" if self.ok else "something is not right yet")
        return "\n".join([head, *(f"  {t}" for t in self.ticks)])


def work(lab: Lab, notebook: str, wait_s: float = 90.0) -> Work:
    """The checks of ``notebook`` (``"06_ctr_stream"`` or ``"06"``) on ``lab``'s streams; live, waiting up to
    ``wait_s`` seconds for rows a running job should have written."""
    number = notebook[:2]
    if number not in CHECKS:
        raise ValueError(f"no checks for notebook {notebook!r} (there are checks for {', '.join(CHECKS)})")
    try:
        ticks = CHECKS[number](lab, wait_s)
    except Exception as exc:  # a check that cannot run is a cross with its reason, never a traceback
        ticks = [Tick(False, f"the check could not run: {type(exc).__name__}: {exc}")]
    return Work(notebook, ticks)


def crosses(notebook_json: dict[str, Any]) -> list[tuple[int, str]]:
    """The failed checks printed in an executed notebook: ``(execution count, line)`` pairs."""
    found = []
    for cell in notebook_json.get("cells", []):
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain") or ""
            text = "".join(text) if isinstance(text, list) else text
            found += [(cell.get("execution_count") or 0, line.strip()) for line in text.splitlines()
                      if line.strip().startswith(CROSS)]
    return found


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _job_start_s(lab: Lab, *notebooks_streams: str) -> float:
    """Live: the latest start (epoch s) of the running jobs filling ``notebooks_streams`` (0 if none runs)."""
    from clicklab import cluster
    from clicklab.notebook import job_name

    names = {job_name(s) for s in notebooks_streams}
    starts = [j.start_time.timestamp() for j in cluster.jobs(lab.build)
              if j.name in names and j.state not in cluster.TERMINAL_STATES and j.start_time]
    return max(starts, default=0.0)


def _wait_rows(lab: Lab, name: str, wait_s: float, after_s: float,
               enough: Callable[[pd.DataFrame], bool] = len) -> pd.DataFrame:
    """Live: ``name``'s rows of windows starting at or after ``after_s``, once ``enough`` of them (or the wait ends)."""
    deadline = time.monotonic() + wait_s
    while True:
        frame = lab.stream(name)
        frame = frame[window_start_s(frame) >= after_s] if len(frame) else frame
        if (len(frame) and enough(frame)) or time.monotonic() >= deadline:
            return frame
        time.sleep(1.0)


def _rows_tick(lab: Lab, name: str, wait_s: float, enough: Callable[[pd.DataFrame], bool] = len,
               what: str = "rows") -> tuple[Tick, pd.DataFrame]:
    """``name`` has rows (replay), or rows of windows that closed after its job started (live)."""
    if not lab.live:
        frame = lab.stream(name)
        return Tick(bool(len(frame)), f"{name} has {len(frame):,} {what}"), frame
    since = _job_start_s(lab, name)
    if not since:
        return Tick(False, f"{name}: its job is not running (run {streams.STREAMS[name].filled_by} again)"), \
            pd.DataFrame()
    frame = _wait_rows(lab, name, wait_s, since)
    ok = bool(len(frame)) and bool(enough(frame))
    return Tick(ok, f"{name} receives {what} live: {len(frame):,} since its job started"
                    + ("" if ok else f" (waited {wait_s:.0f} s: is the live generator running?)")), frame


def _labels(lab: Lab) -> pd.DataFrame:
    if lab.live:
        from clicklab.live.send import labels

        return labels(lab.build)
    return results.read_labels(labels_path_for(lab.dataset))


def _burst(lab: Lab) -> Any:
    """The Studio lab's burst: the live generator's last ``studio-lab-burst`` session, or the replay's label."""
    if lab.live:
        from clicklab.live.send import last_session

        return last_session(lab.build, "studio-lab-burst")
    labels = _labels(lab)
    rows = labels[labels["kind"] == "studio-lab-burst"]
    return rows.iloc[0] if len(rows) else None


# --------------------------------------------------------------------------------------------------
# the steps
# --------------------------------------------------------------------------------------------------


def tables_tick(t_env: Any, names: tuple[str, ...], create: str = "the CREATE cell above") -> Tick:
    """Whether every stream of ``names`` is a table (or view) of the session; a cross names the missing ones."""
    have = set(t_env.list_tables()) | set(t_env.list_views())
    missing = [n for n in names if n not in have]
    if missing:
        return Tick(False, f"tables missing: {', '.join(missing)} (run {create})")
    return Tick(True, f"all {len(names)} streams are tables of this session: " + ", ".join(names))


def _tables(lab: Lab, wait_s: float) -> list[Tick]:
    return [tables_tick(lab.t_env, streams.STREAM_NAMES)]


def _functions(lab: Lab, wait_s: float) -> list[Tick]:
    have = {f.lower() for f in lab.t_env.list_user_defined_functions()}
    ticks = [Tick(f.lower() in have, f"{f} is registered" if f.lower() in have else f"{f} is not registered")
             for f in ("RANDOM_CUT_FOREST", "ANOMALY_DECISIONS")]
    if lab.detector is not None:
        p = lab.detector.forest_params()
        ticks.append(Tick(True, f"the forest: {p.number_of_trees} trees x {p.sub_sample_size} samples; a site is "
                                f"scored after {p.warmup_points} windows ({p.warmup_points * W} s)"))
    return ticks


def _ticker(lab: Lab, wait_s: float) -> list[Tick]:
    if not lab.live:
        events = results.read_events(lab.dataset)
        first, last = events["event_time"].min(), events["event_time"].max()
        return [Tick(len(events) > 0, f"tickerstream holds {len(events):,} events of {events['site'].nunique()} "
                                      f"sites ({first:%H:%M} to {last:%H:%M})")]
    deadline = time.monotonic() + wait_s
    while True:
        ticker = lab.stream("tickerstream")
        newest = pd.to_datetime(ticker["event_time"], utc=True, format="ISO8601").max() if len(ticker) else None
        age = (pd.Timestamp.now(tz="UTC") - newest).total_seconds() if newest is not None else None
        if (age is not None and age < 10) or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    ok = age is not None and age < 10
    return [Tick(ok, f"events arrive live: the newest is {age:.1f} s old" if ok else
                 "no recent event in tickerstream: start the live generator (`clicklab generate --live`)")]


def _counts(name: str, column: str) -> Callable[[Lab, float], list[Tick]]:
    def check(lab: Lab, wait_s: float) -> list[Tick]:
        tick, frame = _rows_tick(lab, name, wait_s, what="windows")
        ticks = [tick]
        if not lab.live and len(frame):
            expected = results.reference_counts(results.read_events(lab.dataset))
            expected = int((expected[column] > 0).sum())
            ticks.append(Tick(len(frame) == expected, f"one row per site and 10-second window with events: "
                                                      f"{len(frame):,} (the replay file gives {expected:,})"))
        if name == "impressionstream":
            bad = lab.stream("badevents")
            ticks.append(Tick(True, f"badevents holds {len(bad):,} bad lines"
                                    + (f" ({bad['reason'].value_counts().to_dict()})" if len(bad) else "")))
        return ticks

    return check


def _ctr(lab: Lab, wait_s: float) -> list[Tick]:
    tick, ctr = _rows_tick(lab, "ctrstream", wait_s, what="windows")
    ticks = [tick]
    if len(ctr):
        wrong = ctr[(results.ctr_percent(ctr["clickcount"], ctr["impressioncount"]) - ctr["ctr"]).abs() > 1e-9]
        ticks.append(Tick(wrong.empty, "every row's ctr is clickcount / impressioncount x 100" if wrong.empty else
                          f"{len(wrong)} rows whose ctr is not clickcount / impressioncount x 100"))
    burst = _burst(lab)
    if not lab.live and burst is not None and len(ctr):
        start = burst["start"].timestamp()
        row = ctr[(ctr["site"] == burst["site"]) & (ctr["time"] == start)]
        got = float(row["ctr"].iloc[0]) if len(row) else None
        ref = results.reference_ctr(lab.dataset)
        want = ref[(ref["site"] == burst["site"]) & (ref["time"] == start)]["ctr"]
        want_v = float(want.iloc[0]) if len(want) else None
        ticks.append(Tick(got is not None and want_v is not None and abs(got - want_v) < 1e-9,
                          f"the burst's first window ({burst['site']}, {burst['start']:%H:%M:%S}): CTR "
                          f"{'missing' if got is None else f'{got:.1f} %'} (the replay file gives "
                          f"{'none' if want_v is None else f'{want_v:.1f} %'})"))
    return ticks


def live_ctr_problems(lab: Lab, min_windows: int = 2, wait_s: float = 90.0) -> tuple[list[str], int]:
    """Live: ``ctrstream`` against the CTR counted with pandas from the live tickerstream's retained events.

    Only windows both sides hold completely are compared: after the latest start of the #4, #5 and #6 jobs
    (a job reads only what arrives after it starts, so its first window is partial), after the first
    retained event, and at least two windows before the newest CTR row (a one-sided window comes a window
    late). Waits until ``min_windows`` such windows per site exist. Returns the problems and the number of
    windows compared.
    """
    deadline = time.monotonic() + wait_s
    while True:
        ctr = lab.stream("ctrstream")
        ticker = lab.stream("tickerstream")
        lo = _job_start_s(lab, "impressionstream", "clickstream", "ctrstream")
        if len(ticker) and len(ctr) and lo:
            events = ticker.assign(event_time=pd.to_datetime(ticker["event_time"], utc=True, format="ISO8601"))
            first_event = events["event_time"].min().timestamp()
            lo = max(lo, first_event, float(ctr["time"].min())) // W * W + W
            hi = float(ctr["time"].max()) - 2 * W
            expected = results.reference_counts(events)
            expected = expected[(expected["time"] >= lo) & (expected["time"] <= hi)].copy()
            expected["ctr"] = results.ctr_percent(expected["clickcount"], expected["impressioncount"])
            produced = ctr[(ctr["time"] >= lo) & (ctr["time"] <= hi)]
            if len(expected) >= min_windows * max(1, events["site"].nunique()) or time.monotonic() >= deadline:
                return results.compare_ctr(produced, expected.reset_index(drop=True)), len(expected)
        elif time.monotonic() >= deadline:
            return ["no complete window to compare yet (are #4, #5 and #6 running?)"], 0
        time.sleep(1.0)


def _view_ctr(lab: Lab, wait_s: float) -> list[Tick]:
    if lab.live:
        problems, n = live_ctr_problems(lab, wait_s=wait_s)
        what = f"{n:,} closed windows of the live events"
    else:
        ctr = lab.stream("ctrstream")
        problems, n = results.compare_ctr(ctr, results.reference_ctr(lab.dataset)), len(ctr)
        what = f"all {n:,} windows of the replay file"
    if problems:
        return [Tick(False, "ctrstream differs from the CTR counted independently with pandas: "
                            + "; ".join(problems[:3]))]
    return [Tick(n > 0, f"ctrstream equals the CTR counted independently with pandas over {what}")]


def _scores(lab: Lab, wait_s: float) -> list[Tick]:
    tick, scored = _rows_tick(lab, "destinationstream", wait_s, what="scored windows")
    ticks = [tick]
    if not lab.live and len(scored):
        ctr = lab.stream("ctrstream")
        ticks.append(Tick(len(scored) == len(ctr), f"one score per CTR row: {len(scored):,} scores, "
                                                   f"{len(ctr):,} CTR rows"))
    if len(scored) and lab.detector is not None:
        warm, warmup = int((scored["score"] != 0).sum()), lab.detector.forest_params().warmup_points
        longest = int(scored.groupby("site").size().max())
        ticks.append(Tick(warm > 0 or longest <= warmup or lab.live,
                          f"{warm:,} windows scored after the warm-up of {warmup} windows per site (score 0 before it)"
                          + (f"; no site has more than {longest} windows yet" if longest <= warmup else "")))
    return ticks


def _scored_from(lab: Lab) -> dict[str, float]:
    """Per site, the window start (epoch s) of its first score after the warm-up (sites still warming up: absent)."""
    scored = lab.stream("destinationstream")
    scored = scored[scored["score"] != 0.0]
    return {str(k): float(v) for k, v in scored.groupby("site")["time"].min().items()}


def _flagged(lab: Lab, wait_s: float) -> list[Tick]:
    flagged = lab.stream("anomalydetectionstream")
    if lab.live:
        running = _job_start_s(lab, "anomalydetectionstream") > 0
        return [Tick(running, f"the job of #9 runs on the cluster; {len(flagged)} anomalies so far "
                              "(notebook 10 sends the burst)" if running else "the job of #9 is not running")]
    burst = _burst(lab)
    ticks = [Tick(True, f"anomalydetectionstream has {len(flagged)} rows")]
    if burst is None:
        return ticks
    start, end = burst["start"].timestamp(), burst["end"].timestamp()
    if start < _scored_from(lab).get(burst["site"], float("inf")):
        return [*ticks, Tick(True, f"the burst ({burst['site']}, {burst['start']:%H:%M:%S}) falls in the site's "
                                   "warm-up, before its forest scores: a longer replay shows it flagged")]
    t = window_start_s(flagged)
    hit = flagged[(flagged["site"] == burst["site"]) & (t + W > start - W) & (t < end)]
    ticks.append(Tick(len(hit) > 0, f"the burst ({burst['site']}, {burst['start']:%H:%M:%S}) is flagged: "
                      + (f"CTR {hit['ctrpercent'].iloc[0]:.0f} %, score {hit['anomaly_score'].iloc[0]:.2f}"
                         if len(hit) else "no row of anomalydetectionstream in its windows")))
    return ticks + ([_usual(hit.iloc[0])] if len(hit) else [])


def _usual(row: pd.Series) -> Tick:
    """The anomaly row says what was usual for the site, and its CTR is outside that range (issue 23)."""
    values = [row.get(c) for c in ("expected", "usual_low", "usual_high", "grade")]
    if any(v is None or pd.isna(v) for v in values):
        return Tick(False, "the burst's row carries no usual range or grade (expected, usual_low, usual_high, grade "
                           "are empty): is 09's INSERT the one that selects them?")
    expected, low, high, grade = (float(v) for v in values)
    outside = not low <= float(row["ctrpercent"]) <= high
    return Tick(outside and 0 < grade <= 1, f"the burst's row says what was usual: CTR {row['ctrpercent']:.0f} % where "
                f"about {expected:.1f} % ({low:.1f}-{high:.1f} %) is usual, grade {grade:.2f}"
                + ("" if outside else ": but its CTR is within that range"))


def _anomalies(lab: Lab, wait_s: float) -> list[Tick]:
    if not lab.live:
        from clicklab import evaluation

        labels, scored_from = _labels(lab), _scored_from(lab)
        scorable = labels[[row.start.timestamp() >= scored_from.get(row.site, float("inf"))
                           for row in labels.itertuples()]]
        report = evaluation.compare_modes(lab.stream("destinationstream"), lab.stream("anomalydetectionstream"),
                                          scorable, settings.ANOMALY_THRESHOLD)
        found = int(report.detections["adaptive detected"].sum()) if len(scorable) else 0
        early = f" ({len(labels) - len(scorable)} more fall in a site's warm-up, before it scores)" \
            if len(scorable) < len(labels) else ""
        return [Tick(found == len(scorable), f"{found} of {len(scorable)} labelled anomalies detected within one "
                                             f"window{early}")]

    burst = _burst(lab)
    if burst is None:
        return [Tick(False, "no burst sent yet: run the burst cell above")]
    rows = session_rows(lab.committed("anomalydetectionstream"), burst)
    if not len(rows):
        return [Tick(False, f"the burst ({burst}) is not in anomalydetectionstream yet: wait, or send it again")]
    first = rows.iloc[0]
    return [Tick(True, f"the burst is flagged: CTR {first['ctrpercent']:.0f} %, score {first['anomaly_score']:.2f}, "
                       f"{first['shown_after_s']:.1f} s after its window ended"), _usual(first)]


def _alerts(lab: Lab, wait_s: float) -> list[Tick]:
    """The e-mails the local SMTP server received carry the lab's sentence; live, one is the burst's."""
    import email
    from email import policy

    from clicklab.alerts import local

    outbox = local.outbox_dir(lab.build)
    bodies = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]
    texts = [f"{m['subject']}\n{m.get_body(preferencelist=('plain',)).get_content()}" for m in bodies]
    lab_sentence = [t for t in texts if "Anomaly detected with a click through rate of" in t]
    anomalies = len(lab.stream("anomalydetectionstream"))
    if not anomalies and not lab.live:
        return [Tick(True, "anomalydetectionstream has no anomaly (a short replay scores none): no e-mail to send")]
    ticks = [Tick(bool(lab_sentence), f"{len(texts)} e-mail(s) in {outbox} for {anomalies} anomalies, "
                                      f"{len(lab_sentence)} with the lab's sentence 'Anomaly detected with a click "
                                      "through rate of ...'")]
    burst = _burst(lab)
    if lab.live and burst is not None:
        ours = [t for t in lab_sentence if burst.site in t]
        ticks.append(Tick(bool(ours), f"the burst's e-mail ({burst.site}) arrived" if ours else
                          f"no e-mail for the burst on {burst.site} yet: send it again (notebook 10) and re-run"))
    return ticks


#: The checks of each step notebook, by its number.
CHECKS: dict[str, Callable[[Lab, float], list[Tick]]] = {
    "01": _tables,
    "02": _functions,
    "03": _ticker,
    "04": _counts("impressionstream", "impressioncount"),
    "05": _counts("clickstream", "clickcount"),
    "06": _ctr,
    "07": _view_ctr,
    "08": _scores,
    "09": _flagged,
    "10": _anomalies,
    "11": _alerts,
}
