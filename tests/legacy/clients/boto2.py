"""Legacy test client for boto 2 (the `boto` package, last release 2.49.0).

Usage: python boto2.py NAME [--sdk-version]

boto 2's only remote credential source is IMDSv1 at the fixed address
http://169.254.169.254 (boto.provider.Provider -> boto.utils.get_instance_metadata).
This client builds an STSConnection with no keys, so boto's own provider chain
(env, shared file, boto config, then IMDS) decides, and sends GetCallerIdentity
through the connection's generic make_request, signed by boto's own
HmacAuthV4Handler. It talks plain HTTP to the host and port of
$IRSA_TEST_STS_ENDPOINT. Prints one JSON line; never the secret or the token.
"""
import json
import os
import re
import signal
import sys
import warnings
import xml.etree.ElementTree as ET

DEADLINE_SECONDS = 20
STS_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"

# boto 2 imports the deprecated `imp` module; keep stderr clean on success.
warnings.simplefilter("ignore", DeprecationWarning)


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
    name = sys.argv[1] if len(sys.argv) > 1 else "boto2"

    def on_alarm(signum, frame):
        fail(name, "Timeout: no result within %d s" % DEADLINE_SECONDS)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(DEADLINE_SECONDS)

    try:
        import boto
        import boto.exception
        import boto.sts
        from boto.regioninfo import RegionInfo
    except Exception as e:
        fail(name, "ImportError: %s: %s" % (type(e).__name__, e))
    sdk = "boto@%s" % boto.__version__
    if "--sdk-version" in sys.argv[2:]:
        print("%s (%s)" % (sdk, os.path.dirname(boto.__file__)))
        return

    endpoint = os.environ.get("IRSA_TEST_STS_ENDPOINT")
    if not endpoint:
        fail(name, "ConfigError: IRSA_TEST_STS_ENDPOINT is not set")
    try:
        from urllib.parse import urlsplit
        url = urlsplit(endpoint)
        if url.scheme != "http" or not url.hostname:
            fail(name, "ConfigError: IRSA_TEST_STS_ENDPOINT must be http://HOST:PORT, got %r" % endpoint)
        host, port = url.hostname, url.port or 80

        # Bound the STS call: no retries, short socket timeout. (IMDS already uses
        # boto's defaults: metadata_service_timeout 1 s, 1 attempt.)
        if not boto.config.has_section("Boto"):
            boto.config.add_section("Boto")
        boto.config.set("Boto", "num_retries", "0")
        boto.config.set("Boto", "http_socket_timeout", "5")

        region = RegionInfo(name="us-east-1", endpoint=host,
                            connection_cls=boto.sts.STSConnection)
        # boto logs (and swallows) why the metadata fetch failed; keep the last one.
        import logging
        last_error = []

        class Keep(logging.Handler):
            def emit(self, record):
                msg = record.getMessage()
                if record.exc_info and record.exc_info[1] is not None:
                    msg += ": %s: %s" % (type(record.exc_info[1]).__name__, record.exc_info[1])
                last_error[:] = [msg]

        logging.getLogger("boto").addHandler(Keep(level=logging.WARNING))

        # No keys given: boto.provider.Provider resolves them (IMDS when nothing else).
        try:
            conn = boto.sts.STSConnection(is_secure=False, port=port, region=region)
        except boto.exception.NoAuthHandlerFound:
            conn = None
        if conn is None or not conn.provider.access_key:
            fail(name, "NoCredentials: boto found no credentials (IMDSv1 at 169.254.169.254)%s"
                 % ("; " + last_error[0] if last_error else ""))
        provider = conn.provider
        access_key_id = provider.access_key
        # Only the metadata path sets an expiry; keys from env/files have none.
        if getattr(provider, "_credential_expiry_time", None) is None:
            fail(name, "WrongProvider: credentials did not come from the instance metadata service")

        # SigV4 scope: boto derives service and region from an AWS host name
        # (sts.amazonaws.com); with an IP address it cannot, so name them.
        handler = conn._auth_handler
        if type(handler).__name__ != "HmacAuthV4Handler":
            fail(name, "SigningError: expected boto's HmacAuthV4Handler, got %s" % type(handler).__name__)
        handler.service_name = "sts"
        handler.region_name = "us-east-1"

        # boto 2.49's STSConnection has no get_caller_identity; use the generic
        # query-API request (Action/Version params, SigV4-signed by boto).
        resp = conn.make_request("GetCallerIdentity", {}, "/", "POST")
        body = resp.read()
        if resp.status != 200:
            fail(name, "STSError: HTTP %d: %s" % (resp.status, body[:300].decode("utf-8", "replace")))
        arn = ET.fromstring(body).find(".//%sArn" % STS_NS)
        if arn is None or not arn.text:
            fail(name, "STSError: no Arn in GetCallerIdentity response")
    except SystemExit:
        raise
    except Exception as e:
        fail(name, "%s: %s" % (type(e).__name__, e))

    signal.alarm(0)
    print(json.dumps({
        "client": name,
        "sdk": sdk,
        "access_key_id": access_key_id,
        "arn": arn.text,
    }, separators=(",", ":")))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
