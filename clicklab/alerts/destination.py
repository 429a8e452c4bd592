"""Connect the handler as the destination of anomalydetectionstream, locally or against a real account.

:func:`events` turns the stream's rows into Kinesis Data Analytics' Lambda-destination events and :func:`follow`
feeds the stream to the handler as it grows (both from :mod:`clicklab.alerts.feed`).
:func:`open_destination` gives the handler its channels and state: with ``ALERT_TOPIC_ARN`` or
``ALERT_SMTP_HOST`` set, from the environment exactly as deployed on Lambda; otherwise the local default
(moto's server with an SNS topic that has an e-mail and an SMS subscription, and an SMTP server writing
``.eml`` files, both running in this process: see :mod:`clicklab.alerts.local`), with dummy credentials
given to boto3 explicitly, never put into ``os.environ``.

One destination is open per build folder and process: opening another for the same build (running the
notebook's cell again) closes the earlier one first, so its servers do not linger beside the new ones.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import settings
from clicklab.alerts import bursts, handler, local, reset

# the notebooks call these from here: ``destination.events``, ``destination.follow``
from clicklab.alerts.feed import APPLICATION_ARN as APPLICATION_ARN
from clicklab.alerts.feed import Followed as Followed
from clicklab.alerts.feed import events
from clicklab.alerts.feed import follow as follow
from clicklab.exceptions import ClicklabError

#: What the local default creates in moto.
TOPIC_NAME = "clickstream-anomaly-alerts"
EMAIL_ENDPOINT = "lab-user@example.com"
SMS_ENDPOINT = "+15555550100"
SMTP_FROM = "clicklab-alerts@example.com"
HOW_TO_USE_AWS = ("To send through a real account instead, set ALERT_TOPIC_ARN (and AWS credentials, or "
                  "AWS_ENDPOINT_URL for another endpoint) or ALERT_SMTP_HOST/ALERT_SMTP_TO: see README, Alerts.")

@dataclass
class Destination:
    """The handler with its channels and state, and (locally) the servers it talks to."""

    config: handler.Config
    channels: list[Any]
    state: Any
    local: local.LocalServices | None = None
    description: str = ""
    topic_arn: str | None = None
    outbox: Path | None = None
    build: Path | None = None  # the build folder it was opened for (resolved): the key of :data:`_OPEN`
    opened: list[str] = field(default_factory=list)  # what opening it did first: closed, removed (in words)
    outcomes: list[handler.Outcome] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _seen_messages: set[str] = field(default_factory=set)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Call the handler with one event, as Kinesis Data Analytics would; keep what happened."""
        response, outcomes = handler.process(event, self.config, self.channels, self.state)
        self.responses.append(response)
        self.outcomes += outcomes
        return response

    def table(self) -> pd.DataFrame:
        """One row per record and channel: site, window, CTR, score, outcome, folded, detail."""
        cols = ["record_id", "channel", "outcome", "site", "window_start", "ctr", "score", "folded", "detail"]
        return pd.DataFrame([o.as_dict() for o in self.outcomes], columns=cols)

    def emails(self) -> list[Path]:
        """The ``.eml`` files the local SMTP server received since this destination opened."""
        if self.outbox is None or not self.outbox.is_dir():
            return []
        return sorted(p for p in self.outbox.glob("*.eml") if p.name not in self._seen)

    def sns_deliveries(self) -> pd.DataFrame:
        """What the local SNS delivered to each subscription of the topic since this destination opened.

        Read from moto's own API. moto keeps its data per process, not per server: messages published
        before (by an earlier destination in the same kernel) are left out, as :meth:`emails` does.
        """
        if self.local is None or self.local.moto is None or self.topic_arn is None:
            return pd.DataFrame(columns=["message_id", "protocol", "endpoint", "subject", "text"])
        got = sns_deliveries(self.local.moto.url, self.topic_arn)
        return got[~got["message_id"].isin(self._seen_messages)].reset_index(drop=True)

    def close(self) -> None:
        """Stop the local servers, if this destination started them, and check their ports are free."""
        if self.build is not None and _OPEN.get(self.build) is self:
            del _OPEN[self.build]
        if self.local is not None:
            self.local.stop()

    def __enter__(self) -> Destination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sns_deliveries(moto_url: str, topic_arn: str) -> pd.DataFrame:
    """Each message published to the topic, as each subscription gets it (moto's ``/moto-api/data.json``).

    Messages are published with ``MessageStructure=json``: SNS gives an e-mail subscription the
    ``email`` text and an SMS subscription the ``sms`` text (``default`` otherwise).
    """
    with urllib.request.urlopen(f"{moto_url}/moto-api/data.json", timeout=10) as resp:
        data = json.load(resp)
    sns = data.get("sns", {})
    subs = [s for s in sns.get("Subscription", []) if s.get("topic_arn") == topic_arn]
    rows = []
    for topic in sns.get("Topic", []):
        if topic.get("arn") != topic_arn:
            continue
        for message_id, message, subject, _attrs, _group in topic.get("sent_notifications", []):
            try:
                texts = json.loads(message)
            except json.JSONDecodeError:
                texts = {"default": message}
            if not isinstance(texts, dict):
                texts = {"default": message}
            for sub in subs:
                protocol = sub.get("protocol")
                rows.append({"message_id": message_id, "protocol": protocol, "endpoint": sub.get("endpoint"),
                             "subject": subject if protocol == "email" else None,
                             "text": texts.get(protocol, texts.get("default", ""))})
    return pd.DataFrame(rows, columns=["message_id", "protocol", "endpoint", "subject", "text"])


def configured(env: dict[str, str] | None = None) -> bool:
    """True when the environment names a real destination (a topic or an SMTP server)."""
    env = dict(os.environ if env is None else env)
    return bool(env.get("ALERT_TOPIC_ARN") or env.get("ALERT_SMTP_HOST"))


#: The destination open for each build folder (resolved) in this process: see :func:`open_destination`.
_OPEN: dict[Path, Destination] = {}


def open_destination(build: Path = settings.DEFAULT_BUILD, env: dict[str, str] | None = None,
                     cooldown_s: int | None = None, state_table: str | None = None, fresh_state: bool = False,
                     live: bool = False) -> Destination:
    """The destination the environment describes, or the local default (it starts the local servers).

    ``state_table`` (or ``ALERT_STATE_TABLE``) keeps the state in DynamoDB; locally the table is created
    in moto. Otherwise the state is ``<build>/alerts/state.json``. Close the destination (or use it as a
    context manager) to stop what it started.

    A destination still open for the same build in this process is closed first (servers stopped, ports checked
    free). ``fresh_state``: start from fresh alert state (:func:`clicklab.alerts.reset.reset`; the local default's
    DynamoDB table is emptied too). ``live``: a session of the live generator opens a new cooldown period for its
    site (:mod:`clicklab.alerts.bursts`). :attr:`Destination.opened` says what was closed, removed and kept.
    """
    build = Path(build).resolve()
    opened = _close_earlier(build)
    env = dict(os.environ if env is None else env)
    if state_table:
        env["ALERT_STATE_TABLE"] = state_table
    env.setdefault("ALERT_STATE_FILE", str(build / "alerts" / "state.json"))
    env.setdefault("ALERT_WINDOW_SECONDS", str(settings.WINDOW_SECONDS))
    if cooldown_s is not None:
        env["ALERT_COOLDOWN_SECONDS"] = str(cooldown_s)
    try:
        config = handler.Config.from_env(env)
    except ValueError as exc:
        raise ClicklabError(f"alert configuration: {exc}") from None
    if fresh_state:
        table = config.state_table if configured(env) else None  # the local default's is emptied below
        opened += reset.reset(build, Path(config.state_file), table).lines()
    if configured(env):
        try:
            channels = handler.build_channels(config)
            state = handler.build_state(config)
        except ValueError as exc:
            raise ClicklabError(f"alert configuration: {exc}") from None
        where = ", ".join(f"{c.name}" for c in channels)
        dest = Destination(config, channels, state, description=f"configured from the environment: {where}",
                           topic_arn=config.topic_arn)
    else:
        services = local.LocalServices(build).start()
        try:
            dest = _local_destination(build, config, services, fresh_state)
        except BaseException:
            services.stop()
            raise
    if live and config.cooldown_s:
        dest.state = bursts.BurstCooldown(dest.state, build, config.cooldown_s, config.window_s)
    dest.build, dest.opened = build, opened + dest.opened
    _OPEN[build] = dest
    return dest


def _close_earlier(build: Path) -> list[str]:
    """Close the destination still open for ``build`` in this process; say what was stopped."""
    earlier = _OPEN.pop(build, None)
    if earlier is None:
        return []
    ports = earlier.local.ports() if earlier.local is not None else {}
    earlier.close()  # a port that stays bound is a ClicklabError naming it
    where = ", ".join(f"{name} on {local.HOST}:{port}" for name, port in ports.items())
    return [f"closed the destination opened before for {build}: " + (
        f"stopped its servers ({where}); nothing listens there any more" if ports else earlier.description)]


def _local_destination(build: Path, config: handler.Config, services: local.LocalServices,
                       fresh_state: bool = False) -> Destination:
    assert services.moto is not None and services.smtp is not None
    session = services.session()

    def client(name: str) -> Any:
        return session.client(name, endpoint_url=services.moto.url, config=handler.client_config())

    sns = client("sns")
    topic_arn = sns.create_topic(Name=TOPIC_NAME)["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=EMAIL_ENDPOINT)
    sns.subscribe(TopicArn=topic_arn, Protocol="sms", Endpoint=SMS_ENDPOINT)
    config.topic_arn = topic_arn
    config.smtp_host, config.smtp_port = local.HOST, services.smtp.port
    config.smtp_from, config.smtp_to = SMTP_FROM, [EMAIL_ENDPOINT]
    channels = [handler.SnsChannel(topic_arn, sns),
                handler.SmtpChannel(config.smtp_host, config.smtp_port, config.smtp_from, config.smtp_to)]
    emptied: list[str] = []
    if config.state_table:
        ddb = client("dynamodb")
        if fresh_state and _delete_table(ddb, config.state_table):  # moto keeps its tables per process
            emptied.append(f"emptied DynamoDB table {config.state_table} in moto: the alert state starts fresh")
        create_state_table(ddb, config.state_table)
        state: Any = handler.DynamoState(config.state_table, ddb, config.max_attempts, config.backoff_s)
        kept = f"DynamoDB table {config.state_table} in moto"
    else:
        state = handler.FileState(config.state_file)
        kept = f"state in {config.state_file}"
    description = (f"local default: moto server at {services.moto.url} (SNS topic {TOPIC_NAME}, e-mail and SMS "
                   f"subscriptions), SMTP server on {local.HOST}:{services.smtp.port} writing to "
                   f"{services.outbox}; {kept}")
    dest = Destination(config, channels, state, services, description, topic_arn, services.outbox, opened=emptied)
    dest._seen = {p.name for p in services.outbox.glob("*.eml")}
    dest._seen_messages = set(sns_deliveries(services.moto.url, topic_arn)["message_id"])
    return dest


_RECORDED_PORTS = {"moto": re.compile(r"moto[ _]server at http://[\d.]+:(\d+)"),  # moto_server: older reports
                   "smtp": re.compile(r"SMTP server on [\d.]+:(\d+)")}


def recorded_ports(description: str) -> dict[str, int]:
    """The local servers' ports in a destination's description (as the report of notebook 11 keeps it).

    >>> recorded_ports("local default: moto server at http://127.0.0.1:5001 (...), SMTP server on 127.0.0.1:2525")
    {'moto': 5001, 'smtp': 2525}
    >>> recorded_ports("configured from the environment: sns")
    {}
    """
    found = {name: pattern.search(description) for name, pattern in _RECORDED_PORTS.items()}
    return {name: int(m.group(1)) for name, m in found.items() if m}


def _delete_table(ddb: Any, name: str) -> bool:
    """Delete a table of the local moto server, if it is there; True if it was."""
    try:
        ddb.delete_table(TableName=name)
    except ddb.exceptions.ResourceNotFoundException:
        return False
    ddb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return True


def create_state_table(ddb: Any, name: str) -> None:
    """The state table the handler expects: partition key ``pk`` (string), on demand."""
    try:
        ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
    except ddb.exceptions.ResourceInUseException:
        return
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})


def send(anomalies: pd.DataFrame, destination: Destination, batch_size: int = 100) -> Iterator[dict[str, Any]]:
    """Invoke the handler on every batch of anomalies; yield each response."""
    for event in events(anomalies, batch_size):
        yield destination.invoke(event)


def email_for(destination: Destination, session: Any) -> Any:
    """A condition for :func:`follow`: an alert for the session's site and windows was sent (and, with the
    local SMTP server, its e-mail is in the outbox). ``session`` has ``site``, ``start``, ``end``."""

    def sent() -> bool:
        if session is None:
            return False
        lo = session.start - timedelta(seconds=settings.WINDOW_SECONDS)
        ours = [o for o in destination.outcomes if o.outcome == handler.SENT and o.site == session.site
                and lo < handler.parse_time(o.window_start) < session.end]
        return bool(ours) and (destination.outbox is None or bool(destination.emails()))

    return sent
