#!/usr/bin/env python3
"""A tiny fake STS for the benchmark.

It answers the STS Query protocol's AssumeRoleWithWebIdentity (a form-encoded
POST) with the XML document real STS sends, issuing credentials that live
--ttl seconds (fractions allowed, so the proxy can be made to refresh about
every second), optionally after --delay seconds. It does not verify the token.

GET /calls answers the number of AssumeRoleWithWebIdentity calls so far, so the
benchmark can count them. The listening port is written to --port-file once the
socket is bound (pass --port 0 for a free one).
"""

import argparse
import datetime
import http.server
import os
import threading
import time
import urllib.parse

ARGS = None
CALLS = 0
LOCK = threading.Lock()

OK = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:bench</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{account}:assumed-role/{role}/{session}</Arn>
      <AssumedRoleId>AROAFAKE00000000000:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{key}</AccessKeyId>
    </Credentials>
    <Provider>oidc.eks.us-east-1.amazonaws.com/id/BENCH</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>00000000-0000-0000-0000-{n:012d}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"""

ERROR = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>InvalidAction</Code>
    <Message>unsupported action</Message>
  </Error>
  <RequestId>00000000-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>
"""


def xml_escape(s):
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


class Handler(http.server.BaseHTTPRequestHandler):
    # Keep-alive, as the SDK's connection pool expects.
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="text/xml"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/calls":
            with LOCK:
                n = CALLS
            self.send(200, str(n), "text/plain")
        else:
            self.send(404, "not found", "text/plain")

    def do_POST(self):
        global CALLS
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        get = lambda k: (form.get(k) or [""])[0]
        if get("Action") != "AssumeRoleWithWebIdentity":
            self.send(400, ERROR)
            return
        with LOCK:
            CALLS += 1
            n = CALLS
        if ARGS.delay > 0:
            time.sleep(ARGS.delay)
        role_arn = get("RoleArn")
        parts = role_arn.split(":")
        account = parts[4] if len(parts) > 4 and parts[4] else "123456789012"
        asked = float(get("DurationSeconds") or 3600)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=min(ARGS.ttl, asked)
        )
        body = OK.format(
            account=account,
            role=xml_escape(role_arn.rsplit("/", 1)[-1] or "role"),
            session=xml_escape(get("RoleSessionName")),
            token="FakeSessionToken" + "x" * 600 + str(n),
            secret="fakeSecretAccessKey0000000000000000000000",
            expiration=expires.strftime("%Y-%m-%dT%H:%M:%S.")
            + "%03dZ" % (expires.microsecond // 1000),
            key="ASIAFAKE%012d" % n,
            n=n,
        )
        self.send(200, body)


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--ttl", type=float, default=3600.0, help="credential lifetime, seconds")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    ARGS = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, ARGS.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
