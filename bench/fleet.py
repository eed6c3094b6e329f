#!/usr/bin/env python3
"""A fleet that starts at once (issue 17): N sidecars against one EKS Pod Identity
agent (or STS) that throttles above a set rate.

Hundreds of pods started together (a CronJob, a Spark job) all ask the node's
agent (or STS) for credentials in the same second. This starts N `irsa-proxy
serve --source pod-identity` processes at once on 127.0.0.1, each with an "app"
that waits behind the sidecar's startup probe (GET /readyz every second, as
`inject`'s startupProbe does) and then asks for credentials once. The agent is
`irsa-proxy sts-emulator` with `--pod-identity-rate R`: above R calls a second
it answers 429, as the real agent's rate limiter does. With `--source
web-identity` the sidecars use IRSA instead and the emulator's STS answers
`Throttling` ("Rate exceeded") above R `AssumeRoleWithWebIdentity` calls a second
(`--sts-rate R`); the SDK inside the sidecar retries those itself (its standard
retry mode) before the sidecar's own back-off.

It measures how long until every sidecar is ready, how many agent calls were
made (and how many were throttled), and checks that no app ever got a non-200
answer. Everything is bounded: --timeout seconds at most, N processes at most,
loopback only; every process it started is stopped at the end.

    python3 bench/fleet.py                # 300 sidecars, agent at 20 calls/s
    python3 bench/fleet.py --quick        # 200 sidecars, 50 calls/s, < 60 s (CI)
    python3 bench/fleet.py --n 500 --rate 10 --json out.json

Exit status: 0 when every sidecar became ready within --timeout and every app got
200; 1 otherwise; 2 on usage or a missing tool (openssl).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLE = "arn:aws:iam::111122223333:role/fleet"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n ports free now (held open together, so they are distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def get(url, timeout=2.0):
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


class App(threading.Thread):
    """One pod's app container: it starts once the sidecar's startup probe
    passes, then asks for credentials once."""

    def __init__(self, port, start, deadline):
        super().__init__(daemon=True)
        self.port = port
        self.start_at = start
        self.deadline = deadline
        self.ready_after = None
        self.status = None
        self.probes = 0

    def run(self):
        base = "http://127.0.0.1:%d" % self.port
        while time.monotonic() < self.deadline:
            self.probes += 1
            status, _ = get(base + "/readyz", timeout=2.0)
            if status == 200:
                self.ready_after = time.monotonic() - self.start_at
                self.status, _ = get(base + "/v1/credentials", timeout=5.0)
                return
            # periodSeconds: 1, as inject's startupProbe.
            time.sleep(max(0.0, min(1.0, self.deadline - time.monotonic())))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200 sidecars, rate 50, for CI")
    p.add_argument("--n", type=int, default=None, help="sidecars (default 300; 200 with --quick)")
    p.add_argument("--rate", type=int, default=None,
                   help="agent calls per second before 429 (default 20; 50 with --quick)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds until every sidecar must be ready (default 120; 50 with --quick)")
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/irsa-proxy"))
    p.add_argument("--no-build", action="store_true", help="do not run cargo build --release")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")
    p.add_argument("--source", choices=["pod-identity", "web-identity"], default="pod-identity",
                   help="what the sidecars use, and so what throttles (default pod-identity)")
    a = p.parse_args()
    n = a.n or (200 if a.quick else 300)
    rate = a.rate or (50 if a.quick else 20)
    timeout = a.timeout or (50.0 if a.quick else 120.0)
    if not 1 <= n <= 2000:
        print("bench/fleet.py: --n %d is out of range; expected 1 to 2000" % n, file=sys.stderr)
        return 2
    if shutil.which("openssl") is None:
        print("bench/fleet.py: openssl is needed (apt-get install openssl)", file=sys.stderr)
        return 2
    if not a.no_build and a.bin == os.path.join(ROOT, "target/release/irsa-proxy"):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    if not os.access(a.bin, os.X_OK):
        print("bench/fleet.py: --bin %s is not an executable" % a.bin, file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="irsa-proxy-fleet-")
    procs = []
    try:
        key, pub = os.path.join(work, "issuer.key"), os.path.join(work, "issuer.pub")
        subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-out", pub], check=True,
                       stderr=subprocess.DEVNULL)
        pod = a.source == "pod-identity"
        token = subprocess.run(
            [a.bin, "mint", "--issuer-key", key, "--sub", "system:serviceaccount:fleet:app",
             "--aud", "pods.eks.amazonaws.com" if pod else "sts.amazonaws.com", "--ttl", "1h"],
            check=True, capture_output=True, text=True).stdout.strip()
        token_file = os.path.join(work, "eks-pod-identity-token")
        with open(token_file, "w") as f:
            f.write(token)

        agent_port = free_port()
        agent_log = open(os.path.join(work, "agent.log"), "w")
        procs.append(subprocess.Popen(
            [a.bin, "sts-emulator", "--listen", "127.0.0.1:%d" % agent_port,
             "--issuer-key", pub, "--credential-ttl", "1h",
             "--pod-identity-association", "fleet/app=" + ROLE,
             "--pod-identity-rate" if pod else "--sts-rate", str(rate)],
            stdout=subprocess.DEVNULL, stderr=agent_log,
            env=dict(os.environ, RUST_LOG="info")))
        if not wait_port(agent_port, time.monotonic() + 10):
            print("bench/fleet.py: the emulator did not start; see %s/agent.log" % work,
                  file=sys.stderr)
            return 1

        ports = free_ports(n)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") and k.lower() not in ("https_proxy", "http_proxy")}
        env.update({"AWS_EC2_METADATA_DISABLED": "true", "RUST_LOG": "warn"})
        if pod:
            env.update({
                "AWS_CONTAINER_CREDENTIALS_FULL_URI":
                    "http://127.0.0.1:%d/v1/credentials" % agent_port,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": token_file,
            })
        else:
            env.update({
                "AWS_ROLE_ARN": ROLE,
                "AWS_WEB_IDENTITY_TOKEN_FILE": token_file,
                "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:%d" % agent_port,
                "AWS_REGION": "us-east-1",
                # No profile files of the machine's.
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            })
        start = time.monotonic()
        deadline = start + timeout
        apps = []
        for i, port in enumerate(ports):
            log = open(os.path.join(work, "sidecar-%d.log" % i), "w")
            procs.append(subprocess.Popen(
                [a.bin, "serve", "--listen", "127.0.0.1:%d" % port, "--shutdown-delay", "0s"],
                stdout=subprocess.DEVNULL, stderr=log, env=env))
            log.close()
            app = App(port, start, deadline)
            app.start()
            apps.append(app)
        started_after = time.monotonic() - start
        for app in apps:
            app.join(max(0.0, deadline - time.monotonic()) + 6)

        ready = sorted(x.ready_after for x in apps if x.ready_after is not None)
        statuses = {}
        for x in apps:
            statuses[str(x.status)] = statuses.get(str(x.status), 0) + 1
        agent_log.flush()
        with open(os.path.join(work, "agent.log")) as f:
            text = f.read()
        if pod:
            issued = text.count("pod-identity-agent: issued")
            throttled = text.count("pod-identity-agent: refused: Too Many Requests")
            refused = text.count("pod-identity-agent: refused")
        else:
            issued = text.count("sts-emulator: issued")
            throttled = text.count("sts-emulator: refused: Rate exceeded")
            refused = text.count("sts-emulator: refused")
        fig = {
            "source": a.source,
            "sidecars": n,
            "agent_rate_per_s": rate,
            "processes_started_s": round(started_after, 2),
            "ready": len(ready),
            "all_ready_s": round(ready[-1], 2) if len(ready) == n else None,
            "median_ready_s": round(ready[len(ready) // 2], 2) if ready else None,
            "agent_calls": issued + refused,
            "agent_issued": issued,
            "agent_throttled": throttled,
            "agent_other_refusals": refused - throttled,
            "app_answers": statuses,
            "startup_probes": sum(x.probes for x in apps),
        }
        ok = len(ready) == n and statuses == {"200": n}
        fig["verdict"] = "passed" if ok else "FAILED"
        print(json.dumps(fig, indent=2))
        print("fleet: %d %s sidecars, limit %d calls/s: all ready in %s s (median %s s), "
              "%d calls (%d throttled), apps: %s -> %s"
              % (n, a.source, rate, fig["all_ready_s"], fig["median_ready_s"], fig["agent_calls"],
                 throttled, statuses, fig["verdict"]), file=sys.stderr)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(fig, f, indent=2)
        if not ok:
            print("bench/fleet.py: logs kept in %s" % work, file=sys.stderr)
        return 0 if ok else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if "fig" in locals() and fig.get("verdict") == "passed":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
