"""scripts/: the AWS side of the lab (CloudFormation template, deploy, teardown, producer) against moto's server.

moto (``ThreadedMotoServer`` on 127.0.0.1, a thread of this process, stopped at the end) runs CloudFormation:
the stack is really created from ``scripts/clickstream-lab.yaml`` and deleted, its streams really hold what the
producer sent. What moto cannot check (IAM evaluation, the Glue database, Lambda polling the stream) is listed
in the README, Deploying to AWS.
"""

from __future__ import annotations

import base64
import http.server
import json
import subprocess
import sys
import threading
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clicklab import streams
from clicklab.alerts import handler, kinesis, local
from clicklab.streams import STREAM_NAMES
from scripts import awslab, deploy, producer, teardown

REPO = Path(__file__).resolve().parent.parent
server = pytest.mark.server
EMAIL, PHONE = "lab-user@example.com", "+15555550100"


def template() -> dict[str, Any]:
    return yaml.safe_load(awslab.TEMPLATE.read_text(encoding="utf-8"))


def resources(kind: str) -> dict[str, Any]:
    return {k: v for k, v in template()["Resources"].items() if v["Type"] == kind}


# ---------------------------------------------------------------------------------------------
# the template, read


LAB_STREAMS = set(STREAM_NAMES)  # the six of the lab and the dead-letter stream badevents


def test_the_templates_streams_are_the_labs():
    names = {r["Properties"]["Name"] for r in resources("AWS::Kinesis::Stream").values()}
    assert names == LAB_STREAMS
    # every stream the Studio note creates a table on (clicklab/streams.py) needs its Kinesis stream in the stack
    missing = set(streams.STREAM_NAMES) - names
    assert not missing, (f"clicklab/streams.py has streams that scripts/clickstream-lab.yaml does not create: "
                         f"{sorted(missing)}; add them there and to the StudioRole's stream list")


def _statements(role: str) -> list[dict[str, Any]]:
    policies = template()["Resources"][role]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def test_the_roles_grant_only_what_each_needs():
    lam = {s["Sid"]: s for s in _statements("AlertFunctionRole")}
    assert lam["ReadTheAnomalyStream"]["Resource"] == {"Fn::GetAtt": ["AnomalyDetectionStream", "Arn"]}
    assert not any(a.startswith("kinesis:Put") for a in lam["ReadTheAnomalyStream"]["Action"])
    assert lam["PublishAlerts"] == {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish",
                                    "Resource": {"Ref": "AlertTopic"}}
    assert lam["AlertState"]["Resource"] == {"Fn::GetAtt": ["AlertStateTable", "Arn"]}
    studio = {s["Sid"]: s for s in _statements("StudioRole")}
    assert len(studio["ReadAndWriteTheLabStreams"]["Resource"]) == len(LAB_STREAMS)
    assert studio["ReadTheUdfJar"]["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]  # read only
    for statement in _statements("AlertFunctionRole") + _statements("StudioRole"):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert "*" not in statement["Resource"] and not any("*" in a for a in actions), statement["Sid"]
    mapping = template()["Resources"]["AlertEventSourceMapping"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["AnomalyDetectionStream", "Arn"]}


# ---------------------------------------------------------------------------------------------
# KDG templates and batching, no server


LAB_TEMPLATE = ('{"browseraction":"{{random.weightedArrayElement({"weights":[0.9,0.1],'
                '"data":["Impression","Click"]})}}", "site": "https://www.mysite.com"}')


def test_kdg_templates_render_as_the_kinesis_data_generator_does():
    t = producer.Template.parse(LAB_TEMPLATE)
    rows = [json.loads(t.render()) for _ in range(2000)]
    assert {r["site"] for r in rows} == {"https://www.mysite.com"}
    clicks = sum(r["browseraction"] == "Click" for r in rows)
    assert {r["browseraction"] for r in rows} == {"Impression", "Click"} and 100 < clicks < 300
    other = producer.Template.parse('{"n": {{random.number({"min": 1, "max": 3})}}, "id": "{{random.uuid}}", '
                                    '"at": "{{date.now}}", "c": "{{random.arrayElement(["a", "b"])}}"}')
    row = json.loads(other.render())
    assert row["n"] in (1, 2, 3) and len(row["id"]) == 36 and row["at"].endswith("Z") and row["c"] in ("a", "b")


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": "{{random.nope}}"}', "unknown helper 'random.nope'"),
    ('{"a": "{{random.arrayElement([1, 2]"}', "unclosed '('"),
    ('{"a": "{{random.arrayElement([1, 2)}}"}', "not JSON"),
    ('{"a": "{{random.weightedArrayElement({"data": [1]}, )}}"}', "not JSON"),
    ('{"a": "{{random.arrayElement([])}}"}', "expects a non-empty array"),
    ('{"a": {{random.uuid}}}', "not JSON"),
])
def test_bad_kdg_templates_say_what_and_where(text: str, message: str):
    with pytest.raises(producer.TemplateError, match="template") as info:
        producer.Template.parse(text)
    assert message in str(info.value)


class _Recorder:
    """A stand-in for the Kinesis client's put_records (batching only: the sending is checked on moto below)."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Records)
        return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "s"} for _ in Records]}


def test_batches_hold_at_most_500_records_and_5_mib():
    rec = _Recorder()
    small = [producer.Record(0.0, b"x" * 10, "k")] * 1201
    producer.Producer(rec, "s").send(small)
    assert [len(c) for c in rec.calls] == [500, 500, 201]
    rec.calls.clear()
    big = [producer.Record(0.0, b"y" * 600_000, "k")] * 20
    producer.Producer(rec, "s").send(big)
    assert all(sum(len(r["Data"]) + len(r["PartitionKey"]) for r in c) <= producer.MAX_BATCH_BYTES for c in rec.calls)
    assert sum(len(c) for c in rec.calls) == 20 and len(rec.calls) == 3


def test_records_are_sent_at_their_due_time():
    now = [0.0]
    rec = _Recorder()
    p = producer.Producer(rec, "s", sleep=lambda s: now.__setitem__(0, now[0] + s))
    records = producer.template_records(producer.Template.parse('{"site": "a"}'), rate=4, duration_s=2)
    result = p.send(records, clock=lambda: now[0])
    assert result.records == 8 and result.seconds == pytest.approx(1.75)
    assert [len(c) for c in rec.calls] == [1] * 8  # one due at a time: each goes out when it is due


# ---------------------------------------------------------------------------------------------
# against moto


def _reset(srv: local.Server) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{srv.url}/moto-api/reset", method="POST"), timeout=10).close()


@pytest.fixture
def moto() -> Iterator[local.Server]:
    """A moto server per test, its state reset before and after: moto's state is one per process, shared by every
    server of it; the lab's stream names are fixed (two stacks cannot coexist), and a stack's Lambda function
    stops ``/moto-api/data.json`` (which the alert tests read) from serializing."""
    srv = local.start_moto()
    _reset(srv)
    try:
        yield srv
    finally:
        _reset(srv)
        srv.stop()


@pytest.fixture
def aws(moto) -> awslab.Aws:
    return awslab.Aws("us-east-1", moto.url)


@pytest.fixture
def udf_jar(tmp_path: Path) -> Path:
    jar = tmp_path / "clickstream-rcf-udf.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    return jar


@pytest.fixture
def stack(moto, aws, udf_jar, tmp_path) -> Iterator[deploy.Deployment]:
    name = f"lab-{uuid.uuid4().hex[:6]}"
    result = deploy.deploy(EMAIL, PHONE, stack=name, endpoint_url=moto.url, udf=udf_jar, build=tmp_path, cooldown_s=0)
    yield result
    teardown.teardown(name, endpoint_url=moto.url)


@server
def test_deploy_creates_the_stack_and_teardown_removes_everything(moto, aws, udf_jar, tmp_path, capsys):
    name = f"lab-{uuid.uuid4().hex[:6]}"
    code = deploy.main(["--email", EMAIL, "--phone", PHONE, "--stack", name, "--endpoint-url", moto.url,
                        "--udf-jar", str(udf_jar)])
    out = capsys.readouterr().out
    assert code == 0 and f"stack {name}: created" in out and "next: confirm the subscription e-mail" in out
    cfn = aws.client("cloudformation")
    assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    outs = awslab.outputs(cfn.describe_stacks(StackName=name)["Stacks"][0])
    # the six streams
    kin = aws.client("kinesis")
    assert set(kin.list_streams()["StreamNames"]) == LAB_STREAMS
    assert kin.describe_stream_summary(StreamName="anomalydetectionstream")["StreamDescriptionSummary"][
        "StreamARN"] == outs["AnomalyDetectionStreamArn"]
    # the topic and its two subscriptions
    subs = aws.client("sns").list_subscriptions_by_topic(TopicArn=outs["AlertTopicArn"])["Subscriptions"]
    assert sorted((s["Protocol"], s["Endpoint"]) for s in subs) == [("email", EMAIL), ("sms", PHONE)]
    # the state table
    table = aws.client("dynamodb").describe_table(TableName=outs["AlertStateTableName"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    # the function, configured for the topic and the table, and its mapping on anomalydetectionstream
    lam = aws.client("lambda")
    fn = lam.get_function_configuration(FunctionName=outs["AlertFunctionName"])
    assert fn["Handler"] == "lambda_function.lambda_handler" and fn["Runtime"].startswith("python3")
    assert fn["Environment"]["Variables"]["ALERT_TOPIC_ARN"] == outs["AlertTopicArn"]
    assert fn["Environment"]["Variables"]["ALERT_STATE_TABLE"] == outs["AlertStateTableName"]
    mappings = lam.list_event_source_mappings(FunctionName=outs["AlertFunctionName"])["EventSourceMappings"]
    assert len(mappings) == 1 and mappings[0]["EventSourceArn"] == outs["AnomalyDetectionStreamArn"]
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # the code: the Lambda zip in the code bucket, the UDF jar in the stack's bucket
    s3 = aws.client("s3")
    code_bucket = deploy.code_bucket_name(name, aws.account_id(), "us-east-1")
    [zipped] = [o["Key"] for o in s3.list_objects_v2(Bucket=code_bucket)["Contents"]]
    assert zipped.startswith(deploy.LAMBDA_KEY_PREFIX)
    assert s3.get_object(Bucket=outs["UdfBucketName"], Key=deploy.UDF_KEY)["Body"].read() == udf_jar.read_bytes()
    roles = {r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]}
    assert any(r.startswith(f"{name}-StudioRole") for r in roles) and any("AlertFunctionRole" in r for r in roles)
    # a second deploy of the same stack updates it (or finds nothing to change)
    assert deploy.deploy(EMAIL, PHONE, stack=name, endpoint_url=moto.url, udf=udf_jar, build=tmp_path).action in (
        "updated", "unchanged")

    # teardown, through its command line
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "teardown.py"), "--stack", name, "--endpoint-url",
                          moto.url], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "testing",
                              "AWS_SECRET_ACCESS_KEY": "testing"})
    assert run.returncode == 0, run.stderr
    assert f"stack {name}: deleted" in run.stdout and f"deleted code bucket {code_bucket}" in run.stdout
    assert awslab.find_stack(cfn, name) is None
    assert kin.list_streams()["StreamNames"] == []
    assert outs["AlertFunctionName"] not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert lam.list_event_source_mappings(FunctionName=outs["AlertFunctionName"])["EventSourceMappings"] == []
    assert outs["AlertStateTableName"] not in aws.client("dynamodb").list_tables()["TableNames"]
    assert outs["AlertTopicArn"] not in [t["TopicArn"] for t in aws.client("sns").list_topics()["Topics"]]
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    assert code_bucket not in buckets and outs["UdfBucketName"] not in buckets
    # and once more: nothing left to remove is not an error
    again = teardown.teardown(name, endpoint_url=moto.url)
    assert again.lines()[0] == f"stack {name}: does not exist (nothing to delete)"


@server
def test_deploy_refuses_a_missing_udf_jar_before_creating_anything(moto, aws, tmp_path):
    with pytest.raises(awslab.AwsLabError, match=r"--udf-jar .*nope.jar: no such file"):
        deploy.deploy(EMAIL, stack="never", endpoint_url=moto.url, udf=tmp_path / "nope.jar", build=tmp_path)
    assert awslab.find_stack(aws.client("cloudformation"), "never") is None


@server
def test_the_producer_sends_a_scenario_and_the_stream_holds_it(stack, aws, moto):
    result = producer.produce("tickerstream", scenario="tiny", speed=0, duration_s=30, endpoint_url=moto.url)
    expected = [r.data for r in producer.scenario_records("tiny", speed=0, duration_s=30)]
    assert result.records == len(expected) > 200 and result.retried == 0
    got = [r["Data"] for shard in kinesis.read_stream(aws.client("kinesis"), "tickerstream").values() for r in shard]
    assert sorted(got) == sorted(expected)
    rows = [json.loads(d) for d in got]
    assert {r["site"] for r in rows} == {"https://www.mysite.com", "https://shop.example.com"}
    assert {r["browseraction"] for r in rows} == {"Impression", "Click"}
    # a KDG template as the lab's, at a rate, through the command line
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "producer.py"), "--template", LAB_TEMPLATE,
                          "--rate", "200", "--max-records", "40", "--stream", "clickstream", "--endpoint-url",
                          moto.url], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "x"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("40 records to clickstream")
    held = kinesis.read_stream(aws.client("kinesis"), "clickstream").values()
    sent = [json.loads(r["Data"]) for s in held for r in s]
    assert len(sent) == 40 and {r["site"] for r in sent} == {"https://www.mysite.com"}


@server
def test_the_producer_names_a_missing_stream(moto):
    with pytest.raises(awslab.AwsLabError, match="Kinesis stream 'nostream' does not exist"):
        producer.produce("nostream", template='{"site": "a"}', rate=100, max_records=1, endpoint_url=moto.url)


class PartialFailureProxy:
    """In front of moto: the first PutRecords call forwards only its first ``keep`` records and answers the others
    as throttled (``ProvisionedThroughputExceededException``), as Kinesis does for a shard over its limit."""

    def __init__(self, target: str, keep: int) -> None:
        outer = self
        self.calls = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                dropped = 0
                if self.headers.get("X-Amz-Target", "").endswith(".PutRecords"):
                    outer.calls += 1
                    if outer.calls == 1:
                        request = json.loads(body)
                        dropped = len(request["Records"]) - keep
                        request["Records"] = request["Records"][:keep]
                        body = json.dumps(request).encode()
                with urllib.request.urlopen(urllib.request.Request(target + self.path, data=body, headers=headers,
                                                                   method="POST"), timeout=10) as resp:
                    status, answer = resp.status, resp.read()
                    content_type = resp.headers.get("Content-Type", "application/x-amz-json-1.1")
                if dropped:
                    payload = json.loads(answer)
                    payload["Records"] += [{"ErrorCode": "ProvisionedThroughputExceededException",
                                            "ErrorMessage": "Rate exceeded for shard"}] * dropped
                    payload["FailedRecordCount"] = dropped
                    answer = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer((local.HOST, 0), Handler)
        self.url = f"http://{local.HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PartialFailureProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@server
def test_records_a_batch_reports_as_failed_are_sent_again(moto, aws):
    kin = aws.client("kinesis")
    name = f"retry-{uuid.uuid4().hex[:6]}"
    kin.create_stream(StreamName=name, ShardCount=1)
    records = [producer.Record(0.0, json.dumps({"site": "a", "n": i}).encode(), "a") for i in range(30)]
    with PartialFailureProxy(moto.url, keep=20) as proxy:
        result = producer.Producer(awslab.Aws("us-east-1", proxy.url).client("kinesis"), name,
                                   backoff_s=0.01).send(records)
    assert proxy.calls == 2 and result.retried == 10 and result.records == 30
    got = [r["Data"] for r in kinesis.read_stream(kin, name)["shardId-000000000000"]]
    assert got == [r.data for r in records]  # each once, in order: the ten failed ones after the twenty


@server
def test_the_handler_on_records_read_back_from_the_stacks_anomalydetectionstream(stack, aws, moto, monkeypatch):
    """As Studio's sink writes them, read back as the event source mapping does, the function's own configuration."""
    outs = stack.outputs
    kin, sqs = aws.client("kinesis"), aws.client("sqs")
    # what SNS delivers, seen through a queue subscribed to the topic (moto's data.json does not serialize
    # once a stack holds a Lambda function); the e-mail and SMS subscriptions get the same publications
    queue = sqs.create_queue(QueueName="alerts-seen")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.client("sns").subscribe(TopicArn=outs["AlertTopicArn"], Protocol="sqs", Endpoint=queue_arn)
    rows = [{"site": "https://www.mysite.com", "rowtime": "2023-08-23T13:05:00", "ctrpercent": 500.0,
             "anomaly_score": 6.48}, "not a row",
            {"site": "https://shop.example.com", "rowtime": "2023-08-23T13:25:10", "ctrpercent": 0.0,
             "anomaly_score": 2.25}]
    kin.put_records(StreamName="anomalydetectionstream", Records=[
        {"Data": r.encode() if isinstance(r, str) else json.dumps(r).encode(), "PartitionKey": "p"} for r in rows])
    (shard, got), = kinesis.read_stream(kin, "anomalydetectionstream").items()
    mapping = aws.client("lambda").list_event_source_mappings(FunctionName=outs["AlertFunctionName"])[
        "EventSourceMappings"][0]
    fn = aws.client("lambda").get_function_configuration(FunctionName=outs["AlertFunctionName"])
    event = kinesis.lambda_event(got[: mapping["BatchSize"]], mapping["EventSourceArn"], shard,
                                 invoke_identity_arn=fn["Role"])
    for key, value in {**fn["Environment"]["Variables"], "AWS_ENDPOINT_URL": moto.url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_LAMBDA_FUNCTION_NAME": fn["FunctionName"]}.items():
        monkeypatch.setenv(key, value)
    assert handler.lambda_handler(event, None) == {"batchItemFailures": []}  # the malformed row is logged, skipped
    seen = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
    assert sorted(m["Subject"] for m in seen) == ["Anomaly Detected"] * 2
    assert any(m["Message"].startswith("Anomaly detected with a click through rate of 500%") for m in seen)
    assert any("Site:   https://shop.example.com" in m["Message"] for m in seen)
    items = aws.client("dynamodb").scan(TableName=outs["AlertStateTableName"])["Items"]
    assert sorted(i["status"]["S"] for i in items if i["pk"]["S"].startswith("alert#")) == ["sent", "sent"]
    # Lambda delivering the same batch again (a retry): nothing is sent twice
    assert handler.lambda_handler(event, None) == {"batchItemFailures": []}
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert base64.b64decode(event["Records"][1]["kinesis"]["data"]) == b"not a row"
