"""Rate limits and circuit breakers shared by guard processes through a real
redis-server: each worker is its own Python process with its own guard."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import bastion

from helpers import RedisServer

PERMISSIONS = """\
version: 1
agents:
  support-bot:
    tools:
      - name: lookup_order
        operations: [read]
        rate_limit: 5/min
"""

POLICY = """\
return { id = "noop", before_tool = function(call) end }
"""

SLOS = """\
version: 1
slos:
  - id: model-health
    match: {kind: model}
    group_by: [model]
    circuit_breaker: {failure_rate: 50%, minimum_calls: 2, window: 2, open_for: 60s,
                      half_open_probes: 1}
"""

# One worker: a guard of its own on the shared store, driven line by line.
WORKER = r"""
import json, sys, time
import bastion

guard = bastion.Guard.open(policies=sys.argv[1], slos=sys.argv[2], store=sys.argv[3],
                           store_timeout=float(sys.argv[4]), worker=sys.argv[5])
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    what = line.strip()
    started = time.monotonic()
    try:
        if what == "tool":
            call = guard.begin_tool("lookup_order", "read", agent_id="support-bot")
            if call.allowed:
                call.end("order 1: shipped")
        elif what in ("model_fail", "model"):
            call = guard.begin_model("gpt-4o", "hello", agent_id="support-bot")
            if call.allowed:
                ok = what == "model"
                call.end("" if not ok else "hi", ok=ok, error_class="" if ok else "upstream_5xx")
        else:
            raise SystemExit(f"unknown command {what!r}")
        reply = {"allowed": call.allowed,
                 "reasons": [r["message"] for r in call.decision.reasons]}
    except bastion.Error as e:
        reply = {"error": type(e).__name__, "message": str(e)}
    reply["seconds"] = time.monotonic() - started
    print(json.dumps(reply), flush=True)
"""


class Worker:
    def __init__(self, root: Path, redis: RedisServer, name: str, timeout: float = 0.5) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root / "policies"), str(root / "slos.yaml"),
             redis.url, str(timeout), name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = self._read()
        assert ready == {"ready": True}, ready

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            assert self.process.stderr is not None
            raise AssertionError(f"worker {self.name} died: {self.process.stderr.read()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def do(self, what: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(what + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "permissions.yaml").write_text(PERMISSIONS)
    (policies / "noop.lua").write_text(POLICY)
    (tmp_path / "slos.yaml").write_text(SLOS)
    return tmp_path


@pytest.fixture
def workers(fleet_dir: Path, redis_server: RedisServer) -> Any:
    started: list[Worker] = []

    def start(name: str) -> Worker:
        w = Worker(fleet_dir, redis_server, name)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


def test_a_rate_limit_counts_the_calls_of_every_worker(workers: Any) -> None:
    a, b = workers("worker-a"), workers("worker-b")
    replies = [w.do("tool") for _ in range(5) for w in (a, b)]
    admitted = [r for r in replies if r.get("allowed")]
    refused = [r for r in replies if r.get("allowed") is False]
    assert len(admitted) == 5, replies
    assert len(refused) == 5, replies
    assert all("rate limit of tool 'lookup_order' exceeded (5/min)" in r["reasons"][0]
               for r in refused), refused


def test_a_breaker_tripped_on_one_worker_refuses_on_another(workers: Any) -> None:
    a, b = workers("worker-a"), workers("worker-b")
    assert b.do("model")["allowed"]
    assert a.do("model_fail")["allowed"]
    assert a.do("model_fail")["allowed"]  # 2 of 2 failed: open, for the fleet
    time.sleep(0.3)  # past the staleness bound (100 ms and a round trip)
    reply = b.do("model")
    assert reply["allowed"] is False, reply
    assert any("circuit breaker open until" in m and "worker-a" in m
               for m in reply["reasons"]), reply


def test_redis_gone_is_a_clear_error_within_the_timeout_then_recovery(
        workers: Any, redis_server: RedisServer) -> None:
    a = workers("worker-a")
    assert a.do("tool")["allowed"]
    redis_server.stop()
    reply = a.do("tool")
    assert reply.get("error") == "UnavailableError", reply
    assert f"127.0.0.1:{redis_server.port}" in reply["message"], reply
    assert reply["seconds"] < 0.5 + 0.5, reply  # store_timeout, and some scheduling
    # A model call under the breaker's SLO needs the store too.
    deadline = time.monotonic() + 2
    while True:
        reply = a.do("model")
        if "error" in reply or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert reply.get("error") == "UnavailableError", reply
    assert "shared circuit breakers" in reply["message"], reply
    redis_server.start()  # empty: the bucket starts full again
    for what in ("tool", "model"):  # the breakers' cache catches up at its next refresh
        deadline = time.monotonic() + 5
        while True:
            reply = a.do(what)
            if reply.get("allowed") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert reply.get("allowed"), (what, reply)


def test_an_unreachable_store_fails_the_open(fleet_dir: Path, redis_server: RedisServer) -> None:
    redis_server.stop()
    with pytest.raises(bastion.UnavailableError, match=f"127.0.0.1:{redis_server.port}"):
        bastion.Guard.open(policies=fleet_dir / "policies", store=redis_server.url,
                           store_timeout=0.2)
    with pytest.raises(bastion.InvalidArgumentError, match="store_timeout"):
        bastion.Guard.open(policies=fleet_dir / "policies", store=redis_server.url,
                           store_timeout=0)
