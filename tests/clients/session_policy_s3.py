"""S3 through irsa-proxy's credentials when a session policy narrows the role.

Run with the container-credentials variables pointing at the proxy and
AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_STS at the emulator. The session policy
of the test allows GetObject and PutObject in $INSIDE_BUCKET, ListBucket
(HeadBucket) on it, and denies everything under private/ in it; the role
itself (the emulator's) allows everything.

Prints one line per check, `ok NAME` or `FAILED NAME: ...`, then for each
AccessDenied the message S3 gave as `denied NAME: MESSAGE`, and exits 1 if any
check failed. Nothing secret is printed.
"""

import os
import sys

import boto3
from botocore.exceptions import ClientError

# Under `dev`, the bucket it made is the one inside the policy.
inside = os.environ.get("INSIDE_BUCKET") or os.environ["IRSA_PROXY_DEV_BUCKET"]
outside = os.environ.get("OUTSIDE_BUCKET", "other-team")
session = boto3.session.Session()
s3 = session.client("s3")
sts = session.client("sts")
failed = 0
messages = []


def check(name, fn, code=None):
    global failed
    try:
        fn()
        got = None
    except ClientError as e:
        got = e.response["Error"]["Code"]
        if got == "AccessDenied":
            messages.append((name, e.response["Error"].get("Message", "")))
    if got == code:
        print(f"ok {name}", flush=True)
    else:
        failed += 1
        print(f"FAILED {name}: expected {code}, got {got}", flush=True)


check("put inside", lambda: s3.put_object(Bucket=inside, Key="reports/q1.csv", Body=b"1,2"))
check(
    "get inside",
    lambda: s3.get_object(Bucket=inside, Key="reports/q1.csv")["Body"].read() == b"1,2" or 1 / 0,
)
check("head bucket inside", lambda: s3.head_bucket(Bucket=inside))
check("put outside", lambda: s3.put_object(Bucket=outside, Key="k", Body=b"x"), "AccessDenied")
check("get outside", lambda: s3.get_object(Bucket=outside, Key="k"), "AccessDenied")
check("delete inside", lambda: s3.delete_object(Bucket=inside, Key="reports/q1.csv"), "AccessDenied")
check(
    "put under private",
    lambda: s3.put_object(Bucket=inside, Key="private/k", Body=b"x"),
    "AccessDenied",
)
check("create bucket", lambda: s3.create_bucket(Bucket="made-by-the-app"), "AccessDenied")
check("who am i", lambda: print("arn " + sts.get_caller_identity()["Arn"], flush=True))
for name, message in messages:
    print(f"denied {name}: {message}", flush=True)
sys.exit(1 if failed else 0)
