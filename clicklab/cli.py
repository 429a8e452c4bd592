"""``clicklab``: the one command line of the lab. Thin: each subcommand calls the library."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clicklab import settings
from clicklab.exceptions import ClicklabError
from clicklab.kafka import cli as kafka_cli

if TYPE_CHECKING:
    from clicklab.evaluation import Evaluation

log = logging.getLogger(__name__)


def _cmd_run(args: argparse.Namespace) -> None:
    from clicklab import flink, runner

    flink.check_java()
    report = runner.run(dataset=args.dataset, build=args.build, only=args.only, live=args.live,
                        linger_s=args.duration, forest_preset=args.params, backend=args.streams)
    print(f"\n{len(report.executed)} notebooks executed in {report.seconds:.0f} s into {args.build / 'executed'}")
    print(report.summary.render())
    if not args.live:
        from clicklab.zeppelin.export import ExportOptions, export_lab

        note = export_lab(ExportOptions(target="local", with_results=True, dataset=args.dataset, build=args.build))
        print(f"Zeppelin note of this run (local Flink interpreter; loads-checked): {note.path}")
    if not report.summary.ok:
        raise ClicklabError("check failed: " + "; ".join(c.message.rstrip(":") for c in report.summary.failed()))


#: ``clicklab generate`` options of the live generator only (dest, flag), default None/False without --live.
_LIVE_ONLY = (("build", "--build"), ("backfill", "--backfill"), ("scale", "--scale"), ("flush", "--flush"),
              ("duration", "--duration"), ("keep", "--keep"), ("background", "--background"), ("stop", "--stop"),
              ("status", "--status"), ("bootstrap", "--bootstrap"), ("streams", "--streams"))


def _cmd_generate(args: argparse.Namespace) -> None:
    if args.live:
        _cmd_generate_live(args)
        return
    from clicklab.generator import generate
    from clicklab.scenario import load_scenario

    for dest, flag in _LIVE_ONLY:
        if getattr(args, dest) not in (None, False):
            raise ClicklabError(f"{flag} is an option of the live generator: add --live")
    if args.out is None:
        raise ClicklabError("--out is required: the events file to write (.jsonl or .jsonl.gz); "
                            "or use --live for a live tickerstream")
    scenario = load_scenario(args.scenario)
    shown = [-1.0]  # when progress was last logged (seconds into the run): about once a second

    def progress(events: int, seconds: float, fraction: float) -> None:
        if seconds - shown[0] >= 1.0 or fraction >= 1.0:
            shown[0] = seconds
            rate = events / seconds if seconds > 0 else 0.0
            log.info("%6.1f%%  %s events  %s events/s", 100 * fraction, f"{events:,}", f"{rate:,.0f}")

    result = generate(scenario, args.seed, args.out, labels_path=args.labels,
                      progress=progress if args.progress else None)
    rate = f"{result.events_per_s:,.0f} events/s"
    print(f"{result.events:,} events in {result.seconds:.1f} s ({rate}) -> {result.out_path}")
    print(f"labels -> {result.labels_path}")


def _cmd_generate_live(args: argparse.Namespace) -> None:
    from clicklab.live import process
    from clicklab.live.generator import run_live
    from clicklab.live.options import KEEP_S, LiveOptions, parse_duration, tickerstream_dir

    for flag, value in (("--out", args.out), ("--labels", args.labels), ("--progress", args.progress)):
        if value not in (None, False):
            raise ClicklabError(f"{flag} is not used with --live: the live generator sends into tickerstream "
                                "and writes <build>/live/labels.csv")
    build = args.build or settings.DEFAULT_BUILD
    if args.stop or args.status:
        if args.stop and args.status:
            raise ClicklabError("give --stop or --status, not both")
        info = process.status(build)
        if args.status:
            print(info if info is not None else f"no live generator is registered for {build}")
        elif process.stop(build):
            print(f"stopped the live generator (pid {info.pid if info else '?'}) of {build}")
        else:
            print(f"no live generator was running for {build}")
        return
    given = {
        "seed": args.seed,
        "backfill_s": parse_duration(args.backfill or 0, "--backfill"),
        "scale": args.scale if args.scale is not None else 1.0,
        "flush_s": args.flush,
        "duration_s": None if args.duration is None else parse_duration(args.duration, "--duration"),
        "keep_s": KEEP_S if args.keep is None else parse_duration(args.keep, "--keep"),
    }
    LiveOptions(**given, bootstrap=args.bootstrap)  # checked before anything starts
    if args.bootstrap and args.streams == "files":
        raise ClicklabError("give --bootstrap (a Kafka's tickerstream topic) or --streams files, not both")
    bootstrap = args.bootstrap or _live_bootstrap(build, args.streams)
    options = LiveOptions(**given, bootstrap=bootstrap)
    if args.background:
        info = process.start_background(build, args.scenario, **vars(options))
        print(f"live generator started in the background: pid {info.pid}; log {info.log}; "
              f"stop it with: clicklab generate --live --stop --build {build}")
        return
    result = run_live(args.scenario, build, options)
    where = f"topic tickerstream ({bootstrap})" if bootstrap else tickerstream_dir(build)
    print(f"{result.events:,} events in {result.files:,} batches ({result.backfill_events:,} backfilled), "
          f"{len(result.sessions)} sessions -> {where}")


def _live_bootstrap(build: Path, streams: str | None) -> str | None:
    """Where ``generate --live`` sends without ``--bootstrap``: where the notebooks read tickerstream, the lab's
    broker (started if needed) or ``$CLICKLAB_KAFKA_BOOTSTRAP``; ``None`` (the folder) with ``--streams files``
    (``None``: ``$CLICKLAB_STREAMS`` decides, :func:`clicklab.notebook.stream_backend`)."""
    from clicklab import notebook

    if notebook.stream_backend(streams) == "files":
        return None
    from clicklab.kafka import lab as kafka_lab

    return kafka_lab.open_live(build)


def _cmd_send(args: argparse.Namespace) -> None:
    from clicklab.live.options import live_dir
    from clicklab.live.send import send

    session = send(args.build, args.session, template=args.template, rate=args.rate, duration=args.duration,
                   arrivals=args.arrivals, kind=args.kind)
    print(f"{session} (label in {live_dir(args.build) / 'labels.csv'})")


def _detector(args: argparse.Namespace):
    from clicklab.udfs import Detector
    from clicklab_udf.forest import ForestParams

    options = {
        "backend": args.backend, "number_of_trees": args.trees, "sub_sample_size": args.sample_size,
        "shingle_size": args.shingle_size, "time_decay": args.time_decay, "seed": args.seed, "warmup": args.warmup,
    }
    try:
        forest = ForestParams.preset(args.params or "default", **{k: v for k, v in options.items() if v is not None})
    except ValueError as exc:
        raise ClicklabError(str(exc)) from None
    return Detector(forest=forest, threshold=args.threshold, adaptive=args.adaptive)


#: The forest's named parameter sets (``clicklab_udf.forest.PRESETS``; not imported here, a test checks they agree).
PARAMETER_SETS = ("default", "lab")


def _scorer_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scorer (defaults: the lab's)")
    g.add_argument("--params", choices=PARAMETER_SETS, default=None,
                   help="the forest's named parameter set: default (100 trees, 256 samples, time decay 100000, "
                        "shingle 1) or lab (the SQL lab's 100, 12, 100000, 1); the options below override it")
    g.add_argument("--backend", choices=["compact", "aws", "rrcf", "java"], default=None,
                   help="compact (default: the keyed pipeline's forest, Java in Flink, its Python twin in process), "
                        "aws (krcf), rrcf, or java (AWS's Java library in Flink); compact and java build the jar "
                        "(javac)")
    g.add_argument("--trees", type=int, default=None, help="number of trees (100)")
    g.add_argument("--sample-size", type=int, default=None, help="sub-sample size (256)")
    g.add_argument("--shingle-size", type=int, default=None, help="shingle size (1)")
    g.add_argument("--time-decay", type=float, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--warmup", type=int, default=None, help="points per key before scores are emitted")
    g.add_argument("--threshold", type=float, default=settings.ANOMALY_THRESHOLD, help="fixed floor (2)")
    g.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True,
                   help="adaptive threshold on top of the floor (default: on)")


def _cmd_score(args: argparse.Namespace) -> None:
    from clicklab import flink
    from clicklab.score import Columns, read_series, score_frames, write_scored

    columns = Columns(timestamp=args.timestamp_col, value=args.value_col, key=args.key_col)
    frame = read_series(args.input, columns)
    detector = _detector(args)
    flink.check_java()
    log.info("scoring %s rows of %s (%d key(s)) ...", f"{len(frame):,}", args.input, frame["key"].nunique())
    scored = score_frames({"input": frame}, args.build / "score", detector)["input"]
    write_scored(scored, args.output, columns)
    print(f"{len(scored):,} rows -> {args.output}; {int(scored['is_anomaly'].sum())} anomalies "
          f"({'adaptive' if detector.adaptive else 'fixed'} threshold, floor {detector.threshold:g})")


#: NAB's series beside the checkout (``../shared/nab``), ``clicklab evaluate``'s default when present.
SHARED_NAB = settings.REPO.parent / "shared" / "nab"


def _cmd_evaluate(args: argparse.Namespace) -> None:
    """``clicklab evaluate``: detections and false alarms per series, then NAB scores per corpus and detector."""
    import pandas as pd

    from clicklab import flink, nab
    from clicklab.evaluation import evaluate, write_nab_results

    data, labels = args.data, args.labels
    if data is None and labels is None and (SHARED_NAB / "data").is_dir():
        data, labels = SHARED_NAB / "data", SHARED_NAB / "labels" / "combined_windows.json"
        log.info("series: %s (NAB)", data)
    elif data is None and labels is not None:
        raise ClicklabError("--labels needs --data (the folder of the series it labels)")
    profiles_file = args.profiles or (Path(labels).parent.parent / "config" / "profiles.json" if labels else None)
    try:
        profiles = nab.read_profiles(profiles_file) if profiles_file and profiles_file.is_file() else None
    except ValueError as exc:
        raise ClicklabError(str(exc)) from None
    detector = _detector(args)
    if not args.in_process:
        flink.check_java()
    result = evaluate(data, labels, detector, args.build / "evaluate", replay=args.replay,
                      replay_labels=args.replay_labels, in_process=args.in_process, profiles=profiles)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        if not result.detections.empty:
            print(result.detections.to_string(index=False))
            print()
        source = profiles_file if profiles else "NAB's published weights"
        print(f"NAB scores (profiles: {source}; standard: the standard profile, "
              "threshold: the one chosen afterwards for the scores; TP/FN: windows detected/missed, "
              "FP: detections outside windows; low FP/low FN: the other profiles)")
        print(result.nab.to_string(index=False))
    if args.holdout:
        _print_holdout(result)
    if args.nab_results:
        written = write_nab_results(result.series, result.scored, result.modes, args.nab_results)
        print(f"{len(written)} NAB results files -> {args.nab_results}/{{scores,adaptive,fixed}}/ (check: python3 "
              f"{SHARED_NAB / 'nab_score.py'} --nab-dir {SHARED_NAB} --results {args.nab_results}/scores "
              "--category all)")


def _print_holdout(result: Evaluation) -> None:
    """``clicklab evaluate --holdout category``: each rule family tuned leaving one category out, on the scores made."""
    import pandas as pd

    from clicklab import holdout

    series = holdout.from_evaluation(result.series, result.scored)
    if len({s.category for s in series}) < 2:
        raise ClicklabError("--holdout category needs series in two categories or more (folders under --data)")
    log.info("tuning %d candidates on %d series, leaving one category out ...",
             sum(len(c) for c in holdout.FAMILIES.values()), len(series))
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 80):
        for family, report in holdout.holdout_report(series).items():
            print()
            print(f"{family}: parameters chosen on the other categories, NAB score (standard) of each held-out "
                  f"category; all: every series' held-out decisions together (the estimate); in-sample: the "
                  f"parameters chosen on every category ({len(holdout.FAMILIES[family])} candidates)")
            print(report.table().to_string(index=False))


def _cmd_bench(args: argparse.Namespace) -> None:
    import json

    if args.live:
        from clicklab import benchlive, flink

        flink.check_java()
        figures = benchlive.run(args.build / "bench-live", duration_s=args.duration, scale=args.scale,
                                backend="kafka" if args.kafka else "files")
        print(json.dumps(figures, indent=2) if args.json else benchlive.format_figures(figures))
        return
    if args.kafka:
        from clicklab.kafka import bench as kafka_bench

        figures = kafka_bench.run_all(args.build, quick=args.quick)
        print(json.dumps({"kafka": figures}, indent=2) if args.json else kafka_bench.format_figures(figures))
        return
    if args.python_route:
        from clicklab import benchkeyed, flink

        flink.check_java()
        figures = benchkeyed.python_route()
        print(json.dumps({"python_route": figures}, indent=2) if args.json else
              f"PyFlink KeyedProcessFunction, {figures['state_bytes']:,} B of ValueState per row, no scoring: "
              f"{figures['rows_per_s']:,.0f} rows/s")
        return
    if args.sites is not None or args.parallelism is not None:
        from clicklab import benchkeyed, flink

        flink.check_java()
        top = args.parallelism or 2
        if top < 1:
            raise ClicklabError(f"--parallelism must be >= 1, got {top}")
        keyed = benchkeyed.run(args.build / "bench" / "cluster", args.sites or 10_000, args.windows,
                               tuple(sorted({1, top})))
        print(json.dumps({"keyed": keyed}, indent=2) if args.json else benchkeyed.format_keyed(keyed))
        return
    from clicklab import bench

    figures = bench.run_all(args.build / "bench", quick=args.quick)
    print(json.dumps(figures, indent=2) if args.json else bench.format_figures(figures))


def _cmd_udf_jar(args: argparse.Namespace) -> None:
    from clicklab import javaudf

    current = not args.force and javaudf.jar_is_current(args.out)
    jar = javaudf.build_jar(args.out, force=args.force)
    state = "up to date" if current else "built"
    print(f"{jar} {state} ({jar.stat().st_size / 2**10:,.0f} KiB; upload it to Studio as a custom connector, "
          f"then CREATE FUNCTION {settings.RANDOM_CUT_FOREST} AS '{javaudf.JAVA_UDF_CLASS}')")


def _cmd_alerts_package(args: argparse.Namespace) -> None:
    from clicklab.alerts.package import build_zip

    print(f"Lambda zip (lambda_function.lambda_handler) -> {build_zip(args.out)}")


def _cmd_reset(args: argparse.Namespace) -> None:
    """``clicklab reset``: a lab session that starts from fresh alert state (see :mod:`clicklab.alerts.reset`)."""
    import os

    from clicklab.alerts.reset import reset, state_file

    done = reset(args.build, state_file(args.build), os.environ.get("ALERT_STATE_TABLE") or None)
    print(f"fresh alert state for {args.build}: the next alerts are sent, none counts as already sent")
    print("\n".join(done.lines()))


def _cmd_export_zeppelin(args: argparse.Namespace) -> None:
    from clicklab.zeppelin.export import ExportOptions, export_lab, export_notebooks

    options = ExportOptions(target=args.target, flink_version=args.flink_version, region=args.region,
                            account_id=args.account_id, start_position=args.start_position,
                            start_timestamp=args.start_timestamp, with_results=args.with_results,
                            dataset=args.dataset, build=args.build, params=args.params)
    out = args.out or args.build / "zeppelin"
    result = export_notebooks(args.notebook, options, out) if args.notebook else export_lab(options, out)
    for warning in result.warnings:
        log.warning("warning: %s", warning)
    print(f"{len(result.note.paragraphs)} paragraphs -> {result.path} (checked: Zeppelin loads it)")


def _cmd_import_zeppelin(args: argparse.Namespace) -> None:
    from clicklab.zeppelin.importer import import_note

    out = import_note(args.note, args.out)
    print(f"{args.note} -> {out}")


def _cmd_cluster(args: argparse.Namespace) -> None:
    """``clicklab cluster up|down|status``. ``status`` with no cluster running exits 1 (scripts can test it)."""
    import time

    from clicklab import cluster

    if args.cluster_command == "up":
        start = time.monotonic()
        info = cluster.up(args.build, taskmanagers=args.taskmanagers, slots=args.slots)
        print(info.describe())
        print(f"ready after {time.monotonic() - start:.0f} s; config {info.conf_dir / 'config.yaml'}; "
              f"logs {info.log_dir}")
        print("notebooks send their jobs here with CLICKLAB_FLINK=cluster; stop it with `clicklab cluster down`")
    elif args.cluster_command == "down":
        stopped = cluster.down(args.build)
        print(f"stopped {', '.join(stopped)}" if stopped else "no Flink cluster was running")
    else:
        print(cluster.find(args.build).describe())  # no cluster: ClicklabError, one line, exit 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clicklab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the lab's notebooks headless (papermill) and print a summary")
    run.add_argument("--dataset", type=Path, default=settings.DEFAULT_DATASET, help="replay file (JSON lines, .gz ok)")
    run.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD, help="output folder")
    run.add_argument("--only", action="append", metavar="NN", help="run only notebook NN (repeatable)")
    run.add_argument("--live", action="store_true",
                     help="the live lab: cluster, live generator, jobs running side by side, the burst and its e-mail")
    run.add_argument("--duration", type=float, default=0.0, metavar="S",
                     help="--live: keep everything running S seconds more once the e-mail is in (to look around)")
    run.add_argument("--params", choices=PARAMETER_SETS, default=None,
                     help="the forest's parameter set the notebooks score with (their forest_preset): default "
                          "(256 samples) or lab (the SQL lab's 12); default: lab live, default on a replay")
    run.add_argument("--streams", choices=settings.STREAM_BACKENDS, default=None,
                     help="where the Studio lab's streams are kept: kafka (topics on the lab's broker, started and "
                          "stopped by the run, or $CLICKLAB_KAFKA_BOOTSTRAP) or files (folders under "
                          f"build/streams/); default: $CLICKLAB_STREAMS, else {settings.DEFAULT_STREAM_BACKEND}")
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="generate a replay dataset from a scenario, or (--live) a live tickerstream",
                         description="Without --live: write the scenario's records and labels to --out. With --live: "
                         "send the scenario's normal traffic in real time into tickerstream (the topic on the lab's "
                         "Kafka broker, started if needed; with $CLICKLAB_STREAMS=files the folder "
                         "<build>/streams/tickerstream/), a batch every --flush seconds, until Ctrl-C or --duration; "
                         "`clicklab send` plays sessions into it. --live --stop stops a running one, --live "
                         "--status shows it.")
    gen.add_argument("--scenario", default="lab", help="scenario name (data/scenarios/NAME.yaml) or file")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--out", type=Path, default=None,
                     help="events file (.jsonl or .jsonl.gz); required without --live")
    gen.add_argument("--labels", type=Path, default=None, help="labels file (default: next to --out)")
    gen.add_argument("--progress", action="store_true", help="show progress and events/s")
    lv = gen.add_argument_group("live tickerstream (--live)")
    lv.add_argument("--live", action="store_true", help="send in real time into tickerstream")
    lv.add_argument("--build", type=Path, default=None, help="build folder (default: build/)")
    lv.add_argument("--backfill", default=None, metavar="TIME",
                    help="first write this much past traffic at full speed: 90, 90s, 30m, 1h (default: none)")
    lv.add_argument("--scale", type=float, default=None, help="multiply every rate (default 1)")
    lv.add_argument("--flush", type=float, default=None, metavar="S",
                    help="seconds per batch (default 0.1 into a topic, 0.5 into the folder)")
    lv.add_argument("--duration", default=None, metavar="TIME", help="stop after this long (default: until stopped)")
    lv.add_argument("--keep", default=None, metavar="TIME",
                    help="delete tickerstream files older than this (default 600 s)")
    lv.add_argument("--background", action="store_true",
                    help="run detached (log: <build>/live/generator.log) and return")
    lv.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                    help="send to the tickerstream topic of this Kafka (default: the lab's broker, or "
                         "$CLICKLAB_KAFKA_BOOTSTRAP)")
    lv.add_argument("--streams", choices=settings.STREAM_BACKENDS, default=None,
                    help="kafka: the tickerstream topic; files: <build>/streams/tickerstream/ (default: "
                         f"$CLICKLAB_STREAMS, else {settings.DEFAULT_STREAM_BACKEND})")
    lv.add_argument("--stop", action="store_true", help="stop the running live generator of --build")
    lv.add_argument("--status", action="store_true", help="show the live generator of --build")
    gen.set_defaults(func=_cmd_generate)

    from clicklab.scenario import ARRIVALS

    snd = sub.add_parser("send", help="play a KDG session into the running live generator (generate --live)",
                         description="Play one session now: --session KIND (one of the scenario's anomalies, e.g. "
                         "studio-lab-burst, sql-lab-extra-clicks) or --template JSON --rate R --duration TIME. "
                         "Prints the scheduled window; the label goes to <build>/live/labels.csv.")
    snd.add_argument("--session", metavar="KIND", default=None, help="an anomaly kind of the generator's scenario")
    snd.add_argument("--template", default=None, metavar="JSON",
                     help='record template, e.g. \'{"browseraction": "Click", "site": "https://www.mysite.com"}\'')
    snd.add_argument("--rate", type=float, default=None, help="records per second (with --template)")
    snd.add_argument("--duration", default=None, metavar="TIME", help="how long (with --template): 30, 30s, 2m")
    snd.add_argument("--arrivals", choices=ARRIVALS, default="poisson", help="with --template (default poisson)")
    snd.add_argument("--kind", default="custom", help="label kind of a --template session (default custom)")
    snd.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD, help="build folder (default: build/)")
    snd.set_defaults(func=_cmd_send)

    score = sub.add_parser("score", help="score a CSV time series with RANDOM_CUT_FOREST through Flink")
    score.add_argument("--input", type=Path, required=True, help="CSV with a time and a value column")
    score.add_argument("--output", type=Path, required=True, help="CSV: timestamp,value,anomaly_score,is_anomaly")
    score.add_argument("--timestamp-col", default="timestamp")
    score.add_argument("--value-col", default="value")
    score.add_argument("--key-col", default=None, help="score each key (e.g. site) with its own forest")
    score.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD, help="work folder")
    _scorer_options(score)
    score.set_defaults(func=_cmd_score)

    ev = sub.add_parser("evaluate", help="score labelled series (NAB's, the replay's) and report detections, false "
                        "alarms and NAB scores",
                        description="Score every CSV under --data (default: ../shared/nab's series when present) "
                        "and the replay's CTR per site in one go, then print per series the labelled windows "
                        "detected and the false alarms of both modes, and NAB's score (standard profile and the "
                        "other two) per category, for all series and for the replay: the forest's scores with "
                        "the best threshold chosen afterwards, and the adaptive and fixed decisions as shipped.")
    ev.add_argument("--data", type=Path, default=None,
                    help="folder of CSV series (timestamp,value); default: ../shared/nab/data when present")
    ev.add_argument("--labels", type=Path, default=None, help="JSON: file name -> list of [start, end]")
    ev.add_argument("--profiles", type=Path, default=None,
                    help="NAB's config/profiles.json (default: next to --labels' folder, else NAB's weights)")
    ev.add_argument("--replay", type=Path, default=settings.DEFAULT_DATASET,
                    help="replay file whose CTR per site is scored too (default: the bundled replay)")
    ev.add_argument("--replay-labels", type=Path, default=None, help="its labels (default: next to it)")
    ev.add_argument("--no-replay", dest="replay", action="store_const", const=None, help="leave the replay out")
    ev.add_argument("--in-process", action="store_true",
                    help="score in this process (the same functions, no Flink job; logs progress per series)")
    ev.add_argument("--holdout", choices=["category"], default=None,
                    help="category: also choose the decision rule's parameters leaving one category out in turn "
                         "(tuned on the others, scored on it; the forest scores each series once) and print the "
                         "held-out NAB score per category and in total, for each rule family of clicklab.holdout")
    ev.add_argument("--nab-results", type=Path, default=None, metavar="DIR",
                    help="also write NAB results files (scores, adaptive, fixed) for ../shared/nab/nab_score.py")
    ev.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD, help="work folder")
    _scorer_options(ev)
    ev.set_defaults(func=_cmd_evaluate)

    b = sub.add_parser("bench", help="measure RCF and pipeline speed and forest memory")
    b.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    b.add_argument("--quick", action="store_true", help="small sizes (checks the command, not the machine)")
    b.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD, help="work folder")
    b.add_argument("--live", action="store_true",
                   help="the live lab on the cluster: sustained events/s, latency to the anomaly row and the e-mail")
    b.add_argument("--kafka", action="store_true",
                   help="the replay pipeline through Kafka topics next to its baseline, and the broker's own rates; "
                        "with --live: the live lab on topics")
    b.add_argument("--duration", type=float, default=240.0, metavar="S", help="--live: seconds of live traffic")
    b.add_argument("--scale", type=float, default=1200.0,
                   help="--live: times the lab scenario's rates (1200: about 20,000 events/s)")
    b.add_argument("--sites", type=int, default=None, metavar="N",
                   help="only the keyed scorer on the cluster, N sites (default 10,000), at parallelism 1 and P")
    b.add_argument("--parallelism", type=int, default=None, metavar="P", help="--sites: the highest parallelism (2)")
    b.add_argument("--windows", type=int, default=300, metavar="W", help="--sites: 10-second windows per site")
    b.add_argument("--python-route", action="store_true",
                   help="only the state cost of the Python route to keyed state (a PyFlink KeyedProcessFunction)")
    b.set_defaults(func=_cmd_bench)

    from clicklab.javaudf import JAVA_UDF_JAR

    jar = sub.add_parser("udf-jar", help="build the Java RANDOM_CUT_FOREST jar (for Studio; needs a JDK)")
    jar.add_argument("--out", type=Path, default=JAVA_UDF_JAR,
                     help="jar to write (build/udf/clickstream-rcf-udf.jar)")
    jar.add_argument("--force", action="store_true", help="rebuild even if the jar is current")
    jar.set_defaults(func=_cmd_udf_jar)

    alerts = sub.add_parser("alerts", help="the alert Lambda (see README, Alerts)")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    pkg = alerts_sub.add_parser("package", help="build the Lambda deployment zip (lambda_function.py)")
    pkg.add_argument("--out", type=Path, default=settings.DEFAULT_BUILD / "lambda.zip", help="zip to write")
    pkg.set_defaults(func=_cmd_alerts_package)

    rs = sub.add_parser("reset", help="fresh alert state for a lab session: remove the alert state, the alert "
                        "report and the received e-mails (keeps the streams, the replay and the rest)",
                        description="Remove what the alert step keeps between runs, so that the class's own "
                        "bursts are sent and not 'already sent' by a rehearsal: <build>/alerts/state.json (or "
                        "$ALERT_STATE_FILE), <build>/alerts/report.json and <build>/outbox/*.eml. It prints "
                        "what it removed and what it kept; a DynamoDB table on AWS is never touched.")
    rs.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD, help="build folder (build/)")
    rs.set_defaults(func=_cmd_reset)

    from clicklab.streams import KINESIS_FLINK_VERSIONS

    ez = sub.add_parser("export-zeppelin", help="write the notebooks as one Zeppelin note (.zpln) for Studio")
    ez.add_argument("--target", choices=["studio", "local"], default="studio",
                    help="studio: Kinesis tables and the Java UDF jar; local: filesystem tables (self-hosted Zeppelin)")
    ez.add_argument("--flink-version", choices=KINESIS_FLINK_VERSIONS, default="1.15",
                    help="Kinesis connector option names of this Flink version (Studio: 1.15)")
    ez.add_argument("--region", default="us-east-1", help="AWS region of the Kinesis streams")
    ez.add_argument("--account-id", default=None, help="AWS account id (Flink 1.19+: the streams' ARNs)")
    # clicklab.zeppelin.export.START_POSITIONS (not imported here: it takes a second; a test checks they agree)
    ez.add_argument("--start-position", choices=("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"), default="TRIM_HORIZON",
                    help="where the Kinesis tables start reading (default TRIM_HORIZON: the traffic sent before the "
                    "paragraphs run)")
    ez.add_argument("--start-timestamp", default=None, metavar="TIME",
                    help="with --start-position AT_TIMESTAMP: ISO-8601 (2024-05-01T12:00:00Z) or epoch seconds")
    ez.add_argument("--params", choices=PARAMETER_SETS, default=None,
                    help="the forest's parameter set the note gives RANDOM_CUT_FOREST: lab (the SQL lab's 100, 12, "
                    "100000, 1: scores after 40 s; the default for --target studio) or default (256 samples); "
                    "--target local writes none unless given")
    ez.add_argument("--with-results", action="store_true", help="include the last outputs (build/executed/)")
    ez.add_argument("--notebook", type=Path, action="append", help="export these notebooks (default: the lab's)")
    ez.add_argument("--out", type=Path, default=None, help="folder (default: <build>/zeppelin/)")
    ez.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD, help="build folder (executed notebooks)")
    ez.add_argument("--dataset", type=Path, default=settings.DEFAULT_DATASET, help="replay file (--target local)")
    ez.set_defaults(func=_cmd_export_zeppelin)

    iz = sub.add_parser("import-zeppelin", help="write a Zeppelin note (.zpln or note.json) as a notebook")
    iz.add_argument("note", type=Path, help="NOTE.zpln or note.json")
    iz.add_argument("--out", type=Path, default=settings.DEFAULT_BUILD / "imported", help="folder for the .ipynb")
    iz.set_defaults(func=_cmd_import_zeppelin)

    cl = sub.add_parser("cluster", help="a Flink standalone cluster on this machine for the notebooks' live jobs")
    cl_sub = cl.add_subparsers(dest="cluster_command", required=True)
    cl_up = cl_sub.add_parser("up", help="start it (one JobManager, TaskManagers; 127.0.0.1 only) and print its web UI")
    cl_up.add_argument("--taskmanagers", type=int, default=2, help="TaskManager processes (2)")
    cl_up.add_argument("--slots", type=int, default=4, help="task slots per TaskManager (4)")
    cl_down = cl_sub.add_parser("down", help="stop it; no process or port is left")
    cl_status = cl_sub.add_parser("status", help="web UI, task managers, slots, jobs (exit 1 if none is running)")
    for c in (cl_up, cl_down, cl_status):
        c.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD,
                       help="build folder: config, logs and pid files in <build>/flink/")
    cl.set_defaults(func=_cmd_cluster)
    kafka_cli.add_parser(sub)
    return p


def configure_logging(level: int = logging.INFO) -> None:
    """Progress and log lines of the ``clicklab`` loggers go to stderr, as plain messages."""
    logger = logging.getLogger("clicklab")
    if not any(getattr(h, "clicklab_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.clicklab_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging()
    try:
        args.func(args)
    except ClicklabError as exc:
        print(f"clicklab {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"clicklab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
