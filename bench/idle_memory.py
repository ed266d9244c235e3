#!/usr/bin/env python3
"""Memory of idle keep-alive connections: RSS of one worker holding N of them.

For each server: start it (one process, one thread, logging off, an
open-files limit above N) on 127.0.0.1, open 200 keep-alive connections that
each make one request and close them (warm-up: allocator, caches), read the
worker's VmRSS, then open N connections that each make one request and stay
open, idle, and read VmRSS again.  Reports the worker's whole RSS with N idle
connections and the growth per connection, as the median over rounds.

    python bench/idle_memory.py                  # N=10000, 3 rounds
    python bench/idle_memory.py -n 2000 --rounds 1 --servers uwsgipy

Peers (bjoern) are measured when importable, skipped otherwise.  Results go to
bench/results/<date>-idle-memory.md and .json unless --no-write.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HELLO = BENCH / "apps" / "hello.py"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> int:
    """VmRSS of pid in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def argv_for(name: str, port: int, n: int) -> Optional[List[str]]:
    limit = ["prlimit", f"--nofile={n + 1024}"]
    if name == "uwsgipy":
        return [*limit, sys.executable, "-m", "uwsgipy", "--http-socket", f"127.0.0.1:{port}",
                "--wsgi-file", str(HELLO), "--disable-logging", "--http-keepalive", "600",
                "--listen", "4096"]
    if name == "bjoern":
        try:
            import bjoern  # noqa: F401
        except ImportError:
            return None
        return [*limit, sys.executable, str(BENCH / "serve_bjoern.py"), str(HELLO), "127.0.0.1",
                str(port)]
    raise ValueError(name)


def one_request(s: socket.socket) -> None:
    s.sendall(REQUEST)
    data = b""
    while b"Hello" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("server closed a keep-alive connection")
        data += chunk


def open_idle(port: int, n: int) -> List[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        one_request(s)
        socks.append(s)
    return socks


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                one_request(s)
                return
        except OSError:
            time.sleep(0.01)  # poll interval
    raise RuntimeError("not ready")


def measure(name: str, n: int) -> Optional[dict]:
    port = free_port()
    argv = argv_for(name, port, n)
    if argv is None:
        return None
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks: List[socket.socket] = []
    try:
        wait_ready(proc, port)
        for s in open_idle(port, 200):
            s.close()
        time.sleep(0.5)  # let the server see the closes
        before = rss(proc.pid)
        socks = open_idle(port, n)
        time.sleep(0.5)
        after = rss(proc.pid)
        return {"server": name, "connections": n, "rss_before": before, "rss_after": after,
                "per_connection": (after - before) / n}
    finally:
        for s in socks:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10000, help="idle connections (default 10000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", default="uwsgipy,bjoern")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.n + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    runs = {}
    for r in range(args.rounds):
        for name in args.servers.split(","):
            res = measure(name, args.n)
            if res is None:
                print(f"{name}: not installed, skipped")
                continue
            print(f"round {r + 1} {name}: RSS {res['rss_after'] / 2**20:.1f} MiB with {args.n} idle, "
                  f"{res['per_connection']:.0f} bytes per connection")
            runs.setdefault(name, []).append(res)
    rows = []
    for name, rs in runs.items():
        rows.append({"server": name,
                     "rss_mib": statistics.median(x["rss_after"] for x in rs) / 2**20,
                     "per_connection": statistics.median(x["per_connection"] for x in rs),
                     "rounds": len(rs)})
    lines = [f"# Idle keep-alive memory, {args.n} connections, one worker",
             "", f"{_dt.date.today()}, `python bench/idle_memory.py -n {args.n} --rounds {args.rounds}`;"
             " medians over rounds; RSS is the worker's VmRSS.", "",
             "| server | RSS with all idle (MiB) | bytes per idle connection |", "|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['server']} | {row['rss_mib']:.1f} | {row['per_connection']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = BENCH / "results" / f"{_dt.date.today()}-idle-memory"
        out.with_suffix(".md").write_text(text)
        out.with_suffix(".json").write_text(json.dumps({"rows": rows, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
