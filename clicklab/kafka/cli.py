"""``clicklab kafka up|down|status|jars``: the lab's Kafka broker from the command line (a thin layer over
:mod:`clicklab.kafka.broker`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from clicklab import settings
from clicklab.exceptions import ClicklabError
from clicklab.kafka import broker, jars


def run(args: argparse.Namespace) -> None:
    """``status`` with no broker running exits 1 (scripts can test it)."""
    if args.kafka_command == "jars":
        found = jars.resolve(args.build, quiet=False)
        print(f"broker: {found.broker}\nFlink connector: {found.connector()}")
    elif args.kafka_command == "up":
        info = broker.up(args.build)
        print(f"Kafka broker on {info.bootstrap} (pid {info.pid}; KRaft, data in {info.root / 'data'}); "
              "stop it with `clicklab kafka down`")
    elif args.kafka_command == "down":
        stopped = broker.down(args.build)
        print(f"stopped {', '.join(stopped)}; no process, port or lock left" if stopped
              else "no Kafka broker was running")
    else:
        info = broker.status(args.build)
        if info is None:
            raise ClicklabError(f"no Kafka broker is running for {args.build} (`clicklab kafka up` starts one)")
        print(f"Kafka broker on {info.bootstrap} (pid {info.pid}), data in {info.root / 'data'}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    kafka = sub.add_parser("kafka", help="a single-node Kafka broker (KRaft) on 127.0.0.1 for the lab's streams")
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True)
    commands = [
        kafka_sub.add_parser("up", help="start it (jars from Maven Central on first use) and print its address"),
        kafka_sub.add_parser("down", help="stop it; no process, port or lock is left (the topics are kept)"),
        kafka_sub.add_parser("status", help="its address and pid (exit 1 if none is running)"),
        kafka_sub.add_parser("jars", help="resolve Kafka's and the Flink connector's jars with Maven"),
    ]
    for c in commands:
        c.add_argument("--build", type=Path, default=settings.DEFAULT_BUILD,
                       help="build folder: jars, config, data and logs in <build>/kafka/")
    kafka.set_defaults(func=run)
