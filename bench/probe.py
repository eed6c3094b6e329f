#!/usr/bin/env python3
"""Timing helpers of the benchmark that a shell cannot do precisely.

  probe.py startup --runs N --port-file-dir DIR -- CMD... (CMD may contain {port})
      Spawns CMD N times (pinned to core 0), each time on a fresh port, and
      measures with time.perf_counter the milliseconds from spawn to the first
      200 answer of GET /readyz. Prints one JSON object.

  probe.py herd --port P --count N --header 'Name: value' [--path PATH]
      Opens N connections at once, sends one GET on each and counts the status
      codes. Prints one JSON object.

  probe.py wait --port P [--path /healthz] [--timeout S]
      Waits until PATH answers 200.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def request(port, path, headers=(), timeout=1.0):
    """One GET on a new connection: returns the status code, or None if refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            head = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % path
            for h in headers:
                head += h + "\r\n"
            s.sendall((head + "\r\n").encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            parts = data.split(b" ", 2)
            return int(parts[1]) if len(parts) > 1 else None
    except OSError:
        return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cpu):
    def f():
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass

    return f


def cmd_startup(a):
    times = []
    for _ in range(a.runs):
        port = free_port()
        argv = [x.replace("{port}", str(port)) for x in a.cmd]
        t0 = time.perf_counter()
        p = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pin(a.cpu),
        )
        ready = None
        deadline = t0 + a.timeout
        while time.perf_counter() < deadline:
            if request(port, "/readyz", timeout=0.5) == 200:
                ready = time.perf_counter()
                break
            if p.poll() is not None:
                break
            time.sleep(0.0005)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if ready is None:
            print(json.dumps({"error": "not ready within %.0f s" % a.timeout}))
            sys.exit(1)
        times.append((ready - t0) * 1000)
    print(
        json.dumps(
            {
                "runs": len(times),
                "median_ms": statistics.median(times),
                "min_ms": min(times),
                "max_ms": max(times),
                "all_ms": [round(t, 2) for t in times],
            }
        )
    )


async def one(port, path, headers, started):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return "connect-error"
    head = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % path
    for h in headers:
        head += h + "\r\n"
    await started.wait()
    w.write((head + "\r\n").encode())
    await w.drain()
    try:
        line = await asyncio.wait_for(r.readline(), 15)
        await r.read()
    except (OSError, asyncio.TimeoutError):
        return "read-error"
    finally:
        w.close()
    parts = line.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 else "no-status"


async def herd(a):
    started = asyncio.Event()
    tasks = [
        asyncio.create_task(one(a.port, a.path, a.header, started)) for _ in range(a.count)
    ]
    # Let every connection open first, then release all requests at once.
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    started.set()
    results = await asyncio.gather(*tasks)
    counts = {}
    for r in results:
        counts[r] = counts.get(r, 0) + 1
    return {"requests": a.count, "statuses": counts, "seconds": time.perf_counter() - t0}


def cmd_herd(a):
    print(json.dumps(asyncio.run(herd(a))))


def cmd_wait(a):
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if request(a.port, a.path) == 200:
            return
        time.sleep(0.005)
    print("probe.py: %s on port %d did not answer 200 within %.0f s" % (a.path, a.port, a.timeout))
    sys.exit(1)


def main():
    p = argparse.ArgumentParser(description="timing helpers of bench/run.sh")
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("startup")
    s.add_argument("--runs", type=int, default=20)
    s.add_argument("--cpu", type=int, default=0)
    s.add_argument("--timeout", type=float, default=10.0)
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    h = sub.add_parser("herd")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--count", type=int, default=1000)
    h.add_argument("--path", default="/v1/credentials")
    h.add_argument("--header", action="append", default=[])
    w = sub.add_parser("wait")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--path", default="/healthz")
    w.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()
    if a.what == "startup":
        if a.cmd and a.cmd[0] == "--":
            a.cmd = a.cmd[1:]
        cmd_startup(a)
    elif a.what == "herd":
        cmd_herd(a)
    else:
        cmd_wait(a)


if __name__ == "__main__":
    main()
