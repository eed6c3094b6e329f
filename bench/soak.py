#!/usr/bin/env python3
"""Soak and chaos run for irsa-proxy (driven by bench/soak.sh).

Runs the release binary against the real `irsa-proxy sts-emulator` issuing
60-second credentials, behind a fault-injecting HTTP proxy, while:

- load runs on /v1/credentials and the IMDS credentials path (wrk, or a small
  keep-alive client of our own when wrk is not installed);
- a checker samples both paths continuously and parses every Expiration;
- the token is rotated every 2 s with kubelet's `..data` swap, and once the
  whole token directory is replaced;
- STS misbehaves: every 10 s the fault proxy stops listening for 2 s and the
  emulator process is restarted; 20 % of calls fail (Throttling 400 or
  InternalFailure 500 XML), and one call in seven is delayed 6 s, past the
  SDK's 5 s attempt timeout.

Asserts: no non-200 while the last good credentials were still to be served;
no credentials served inside the safety margin before their expiry; every
rotation counted in irsa_proxy_token_rotations_total; RSS and open file
descriptors grow less than 10 % from the end of the warm-up to the end.
Reports STS calls against the ideal. With --roles the proxy serves two roles
(docs/contract.md §13: `app`, also on IMDS, and `copier`), each loaded and
checked through its own token; the run also asserts that each role's keys are
its own (no key seen through both tokens, every ECS body naming its token's
role) and reports the STS calls and keys of each role.
Standard library only, plus `openssl`.
All traffic stays on 127.0.0.1; every loop is bounded by the run's deadline.
"""

import argparse
import base64
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROLE_ARN = "arn:aws:iam::111122223333:role/soak-role"
ROLE_NAME = "soak-role"
# --roles: two roles in one proxy, each with its own token; `app` is the IMDS role.
ROLES = {"app": ROLE_ARN, "copier": "arn:aws:iam::111122223333:role/soak-copier"}
# The link-local credential addresses (--link-local).
ECS_ADDR = "169.254.170.2"
IMDS_ADDR = "169.254.169.254"
ISSUER = "https://oidc.soak.example/id/SOAK"
SUB = "system:serviceaccount:soak:app"
CREDENTIAL_TTL = 60
# SPEC: served until min(60 s, lifetime / 4) before expiry: 15 s for 60 s credentials.
SAFETY_MARGIN = min(60, CREDENTIAL_TTL / 4)
# The ECS/IMDS Expiration is whole seconds, truncated: up to 1 s early.
EXPIRATION_SLACK = 1.0
ROTATE_EVERY = 2.0
STS_RESTART_EVERY = 10.0
STS_DOWN_FOR = 2.0
FAIL_RATE = 0.20
DELAY_EVERY = 7
DELAY = 6.0


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Minter:
    """RS256 JWTs signed with `openssl dgst -sha256 -sign`."""

    def __init__(self, workdir):
        self.key = os.path.join(workdir, "issuer-key.pem")
        self.pub = os.path.join(workdir, "issuer.pub.pem")
        subprocess.run(["openssl", "genrsa", "-out", self.key, "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", self.key, "-pubout", "-out", self.pub], check=True, capture_output=True)
        self.seq = 0

    def mint(self):
        self.seq += 1
        now = int(time.time())
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        claims = {"iss": ISSUER, "sub": SUB, "aud": ["sts.amazonaws.com"], "iat": now, "nbf": now - 5,
                  "exp": now + 3600, "jti": f"soak-{self.seq}"}
        payload = b64url(json.dumps(claims).encode())
        signing_input = f"{header}.{payload}".encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input,
                             check=True, capture_output=True).stdout
        return f"{header}.{payload}.{b64url(sig)}"


class TokenDir:
    """A projected-token directory written as kubelet's atomic writer does."""

    def __init__(self, parent, token):
        self.parent = parent
        self.root = os.path.join(parent, "serviceaccount")
        os.mkdir(self.root)
        self.current = None
        self.seq = 0
        self.write(token)
        os.symlink("..data/token", os.path.join(self.root, "token"))

    @property
    def token_path(self):
        return os.path.join(self.root, "token")

    def write(self, token, root=None):
        root = root or self.root
        self.seq += 1
        name = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self.seq:06d}"
        os.mkdir(os.path.join(root, name))
        with open(os.path.join(root, name, "token"), "w") as f:
            f.write(token)
        tmp = os.path.join(root, "..data_tmp")
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(name, tmp)
        os.rename(tmp, os.path.join(root, "..data"))
        if self.current and root == self.root:
            shutil.rmtree(os.path.join(root, self.current), ignore_errors=True)
        self.current = name

    def replace_directory(self, token):
        """A new directory with the full layout renamed into the old one's place."""
        fresh = os.path.join(self.parent, "serviceaccount.new")
        os.mkdir(fresh)
        self.current = None
        self.write(token, root=fresh)
        os.symlink("..data/token", os.path.join(fresh, "token"))
        old = os.path.join(self.parent, "serviceaccount.old")
        os.rename(self.root, old)
        os.rename(fresh, self.root)
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------ fault proxy

THROTTLING = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>
  <RequestId>00000000-0000-0000-0000-0000000soak1</RequestId>
</ErrorResponse>
"""
INTERNAL = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>injected by the soak</Message></Error>
  <RequestId>00000000-0000-0000-0000-0000000soak2</RequestId>
</ErrorResponse>
"""


class FaultStats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"calls": 0, "throttled": 0, "internal": 0, "delayed": 0, "forwarded": 0,
                       "issued": 0, "upstream_errors": 0, "client_gone": 0}

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] += n


class FaultProxy:
    """Forwards STS calls to the emulator, breaking some on purpose. `stop()`
    closes the listening socket (clients get connection refused) and `start()`
    listens again on the same port."""

    def __init__(self, port, upstream_port, stats, deadline):
        self.port = port
        self.upstream_port = upstream_port
        self.stats = stats
        self.deadline = deadline
        self.server = None
        self.thread = None

    def handler(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                with proxy.stats.lock:
                    proxy.stats.counts["calls"] += 1
                    n = proxy.stats.counts["calls"]
                roll = random.random()
                # Every DELAY_EVERY-th call is delayed, so that even a short run
                # sees the SDK's attempt timeout; the rest fail at FAIL_RATE.
                if n % DELAY_EVERY == 2:
                    roll = FAIL_RATE
                if roll < FAIL_RATE / 2:
                    proxy.stats.add("throttled")
                    return self.answer(400, THROTTLING.encode())
                if roll < FAIL_RATE:
                    proxy.stats.add("internal")
                    return self.answer(500, INTERNAL.encode())
                if roll == FAIL_RATE:
                    proxy.stats.add("delayed")
                    time.sleep(DELAY)
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request("POST", self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    conn.close()
                except OSError:
                    # The emulator is restarting: drop the connection, as a dead STS would.
                    proxy.stats.add("upstream_errors")
                    self.close_connection = True
                    return
                proxy.stats.add("forwarded")
                if r.status == 200 and b"AssumeRoleWithWebIdentityResult" in data:
                    proxy.stats.add("issued")
                self.answer(r.status, data)

            def answer(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def start(self):
        stats = self.stats

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                # The SDK gave up on a delayed call and closed the connection.
                stats.add("client_gone")

        for _ in range(100):
            try:
                self.server = Server(("127.0.0.1", self.port), self.handler())
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"cannot listen on 127.0.0.1:{self.port} again")
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# ------------------------------------------------------------- processes

class Emulator:
    def __init__(self, binary, port, pub, workdir):
        self.cmd = [binary, "sts-emulator", "--listen", f"127.0.0.1:{port}", "--issuer-key", pub,
                    "--credential-ttl", f"{CREDENTIAL_TTL}s"]
        self.port = port
        self.log = open(os.path.join(workdir, "emulator.log"), "ab")
        self.proc = None
        self.restarts = 0

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        wait_port(self.port, 10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_port(port, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def http_get(port, path, headers=None, method="GET", timeout=2.0, host="127.0.0.1"):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(text, name, labels=None):
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, _, value = line.rpartition(" ")
        if key != name and not key.startswith(name + "{"):
            continue
        if labels and not all(f'{k}="{v}"' in key for k, v in labels.items()):
            continue
        total += float(value)
        found = True
    return total if found else None


def parse_expiration(s):
    return time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


# ---------------------------------------------------------------- checker

class Checker:
    """Samples both credential paths continuously. For every 200 it parses the
    Expiration; for every non-200 it decides whether the proxy should still have
    been serving the last good credentials it had shown."""

    def __init__(self, port, auth, deadline, link_local=False, role_auths=None):
        self.port = port
        self.auth = auth
        # --roles: role name -> its token; the ECS route of each is sampled.
        self.role_auths = role_auths or {}
        self.keys_by_route = {}
        self.link_local = link_local
        self.deadline = deadline
        self.lock = threading.Lock()
        self.samples = 0
        self.ok = 0
        self.non200 = {}
        self.violations = []
        self.min_left = None
        self.last_expiration = {}
        self.keys = set()
        self.imds_token = None
        self.imds_token_at = 0

    def imds_headers(self):
        if time.time() - self.imds_token_at > 60 or not self.imds_token:
            status, body, _ = http_get(self.port, "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"}, method="PUT")
            if status == 200:
                self.imds_token, self.imds_token_at = body.decode(), time.time()
        return {"X-aws-ec2-metadata-token": self.imds_token or ""}

    def routes(self):
        """The routes sampled: ECS and IMDSv2 on loopback, and with --link-local
        also the path-token ECS route on 169.254.170.2:80 and IMDSv1 on
        169.254.169.254:80, as the oldest SDKs use them."""
        names = ["ecs", "imds"]
        if self.role_auths:
            names = [f"ecs-{name}" for name in self.role_auths] + ["imds"]
        if self.link_local:
            names += ["ecs-link-local", "imds-v1-link-local"]
        return names

    def sample(self, which):
        host, port = "127.0.0.1", self.port
        role = which[4:] if which.startswith("ecs-") else None
        if which == "ecs":
            path, headers = "/v1/credentials", {"Authorization": self.auth}
        elif role in self.role_auths:
            path, headers = "/v1/credentials", {"Authorization": self.role_auths[role]}
        elif which == "imds":
            path, headers = f"/latest/meta-data/iam/security-credentials/{ROLE_NAME}", self.imds_headers()
        elif which == "ecs-link-local":
            host, port, path, headers = ECS_ADDR, 80, f"/v2/credentials/{self.auth}", {}
        else:
            host, port = IMDS_ADDR, 80
            path, headers = f"/latest/meta-data/iam/security-credentials/{ROLE_NAME}", {}
        sent = time.time()
        try:
            status, body, _ = http_get(port, path, headers, host=host)
        except OSError as e:
            status, body = 0, str(e).encode()
        now = time.time()
        with self.lock:
            self.samples += 1
            last = self.last_expiration.get(which)
            if status == 200:
                doc = json.loads(body)
                exp = parse_expiration(doc["Expiration"])
                left = exp - now
                self.ok += 1
                self.keys.add(doc["AccessKeyId"])
                self.keys_by_route.setdefault(which, set()).add(doc["AccessKeyId"])
                if role in self.role_auths and doc.get("RoleArn") != ROLES[role]:
                    self.violations.append(f"{which}: the {role} token got RoleArn {doc.get('RoleArn')}")
                self.min_left = left if self.min_left is None else min(self.min_left, left)
                if left < SAFETY_MARGIN - EXPIRATION_SLACK:
                    self.violations.append(f"{which}: served credentials {left:.1f}s before expiry (margin {SAFETY_MARGIN:.0f}s)")
                self.last_expiration[which] = exp
            else:
                self.non200[status] = self.non200.get(status, 0) + 1
                # The last good credentials should still have been served until
                # their margin (allowing for whole-second Expiration and the
                # request's own time).
                if last is not None and sent < last - SAFETY_MARGIN - EXPIRATION_SLACK:
                    self.violations.append(
                        f"{which}: {status} while the last good credentials had {last - sent:.1f}s left: {body[:200]!r}")

    def run(self, which):
        while time.time() < self.deadline:
            self.sample(which)
            time.sleep(0.05)


# ------------------------------------------------------------------ load

def run_wrk(host, port, path, headers, seconds, out):
    cmd = ["wrk", "-t1", "-c4", f"-d{int(seconds)}s", "--timeout", "2s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://{host}:{port}{path}")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    out["output"] = r.stdout
    text = r.stdout
    out["requests"] = 0
    out["non2xx"] = 0
    out["errors"] = ""
    for line in text.splitlines():
        line = line.strip()
        if "requests in" in line:
            out["requests"] = int(line.split()[0])
        if line.startswith("Non-2xx or 3xx responses:"):
            out["non2xx"] = int(line.split(":")[1])
        if line.startswith("Socket errors:"):
            out["errors"] = line
        if line.startswith("Requests/sec:"):
            out["rps"] = float(line.split(":")[1])


def run_py_load(host, port, path, headers, deadline, out):
    """Keep-alive GETs in a loop: the load when wrk is not installed."""
    out.setdefault("requests", 0)
    out.setdefault("non2xx", 0)
    out.setdefault("errors", 0)
    conn = None
    while time.time() < deadline:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            out["requests"] += 1
            if r.status != 200:
                out["non2xx"] += 1
        except (OSError, http.client.HTTPException):
            out["errors"] += 1
            conn = None
            time.sleep(0.01)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--report", default=None, help="write the figures as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--roles", action="store_true",
                    help="serve two roles (app, also on IMDS, and copier), each through its own token")
    ap.add_argument("--link-local", action="store_true",
                    help="also serve and load 169.254.170.2:80 and 169.254.169.254:80; run only "
                         "inside a network namespace of its own (soak.sh --link-local makes one)")
    args = ap.parse_args()
    if args.roles and args.link_local:
        ap.error("--roles and --link-local are separate runs")

    workdir = tempfile.mkdtemp(prefix="irsa-soak-")
    procs = []
    try:
        return run(args, workdir, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work directory kept: {workdir}")


def run(args, workdir, procs):
    random.seed(int(os.environ.get("SOAK_SEED", "1")))
    minter = Minter(workdir)
    tokens = TokenDir(workdir, minter.mint())
    emu_port, fault_port, proxy_port = free_port(), free_port(), free_port()
    stats = FaultStats()
    total = args.warmup + args.seconds
    start = time.time()
    deadline = start + total

    emulator = Emulator(args.binary, emu_port, minter.pub, workdir)
    emulator.start()
    fault = FaultProxy(fault_port, emu_port, stats, deadline)
    fault.start()

    link_local_listen = []
    if args.link_local:
        # `irsa-proxy link-local` refuses a namespace with a route out, so this
        # can never put 169.254.169.254 on the machine's own lo.
        subprocess.run([args.binary, "link-local"], check=True, timeout=30)
        link_local_listen = ["--listen", f"{ECS_ADDR}:80", "--listen", f"{IMDS_ADDR}:80"]
    auth_file = os.path.join(workdir, "auth-token")
    token_dir = os.path.join(workdir, "roles")
    if args.roles:
        roles_file = os.path.join(workdir, "roles.json")
        with open(roles_file, "w") as f:
            json.dump({"imds_role": "app", "roles": {n: {"role_arn": a} for n, a in ROLES.items()}}, f)
        who = ["--roles-file", roles_file, "--auth-token-dir", token_dir]
    else:
        who = ["--role-arn", ROLE_ARN, "--auth-token-file", auth_file]
    proxy_log = open(os.path.join(workdir, "proxy.log"), "wb")
    env = dict(os.environ, RUST_LOG="info", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(k, None)
    proxy = subprocess.Popen([
        args.binary, "serve", *who, "--token-file", tokens.token_path,
        "--sts-endpoint", f"http://127.0.0.1:{fault_port}", "--region", "us-east-1",
        "--listen", f"127.0.0.1:{proxy_port}",
        "--shutdown-delay", "0s", *link_local_listen], stdout=proxy_log, stderr=proxy_log, stdin=subprocess.DEVNULL, env=env)
    procs.append(proxy)
    wait_port(proxy_port, 20)
    ready_by = time.time() + 30
    while time.time() < ready_by and http_get(proxy_port, "/readyz")[0] != 200:
        time.sleep(0.1)
    role_auths = {}
    if args.roles:
        for name in ROLES:
            with open(os.path.join(token_dir, name, "token")) as f:
                role_auths[name] = f.read()
        auth = role_auths["app"]
    else:
        with open(auth_file) as f:
            auth = f.read()
    # The run (warm-up, then the measured part) starts once the proxy is ready.
    start = time.time()
    deadline = start + total
    fault.deadline = deadline
    log(f"proxy pid {proxy.pid} on 127.0.0.1:{proxy_port}, STS via fault proxy :{fault_port} -> emulator :{emu_port}; "
        f"{args.warmup}s warm-up + {args.seconds}s")

    checker = Checker(proxy_port, auth, deadline, link_local=args.link_local, role_auths=role_auths)
    threads = [threading.Thread(target=checker.run, args=(w,), daemon=True) for w in checker.routes()]

    # Load.
    imds_token = http_get(proxy_port, "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, method="PUT")[1].decode()
    imds_path = f"/latest/meta-data/iam/security-credentials/{ROLE_NAME}"
    targets = {"ecs": ("127.0.0.1", proxy_port, "/v1/credentials", {"Authorization": auth}),
               "imds": ("127.0.0.1", proxy_port, imds_path, {"X-aws-ec2-metadata-token": imds_token})}
    if args.roles:
        targets = {f"ecs-{name}": ("127.0.0.1", proxy_port, "/v1/credentials", {"Authorization": t})
                   for name, t in role_auths.items()}
        targets["imds"] = ("127.0.0.1", proxy_port, imds_path, {"X-aws-ec2-metadata-token": imds_token})
    if args.link_local:
        targets = {"ecs-link-local": (ECS_ADDR, 80, f"/v2/credentials/{auth}", {}),
                   "imds-v1-link-local": (IMDS_ADDR, 80, imds_path, {})}
    loads = {name: {} for name in targets}
    use_wrk = shutil.which("wrk") is not None
    for name, (host, port, path, headers) in targets.items():
        if use_wrk:
            threads.append(threading.Thread(target=run_wrk, args=(host, port, path, headers, total - 2, loads[name]), daemon=True))
        else:
            for _ in range(2):
                threads.append(threading.Thread(target=run_py_load, args=(host, port, path, headers, deadline - 2, loads[name]), daemon=True))
    for t in threads:
        t.start()

    # Chaos loop: rotations every 2 s, STS stopped every 10 s, one directory
    # replacement half-way. Bounded by the deadline.
    rotations = 0
    replaced = False
    next_rotation = time.time() + ROTATE_EVERY
    next_restart = time.time() + STS_RESTART_EVERY
    baseline = None
    while time.time() < deadline - 3:
        now = time.time()
        if baseline is None and now >= start + args.warmup:
            baseline = (rss_kib(proxy.pid), open_fds(proxy.pid), now)
            log(f"baseline after warm-up: RSS {baseline[0]} KiB, {baseline[1]} fds")
        if now >= next_rotation:
            if not replaced and now >= start + total / 2:
                tokens.replace_directory(minter.mint())
                replaced = True
                log("replaced the whole token directory")
            else:
                tokens.write(minter.mint())
            rotations += 1
            next_rotation += ROTATE_EVERY
        if now >= next_restart:
            fault.stop()
            emulator.stop()
            time.sleep(STS_DOWN_FOR)
            emulator.start()
            emulator.restarts += 1
            fault.start()
            next_restart += STS_RESTART_EVERY
        time.sleep(0.05)
    # The end figures, taken while the load still runs, as the baseline was.
    end_rss, end_fds = rss_kib(proxy.pid), open_fds(proxy.pid)

    for t in threads:
        t.join(timeout=max(1, deadline - time.time() + 40))
    # Let the last rotation be seen before reading the metrics.
    time.sleep(1.5)
    metrics = http_get(proxy_port, "/metrics")[1].decode()
    alive = proxy.poll() is None
    fault.stop()
    emulator.stop()

    elapsed = time.time() - start
    noticed = int(metric(metrics, "irsa_proxy_token_rotations_total") or 0)
    sts_ok = int(metric(metrics, "irsa_proxy_sts_requests_total", {"result": "success"}) or 0)
    per_role = {}
    for name in (ROLES if args.roles else ["default"]):
        keys = checker.keys_by_route.get(f"ecs-{name}" if args.roles else "ecs", set())
        per_role[name] = {
            "sts_success": int(metric(metrics, "irsa_proxy_sts_requests_total", {"result": "success", "role": name}) or 0),
            "sts_error": int(metric(metrics, "irsa_proxy_sts_requests_total", {"result": "error", "role": name}) or 0),
            "ecs_ok": int(metric(metrics, "irsa_proxy_http_requests_total", {"endpoint": "ecs", "status": "200", "role": name}) or 0),
            "distinct_access_keys": len(keys),
        }
    sts_err = int(metric(metrics, "irsa_proxy_sts_requests_total", {"result": "error"}) or 0)
    # Ideal: one call at start, then one per refresh window: refresh when
    # min(30 min, lifetime / 2) (at least twice the margin) = 30 s is left,
    # moved earlier by up to 10 %: a call every 27-30 s.
    ideal = 1 + int(elapsed / (CREDENTIAL_TTL - CREDENTIAL_TTL / 2 * 1.05))
    base_rss, base_fds, _ = baseline or (end_rss, end_fds, 0)
    rss_growth = (end_rss - base_rss) / base_rss
    fds_growth = (end_fds - base_fds) / base_fds

    report = {
        "seconds": round(elapsed, 1),
        "link_local": args.link_local,
        "loader": "wrk" if use_wrk else "python",
        "load": {k: {kk: vv for kk, vv in v.items() if kk != "output"} for k, v in loads.items()},
        "checker": {"samples": checker.samples, "ok": checker.ok, "non200": checker.non200,
                    "violations": checker.violations[:20], "distinct_access_keys": len(checker.keys),
                    "min_seconds_left_when_served": round(checker.min_left, 1) if checker.min_left is not None else None,
                    "safety_margin": SAFETY_MARGIN},
        "roles": per_role,
        "rotations": {"written": rotations, "noticed": noticed, "directory_replaced": replaced},
        "sts": {"proxy_calls_success": sts_ok, "proxy_calls_error": sts_err, "ideal_calls": ideal,
                "fault_proxy": stats.counts, "restarts": emulator.restarts},
        "resources": {"rss_kib": [base_rss, end_rss], "rss_growth": round(rss_growth, 3),
                      "fds": [base_fds, end_fds], "fds_growth": round(fds_growth, 3)},
        "alive": alive,
    }
    failures = []
    if not alive:
        failures.append("the proxy exited")
    if checker.violations:
        failures.append(f"{len(checker.violations)} checker violations, first: {checker.violations[0]}")
    if checker.ok == 0:
        failures.append("the checker never got credentials")
    if args.roles:
        for name, r in per_role.items():
            if r["distinct_access_keys"] == 0:
                failures.append(f"the checker never got credentials for role {name}")
            if r["sts_success"] == 0:
                failures.append(f"no successful STS call counted for role {name}")
        app_keys = checker.keys_by_route.get("ecs-app", set())
        copier_keys = checker.keys_by_route.get("ecs-copier", set())
        if app_keys & copier_keys:
            failures.append(f"{len(app_keys & copier_keys)} access keys were served through both roles' tokens")
        if checker.keys_by_route.get("imds", set()) & copier_keys:
            failures.append("IMDS served a key of the copier role")
    if noticed != rotations:
        failures.append(f"{rotations} rotations written, {noticed} noticed")
    if rss_growth >= 0.10:
        failures.append(f"RSS grew {rss_growth:.1%}")
    if fds_growth >= 0.10:
        failures.append(f"open fds grew {fds_growth:.1%}")
    report["failures"] = failures

    print(json.dumps(report, indent=2))
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
    log("PASS" if not failures else "FAIL: " + "; ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
