"""The alert step against a real local moto server and SMTP server (threads of this process, stopped after).

Failures are real too: a small HTTP proxy in front of moto answers SNS Publish calls with throttling or
5xx errors, or drops the connection after killing moto mid-batch (the ``moto_server`` command, in its own
process: the one server here that a test kills).

Tests that start a server carry the ``server`` marker; the others (message text, configuration, the
events) need none, and the autouse guard below makes sure they start none.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email
import email.policy
import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicklab import settings
from clicklab.alerts import cleanup, destination, handler, kinesis, local, package, report
from clicklab.exceptions import ClicklabError

MYSITE = "https://www.mysite.com"
SHOP = "https://shop.example.com"
server = pytest.mark.server


# ---------------------------------------------------------------------------------------------
# fixtures: one moto and one SMTP server for the module; a topic, state and outbox per test


@pytest.fixture(autouse=True)
def _servers_only_where_marked(request, monkeypatch):
    """A test without the ``server`` marker may not start moto or the SMTP server (``make test-fast``)."""
    if request.node.get_closest_marker("server") is not None:
        return
    assert "services" not in request.fixturenames, f"{request.node.name} uses the servers: mark it server"

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError(f"{request.node.name} starts a local server: mark it server")

    monkeypatch.setattr(local, "start_moto", refuse)
    monkeypatch.setattr(local, "start_smtp", refuse)


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Iterator[local.LocalServices]:
    build = tmp_path_factory.mktemp("alerts-build")
    with local.LocalServices(build) as svc:
        yield svc
    assert not local.port_open(svc.moto.port) and not local.port_open(svc.smtp.port)


@pytest.fixture
def aws(services) -> Callable[[str], Any]:
    session = services.session()
    return lambda name, url=None: session.client(name, endpoint_url=url or services.moto.url,
                                                 config=handler.client_config())


@pytest.fixture
def topic(aws) -> str:
    sns = aws("sns")
    arn = sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol="email", Endpoint="lab-user@example.com")
    sns.subscribe(TopicArn=arn, Protocol="sms", Endpoint="+15555550100")
    return arn


def config(tmp_path: Path, **kw: Any) -> handler.Config:
    base = {"state_file": str(tmp_path / "state.json"), "max_attempts": 3, "backoff_s": 0.01}
    return handler.Config(**{**base, **kw})


def record(site: str, rowtime: str, ctr: float, score: float, rid: str | None = None) -> dict[str, Any]:
    row = {"site": site, "rowtime": rowtime, "ctrpercent": ctr, "anomaly_score": score}
    return raw_record(json.dumps(row), rid or f"{site}|{rowtime}")


def raw_record(data: str, rid: str, encode: bool = True) -> dict[str, Any]:
    return {"recordId": rid, "lambdaDeliveryRecordMetadata": {"retryHint": 0},
            "data": base64.b64encode(data.encode()).decode() if encode else data}


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"invocationId": str(uuid.uuid4()),
            "applicationArn": "arn:aws:kinesisanalytics:us-east-1:123456789012:application/test",
            "records": list(records)}


def published(services: local.LocalServices, topic_arn: str) -> pd.DataFrame:
    return destination.sns_deliveries(services.moto.url, topic_arn)


# ---------------------------------------------------------------------------------------------
# a fault-injecting proxy in front of moto


class FaultProxy:
    """Forwards to ``target``; ``rule(body, n)`` (n: Publish calls so far) may answer instead:
    ``("error", status, code)`` or ``"drop"`` (close the connection without an answer)."""

    def __init__(self, target: str, rule: Callable[[str, int], Any]) -> None:
        self.target, self.rule, self.publishes = target, rule, 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                text = body.decode("utf-8", "replace")
                decision = None
                if "Action=Publish" in text:
                    proxy.publishes += 1
                    decision = proxy.rule(text, proxy.publishes)
                if decision == "drop":
                    self.close_connection = True
                    return
                if decision:
                    _, status, code = decision
                    xml = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected"
                           f"</Message></Error><RequestId>1</RequestId></ErrorResponse>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                req = urllib.request.Request(proxy.target + self.path, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
                except urllib.error.HTTPError as exc:
                    status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
                except OSError:  # the server behind is gone: so is this connection
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer((local.HOST, 0), Handler)
        self.url = f"http://{local.HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# message text


def test_message_keeps_the_lab_wording_and_adds_site_and_window():
    anomaly = handler.Anomaly(MYSITE, handler.parse_time("2023-08-23 13:05:00.000"), 500.0, 6.482049264893886)
    alert = handler.Alert(anomaly)
    assert alert.subject == "Anomaly Detected"
    assert alert.body.startswith(
        "Anomaly detected with a click through rate of 500% and an anomaly score of 6.482049264893886\n")
    assert f"Site:   {MYSITE}" in alert.body
    assert "Window: 2023-08-23 13:05:00 to 13:05:10 UTC" in alert.body
    assert alert.sms == "Anomaly Detected www.mysite.com: CTR 500%, score 6.48, 2023-08-23 13:05:00Z"
    folded = handler.Alert(anomaly, folded=3, cooldown_seconds=600)
    assert "Also 3 more anomalies on this site since the previous alert" in folded.body
    assert "every 10 min" in folded.body and folded.sms.endswith("(+3 folded)")


def test_sms_stays_within_160_characters_and_keeps_the_numbers():
    site = "https://" + "a-very-long-subdomain." * 10 + "example.com"
    anomaly = handler.Anomaly(site, handler.parse_time("2023-08-23T13:05:00Z"), 33.33333, 12.3456789)
    sms = handler.Alert(anomaly, folded=1234).sms
    assert len(sms) <= 160
    assert sms.startswith("Anomaly Detected a-very-long") and "CTR 33.33%, score 12.35" in sms
    assert sms.endswith("2023-08-23 13:05:00Z (+1234 folded)")


def test_the_alert_says_what_was_usual_after_the_labs_sentence():
    """Issue 23: a row with the site's usual CTR and range says it in words after the lab's sentence (unchanged),
    with the grade; the SMS gives the range; a row without them (Studio's fixed threshold) reads as before."""
    row = {"site": MYSITE, "rowtime": "2023-08-23 13:05:00", "ctrpercent": 500.0, "anomaly_score": 6.48,
           "expected": 9.03, "usual_low": 6.38, "usual_high": 12.6, "grade": 0.8863}
    anomaly = handler.parse_record(record_of(row))
    alert = handler.Alert(anomaly)
    lines = alert.body.splitlines()
    assert lines[0] == "Anomaly detected with a click through rate of 500% and an anomaly score of 6.48"
    assert lines[2] == "CTR 500 % where about 9 % (6.4-13 %) is usual: above the site's usual range."
    assert "Grade:  0.89 (0 to 1" in alert.body
    assert alert.sms == "Anomaly Detected www.mysite.com: CTR 500% (usual 6.4-13%), score 6.48, 2023-08-23 13:05:00Z"
    drop = handler.Alert(handler.parse_record(record_of({**row, "ctrpercent": 0.0, "usual_low": 2.0})))
    assert "CTR 0 % where about 9 % (2-13 %) is usual: below the site's usual range." in drop.body
    noisy = handler.Alert(handler.parse_record(record_of({**row, "usual_low": -1.5})))
    assert "(0-13 %) is usual" in noisy.body  # a CTR is never below 0 %
    plain = handler.parse_record(record_of({**row, "expected": None, "usual_low": None, "usual_high": None,
                                            "grade": None}))
    assert handler.Alert(plain).body == handler.Alert(handler.Anomaly(MYSITE, anomaly.window_start, 500.0, 6.48)).body
    assert "usual" not in handler.Alert(plain).body and "Grade" not in handler.Alert(plain).body
    with pytest.raises(handler.BadRecord, match="field 'expected' is not a finite number: 'nine'"):
        handler.parse_record(record_of({**row, "expected": "nine"}))


def record_of(row: dict[str, Any]) -> dict[str, Any]:
    return raw_record(json.dumps(row), "r1")


def test_window_length_default_is_the_labs():
    assert handler.DEFAULT_WINDOW_SECONDS == settings.WINDOW_SECONDS


# ---------------------------------------------------------------------------------------------
# the contract, end to end on moto and the SMTP server


@server
def test_event_and_response_contract_and_what_people_receive(services, aws, topic, tmp_path):
    smtp = handler.SmtpChannel(local.HOST, services.smtp.port, "alerts@example.com", ["lab-user@example.com"])
    channels = [handler.SnsChannel(topic, aws("sns")), smtp]
    before = set(services.outbox.glob("*.eml"))
    records = [record(MYSITE, "2023-08-23 13:05:00.000", 500.0, 6.482049264893886, "r-1"),
               record(SHOP, "2023-08-23T13:25:10Z", 0.0, 2.25, "r-2")]
    response, outcomes = handler.process(event(*records), config(tmp_path), channels,
                                         handler.FileState(tmp_path / "state.json"))
    assert response == {"records": [{"recordId": "r-1", "result": "Ok"}, {"recordId": "r-2", "result": "Ok"}]}
    assert {(o.record_id, o.channel, o.outcome) for o in outcomes} == {
        ("r-1", "sns", "sent"), ("r-1", "smtp", "sent"), ("r-2", "sns", "sent"), ("r-2", "smtp", "sent")}
    # what SNS delivered to the two subscriptions, read back from moto
    got = published(services, topic)
    email_texts = got[got["protocol"] == "email"]["text"].tolist()
    sms_texts = got[got["protocol"] == "sms"]["text"].tolist()
    assert len(email_texts) == len(sms_texts) == 2
    assert any(t.startswith("Anomaly detected with a click through rate of 500% and an anomaly score of "
                            "6.482049264893886") for t in email_texts)
    assert set(got[got["protocol"] == "email"]["subject"]) == {"Anomaly Detected"}
    assert all(len(t) <= 160 and t.startswith("Anomaly Detected ") for t in sms_texts)
    # and the e-mails sent directly: real MIME messages in the outbox
    new = sorted(set(services.outbox.glob("*.eml")) - before)
    assert len(new) == 2
    msg = email.message_from_bytes(new[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Anomaly Detected" and msg["To"] == "lab-user@example.com"
    assert msg.get_content_type() == "multipart/alternative"
    assert "Anomaly detected with a click through rate of" in msg.get_body(("plain",)).get_content()
    assert "<b>Anomaly detected" in report.render_email(new[0])


@server
def test_a_malformed_record_fails_alone_and_says_why(services, aws, topic, tmp_path, caplog):
    good = record(MYSITE, "2023-08-23 13:05:00", 500.0, 6.4, "good")
    bad = [
        raw_record("%%% not base64 %%%", "not-base64", encode=False),
        raw_record("this is not json", "not-json"),
        raw_record(json.dumps({"site": MYSITE, "rowtime": "2023-08-23 13:05:00", "ctrpercent": 5.0}), "no-score"),
        raw_record(json.dumps({"site": MYSITE, "rowtime": "yesterday", "ctrpercent": 5.0, "anomaly_score": 3}),
                   "bad-time"),
        raw_record(json.dumps([1, 2]), "array"),
    ]
    caplog.set_level(logging.INFO, logger="clicklab.alerts")
    response, outcomes = handler.process(event(bad[0], good, *bad[1:]), config(tmp_path),
                                         [handler.SnsChannel(topic, aws("sns"))],
                                         handler.FileState(tmp_path / "state.json"))
    results = {r["recordId"]: r["result"] for r in response["records"]}
    assert [r["recordId"] for r in response["records"]] == ["not-base64", "good", "not-json", "no-score",
                                                             "bad-time", "array"]
    assert results.pop("good") == "Ok"
    assert set(results.values()) == {"DeliveryFailed"}
    reasons = {o.record_id: o.detail for o in outcomes if o.outcome == "malformed"}
    assert "not base64" in reasons["not-base64"] and "not JSON" in reasons["not-json"]
    assert "'anomaly_score'" in reasons["no-score"] and "'rowtime'" in reasons["bad-time"]
    assert "not a JSON object" in reasons["array"]
    for rid, reason in reasons.items():
        assert any(rid in r.getMessage() and reason in r.getMessage() for r in caplog.records), rid
    assert len(published(services, topic)) == 2  # the good record, to its two subscriptions


def test_an_event_without_records_is_refused():
    with pytest.raises(ValueError, match="records"):
        handler.process({"invocationId": "x"}, handler.Config(), [], handler.FileState("/nonexistent/x"))


# ---------------------------------------------------------------------------------------------
# no floods, no duplicates


@server
def test_cooldown_suppresses_and_the_next_alert_counts_the_folded(services, aws, topic, tmp_path):
    records = [record(MYSITE, f"2023-08-23 13:05:{s:02d}", 500.0, 6.0 - s / 10) for s in (0, 10, 20)]
    records += [record(SHOP, "2023-08-23 13:05:10", 0.0, 2.5), record(MYSITE, "2023-08-23 13:15:00", 80.0, 3.1)]
    response, outcomes = handler.process(event(*records), config(tmp_path, cooldown_s=600),
                                         [handler.SnsChannel(topic, aws("sns"))],
                                         handler.FileState(tmp_path / "state.json"))
    assert {r["result"] for r in response["records"]} == {"Ok"}
    by_window = {(o.site, o.window_start[11:19]): (o.outcome, o.folded) for o in outcomes}
    assert by_window == {(MYSITE, "13:05:00"): ("sent", 0), (MYSITE, "13:05:10"): ("suppressed", 0),
                         (MYSITE, "13:05:20"): ("suppressed", 0), (SHOP, "13:05:10"): ("sent", 0),
                         (MYSITE, "13:15:00"): ("sent", 2)}
    texts = published(services, topic).query("protocol == 'email'")["text"].tolist()
    assert len(texts) == 3
    assert "Also 2 more anomalies on this site since the previous alert" in texts[-1]


def test_cooldown_is_configurable_from_the_environment(tmp_path):
    assert handler.Config.from_env({"ALERT_COOLDOWN_SECONDS": "60"}).cooldown_s == 60
    assert handler.Config.from_env({}).cooldown_s == 600
    with pytest.raises(ValueError, match="ALERT_COOLDOWN_SECONDS='ten'"):
        handler.Config.from_env({"ALERT_COOLDOWN_SECONDS": "ten"})


def _two_runs(services, aws, topic, make_state: Callable[[], Any], tmp_path: Path) -> None:
    records = [record(MYSITE, "2023-08-23 13:05:00", 500.0, 6.4), record(MYSITE, "2023-08-23 13:05:10", 500.0, 5.1),
               record(SHOP, "2023-08-23 13:25:10", 0.0, 2.2)]
    cfg = config(tmp_path)
    first, out1 = handler.process(event(*records), cfg, [handler.SnsChannel(topic, aws("sns"))], make_state())
    after_first = len(published(services, topic))
    # a second run (a new process: new state object, same store) over the same anomalies
    second, out2 = handler.process(event(*records), cfg, [handler.SnsChannel(topic, aws("sns"))], make_state())
    assert [o.outcome for o in out1] == ["sent", "suppressed", "sent"]
    assert [o.outcome for o in out2] == ["duplicate"] * 3
    assert {r["result"] for r in first["records"] + second["records"]} == {"Ok"}
    assert len(published(services, topic)) == after_first == 4  # 2 alerts x (e-mail, SMS)


@server
def test_idempotent_across_two_runs_with_the_state_file(services, aws, topic, tmp_path):
    _two_runs(services, aws, topic, lambda: handler.FileState(tmp_path / "state.json"), tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["sites"][f"sns|{MYSITE}"]["last_sent"] == "2023-08-23T13:05:00.000Z"


@server
def test_idempotent_across_two_runs_with_dynamodb_state(services, aws, topic, tmp_path):
    table = f"alert-state-{uuid.uuid4().hex[:8]}"
    destination.create_state_table(aws("dynamodb"), table)
    _two_runs(services, aws, topic, lambda: handler.DynamoState(table, aws("dynamodb"), 3, 0.01), tmp_path)
    items = aws("dynamodb").scan(TableName=table)["Items"]
    status = sorted(i["status"]["S"] for i in items if i["pk"]["S"].startswith("alert#"))
    assert status == ["sent", "sent", "suppressed"]


# ---------------------------------------------------------------------------------------------
# failures: throttling, 5xx, a server gone mid-batch; and the retried invocation


def _fail_shop(status: int, code: str, times: int | None = None) -> Callable[[str, int], Any]:
    seen = {"n": 0}

    def rule(body: str, _n: int) -> Any:
        if "shop.example.com" in body and (times is None or seen["n"] < times):
            seen["n"] += 1
            return ("error", status, code)
        return None

    rule.seen = seen  # type: ignore[attr-defined]
    return rule


@server
@pytest.mark.parametrize(("status", "code"), [(400, "Throttling"), (500, "InternalError"), (503, "ServiceUnavailable")])
def test_throttling_and_5xx_are_retried_then_delivery_failed_while_the_others_go_out(
        services, aws, topic, tmp_path, caplog, status, code):
    rule = _fail_shop(status, code)
    caplog.set_level(logging.INFO, logger="clicklab.alerts")
    records = [record(MYSITE, "2023-08-23 13:05:00", 500.0, 6.4, "a"),
               record(SHOP, "2023-08-23 13:05:00", 0.0, 2.2, "b"),
               record("https://news.example.com", "2023-08-23 13:05:00", 600.0, 7.7, "c")]
    with FaultProxy(services.moto.url, rule) as proxy:
        sns = aws("sns", proxy.url)
        response, outcomes = handler.process(event(*records), config(tmp_path, max_attempts=3),
                                             [handler.SnsChannel(topic, sns)],
                                             handler.FileState(tmp_path / "state.json"))
    assert response["records"] == [{"recordId": "a", "result": "Ok"}, {"recordId": "b", "result": "DeliveryFailed"},
                                   {"recordId": "c", "result": "Ok"}]
    assert rule.seen["n"] == 3  # three attempts for the failing record
    failed = [o for o in outcomes if o.outcome == "failed"]
    assert len(failed) == 1 and code in failed[0].detail and "attempt 3 of 3" in failed[0].detail
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2
    assert len(published(services, topic)) == 4  # a and c, e-mail and SMS each


@server
def test_a_retried_invocation_sends_only_what_failed(services, aws, topic, tmp_path):
    """Throttled twice (one attempt each), then Kinesis Data Analytics retries the same records."""
    records = [record(MYSITE, "2023-08-23 13:05:00", 500.0, 6.4, "a"),
               record(SHOP, "2023-08-23 13:05:00", 0.0, 2.2, "b")]
    cfg = config(tmp_path, max_attempts=1)
    state = handler.FileState(tmp_path / "state.json")
    with FaultProxy(services.moto.url, _fail_shop(400, "Throttling")) as proxy:
        first, _ = handler.process(event(*records), cfg, [handler.SnsChannel(topic, aws("sns", proxy.url))], state)
    assert [r["result"] for r in first["records"]] == ["Ok", "DeliveryFailed"]
    retry = event(*records)
    for r in retry["records"]:
        r["lambdaDeliveryRecordMetadata"]["retryHint"] = 1
    second, outcomes = handler.process(retry, cfg, [handler.SnsChannel(topic, aws("sns"))], state)
    assert [r["result"] for r in second["records"]] == ["Ok", "Ok"]
    assert {o.record_id: o.outcome for o in outcomes} == {"a": "duplicate", "b": "sent"}
    assert len(published(services, topic)) == 4


@contextlib.contextmanager
def moto_server_process(timeout_s: float = 30.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """The ``moto_server`` command in a process of its own, on a free port; killed at the end."""
    for _ in range(local.BIND_ATTEMPTS):  # another process may take the free port before moto binds it
        port = local.free_port()
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", local.HOST, "-p", str(port)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and not local.port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and local.port_open(port):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"moto_server did not start on {local.HOST} in {local.BIND_ATTEMPTS} attempts")
    try:
        yield proc, f"http://{local.HOST}:{port}"
    finally:
        proc.kill()
        proc.wait()


@server
def test_moto_killed_mid_batch_fails_the_rest_on_sns_only(services, tmp_path):
    """A moto_server process of its own for this test, killed at the second Publish. E-mail over SMTP goes on."""
    session = services.session()
    smtp = handler.SmtpChannel(local.HOST, services.smtp.port, "alerts@example.com", ["lab-user@example.com"])
    records = [record(f"https://site{i}.example.com", "2023-08-23 13:05:00", 500.0, 6.4, f"r{i}") for i in range(4)]
    with moto_server_process() as (own, own_url):
        sns_direct = session.client("sns", endpoint_url=own_url, config=handler.client_config())
        arn = sns_direct.create_topic(Name="mid-batch")["TopicArn"]

        def rule(_body: str, n: int) -> Any:
            if n == 2:
                own.kill()  # SIGKILL: the server is gone mid-batch, without a goodbye
                own.wait()
            return None

        with FaultProxy(own_url, rule) as proxy:
            sns = session.client("sns", endpoint_url=proxy.url, config=handler.client_config(timeout_s=2))
            response, outcomes = handler.process(event(*records), config(tmp_path, max_attempts=2),
                                                 [handler.SnsChannel(arn, sns), smtp],
                                                 handler.FileState(tmp_path / "state.json"))
    assert [r["result"] for r in response["records"]] == ["Ok", "DeliveryFailed", "DeliveryFailed", "DeliveryFailed"]
    assert [o.outcome for o in outcomes if o.channel == "smtp"] == ["sent"] * 4
    assert own.returncode is not None and not local.port_open(int(own_url.rsplit(":", 1)[1]))


# ---------------------------------------------------------------------------------------------
# the Lambda zip, alone


@server
def test_the_lambda_zip_runs_alone_against_moto(services, aws, topic, tmp_path):
    from tests.conftest import client_env

    out = tmp_path / "lambda.zip"
    cli = subprocess.run([sys.executable, "-m", "clicklab", "alerts", "package", "--out", str(out)],
                         capture_output=True, text=True, env=client_env(), timeout=120)
    assert cli.returncode == 0, cli.stderr
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["lambda_function.py"]
        zf.extractall(tmp_path / "unzipped")
    script = ("import json, sys\nsys.path.insert(0, '.')\nimport lambda_function\n"
              "resp = lambda_function.lambda_handler(json.load(sys.stdin), None)\n"
              "assert not any(m == 'clicklab' or m.startswith('clicklab.') for m in sys.modules), 'imports clicklab'\n"
              "print(json.dumps(resp))\n")
    env = {"PATH": os.environ.get("PATH", ""), "ALERT_TOPIC_ARN": topic, "AWS_ENDPOINT_URL": services.moto.url,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "ALERT_STATE_FILE": str(tmp_path / "lambda-state.json")}
    ev = event(record(MYSITE, "2023-08-23 13:05:00.000", 500.0, 6.482049264893886, "z-1"),
               raw_record("nope", "z-2", encode=False))
    run = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path / "unzipped", input=json.dumps(ev),
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"records": [{"recordId": "z-1", "result": "Ok"},
                                                  {"recordId": "z-2", "result": "DeliveryFailed"}]}
    assert published(services, topic)["text"].str.contains("click through rate of 500%").any()


def test_the_handler_file_imports_only_stdlib_and_boto3():
    source = Path(handler.__file__).read_text()
    assert package.imported_roots(source) - set(sys.stdlib_module_names) <= {"boto3", "botocore"}


# ---------------------------------------------------------------------------------------------
# the local default, and that nothing is left running


def test_events_carry_the_stream_rows_and_are_stable():
    frame = pd.DataFrame({"site": [MYSITE, SHOP], "ctrpercent": [500.0, 0.0], "anomaly_score": [6.48, 2.2],
                          "rowtime": pd.to_datetime(["2023-08-23 13:05:10", "2023-08-23 13:05:00"], utc=True)})
    events = destination.events(frame, batch_size=1)
    assert len(events) == 2
    rows = [json.loads(base64.b64decode(e["records"][0]["data"])) for e in events]
    assert rows[0] == {"site": SHOP, "rowtime": "2023-08-23 13:05:00.000", "ctrpercent": 0.0, "anomaly_score": 2.2}
    assert handler.parse_record(events[1]["records"][0]).window_start.isoformat() == "2023-08-23T13:05:10+00:00"
    assert destination.events(frame, batch_size=1) == events  # same anomalies, same record ids
    usual = frame.assign(expected=[9.0, float("nan")], usual_low=[6.4, float("nan")], usual_high=[12.6, float("nan")],
                         grade=[0.89, float("nan")])
    rows = [json.loads(base64.b64decode(e["records"][0]["data"])) for e in destination.events(usual, batch_size=1)]
    assert rows[1]["expected"] == 9.0 and rows[1]["grade"] == 0.89  # the usual range travels with the row
    assert rows[0]["expected"] is None and rows[0]["usual_high"] is None  # unknown: null, as Flink writes it


@server
def test_local_default_runs_without_configuration_and_leaves_the_environment_alone(tmp_path):
    before = dict(os.environ)
    frame = pd.DataFrame({"site": [MYSITE], "ctrpercent": [500.0], "anomaly_score": [6.48],
                          "rowtime": pd.to_datetime(["2023-08-23 13:05:00"], utc=True)})
    with destination.open_destination(tmp_path, env={}) as dest:
        assert dest.local is not None and dest.description.startswith("local default")
        ports = dest.local.ports()
        assert destination.recorded_ports(dest.description) == ports and set(ports) == {"moto", "smtp"}
        responses = list(destination.send(frame, dest))
        assert responses[0]["records"][0]["result"] == "Ok"
        assert len(dest.emails()) == 1
        assert set(dest.sns_deliveries()["protocol"]) == {"email", "sms"}
        path = report.write(tmp_path, dest.table(), dest.description, dest.sns_deliveries(), dest.emails())
    assert dict(os.environ) == before
    assert not any(local.port_open(p) for p in ports.values())
    assert json.loads(path.read_text())["per_channel"]["sns"]["sent"] == 1
    lines = report.summary_lines(report.read(tmp_path))
    assert "  sns: sent 1, suppressed 0, already sent before 0, failed 0" in lines
    assert "  smtp: sent 1, suppressed 0, already sent before 0, failed 0" in lines


@server
def test_a_second_destination_in_the_same_process_shows_only_its_own_deliveries(tmp_path):
    """moto keeps its data per process: what an earlier destination published is not this one's."""
    frame = pd.DataFrame({"site": [MYSITE], "ctrpercent": [500.0], "anomaly_score": [6.48],
                          "rowtime": pd.to_datetime(["2023-08-23 13:05:00"], utc=True)})
    with destination.open_destination(tmp_path / "first", env={}) as first:
        list(destination.send(frame, first))
        assert len(first.sns_deliveries()) == 2
    with destination.open_destination(tmp_path / "second", env={}) as second:
        assert second.sns_deliveries().empty and second.emails() == []


@server
def test_stop_frees_both_ports_and_can_be_called_again(tmp_path):
    svc = local.LocalServices(tmp_path).start()
    ports = svc.ports()
    assert set(ports) == {"moto", "smtp"} and all(local.port_open(p) for p in ports.values())
    svc.stop()
    assert not any(local.port_open(p) for p in ports.values())
    svc.stop()  # again (Destination.close after the notebook's own stop): nothing to do, still checked


@server
def test_servers_are_stopped_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), local.LocalServices(tmp_path) as svc:
        ports = svc.ports()
        assert all(local.port_open(p) for p in ports.values())
        raise RuntimeError("boom")
    assert len(ports) == 2 and not any(local.port_open(p) for p in ports.values())


def test_stop_says_which_port_is_still_bound():
    """What stop() checks: a server that stopped but whose port still answers is an error naming it."""
    with socket.socket() as squatter:
        squatter.bind((local.HOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ClicklabError, match=f"smtp server was stopped but port 127.0.0.1:{port} still"):
            local.Server("smtp", port, lambda: None).stop(timeout_s=0.2)


@server
def test_smtp_takes_another_port_when_the_free_one_is_taken_before_it_binds(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOSMTPD_CONTROLLER_TIMEOUT", "2")  # aiosmtpd reports a failed bind after this
    with socket.socket() as squatter:
        squatter.bind((local.HOST, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, local.free_port()])
        monkeypatch.setattr(local, "free_port", lambda: next(ports))
        smtp = local.start_smtp(tmp_path / "outbox")
        try:
            assert smtp.port != taken and local.port_open(smtp.port)
        finally:
            smtp.stop()
    assert not local.port_open(smtp.port)


@server
def test_a_killed_process_leaves_no_port_bound(tmp_path):
    """A kernel killed with SIGKILL (no atexit, no finally) takes its servers with it."""
    from tests.conftest import client_env

    script = ("import sys, time; from pathlib import Path; from clicklab.alerts import local\n"
              "s = local.LocalServices(Path(sys.argv[1])).start()\n"
              "print(s.moto.port, s.smtp.port, flush=True); time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             env=client_env())
    try:
        ports = [int(p) for p in child.stdout.readline().split()]
        assert len(ports) == 2 and all(local.port_open(p) for p in ports)
    finally:
        child.kill()  # SIGKILL
        child.wait()
        child.stdout.close()
    deadline = time.monotonic() + 5
    while any(local.port_open(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(local.port_open(p) for p in ports)


@server
def test_cleanup_removes_the_streams_and_finds_the_ports_of_notebook_11_free(tmp_path):
    streams = settings.streams_dir(tmp_path) / "ctrstream"
    streams.mkdir(parents=True)
    (streams / "part-0").write_text("{}\n")
    old_run = tmp_path / "alerts" / "run"  # pid files of an older version
    old_run.mkdir(parents=True)
    (old_run / "moto.json").write_text("{}")
    with destination.open_destination(tmp_path, env={}) as dest:  # what notebook 11 does, then its kernel ends
        ports = dest.local.ports()
        report.write(tmp_path, dest.table(), dest.description)
        running = cleanup.clean_up(tmp_path, remove_streams=False)
    assert running.ports == ports and sorted(running.listening) == [f"moto on port {ports['moto']}",
                                                                    f"smtp on port {ports['smtp']}"]
    assert running.lines()[0].startswith("still listening: moto on port")
    assert running.removed == [old_run] and not old_run.exists()
    done = cleanup.clean_up(tmp_path)
    assert done.ports == ports and done.listening == []
    assert done.lines()[0] == (f"the local servers (moto on port {ports['moto']}, smtp on port {ports['smtp']}) "
                               "ended with notebook 11's kernel: nothing listens on their ports")
    assert done.removed == [settings.streams_dir(tmp_path)] and not settings.streams_dir(tmp_path).exists()
    assert done.kept == [tmp_path / "alerts", tmp_path / "outbox"]
    # what is kept, in words: what it is, and what clears it
    assert done.lines()[-2:] == [
        f"kept {tmp_path / 'alerts'}: the alert state and report; notebook 11 starts from fresh state (fresh_state = "
        "True, its default), `clicklab reset` clears them, fresh_state = False continues from them",
        f"kept {tmp_path / 'outbox'}: the e-mails the local SMTP server received (`clicklab reset` removes them)"]
    replay = cleanup.clean_up(tmp_path, dataset=settings.DEFAULT_DATASET).lines()[-1]
    assert replay == f"kept {settings.DEFAULT_DATASET}: the replay file the lab reads (the cleanup never touches it)"


def test_cleanup_without_a_report_says_no_local_server_was_recorded(tmp_path):
    done = cleanup.clean_up(tmp_path)
    assert done.ports == {} and done.removed == [] and done.kept == []
    assert "the local servers run in notebook 11's kernel and end with it" in done.lines()[0]


@server
def test_local_default_keeps_state_in_a_dynamodb_table_when_asked(tmp_path):
    frame = pd.DataFrame({"site": [MYSITE, MYSITE], "ctrpercent": [500.0, 480.0], "anomaly_score": [6.48, 5.0],
                          "rowtime": pd.to_datetime(["2023-08-23 13:05:00", "2023-08-23 13:05:10"], utc=True)})
    with destination.open_destination(tmp_path, env={"ALERT_STATE_TABLE": "alert-state"}) as dest:
        assert isinstance(dest.state, handler.DynamoState) and "DynamoDB table alert-state" in dest.description
        list(destination.send(frame, dest))
        list(destination.send(frame, dest))  # Kinesis Data Analytics retrying the same records
        outcomes = dest.table().query("channel == 'sns'")["outcome"].tolist()
    assert outcomes == ["sent", "suppressed", "duplicate", "duplicate"]
    assert not (tmp_path / "alerts" / "state.json").exists()


@server
def test_a_configured_environment_is_used_as_on_lambda(services, topic, tmp_path, monkeypatch):
    for key, value in {"ALERT_TOPIC_ARN": topic, "AWS_ENDPOINT_URL": services.moto.url,
                       "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    assert destination.configured()
    frame = pd.DataFrame({"site": [SHOP], "ctrpercent": [0.0], "anomaly_score": [2.2],
                          "rowtime": pd.to_datetime(["2023-08-23 13:25:10"], utc=True)})
    with destination.open_destination(tmp_path) as dest:
        assert dest.local is None and dest.description == "configured from the environment: sns"
        assert [r["records"][0]["result"] for r in destination.send(frame, dest)] == ["Ok"]
    assert not local.outbox_dir(tmp_path).exists()  # no local server was started
    assert published(services, topic)["text"].str.contains("shop.example.com").any()


# ---------------------------------------------------------------------------------------------
# the other two event shapes: a Kinesis event source mapping, and the SQL application's rows


@dataclasses.dataclass
class Outbox:
    """A channel that keeps what it is given (the handler's logic, no AWS); ``fail`` names sites it refuses."""

    name: str = "outbox"
    fail: set[str] = dataclasses.field(default_factory=set)
    sent: list[handler.Alert] = dataclasses.field(default_factory=list)

    def send(self, alert: handler.Alert) -> str:
        if alert.anomaly.site in self.fail:
            raise ConnectionError(f"{alert.anomaly.site} refused")
        self.sent.append(alert)
        return f"m-{len(self.sent)}"


def kinesis_event(*rows: dict[str, Any] | bytes, stream: str = "anomalydetectionstream") -> dict[str, Any]:
    arn = f"arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"
    records = [{"PartitionKey": "k", "SequenceNumber": f"4959{i:020d}", "ApproximateArrivalTimestamp": 1692795900.5 + i,
                "Data": row if isinstance(row, bytes) else json.dumps(row).encode()} for i, row in enumerate(rows)]
    return kinesis.lambda_event(records, arn)


def studio_row(site: str, rowtime: str, ctr: float, score: float) -> dict[str, Any]:
    return {"site": site, "rowtime": rowtime, "ctrpercent": ctr, "anomaly_score": score}


def test_a_kinesis_batch_reports_failed_sends_only_and_a_retry_sends_only_those(tmp_path, caplog):
    ev = kinesis_event(studio_row(MYSITE, "2023-08-23T13:05:00", 500.0, 6.4), b"not json",
                       studio_row(SHOP, "2023-08-23T13:05:00", 0.0, 2.2),
                       studio_row("https://news.example.com", "2023-08-23T13:05:00", 600.0, 7.7))
    seq = [r["kinesis"]["sequenceNumber"] for r in ev["Records"]]
    channel, state = Outbox(fail={SHOP}), handler.FileState(tmp_path / "state.json")
    caplog.set_level(logging.INFO, logger="clicklab.alerts")
    response, outcomes = handler.process(ev, config(tmp_path, max_attempts=1), [channel], state)
    assert response == {"batchItemFailures": [{"itemIdentifier": seq[2]}]}  # not the malformed one: never retried
    assert {o.record_id: o.outcome for o in outcomes} == {seq[0]: "sent", seq[1]: "malformed", seq[2]: "failed",
                                                           seq[3]: "sent"}
    assert any(seq[1] in r.getMessage() and "kinesis.data is not JSON" in r.getMessage() for r in caplog.records)
    # Lambda retries from the failed record on: what went out already is a duplicate, not sent again
    channel.fail.clear()
    retry, outcomes = handler.process({"Records": ev["Records"][2:]}, config(tmp_path), [channel], state)
    assert retry == {"batchItemFailures": []}
    assert {o.record_id: o.outcome for o in outcomes} == {seq[2]: "sent", seq[3]: "duplicate"}
    assert sorted(a.anomaly.site for a in channel.sent) == ["https://news.example.com", SHOP, MYSITE]


def test_a_kinesis_record_without_a_kinesis_object_is_malformed_and_not_reported(tmp_path):
    ev = {"Records": [{"eventSource": "aws:kinesis"}, "nonsense"]}
    response, outcomes = handler.process(ev, config(tmp_path), [Outbox()], handler.FileState(tmp_path / "s.json"))
    assert response == {"batchItemFailures": []}
    assert [(o.record_id, o.outcome) for o in outcomes] == [("#0", "malformed"), ("#1", "malformed")]
    assert "no 'kinesis' object" in outcomes[0].detail and "not an object" in outcomes[1].detail


SQL_APP = "arn:aws:kinesisanalytics:us-east-1:123456789012:application/clickstream-sql-lab"


def test_sql_application_rows_say_the_site_is_unknown_and_name_the_application(tmp_path):
    rows = [{"ROWTIME": "2023-08-23 13:05:10.000", "CTRPERCENT": 500.0, "ANOMALY_SCORE": 6.48},
            {"CTRPERCENT": 80.0, "ANOMALY_SCORE": 3.1},  # no ROWTIME: the time shown is its arrival
            {"ROWTIME": "2023-08-23 13:25:10.000", "CTRPERCENT": 90.0}]
    ev = {**event(*[raw_record(json.dumps(r), f"sql-{i}") for i, r in enumerate(rows)]), "applicationArn": SQL_APP}
    channel, state = Outbox(), handler.FileState(tmp_path / "state.json")
    response, outcomes = handler.process(ev, config(tmp_path, cooldown_s=0), [channel], state)
    assert [r["result"] for r in response["records"]] == ["Ok", "Ok", "DeliveryFailed"]
    assert "SQL application row) misses field 'ANOMALY_SCORE'" in outcomes[0].detail
    by_ctr = {a.anomaly.ctr: a for a in channel.sent}
    with_time, without = by_ctr[500.0], by_ctr[80.0]
    assert with_time.body.startswith("Anomaly detected with a click through rate of 500% and an anomaly score of 6.48")
    assert "Site:   unknown (the rows of SQL application clickstream-sql-lab carry no site)" in with_time.body
    assert "Time:   2023-08-23 13:05:10 UTC (the SQL application's ROWTIME)" in with_time.body
    assert "(arrival: the row has no ROWTIME)" in without.body
    assert with_time.sms.startswith("Anomaly Detected (site unknown, SQL application clickstream-sql-lab): CTR 500%")
    assert len(with_time.sms) <= 160
    # the retried invocation: the row without a time is the same record, so a duplicate too
    _, outcomes = handler.process(ev, config(tmp_path, cooldown_s=0), [channel], state)
    assert [o.outcome for o in outcomes if o.outcome != "malformed"] == ["duplicate", "duplicate"]
    assert len(channel.sent) == 2


def test_a_sql_row_with_its_explanation_says_why_and_a_bad_one_is_malformed():
    """A SQL application whose output pump keeps RANDOM_CUT_FOREST_WITH_EXPLANATION's ANOMALY_EXPLANATION: the alert
    says why in words after the lab's sentence; an explanation not in Kinesis Data Analytics' form is named."""
    why = ('{"CLICKCOUNT":{"DIRECTION":"HIGH","STRENGTH":"1.0000","ATTRIBUTION_SCORE":"3.4702"},'
           '"IMPRESSIONCOUNT":{"DIRECTION":"LOW","STRENGTH":"0.5314","ATTRIBUTION_SCORE":"0.0010"}}')
    row = {"ROWTIME": "2023-08-23 12:06:10.000", "CTRPERCENT": 400.0, "ANOMALY_SCORE": 3.7, "ANOMALY_EXPLANATION": why}
    lines = handler.Alert(handler.parse_record(record_of(row), SQL_APP)).body.splitlines()
    assert lines[0] == "Anomaly detected with a click through rate of 400% and an anomaly score of 3.7"
    assert lines[2] == ("Why: CLICKCOUNT HIGH (3.47), IMPRESSIONCOUNT LOW (0.00) (the columns' attributions, the "
                        "largest first).")
    with pytest.raises(handler.BadRecord, match="field 'ANOMALY_EXPLANATION': ANOMALY_EXPLANATION 'clicks': not"):
        handler.parse_record(record_of({**row, "ANOMALY_EXPLANATION": "clicks"}), SQL_APP)


def test_sql_rows_on_a_kinesis_stream_name_the_stream(tmp_path):
    ev = kinesis_event({"CTRPERCENT": 500.0, "ANOMALY_SCORE": 6.4}, stream="DESTINATION_SQL_STREAM-out")
    channel = Outbox()
    response, _ = handler.process(ev, config(tmp_path), [channel], handler.FileState(tmp_path / "s.json"))
    assert response == {"batchItemFailures": []}
    alert = channel.sent[0]
    assert alert.anomaly.site == "stream DESTINATION_SQL_STREAM-out" and not alert.anomaly.site_known
    assert "Time:   2023-08-23 13:05:00 UTC (arrival" in alert.body  # approximateArrivalTimestamp


def test_the_lowercase_destination_contract_is_unchanged(tmp_path):
    channel = Outbox()
    response, _ = handler.process(event(record(MYSITE, "2023-08-23 13:05:00", 500.0, 6.4, "r")), config(tmp_path),
                                  [channel], handler.FileState(tmp_path / "s.json"))
    assert response == {"records": [{"recordId": "r", "result": "Ok"}]}
    assert channel.sent[0].anomaly.site_known and "Window: 2023-08-23 13:05:00 to 13:05:10 UTC" in channel.sent[0].body


@server
def test_records_read_back_from_kinesis_in_moto_invoke_the_handler_as_lambda_would(services, aws, topic, tmp_path):
    """put_records on a moto stream, get_records back, the event source mapping's event, SNS and e-mail out."""
    client, stream = aws("kinesis"), f"anomalydetectionstream-{uuid.uuid4().hex[:6]}"
    client.create_stream(StreamName=stream, ShardCount=1)
    rows = [json.dumps(studio_row(MYSITE, "2023-08-23T13:05:00", 500.0, 6.482049264893886)).encode(),
            b"\xff not a row", json.dumps(studio_row(SHOP, "2023-08-23T13:25:10", 0.0, 2.25)).encode()]
    put = client.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": "site"} for d in rows])
    assert put["FailedRecordCount"] == 0
    (shard, got), = kinesis.read_stream(client, stream).items()
    assert [r["Data"] for r in got] == rows
    ev = kinesis.lambda_event(got, kinesis.stream_arn(client, stream), shard)
    smtp = handler.SmtpChannel(local.HOST, services.smtp.port, "alerts@example.com", ["lab-user@example.com"])
    before = set(services.outbox.glob("*.eml"))
    state = handler.FileState(tmp_path / "state.json")
    with FaultProxy(services.moto.url, _fail_shop(500, "InternalError")) as proxy:
        response, outcomes = handler.process(ev, config(tmp_path, max_attempts=2),
                                             [handler.SnsChannel(topic, aws("sns", proxy.url)), smtp], state)
    assert response == {"batchItemFailures": [{"itemIdentifier": got[2]["SequenceNumber"]}]}
    assert [(o.channel, o.outcome) for o in outcomes if o.record_id == got[2]["SequenceNumber"]] == [
        ("sns", "failed"), ("smtp", "sent")]
    texts = published(services, topic).query("protocol == 'email'")["text"].tolist()
    assert len(texts) == 1 and texts[0].startswith("Anomaly detected with a click through rate of 500%")
    assert len(set(services.outbox.glob("*.eml")) - before) == 2
    # Lambda's retry from the failed record: SNS sends shop now, the e-mail already went out
    retry, outcomes = handler.process(kinesis.lambda_event(got[2:], ev["Records"][0]["eventSourceARN"], shard),
                                      config(tmp_path), [handler.SnsChannel(topic, aws("sns")), smtp], state)
    assert retry == {"batchItemFailures": []}
    assert [(o.channel, o.outcome) for o in outcomes] == [("sns", "sent"), ("smtp", "duplicate")]
    assert len(published(services, topic).query("protocol == 'email'")) == 2
    assert len(set(services.outbox.glob("*.eml")) - before) == 2
