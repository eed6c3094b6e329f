"""Legacy test client for botocore/boto3 (used as botocore-debian and botocore-2019).

Usage: python botocore.py NAME [--sdk-version]

Resolves credentials through boto3's default chain only (whatever the standard
AWS_* environment variables select: container endpoint or IMDS), then makes one
SigV4-signed STS GetCallerIdentity call to $IRSA_TEST_STS_ENDPOINT and prints one
JSON line. Never prints the secret key or the session token. See ../README.md.
"""
import json
import os
import re
import signal
import sys

DEADLINE_SECONDS = 20
# Credentials that came from anywhere but a network endpoint mean the route under
# test was not exercised: fail rather than report a false success.
NETWORK_METHODS = {"container-role", "iam-role"}


def redact(text):
    """Hide the pod's authorization token: as a value, and as a /v2 path secret."""
    token = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    if token:
        text = text.replace(token, "...")
    return re.sub(r"/v2/credentials/[^\s\"'<>)]+", "/v2/credentials/...", text)


def fail(name, what):
    one_line = redact(" ".join(str(what).split()))
    sys.stderr.write("%s: error: %s\n" % (name, one_line))
    sys.stderr.flush()
    os._exit(1)


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "botocore"

    def on_alarm(signum, frame):
        fail(name, "Timeout: no result within %d s" % DEADLINE_SECONDS)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(DEADLINE_SECONDS)

    try:
        import boto3
        import botocore
        from botocore.config import Config
    except Exception as e:  # an SDK that does not import on this Python
        fail(name, "ImportError: %s: %s" % (type(e).__name__, e))
    sdk = "botocore@%s" % botocore.__version__
    if "--sdk-version" in sys.argv[2:]:
        print("%s (boto3@%s, %s)" % (sdk, boto3.__version__, os.path.dirname(botocore.__file__)))
        return

    endpoint = os.environ.get("IRSA_TEST_STS_ENDPOINT")
    if not endpoint:
        fail(name, "ConfigError: IRSA_TEST_STS_ENDPOINT is not set")

    try:
        session = boto3.session.Session(region_name="us-east-1")
        creds = session.get_credentials()  # the default chain; cached by the session
        if creds is None:
            fail(name, "NoCredentialsError: the default credential chain found no credentials")
        method = getattr(creds, "method", None)
        if method not in NETWORK_METHODS:
            fail(name, "WrongProvider: credentials came from %r, not from a container or IMDS endpoint" % method)
        access_key_id = creds.get_frozen_credentials().access_key
        sts = session.client(
            "sts",
            region_name="us-east-1",
            endpoint_url=endpoint,
            config=Config(connect_timeout=5, read_timeout=5, retries={"max_attempts": 0}),
        )
        ident = sts.get_caller_identity()
    except Exception as e:
        fail(name, "%s: %s" % (type(e).__name__, e))

    signal.alarm(0)
    print(json.dumps({
        "client": name,
        "sdk": sdk,
        "access_key_id": access_key_id,
        "arn": ident["Arn"],
    }, separators=(",", ":")))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
