"""Which role this process gets, for `dev --roles-file ... --run NAME=...`.

Usage: roles_whoami.py NAME. Prints `NAME arn <assumed-role ARN>` and
`NAME put <ok|ERROR CODE>` for a PutObject into $IRSA_PROXY_DEV_BUCKET, and
`NAME imds <disabled|enabled>`. Exits 0 unless the credentials cannot be had.
"""

import os
import sys

import boto3
from botocore.exceptions import ClientError

name = sys.argv[1]
session = boto3.session.Session()
arn = session.client("sts").get_caller_identity()["Arn"]
print(f"{name} arn {arn}", flush=True)
try:
    session.client("s3").put_object(
        Bucket=os.environ["IRSA_PROXY_DEV_BUCKET"], Key=f"from/{name}", Body=b"x"
    )
    print(f"{name} put ok", flush=True)
except ClientError as e:
    print(f"{name} put {e.response['Error']['Code']}", flush=True)
imds = "disabled" if os.environ.get("AWS_EC2_METADATA_DISABLED") == "true" else "enabled"
print(f"{name} imds {imds}", flush=True)
