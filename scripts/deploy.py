"""Deploy the lab's AWS side: ``scripts/clickstream-lab.yaml`` as a CloudFormation stack, with its code.

    .venv/bin/python scripts/deploy.py --email you@example.com [--phone +15555550100] [--stack clickstream-lab]
        [--region us-east-1] [--endpoint-url http://127.0.0.1:5000] [--udf-jar FILE | --no-udf-jar]

Steps: validate the template; build the alert Lambda's zip (``clicklab alerts package``) and upload it to the
code bucket (``<stack>-code-<account>-<region>``, created if missing; the key carries the zip's hash, so a
changed handler updates the function); create the stack, or update it when it exists; wait for it; upload
the RANDOM_CUT_FOREST jar (``clicklab udf-jar``) to the stack's UDF bucket. Prints the stack's outputs and
what to do next in the console (README, Deploying to AWS). A failure names the resource and CloudFormation's
reason. ``scripts/teardown.py`` removes all of it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import botocore.exceptions
from boto3.exceptions import S3UploadFailedError

from scripts.awslab import (
    DEFAULT_REGION,
    DEFAULT_STACK,
    REPO,
    TEMPLATE,
    Aws,
    AwsLabError,
    error_text,
    find_stack,
    outputs,
    run_main,
    wait_stack,
)

UDF_KEY = "udf/clickstream-rcf-udf.jar"
LAMBDA_KEY_PREFIX = "lambda/clickstream-alerts-"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]


@dataclass
class Deployment:
    """What :func:`deploy` did: the stack, its outputs, where the code went."""

    stack: str
    action: str  # created, updated, unchanged
    outputs: dict[str, str]
    code_bucket: str
    lambda_key: str
    udf_uri: str | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"stack {self.stack}: {self.action}"]
        out += [f"  {k}: {v}" for k, v in sorted(self.outputs.items())]
        out.append(f"  Lambda code: s3://{self.code_bucket}/{self.lambda_key}")
        out.append(f"  UDF jar: {self.udf_uri or 'not uploaded (--no-udf-jar)'}")
        return out + self.notes


def code_bucket_name(stack: str, account: str, region: str) -> str:
    """The bucket for the Lambda zip: S3 names are global, so it carries the account and region."""
    return f"{stack.lower()}-code-{account}-{region}"[:63].rstrip("-")


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create ``bucket`` unless it exists and is ours; an error naming the bucket otherwise."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("403", "Forbidden"):
            raise AwsLabError(f"S3 bucket {bucket} exists and belongs to another account: give --code-bucket") from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise AwsLabError(f"S3 bucket {bucket}: {error_text(exc)}") from None
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
        block = dict.fromkeys((
            "BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True)
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
    except botocore.exceptions.ClientError as exc:
        raise AwsLabError(f"S3 bucket {bucket}: cannot create it: {error_text(exc)}") from None


def upload(s3: Any, path: Path, bucket: str, key: str) -> str:
    try:
        s3.upload_file(str(path), bucket, key)
    except (botocore.exceptions.ClientError, S3UploadFailedError) as exc:
        raise AwsLabError(f"upload of {path} to s3://{bucket}/{key} failed: {error_text(exc)}") from None
    return f"s3://{bucket}/{key}"


def lambda_zip(build: Path) -> Path:
    """The alert Lambda's zip, as ``clicklab alerts package`` builds it."""
    from clicklab.alerts.package import build_zip

    return build_zip(build / "lambda.zip")


def udf_jar(path: Path | None) -> Path:
    """``path``, or the jar ``clicklab udf-jar`` builds (built now if missing or stale; needs a JDK)."""
    if path is not None:
        if not Path(path).is_file():
            raise AwsLabError(f"--udf-jar {path}: no such file")
        return Path(path)
    from clicklab import javaudf

    try:
        return javaudf.build_jar()
    except Exception as exc:
        raise AwsLabError(f"the UDF jar could not be built ({exc}); build it with `clicklab udf-jar`, or give "
                          "--udf-jar FILE, or --no-udf-jar") from None


def parameters(email: str, phone: str | None, code_bucket: str, lambda_key: str, cooldown_s: int,
               shards: int) -> list[dict[str, str]]:
    values = {"AlertEmail": email, "AlertPhone": phone or "", "LambdaCodeBucket": code_bucket,
              "LambdaCodeKey": lambda_key, "AlertCooldownSeconds": str(cooldown_s), "ShardCount": str(shards)}
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def deploy(email: str, phone: str | None = None, stack: str = DEFAULT_STACK, region: str = DEFAULT_REGION,
           endpoint_url: str | None = None, code_bucket: str | None = None, udf: Path | None = None,
           upload_udf: bool = True, cooldown_s: int = 600, shards: int = 1, build: Path = REPO / "build",
           timeout_s: float = 1800.0) -> Deployment:
    """Create or update the stack and upload its code; :class:`AwsLabError` names what failed."""
    aws = Aws(region, endpoint_url)
    cfn, s3 = aws.client("cloudformation"), aws.client("s3")
    body = TEMPLATE.read_text(encoding="utf-8")
    try:
        cfn.validate_template(TemplateBody=body)
    except botocore.exceptions.ClientError as exc:
        raise AwsLabError(f"template {TEMPLATE}: {error_text(exc)}") from None
    jar = udf_jar(udf) if upload_udf else None  # before anything is created: a missing jar stops here

    zip_path = lambda_zip(Path(build))
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]
    bucket = code_bucket or code_bucket_name(stack, aws.account_id(), region)
    ensure_bucket(s3, bucket, region)
    key = f"{LAMBDA_KEY_PREFIX}{digest}.zip"
    upload(s3, zip_path, bucket, key)

    params = parameters(email, phone, bucket, key, cooldown_s, shards)
    existing = find_stack(cfn, stack)
    try:
        if existing is None:
            stack_id = cfn.create_stack(StackName=stack, TemplateBody=body, Parameters=params,
                                        Capabilities=CAPABILITIES, OnFailure="ROLLBACK",
                                        Tags=[{"Key": "project", "Value": "clicklab"}])["StackId"]
            action, done = "created", "CREATE_COMPLETE"
        else:
            if existing["StackStatus"].endswith("_IN_PROGRESS"):
                raise AwsLabError(f"stack {stack} is {existing['StackStatus']}: wait for it, then run deploy again")
            if existing["StackStatus"] == "ROLLBACK_COMPLETE":
                raise AwsLabError(f"stack {stack} is ROLLBACK_COMPLETE (its creation failed): remove it with "
                                  "scripts/teardown.py, then deploy again")
            stack_id = existing["StackId"]
            cfn.update_stack(StackName=stack, TemplateBody=body, Parameters=params, Capabilities=CAPABILITIES)
            action, done = "updated", "UPDATE_COMPLETE"
    except botocore.exceptions.ClientError as exc:
        if "No updates are to be performed" in str(exc):
            stack_id, action, done = existing["StackId"], "unchanged", existing["StackStatus"]  # type: ignore[index]
        else:
            raise AwsLabError(f"stack {stack}: {error_text(exc)}") from None
    except botocore.exceptions.BotoCoreError as exc:  # e.g. an endpoint answering a resource's error unparsed
        raise AwsLabError(f"stack {stack}: {type(exc).__name__}: {exc}") from None
    description = wait_stack(cfn, stack_id, done, timeout_s) if action != "unchanged" else existing
    out = outputs(description or {})
    deployment = Deployment(stack, action, out, bucket, key)
    if jar is not None:
        deployment.udf_uri = upload(s3, jar, out["UdfBucketName"], UDF_KEY)
    deployment.notes = [
        f"next: confirm the subscription e-mail sent to {email}; create the Studio notebook with role "
        f"{out.get('StudioRoleArn')} and Glue database {out.get('GlueDatabaseName')}, add the UDF jar as a custom "
        f"connector, import the note of `clicklab export-zeppelin --region {region}`, and send traffic with "
        f"scripts/producer.py --stream {out.get('TickerStreamName', 'tickerstream')} (README, Deploying to AWS)",
    ]
    return deployment


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--email", required=True, help="e-mail address for the alerts (confirm AWS's e-mail)")
    p.add_argument("--phone", default=None, help="phone number for SMS alerts, E.164 (+15555550100)")
    p.add_argument("--stack", default=DEFAULT_STACK, help=f"stack name (default {DEFAULT_STACK})")
    p.add_argument("--region", default=DEFAULT_REGION, help=f"AWS region (default {DEFAULT_REGION})")
    p.add_argument("--endpoint-url", default=None, help="another AWS-compatible endpoint, e.g. a local moto server")
    p.add_argument("--code-bucket", default=None, help="S3 bucket for the Lambda zip (default <stack>-code-<account>-"
                   "<region>, created if missing)")
    p.add_argument("--udf-jar", type=Path, default=None, help="the UDF jar to upload (default: build it)")
    p.add_argument("--no-udf-jar", action="store_true", help="do not upload the UDF jar")
    p.add_argument("--cooldown", type=int, default=600, help="seconds between two alerts of a site (default 600)")
    p.add_argument("--shards", type=int, default=1, help="shards per Kinesis stream (default 1)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the stack (default 1800)")
    args = p.parse_args(argv)
    result = run_main("deploy", lambda: deploy(
        args.email, args.phone, args.stack, args.region, args.endpoint_url, args.code_bucket, args.udf_jar,
        not args.no_udf_jar, args.cooldown, args.shards, timeout_s=args.timeout))
    if isinstance(result, int):
        return result
    print("\n".join(result.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
