"""An app for `irsa-proxy dev` as a test bench: `python3 bench_app.py MODE SECONDS`.

- `good`: boto3's default credential chain (the container endpoint dev exports)
  and real work in a loop: S3 PutObject and GetObject on the emulator's bucket,
  and STS GetCallerIdentity. Any failed call is printed and makes the exit 1.
- `stale`: the common bug. It fetches credentials ONCE from the container
  endpoint, builds a session with them as static keys, and signs with them
  forever, ignoring its own errors (exit 0).
"""

import json
import os
import sys
import time
import urllib.request

import boto3

mode = sys.argv[1]
seconds = float(sys.argv[2])
bucket = os.environ["IRSA_PROXY_DEV_BUCKET"]

if mode == "stale":
    request = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
    with open(os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]) as f:
        request.add_header("Authorization", f.read())
    with urllib.request.urlopen(request, timeout=5) as r:
        creds = json.load(r)
    print(f"fetched {creds['AccessKeyId']} once, expiring {creds['Expiration']}", flush=True)
    session = boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["Token"],
    )
else:
    session = boto3.session.Session()

s3 = session.client("s3")
sts = session.client("sts")
calls = failures = 0
keys = []
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    calls += 1
    body = f"call {calls} at {time.time()}".encode()
    try:
        s3.put_object(Bucket=bucket, Key=f"app/{calls % 5}.txt", Body=body)
        got = s3.get_object(Bucket=bucket, Key=f"app/{calls % 5}.txt")["Body"].read()
        if got != body:
            raise RuntimeError(f"read back {got!r}, wrote {body!r}")
        sts.get_caller_identity()
        key = session.get_credentials().get_frozen_credentials().access_key
        if not keys or keys[-1] != key:
            keys.append(key)
            print(f"call {calls}: now signing with {key}", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure counts
        failures += 1
        print(f"call {calls} failed: {e}", flush=True)
    time.sleep(0.5)

print(f"{calls - failures} passed, {failures} failed; {len(set(keys))} distinct access keys", flush=True)
sys.exit(0 if mode == "stale" or failures == 0 else 1)
