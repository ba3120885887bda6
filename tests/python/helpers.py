"""Helpers shared by the test modules (constants, record comparison, raw
store access for tampering, child processes)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

# Every field a record dict from get()/query() has, besides the record fields.
# ("shard": "" for the main shard and for a ledger without shards.)
PLACE_FIELDS = ("shard", "seq", "hash", "prev_hash", "personal_data_erased")
RECORD_FIELDS = (
    "agent_id", "agent_role", "parent_agent_id", "user_id", "tenant_id",
    "action", "model", "tool", "operation", "resource_id", "input_summary", "output_summary",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_usd", "effect", "reasons",
    "timestamp_ns", "duration_ns", "trace_id", "span_id", "parent_span_id",
    "request_id", "run_id", "thread_id", "step_index", "risk_level", "policy_version",
    "approval_status", "approved_by", "attributes",
)
STRING_FIELDS = tuple(
    f for f in RECORD_FIELDS
    if f not in {"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                 "reasoning_tokens", "cost_usd", "reasons", "timestamp_ns", "duration_ns",
                 "step_index", "attributes"}
)
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "reasoning_tokens")

# A fixed point in time for records with explicit timestamps: 2026-11-21 09:00 UTC.
BASE_NS = int(dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone.utc).timestamp()) * 10**9


MakeRecord = Callable[..., dict[str, Any]]


def realistic_record(i: int, **overrides: Any) -> dict[str, Any]:
    """Record number `i` of a plausible agent run: model calls, tool calls and
    approvals by a few agents for a few users and tenants, with tokens, exact
    costs, policy decisions and context. Deterministic in `i`."""
    rnd = random.Random(i)
    kind = ("model_call", "tool_call", "tool_call", "approval")[i % 4]
    agent = ("planner", "support-bot", "researcher")[i % 3]
    rec: dict[str, Any] = {
        "action": kind,
        "agent_id": agent,
        "agent_role": "worker" if agent != "planner" else "orchestrator",
        "parent_agent_id": None if agent == "planner" else "planner",
        "user_id": f"u-{i % 5}",
        "tenant_id": ("acme", "globex")[i % 2],
        "trace_id": f"{rnd.getrandbits(64):016x}",
        "span_id": f"{rnd.getrandbits(32):08x}",
        "request_id": f"req-{i}",
        "run_id": f"run-{i // 10}",
        "thread_id": f"thread-{i % 7}",
        "step_index": i % 10,
        "timestamp_ns": BASE_NS + i * 1_000_000_000 + rnd.randrange(1000),
        "duration_ns": rnd.randrange(1, 5_000_000_000),
        "policy_version": "2026-11-01",
        "risk_level": ("low", "medium", "high")[i % 3],
    }
    if kind == "model_call":
        rec.update(
            model=("gpt-4o", "claude-sonnet")[i % 2],
            input_summary=f"Summarize ticket #{1000 + i} for the customer",
            output_summary="The customer wants a refund for a damaged item.",
            input_tokens=rnd.randrange(100, 5000),
            output_tokens=rnd.randrange(10, 800),
            cache_read_tokens=rnd.randrange(0, 2048),
            reasoning_tokens=rnd.randrange(0, 300),
            cost_usd=f"0.{rnd.randrange(1, 10**6):06d}",
            effect="allow",
        )
    elif kind == "tool_call":
        tool = ("refund", "lookup_order", "send_email")[i % 3]
        effect = ("allow", "deny", "require_approval", "modify")[i % 4]
        rec.update(
            tool=tool,
            operation="write" if tool != "lookup_order" else "read",
            resource_id=f"order-A{1000 + i}",
            effect=effect,
            attributes={"channel": ("web", "email")[i % 2], "order_id": f"A-{1000 + i}"},
        )
        if effect != "allow":
            rec["reasons"] = [
                {"policy_id": "write-tools-need-approval", "message": f"{tool} needs a human"},
            ]
    else:
        rec.update(effect="allow", approval_status="approved", approved_by=f"ops-{i % 2}",
                   reasons=[("human-approved", "approved in the console")])
    rec.update(overrides)
    return rec


def expected_field(record: dict[str, Any], field: str) -> Any:
    """What get() returns for `field` of an appended `record` dict."""
    value = record.get(field)
    if field in TOKEN_FIELDS or field == "duration_ns":
        return value or 0
    if field == "cost_usd":
        return Decimal(str(value)) if value is not None else Decimal(0)
    if field == "reasons":
        return [r if isinstance(r, dict) else {"policy_id": r[0], "message": r[1]}
                for r in value or []]
    if field == "attributes":
        return dict(value or {})
    if field in STRING_FIELDS:
        return value if value else None
    return value


def assert_record_matches(stored: dict[str, Any], appended: dict[str, Any]) -> None:
    """Compares a get()/query() dict with the dict that was appended, field by field."""
    assert set(stored) == set(PLACE_FIELDS) | set(RECORD_FIELDS)
    for field in RECORD_FIELDS:
        if field == "timestamp_ns" and appended.get(field) is None:
            assert isinstance(stored[field], int) and stored[field] > 0
            continue
        assert stored[field] == expected_field(appended, field), field
    assert stored["personal_data_erased"] is False
    assert len(stored["hash"]) == 64 and len(stored["prev_hash"]) == 64


# --- raw access to a closed ledger's RocksDB, for tampering -----------------

def seq_key(seq: int) -> bytes:
    """The records column family's key of `seq`: 8 bytes, big-endian."""
    return struct.pack(">Q", seq)


def time_index_key(timestamp_ns: int, seq: int) -> bytes:
    """The time index entry of a record (docs/ledger_format.md)."""
    return b"\x0a" + struct.pack(">QQ", (timestamp_ns ^ (1 << 63)) & (2**64 - 1), seq)


@contextlib.contextmanager
def raw_store(path: str) -> Iterator[dict[str, Any]]:
    """The column families of a *closed* ledger's RocksDB, opened directly with
    rocksdict (a test dependency): {"records": ..., "index": ..., "meta": ...,
    "tree": ...} ("tree" only in a ledger of format 2), each a bytes -> bytes
    mapping. Writes bypass the chain, the indexes and the Merkle tree.

    rocksdict bundles a newer RocksDB than the one Bastion links; table files
    are written in format_version 5 so that Bastion's RocksDB can read them."""
    try:
        import rocksdict
    except ImportError:  # pragma: no cover
        pytest.fail("the tamper tests need rocksdict: pip install '.[test]'")
    table = rocksdict.BlockBasedOptions()
    table.set_format_version(5)
    options = rocksdict.Options(raw_mode=True)
    options.set_block_based_table_factory(table)
    families = rocksdict.Rdict.list_cf(path, options)
    assert families[:4] == ["default", "records", "index", "meta"], families
    assert families[4:] in ([], ["tree"]), families
    db = rocksdict.Rdict(path, options=options,
                         column_families={name: options for name in families[1:]})
    try:
        yield {name: db.get_column_family(name) for name in families[1:]}
    finally:
        db.close()


def run_python(code: str, *args: str, timeout: float = 60, **kwargs: Any):
    """Runs `code` in a child interpreter (the same venv); returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), **kwargs)


def child_env() -> dict[str, str]:
    """Environment for child processes: no PYTHONPATH that could reach the source tree."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- guard ledgers -------------------------------------------------------------

def guard_records(guard: Any) -> list[dict[str, Any]]:
    """Every record of a bastion.Guard's ledger, oldest first, after a flush;
    fails unless the hash chain verifies."""
    import bastion

    guard.flush()
    with bastion.Ledger.open(guard.ledger_path, reader=True) as ledger:
        report = ledger.verify()
        assert report.ok, report
        return list(ledger.query(limit=None, newest_first=False))


def record_phase(record: dict[str, Any]) -> str:
    """A record's phase ("decision" or "outcome"), or its action when it has none
    (e.g. "approval")."""
    return (record.get("attributes") or {}).get("phase") or record["action"]


class RedisServer:
    """A real redis-server on a free loopback port, persistence off: started
    by the `redis_server` fixture, stopped (SIGKILL) and restarted on the same
    port by the tests that take Redis away."""

    def __init__(self, directory: str) -> None:
        import socket

        self.directory = directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        import shutil
        import socket
        import time

        if self.process is not None:
            return
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (scripts/install_deps.sh installs it)")
        self.process = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited with {self.process.returncode}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.01)
        pytest.fail(f"redis-server did not accept connections on port {self.port}")

    def stop(self) -> None:
        """Kills the server at once: clients see their connections drop."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None

    def command(self, *args: str) -> bytes:
        """One command through redis-cli (for inspecting what the library stored)."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw", *args],
                             check=True, capture_output=True)
        return out.stdout.strip()
