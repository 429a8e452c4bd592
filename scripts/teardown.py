"""Remove what ``scripts/deploy.py`` created: the stack (streams, topic, Lambda, table, buckets, roles), its code.

    .venv/bin/python scripts/teardown.py [--stack clickstream-lab] [--region us-east-1]
        [--endpoint-url http://127.0.0.1:5000] [--keep-code-bucket]

Steps: empty the stack's UDF bucket (CloudFormation cannot delete a bucket with objects in it); delete the
stack and wait for it; empty and delete the code bucket that deploy created. A stack that does not exist is
not an error (there is nothing to remove); a failed deletion names the resources and CloudFormation's reason.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import botocore.exceptions

from scripts.awslab import (
    DEFAULT_REGION,
    DEFAULT_STACK,
    Aws,
    AwsLabError,
    empty_bucket,
    error_text,
    find_stack,
    outputs,
    run_main,
    wait_stack,
)
from scripts.deploy import code_bucket_name


@dataclass
class Teardown:
    stack: str
    deleted: bool
    steps: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        state = "deleted" if self.deleted else "does not exist (nothing to delete)"
        return [f"stack {self.stack}: {state}"] + [f"  {s}" for s in self.steps]


def teardown(stack: str = DEFAULT_STACK, region: str = DEFAULT_REGION, endpoint_url: str | None = None,
             code_bucket: str | None = None, keep_code_bucket: bool = False, timeout_s: float = 1800.0) -> Teardown:
    """Delete the stack and the code bucket; :class:`AwsLabError` names what could not be removed."""
    aws = Aws(region, endpoint_url)
    cfn, s3 = aws.client("cloudformation"), aws.client("s3")
    found = find_stack(cfn, stack)
    result = Teardown(stack, deleted=found is not None)
    if found is not None:
        udf_bucket = outputs(found).get("UdfBucketName")
        if udf_bucket:
            result.steps.append(f"emptied S3 bucket {udf_bucket} ({empty_bucket(s3, udf_bucket)} objects)")
        try:
            cfn.delete_stack(StackName=found["StackId"])
        except botocore.exceptions.ClientError as exc:
            raise AwsLabError(f"stack {stack}: {error_text(exc)}") from None
        wait_stack(cfn, found["StackId"], "DELETE_COMPLETE", timeout_s)
        result.steps.append("deleted the stack's resources (streams, topic, function, mapping, table, buckets, roles)")
    if not keep_code_bucket:
        bucket = code_bucket or code_bucket_name(stack, aws.account_id(), region)
        count = empty_bucket(s3, bucket)
        try:
            s3.delete_bucket(Bucket=bucket)
            result.steps.append(f"deleted code bucket {bucket} ({count} objects)")
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise AwsLabError(f"S3 bucket {bucket}: cannot delete it: {error_text(exc)}") from None
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", default=DEFAULT_STACK, help=f"stack name (default {DEFAULT_STACK})")
    p.add_argument("--region", default=DEFAULT_REGION, help=f"AWS region (default {DEFAULT_REGION})")
    p.add_argument("--endpoint-url", default=None, help="another AWS-compatible endpoint, e.g. a local moto server")
    p.add_argument("--code-bucket", default=None, help="the code bucket given to deploy.py, if any")
    p.add_argument("--keep-code-bucket", action="store_true", help="leave the code bucket and the Lambda zips")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the deletion (default 1800)")
    args = p.parse_args(argv)
    result = run_main("teardown", lambda: teardown(
        args.stack, args.region, args.endpoint_url, args.code_bucket, args.keep_code_bucket, args.timeout))
    if isinstance(result, int):
        return result
    print("\n".join(result.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
