"""S3 errors as boto3 sees them from irsa-proxy's S3 emulator, run under `dev`.

Prints one line per check, `ok NAME` or `FAILED NAME: ...`, and exits 1 if any
check failed. Nothing secret is printed.
"""

import os
import sys

import boto3
import botocore.config
from botocore.exceptions import ClientError

bucket = os.environ["IRSA_PROXY_DEV_BUCKET"]
session = boto3.session.Session()
s3 = session.client("s3")
failed = 0


def check(name, fn, code=None):
    global failed
    try:
        fn()
        got = None
    except ClientError as e:
        got = e.response["Error"]["Code"]
    if got == code:
        print(f"ok {name}", flush=True)
    else:
        failed += 1
        print(f"FAILED {name}: expected {code}, got {got}", flush=True)


creds = session.get_credentials().get_frozen_credentials()
check("put", lambda: s3.put_object(Bucket=bucket, Key="a/b c.txt", Body=b"hello"))
check(
    "get",
    lambda: s3.get_object(Bucket=bucket, Key="a/b c.txt")["Body"].read() == b"hello" or 1 / 0,
)
check("head", lambda: s3.head_object(Bucket=bucket, Key="a/b c.txt"))
check("no such key", lambda: s3.get_object(Bucket=bucket, Key="missing"), "NoSuchKey")
check("no such bucket", lambda: s3.get_object(Bucket="no-such-bucket", Key="k"), "NoSuchBucket")
check("create bucket", lambda: s3.create_bucket(Bucket="made-by-the-app"))
check("put in the new bucket", lambda: s3.put_object(Bucket="made-by-the-app", Key="k", Body=b"x"))
check("delete", lambda: s3.delete_object(Bucket=bucket, Key="a/b c.txt"))
check("deleted", lambda: s3.get_object(Bucket=bucket, Key="a/b c.txt"), "NoSuchKey")
check(
    "too large",
    lambda: s3.put_object(Bucket=bucket, Key="big", Body=b"x" * (8 * 1024 * 1024 + 1)),
    "EntityTooLarge",
)
check("list is not emulated", lambda: s3.list_objects_v2(Bucket=bucket), "NotImplemented")
# A presigned URL (SigV4; the emulator does not speak SigV2, boto3's default
# for presigning) is verified like a signed request.
v4 = session.client("s3", config=botocore.config.Config(signature_version="s3v4"))
url = v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "presigned"})
import urllib.request  # noqa: E402

req = urllib.request.Request(url, data=b"via url", method="PUT")
with urllib.request.urlopen(req, timeout=5) as r:
    print("ok presigned put" if r.status == 200 else f"FAILED presigned put: {r.status}")
never = boto3.session.Session(
    aws_access_key_id="ASIANEVERISSUED0000",
    aws_secret_access_key="x" * 40,
    aws_session_token="nope",
).client("s3")
check("never issued", lambda: never.get_object(Bucket=bucket, Key="k"), "InvalidAccessKeyId")
wrong_secret = boto3.session.Session(
    aws_access_key_id=creds.access_key,
    aws_secret_access_key="y" * 40,
    aws_session_token=creds.token,
).client("s3")
check("wrong secret", lambda: wrong_secret.get_object(Bucket=bucket, Key="k"), "SignatureDoesNotMatch")
virtual = session.client(
    "s3", config=botocore.config.Config(s3={"addressing_style": "path"})
)
check("explicit path style", lambda: virtual.put_object(Bucket=bucket, Key="p", Body=b"p"))
sys.exit(1 if failed else 0)
