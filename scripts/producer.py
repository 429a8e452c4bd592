"""Send clickstream traffic to a Kinesis data stream, as the lab's Kinesis Data Generator (KDG) does.

    .venv/bin/python scripts/producer.py --scenario lab [--speed 1] [--duration 600] [--stream tickerstream]
    .venv/bin/python scripts/producer.py --template '{"browseraction":"{{random.weightedArrayElement(
        {"weights":[0.9,0.1],"data":["Impression","Click"]})}}", "site": "https://www.mysite.com"}' --rate 10
    common: [--region us-east-1] [--endpoint-url http://127.0.0.1:5000] [--max-records N]

A scenario (``data/scenarios/NAME.yaml``, see :mod:`clicklab.scenario`) is played with its own timing: each
record is sent when its offset from the scenario's start comes, divided by ``--speed`` (``0``: as fast as
possible); records are the generator's (template fields and ``event_time``). A KDG template is rendered once
per record at ``--rate`` records per second; its ``{{...}}`` helpers are KDG's (faker.js):
``random.weightedArrayElement``, ``random.arrayElement``, ``random.number``, ``random.boolean``,
``random.uuid``, ``date.now``. Records go out with ``put_records`` in batches of at most 500 records and 5 MiB,
partitioned by ``site``; the records a batch reports as failed (throttling) are sent again with backoff.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import botocore.exceptions

from scripts.awslab import DEFAULT_REGION, Aws, AwsLabError, error_text, run_main

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 2**20
MAX_RECORD_BYTES = 2**20
DEFAULT_STREAM = "tickerstream"


# ---------------------------------------------------------------------------------------------
# KDG record templates


class TemplateError(AwsLabError):
    """A KDG template that cannot be rendered: the message names the helper and its position."""


def _weighted(args: Any) -> Any:
    if not isinstance(args, dict) or not isinstance(args.get("data"), list) or not args["data"]:
        raise ValueError('expects {"weights": [...], "data": [...]}')
    weights = args.get("weights") or [1] * len(args["data"])
    if len(weights) != len(args["data"]):
        raise ValueError(f"{len(weights)} weights for {len(args['data'])} data values")
    return random.choices(args["data"], weights=weights)[0]


def _array(args: Any) -> Any:
    if not isinstance(args, list) or not args:
        raise ValueError("expects a non-empty array")
    return random.choice(args)


def _number(args: Any = None) -> Any:
    if args is None:
        return random.randint(0, 99999)
    if isinstance(args, int | float) and not isinstance(args, bool):
        return random.randint(0, int(args))
    if isinstance(args, dict):
        low, high = args.get("min", 0), args.get("max", 99999)
        precision = args.get("precision", 1)
        if precision == 1 and isinstance(low, int) and isinstance(high, int):
            return random.randint(low, high)
        value = random.uniform(low, high)
        return round(round(value / precision) * precision, 10)
    raise ValueError("expects a maximum or {min, max, precision}")


def _now(args: Any = None) -> str:
    now = datetime.now(UTC)
    if args in (None, "x"):
        return str(int(now.timestamp() * 1000)) if args == "x" else now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    raise ValueError('expects no argument (ISO-8601 UTC) or "x" (epoch milliseconds)')


HELPERS: dict[str, Callable[..., Any]] = {
    "random.weightedArrayElement": _weighted,
    "random.arrayElement": _array,
    "random.number": _number,
    "random.boolean": lambda args=None: random.choice(["true", "false"]),
    "random.uuid": lambda args=None: str(uuid.uuid4()),
    "date.now": _now,
}
_HELPER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*")


def _balanced(text: str, start: int) -> int:
    """The index just after the ``)`` that closes the ``(`` at ``start``, skipping JSON strings."""
    depth, i, quote = 0, start, False
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unclosed '('")


@dataclass(frozen=True)
class Template:
    """A KDG record template: text with ``{{helper(json args)}}`` parts, parsed once, rendered per record."""

    text: str
    parts: tuple[str | tuple[str, Any, bool], ...] = field(default=(), repr=False)

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[str | tuple[str, Any, bool]] = []
        pos = 0
        for m in _HELPER.finditer(text):
            if m.start() < pos:
                continue
            name, at = m.group(1), m.end()
            where = f"template, character {m.start() + 1}: {{{{{name}...}}}}"
            if name not in HELPERS:
                raise TemplateError(f"{where}: unknown helper {name!r} (known: {', '.join(HELPERS)})")
            has_args, args = False, None
            if at < len(text) and text[at] == "(":
                try:
                    end = _balanced(text, at)
                except ValueError as exc:
                    raise TemplateError(f"{where}: {exc}") from None
                raw = text[at + 1:end - 1].strip()
                if raw:
                    try:
                        args = json.loads(raw)
                    except json.JSONDecodeError as exc:
                        raise TemplateError(f"{where}: its argument is not JSON: {exc}") from None
                    has_args = True
                at = end
            close = re.compile(r"\s*\}\}").match(text, at)
            if not close:
                raise TemplateError(f"{where}: no closing '}}}}'")
            try:
                HELPERS[name](args) if has_args else HELPERS[name]()  # check the arguments once
            except ValueError as exc:
                raise TemplateError(f"{where}: {exc}") from None
            parts += [text[pos:m.start()], (name, args, has_args)]
            pos = close.end()
        parts.append(text[pos:])
        template = cls(text, tuple(parts))
        try:
            json.loads(template.render())
        except json.JSONDecodeError as exc:
            raise TemplateError(f"template renders to text that is not JSON ({exc}): {template.render()!r}") from None
        return template

    def render(self) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                name, args, has_args = part
                value = HELPERS[name](args) if has_args else HELPERS[name]()
                out.append(value if isinstance(value, str) else json.dumps(value))
        return "".join(out)


# ---------------------------------------------------------------------------------------------
# what to send, and when


@dataclass(frozen=True)
class Record:
    due_s: float  # seconds after the start of sending
    data: bytes
    partition_key: str


def _key(data: bytes) -> str:
    try:
        site = json.loads(data).get("site")
    except (ValueError, AttributeError):
        site = None
    return site if isinstance(site, str) and site else uuid.uuid4().hex


def scenario_records(name: str, seed: int = 42, speed: float = 1.0, duration_s: float | None = None
                     ) -> Iterator[Record]:
    """The scenario's records (as ``clicklab generate`` writes them) in time order, due at offset / ``speed``."""
    from clicklab import generator
    from clicklab.scenario import load_scenario

    scenario = load_scenario(name)
    start = scenario.start_time
    for _, data, _ in generator._iter_windows(scenario, seed):
        for line in data.splitlines():
            offset = (datetime.fromisoformat(json.loads(line)["event_time"]) - start).total_seconds()
            if duration_s is not None and offset >= duration_s:
                return
            yield Record(offset / speed if speed > 0 else 0.0, line, _key(line))


def template_records(template: Template, rate: float, count: int | None = None, duration_s: float | None = None
                     ) -> Iterator[Record]:
    """``template`` rendered at ``rate`` records per second, for ``count`` records or ``duration_s`` seconds."""
    if rate <= 0:
        raise AwsLabError(f"--rate {rate}: must be more than 0")
    i = 0
    while (count is None or i < count) and (duration_s is None or i / rate < duration_s):
        data = template.render().encode()
        yield Record(i / rate, data, _key(data))
        i += 1


# ---------------------------------------------------------------------------------------------
# sending


@dataclass
class SendResult:
    stream: str
    records: int = 0
    batches: int = 0
    retried: int = 0
    seconds: float = 0.0
    sent: list[bytes] = field(default_factory=list, repr=False)

    def line(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else float("inf")
        return (f"{self.records} records to {self.stream} in {self.batches} put_records calls, {self.retried} "
                f"sent again after a failure, {self.seconds:.1f} s ({rate:,.0f} records/s)")


class Producer:
    """``put_records`` in batches (<= 500 records, <= 5 MiB); failed records retried with exponential backoff."""

    def __init__(self, client: Any, stream: str, max_attempts: int = 8, backoff_s: float = 0.1,
                 keep: bool = False, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client, self.stream, self.max_attempts, self.backoff_s = client, stream, max_attempts, backoff_s
        self.sleep = sleep
        self.result = SendResult(stream)
        self.keep = keep  # keep what was sent in result.sent (tests compare it with the stream)

    def put(self, batch: list[Record]) -> None:
        pending = [{"Data": r.data, "PartitionKey": r.partition_key[:256]} for r in batch]
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.put_records(StreamName=self.stream, Records=pending)
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ResourceNotFoundException":
                    raise AwsLabError(f"Kinesis stream {self.stream!r} does not exist (deploy the stack first: "
                                      "scripts/deploy.py)") from None
                if code not in ("ProvisionedThroughputExceededException", "ThrottlingException",
                                "LimitExceededException", "InternalFailure", "ServiceUnavailable"):
                    raise AwsLabError(f"put_records to {self.stream}: {error_text(exc)}") from None
                failed = pending
            else:
                self.result.batches += 1
                failed = [rec for rec, res in zip(pending, response["Records"], strict=True) if res.get("ErrorCode")]
                if self.keep:
                    self.result.sent += [rec["Data"] for rec, res in zip(pending, response["Records"], strict=True)
                                         if not res.get("ErrorCode")]
                self.result.records += len(pending) - len(failed)
            if not failed:
                return
            if attempt == self.max_attempts:
                break
            self.result.retried += len(failed)
            pending = failed
            self.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random() / 2))
        raise AwsLabError(f"put_records to {self.stream}: {len(failed)} records still failing after "
                          f"{self.max_attempts} attempts")

    def send(self, records: Iterable[Record], max_records: int | None = None,
             clock: Callable[[], float] = time.monotonic) -> SendResult:
        """Send each record at its due time (records due together share a batch)."""
        start = clock()
        batch: list[Record] = []
        size = 0
        for n, record in enumerate(records):
            if max_records is not None and n >= max_records:
                break
            if len(record.data) > MAX_RECORD_BYTES:
                raise AwsLabError(f"record {n + 1} is {len(record.data)} bytes: Kinesis takes at most 1 MiB")
            wait = record.due_s - (clock() - start)
            if wait > 0:
                if batch:
                    self.put(batch)
                    batch, size = [], 0
                    wait = record.due_s - (clock() - start)
                if wait > 0:
                    self.sleep(wait)
            if len(batch) == MAX_BATCH_RECORDS or size + len(record.data) + len(record.partition_key) > MAX_BATCH_BYTES:
                self.put(batch)
                batch, size = [], 0
            batch.append(record)
            size += len(record.data) + len(record.partition_key)
        if batch:
            self.put(batch)
        self.result.seconds = clock() - start
        return self.result


def produce(stream: str = DEFAULT_STREAM, scenario: str | None = None, template: str | None = None,
            rate: float = 10.0, speed: float = 1.0, duration_s: float | None = None, max_records: int | None = None,
            seed: int = 42, region: str = DEFAULT_REGION, endpoint_url: str | None = None,
            keep: bool = False) -> SendResult:
    """Send a scenario or a KDG template to ``stream``; :class:`AwsLabError` names what failed."""
    if (scenario is None) == (template is None):
        raise AwsLabError("give either a scenario (--scenario) or a KDG template (--template)")
    if template is not None:
        records = template_records(Template.parse(template), rate, max_records, duration_s)
    else:
        if speed < 0:
            raise AwsLabError(f"--speed {speed}: must be 0 (as fast as possible) or more")
        records = scenario_records(scenario, seed, speed, duration_s)  # type: ignore[arg-type]
    producer = Producer(Aws(region, endpoint_url).client("kinesis"), stream, keep=keep)
    return producer.send(records, max_records)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--scenario", help="scenario name (data/scenarios/NAME.yaml) or file")
    what.add_argument("--template", help="KDG record template (JSON text with {{...}} helpers)")
    p.add_argument("--stream", default=DEFAULT_STREAM, help=f"Kinesis stream (default {DEFAULT_STREAM})")
    p.add_argument("--rate", type=float, default=10.0, help="--template: records per second (default 10)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="--scenario: times real time (default 1; 0: as fast as possible)")
    p.add_argument("--seed", type=int, default=42, help="--scenario: random seed (default 42, the bundled replay's)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (--scenario: of scenario time; --template: of sending)")
    p.add_argument("--max-records", type=int, default=None, help="stop after this many records")
    p.add_argument("--region", default=DEFAULT_REGION, help=f"AWS region (default {DEFAULT_REGION})")
    p.add_argument("--endpoint-url", default=None, help="another AWS-compatible endpoint, e.g. a local moto server")
    args = p.parse_args(argv)
    result = run_main("producer", lambda: produce(
        args.stream, args.scenario, args.template, args.rate, args.speed, args.duration, args.max_records,
        args.seed, args.region, args.endpoint_url))
    if isinstance(result, int):
        return result
    print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
