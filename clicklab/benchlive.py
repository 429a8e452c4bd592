"""``clicklab bench --live``: how fast the live lab keeps up, and how long an anomaly takes to reach a person.

One run on the standalone cluster: the lab's five jobs (the notebooks' own INSERT statements, the
``lab`` forest parameters) are submitted first, then the live generator starts at ``scale`` times the
lab scenario's rates, and every ``burst_every_s`` seconds one site gets a burst: the lab's burst on
``www.mysite.com``, then as many extra clicks as it has impressions on each other site, one burst per
site (a forest of 12 samples that sees a burst every minute soon finds bursts normal). In this process a
follower invokes the alert handler on ``anomalydetectionstream`` as it grows, as the Lambda destination
does, with the local servers (moto, SMTP) and no cooldown.

Figures (all from file times: a stream file's modification time is when its writer committed it):

* per hop, for every window: seconds from the window's end until its row was committed in
  ``impressionstream``/``clickstream``, ``ctrstream``, ``destinationstream``; for the burst windows,
  ``anomalydetectionstream`` and the e-mail's ``.eml`` in the outbox (p50 and p95 each);
* ``live_events_per_s``: the rate the generator sent, and whether the pipeline kept up with it: the
  first hop's latency in the first and the last third of the run (growing means it fell behind).

Nothing is asserted: the figures are printed, to be read on the machine at hand.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clicklab import settings, sqltext, streams
from clicklab.live import process
from clicklab.live.folders import ARCHIVE, committed_files
from clicklab.live.options import KEEP_S
from clicklab.live.send import send
from clicklab.live.watch import ReadCommitted, rows_committed, window_start_s

log = logging.getLogger(__name__)

#: The streams whose rows are timed, in pipeline order (the hop each one ends).
HOPS = ("impressionstream", "clickstream", "ctrstream", "destinationstream", "anomalydetectionstream")


def _percentiles(values: Any) -> dict[str, float | int | None]:
    values = np.asarray(list(values), dtype=float)
    if not len(values):
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2),
            "n": len(values)}


def submit_pipeline(build: Path, bootstrap: str | None = None) -> Any:
    """A live session with the lab's functions (``lab`` forest parameters) and the five INSERT jobs submitted; on
    the topics at ``bootstrap`` when given, else on the stream folders."""
    from clicklab import bench, flink, notebook, udfs
    from clicklab_udf.forest import ForestParams

    t_env = flink.create_table_env(config=notebook.live_config("files" if bootstrap is None else "kafka"),
                                   target="cluster", build=build)
    if bootstrap is not None:
        from clicklab.kafka.lab import TopicLab

        lab: Any = TopicLab(settings.DEFAULT_DATASET, build, t_env, bootstrap, live=True)
    else:
        lab = notebook.Lab(settings.DEFAULT_DATASET, build, t_env, live=True)
    lab.create_tables()
    lab.register_functions(udfs.Detector(forest=ForestParams.preset("lab")))
    for statement in bench.lab_statements():
        log.info("%s", lab.run(sqltext.substitute(statement, lab.variables()))[0].message)
    return lab


def window_latencies(read: ReadCommitted, since_s: float) -> dict[str, pd.DataFrame]:
    """Per stream: window start and ``latency_s`` (commit time minus window end) of the windows after ``since_s``;
    ``read`` gives a stream's rows with ``committed_at`` (files: their commit; topics: when a reader got them)."""
    out = {}
    for name in HOPS:
        rows = read(name)
        if not len(rows):
            out[name] = pd.DataFrame(columns=["window", "latency_s", "committed_at", "site"])
            continue
        start = window_start_s(rows)
        frame = pd.DataFrame({"window": start, "latency_s": rows["committed_at"] - (start + settings.WINDOW_SECONDS),
                              "committed_at": rows["committed_at"], "site": rows["site"]})
        out[name] = frame[frame["window"] >= since_s]
    return out


def _health(build: Path, started: float, read: ReadCommitted, kafka: bool) -> dict[str, Any]:
    """One sample of the live lab's health: files per stream (folder + archive; topics: none), the cluster's
    memory, the first hop's latency over the last minute."""
    import psutil

    from clicklab import cluster

    files = 0 if kafka else sum(len(committed_files(streams.stream_path(build, name)))
                                + len(committed_files(streams.stream_path(build, name) / ARCHIVE)) for name in HOPS)
    rss = 0
    for pid in cluster.processes(build):
        try:
            rss += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    recent = window_latencies(read, since_s=time.time() - 60)["impressionstream"]["latency_s"]
    return {"at_s": round(time.time() - started), "files": files, "cluster_rss_mb": round(rss / 2**20),
            "first_hop_latency_s": _median(recent)}


def _bursts(scale: float) -> list[dict[str, Any]]:
    """What the bench sends, in order: the lab's burst, then one burst of extra clicks per other site."""
    from clicklab.scenario import load_scenario

    out: list[dict[str, Any]] = [{"session": "studio-lab-burst"}]
    for sender in load_scenario("lab").senders:
        if sender.browseraction == "Impression" and sender.site != "https://www.mysite.com":
            out.append({"template": {"browseraction": "Click", "site": sender.site}, "rate": sender.rate * scale,
                        "duration": 30, "kind": "bench-burst"})
    return out


def run(build: Path, duration_s: float = 240.0, scale: float = 1200.0, burst_every_s: float = 60.0,
        warmup_s: float = 60.0, sample_every_s: float = 60.0, backend: str = "files") -> dict[str, Any]:
    """Run the live lab for ``duration_s`` seconds at ``scale`` x the lab's rates; return the figures.

    ``backend``: the streams as folders (``files``) or topics (``kafka``: the lab's broker, or
    ``$CLICKLAB_KAFKA_BOOTSTRAP``); on topics a hop's time is when a ``read_committed`` reader got the row
    (:class:`clicklab.kafka.watch.TopicWatcher`), on files when its file was committed."""
    from clicklab import cluster
    from clicklab.alerts import destination

    build = Path(build)
    kafka = backend == "kafka"
    bootstrap, watcher = None, None
    log.info("live bench: cluster up ...")
    if kafka:
        from clicklab.kafka import alert_consumer, topics
        from clicklab.kafka import lab as kafka_lab
        from clicklab.kafka.watch import TopicWatcher

        bootstrap = kafka_lab.open_live(build)
        topics.empty(bootstrap, list(streams.STREAM_NAMES))  # a run of its own, from empty topics
        watcher = TopicWatcher(bootstrap, HOPS).start()

        def read(name: str) -> pd.DataFrame:
            rows = watcher.rows(name)
            if not len(rows):
                return pd.DataFrame(columns=["rowtime", "site", "committed_at"])
            return rows.rename(columns={"seen_at": "committed_at"})
    else:
        def read(name: str) -> pd.DataFrame:
            return rows_committed(build, name)

        for name in streams.STREAM_NAMES:
            streams.stream_path(build, name).mkdir(parents=True, exist_ok=True)
    cluster.up(build)
    stop = threading.Event()
    try:
        submit_pipeline(build, bootstrap)
        log.info("live bench: generator at %g x the lab's rates for %.0f s ...", scale, duration_s)
        # the run's history for the figures, but never more than the lab's retention: files stay bounded
        process.start_background(build, scenario="lab", scale=scale, keep_s=min(duration_s + 300, KEEP_S),
                                 bootstrap=bootstrap)
        started = time.time()
        dest = destination.open_destination(build, cooldown_s=0)
        if kafka:
            def follow() -> Any:
                return alert_consumer.follow(dest, bootstrap, timeout_s=duration_s + 60, until=stop.is_set,
                                             group=f"clicklab-bench-{started:.0f}")
        else:
            def follow() -> Any:
                return destination.follow(dest, build, timeout_s=duration_s + 60, until=stop.is_set)
        follower = threading.Thread(target=follow, name="alert-follower", daemon=True)
        follower.start()
        sessions = []
        bursts = _bursts(scale)
        health: list[dict[str, Any]] = []
        next_burst, next_sample = started + warmup_s, started + 30
        while time.time() < started + duration_s:
            if bursts and time.time() >= next_burst and time.time() + 40 < started + duration_s:
                sessions.append(send(build, **bursts.pop(0)))
                log.info("live bench: burst %d sent (%s)", len(sessions), sessions[-1])
                next_burst = time.time() + burst_every_s
            if time.time() >= next_sample:
                health.append(_health(build, started, read, kafka))
                log.info("live bench: %s", health[-1])
                next_sample = time.time() + sample_every_s
            time.sleep(1.0)
        time.sleep(15)  # let the last windows through
        stop.set()
        follower.join(30)
        info = process.status(build)
        figures = _figures(build, read, started, time.time(), sessions, info, health)
        figures["streams"] = f"topics ({bootstrap})" if kafka else "files"
        dest.close()
        return figures
    finally:
        stop.set()
        process.stop(build)
        cluster.down(build)
        if watcher is not None:
            watcher.stop()
            from clicklab.kafka import broker

            broker.down(build)  # the bench's own broker (none is started for $CLICKLAB_KAFKA_BOOTSTRAP)


def _figures(build: Path, read: ReadCommitted, started: float, ended: float, sessions: list[Any], info: Any,
             health: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one run. A run longer than the retention has lost its first files: whether it kept up is
    then read from the health samples (the first hop's latency, minute by minute)."""
    from clicklab.alerts import local

    lat = window_latencies(read, since_s=started + 20)  # after the jobs' first, partial windows
    first = pd.concat([lat["impressionstream"], lat["clickstream"]])
    third = (ended - started) / 3
    early = first[first["committed_at"] < started + third]["latency_s"]
    late = first[first["committed_at"] > ended - third]["latency_s"]
    burst_rows, mails = [], []
    anomalies = lat["anomalydetectionstream"]
    if not len(anomalies):
        anomalies = anomalies.assign(site=[])
    eml = sorted(p.stat().st_mtime for p in local.outbox_dir(build).glob("*.eml"))
    for s in sessions:
        lo, hi = s.start.timestamp(), s.end.timestamp()
        mine = anomalies[(anomalies["site"] == s.site) & (anomalies["window"] + settings.WINDOW_SECONDS > lo)
                         & (anomalies["window"] < hi)]
        burst_rows += list(mine["latency_s"])
        if len(mine):
            end = float(mine["window"].min()) + settings.WINDOW_SECONDS
            after = [t - end for t in eml if t >= end]
            if after:
                mails.append(after[0])
    events_per_s = (info.events / max(ended - started, 1.0)) if info is not None else None
    hops = {name: _percentiles(lat[name]["latency_s"]) for name in HOPS[:-1]}
    first_third, last_third = _median(early), _median(late)
    sampled = [h["first_hop_latency_s"] for h in health if h["first_hop_latency_s"] is not None]
    if first_third is None and sampled:
        first_third, last_third = sampled[0], sampled[-1]
    return {
        "live_events_per_s": round(events_per_s, 1) if events_per_s is not None else None,
        "kept_up": first_third is not None and last_third is not None and last_third <= first_third + 1.0,
        "first_hop_latency_s": {"first_third_p50": first_third, "last_third_p50": last_third},
        "anomaly_latency_s": _percentiles(burst_rows),
        "email_latency_s": _percentiles(mails),
        "hops_latency_s": hops,
        "bursts": len(sessions),
        "seconds": round(ended - started, 1),
        "health": health,
    }


def _median(values: pd.Series) -> float | None:
    return round(float(values.median()), 2) if len(values) else None


def format_figures(f: dict[str, Any]) -> str:
    def pp(d: dict[str, Any]) -> str:
        return f"p50 {d['p50']} s, p95 {d['p95']} s (n={d['n']})"

    lines = [
        f"live: {f['live_events_per_s']:,} events/s for {f['seconds']:.0f} s; kept up: {f['kept_up']} "
        f"(first hop p50 {f['first_hop_latency_s']['first_third_p50']} s in the first third, "
        f"{f['first_hop_latency_s']['last_third_p50']} s in the last)   (target >= 20,000 events/s)",
        f"window end -> anomaly row: {pp(f['anomaly_latency_s'])}",
        f"window end -> e-mail in the outbox: {pp(f['email_latency_s'])}   (target p95 <= 10 s)",
        "window end -> row committed, per hop:",
    ]
    lines += [f"  {name:18s} {pp(d)}" for name, d in f["hops_latency_s"].items()]
    if f.get("health"):
        first, last = f["health"][0], f["health"][-1]
        lines.append(f"health, first and last sample: files {first['files']} -> {last['files']}, cluster memory "
                     f"{first['cluster_rss_mb']} -> {last['cluster_rss_mb']} MB, first hop "
                     f"{first['first_hop_latency_s']} -> {last['first_hop_latency_s']} s")
    return "\n".join(lines)
