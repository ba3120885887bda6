"""Admitted calls per second of a fleet sharing one budget on Redis.

    python bench/fleet_bench.py [--processes 4] [--threads 4] [--seconds 3]

Starts a redis-server on a free loopback port, then, with and without leases,
N worker processes of T threads each reserve $0.000001 and settle it against
one global budget (large enough never to refuse) for the given time. Prints
the admitted calls per second of the whole fleet, and checks that the spend
the server holds is the spend the workers admitted.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from decimal import Decimal

import bastion

CONFIG = """
version: 1
budgets:
  - id: fleet
    scope: global
    limit_usd: 1000000
    window: daily
"""

WORKER = textwrap.dedent("""
    import sys, threading, time, bastion
    url, worker, leases = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    threads, seconds, config = int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    budgets = bastion.Budgets.open(yaml=config, store=url, worker=worker, leases=leases)
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    counts = []
    def run():
        n = 0
        while time.time() < start:
            time.sleep(0.0005)
        end = start + seconds
        while time.time() < end:
            budgets.settle(budgets.reserve("0.000001"), "0.000001")
            n += 1
        counts.append(n)
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool: t.start()
    for t in pool: t.join()
    budgets.close()
    print(sum(counts), flush=True)
""")


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", directory, "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.01)
    proc.kill()
    sys.exit("redis-server did not start")


def run(url: str, leases: bool, processes: int, threads: int, seconds: float,
        prefix: str) -> tuple[float, int]:
    """Starts the workers, lets them go at once, returns (calls/s, calls)."""
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, f"{prefix}{i}",
                               "1" if leases else "0", str(threads), str(seconds), CONFIG],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(processes)]
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            sys.exit("a worker did not start")
    start = time.time() + 0.5
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"{start}\n")
        p.stdin.flush()
    calls = 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 60)
        if p.returncode != 0:
            sys.exit(f"a worker failed with {p.returncode}")
        calls += int(out.strip())
    return calls / seconds, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server, url = start_redis(directory)
        try:
            for leases in (True, False):
                before = spent(url)
                rate, calls = run(url, leases, args.processes, args.threads, args.seconds,
                                  "lease" if leases else "direct")
                charged = spent(url) - before
                assert charged == Decimal(calls) / 1_000_000, (charged, calls)
                print(f"leases={'on ' if leases else 'off'}  {args.processes} processes x "
                      f"{args.threads} threads: {rate:,.0f} admitted calls/s "
                      f"({calls} calls, spend on the server matches)")
        finally:
            server.kill()
            server.wait()


def spent(url: str) -> Decimal:
    with bastion.Budgets.open(yaml=CONFIG, store=url, worker="bench-reader") as b:
        return Decimal(b.usage_of("fleet")["spent_usd"])


if __name__ == "__main__":
    main()
