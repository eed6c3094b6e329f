"""End to end through `irsa-proxy dev -- python3 dev_e2e.py SECONDS`.

boto3 with its default credential chain (which finds the container endpoint that
`dev` exported) calls sts:GetCallerIdentity against the emulator, over and over for
SECONDS. Every call must succeed, and across the run the credentials must rotate:
at least two different access key ids. Prints a summary and exits non-zero on any
failure.
"""

import sys
import time

import boto3

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 70.0
session = boto3.session.Session()
sts = session.client("sts")
keys = []
calls = failures = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    calls += 1
    try:
        who = sts.get_caller_identity()
        if ":assumed-role/irsa-proxy-dev/" not in who["Arn"]:
            raise RuntimeError(f"unexpected identity {who['Arn']}")
        key = session.get_credentials().get_frozen_credentials().access_key
        if not keys or keys[-1] != key:
            keys.append(key)
            print(f"call {calls}: {who['Arn']} with {key}", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure counts
        failures += 1
        print(f"call {calls} failed: {e}", flush=True)
        if failures >= 5:
            break
    time.sleep(0.5)

distinct = len(set(keys))
ok = failures == 0 and distinct >= 2
print(f"{calls - failures} passed, {failures} failed; {distinct} distinct access keys")
sys.exit(0 if ok else 1)
