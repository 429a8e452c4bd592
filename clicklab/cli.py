"""``clicklab``: the one command line of the lab. Thin: each subcommand calls the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clicklab import settings
from clicklab.exceptions import ClicklabError


def _cmd_run(args: argparse.Namespace) -> None:
    from clicklab import flink, runner

    flink.check_java()
    report = runner.run(dataset=args.dataset, build=args.build, only=args.only)
    print(f"\n{len(report.executed)} notebooks executed in {report.seconds:.0f} s into {args.build / 'executed'}")
    print(runner.summary(args.dataset, args.build))


def _cmd_generate(args: argparse.Namespace) -> None:
    from clicklab.generator import generate
    from clicklab.scenario import load_scenario

    scenario = load_scenario(args.scenario)

    def progress(events: int, seconds: float, fraction: float) -> None:
        rate = events / seconds if seconds > 0 else 0.0
        print(f"\r{fraction:6.1%}  {events:,} events  {rate:,.0f} events/s", end="", file=sys.stderr, flush=True)

    result = generate(scenario, args.seed, args.out, labels_path=args.labels,
                      progress=progress if args.progress else None)
    if args.progress:
        print(file=sys.stderr)
    rate = f"{result.events_per_s:,.0f} events/s"
    print(f"{result.events:,} events in {result.seconds:.1f} s ({rate}) -> {result.out_path}")
    print(f"labels -> {result.labels_path}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clicklab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the lab's notebooks headless (papermill) and print a summary")
    run.add_argument("--dataset", type=Path, default=settings.DEFAULT_DATASET, help="replay file (JSON lines, .gz ok)")
    run.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD, help="output folder")
    run.add_argument("--only", action="append", metavar="NN", help="run only notebook NN (repeatable)")
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="generate a replay dataset from a scenario")
    gen.add_argument("--scenario", default="lab", help="scenario name (data/scenarios/NAME.yaml) or file")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--out", type=Path, required=True, help="events file (.jsonl or .jsonl.gz)")
    gen.add_argument("--labels", type=Path, default=None, help="labels file (default: next to --out)")
    gen.add_argument("--progress", action="store_true", help="show progress and events/s")
    gen.set_defaults(func=_cmd_generate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except ClicklabError as exc:
        print(f"clicklab {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"clicklab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
