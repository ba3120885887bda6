"""End-to-end ledger benchmarks from Python, each beside an in-run baseline.

    .venv/bin/python bench/ledger_bench.py [--records 1000000] [--json out.json]

Measures: appending from Python (per call, against a bare Python call taking the
same keyword arguments, and against a pure-Python hash-chained log: hashlib
SHA-256 chain + sqlite3 in WAL mode committing every 100 rows), append_many of
lists of dicts against the same pure-Python log, building a 1 M-record ledger
with append_many, an indexed query returning 1,000 of the records (against
fetching 1,000 records by sequence range), and exporting every record to a
pandas DataFrame (against materializing the same records as dicts).

The pure-Python log loses the rows of its uncommitted batch (up to 99) on a
crash, as `async` loses its queue; `group` (the default) loses nothing
acknowledged, so its ratio compares a stronger guarantee with the baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import bastion


def make_record(i: int) -> dict[str, Any]:
    """The same mix as bench/ledger_bench.cc: ~300-byte records, all indexes."""
    action = ("model_call", "tool_call", "model_call", "approval")[i % 4]
    effect = ("allow", "allow", "allow", "modify", "deny", "require_approval")[i % 6]
    r: dict[str, Any] = {
        "action": action,
        "agent_id": f"agent-{i % 20:02}",
        "agent_role": "support",
        "user_id": f"user-{i % 1000:04}",
        "tenant_id": f"tenant-{i % 10}",
        "model": "gpt-4o-mini-2024-07-18",
        "input_summary": f"customer asks about order {i % 50000} delivery date [masked]",
        "output_summary": "answered with tracking link",
        "input_tokens": 812 + i % 100,
        "output_tokens": 95 + i % 50,
        "cache_read_tokens": 512,
        "reasoning_tokens": 64 if i % 3 == 0 else 0,
        "cost_usd": (3_100_000 + i % 1000) / 1e9,
        "effect": effect,
        "timestamp_ns": 1_790_000_000_000_000_000 + i * 1_000_000,
        "duration_ns": 850_000_000,
        "trace_id": f"{i // 10:032x}",
        "span_id": f"{i:016x}",
        "run_id": f"run-{i // 10}",
        "step_index": i % 10,
        "risk_level": "high" if i % 5 == 0 else "low",
        "policy_version": "5f1c9a0e",
        "attributes": {"channel": "web", "region": "eu-west-1"},
    }
    if action == "tool_call":
        r.update(tool=f"tool-{i % 30:02}", operation="read", resource_id=f"order/{i % 50000}")
    if effect != "allow":
        r["reasons"] = [("pii-redaction", "email in output")]
    return r


# Columns of the pure-Python baseline: the same fields as the Bastion records.
_SQL_FIELDS = (
    "action", "agent_id", "agent_role", "user_id", "tenant_id", "model", "tool",
    "operation", "resource_id", "input_summary", "output_summary", "input_tokens",
    "output_tokens", "cache_read_tokens", "reasoning_tokens", "cost_usd", "effect",
    "reasons", "timestamp_ns", "duration_ns", "trace_id", "span_id", "run_id",
    "step_index", "risk_level", "policy_version", "attributes",
)


class SqliteChain:
    """The baseline: each row's hash = sha256(previous hash + canonical bytes of
    the row), rows in sqlite3 (WAL, synchronous=NORMAL), one commit per 100 rows."""

    BATCH = 100

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{f}" for f in _SQL_FIELDS)
        self.db.execute(f"CREATE TABLE records (seq INTEGER PRIMARY KEY, prev_hash BLOB, "
                        f"hash BLOB, {cols})")
        marks = ", ".join("?" * (len(_SQL_FIELDS) + 3))
        self.insert = f"INSERT INTO records VALUES ({marks})"
        self.prev = bytes(32)
        self.seq = 0
        self.pending = 0

    def _row(self, fields: dict[str, Any]) -> tuple:
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        h = hashlib.sha256(self.prev + canonical).digest()
        self.seq += 1
        row = (self.seq, self.prev, h, *(
            json.dumps(v) if isinstance(v, (list, dict)) else v
            for v in (fields.get(f) for f in _SQL_FIELDS)))
        self.prev = h
        return row

    def append(self, **fields: Any) -> int:
        if self.pending == 0:
            self.db.execute("BEGIN")
        self.db.execute(self.insert, self._row(fields))
        self.pending += 1
        if self.pending == self.BATCH:
            self.db.execute("COMMIT")
            self.pending = 0
        return self.seq

    def append_many(self, records: list[dict[str, Any]]) -> None:
        for i in range(0, len(records), self.BATCH):
            rows = [self._row(r) for r in records[i : i + self.BATCH]]
            self.db.execute("BEGIN")
            self.db.executemany(self.insert, rows)
            self.db.execute("COMMIT")

    def close(self) -> None:
        if self.pending:
            self.db.execute("COMMIT")
        self.db.close()


def bench_against_sqlite(tmp: str, n: int = 20000, batch: int = 1000,
                         many: int = 100_000) -> dict[str, float]:
    """append(**fields) and append_many against the pure-Python log, in one run."""
    records = [make_record(i) for i in range(n)]
    batches = [[make_record(i) for i in range(j, min(many, j + batch))]
               for j in range(0, many, batch)]
    out: dict[str, float] = {}

    # Each side's time includes making its last rows durable to its own
    # standard: the baseline's last commit, the ledger's flush.
    def per_record(log, finish) -> float:
        append = log.append
        t = time.perf_counter()
        for r in records:
            append(**r)
        finish()
        return (time.perf_counter() - t) / n * 1e6

    def per_record_many(log, finish) -> float:
        append_many = log.append_many
        t = time.perf_counter()
        for b in batches:
            append_many(b)
        finish()
        return (time.perf_counter() - t) / many * 1e6

    # Alternate the two sides, twice, and keep each side's better run.
    for _ in range(2):
        for kind in ("append", "append_many"):
            path = f"{tmp}/sqlite-{kind}.db"
            chain = SqliteChain(path)
            fn = per_record if kind == "append" else per_record_many
            us = fn(chain, chain.close)
            Path(path).unlink()
            for suffix in ("-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)
            key = f"baseline_sqlite_{kind}_us"
            out[key] = min(out.get(key, us), us)
            for mode in ("async", "group"):
                path = f"{tmp}/vs-sqlite-{kind}-{mode}"
                with bastion.Ledger.open(path, durability=mode) as ledger:
                    us = fn(ledger, ledger.flush)
                shutil.rmtree(path)
                key = f"{kind}_{mode}_us_per_record"
                out[key] = min(out.get(key, us), us)
    for kind, target in (("append", 3), ("append_many", 10)):
        for mode in ("async", "group"):
            out[f"{kind}_{mode}_speedup_vs_sqlite (target >= {target})"] = (
                out[f"baseline_sqlite_{kind}_us"] / out[f"{kind}_{mode}_us_per_record"])
    return out


def timed(fn, *args, **kwargs) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def bench_append_latency(tmp: str, n: int = 20000) -> dict[str, float]:
    records = [make_record(i) for i in range(n)]

    def bare(record=None, /, *, durability=None, **fields):  # same call shape
        return len(fields)

    def loop(fn, durability):
        t = time.perf_counter()
        for r in records:
            fn(durability=durability, **r)
        return (time.perf_counter() - t) / n * 1e6

    out: dict[str, float] = {"bare_python_call_us": loop(bare, "async")}
    for mode in ("async", "group"):
        path = f"{tmp}/latency-{mode}"
        with bastion.Ledger.open(path) as ledger:
            out[f"append_{mode}_us"] = loop(ledger.append, mode)
        shutil.rmtree(path)
    out["append_async_vs_bare_call"] = out["append_async_us"] / out["bare_python_call_us"]
    return out


def build_ledger(path: str, n: int) -> dict[str, float]:
    records = [make_record(i) for i in range(n)]
    batch = 1000
    with bastion.Ledger.open(path, durability="async") as ledger:
        t = time.perf_counter()
        for i in range(0, n, batch):
            ledger.append_many(records[i : i + batch])
        ledger.flush()
        secs = time.perf_counter() - t
    return {"append_many_records_per_s": n / secs}


def bench_query(path: str, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with bastion.Ledger.open(path, reader=True) as ledger:
        times, with_dicts, baseline = [], [], []
        for k in range(30):
            user = f"user-{(k * 37) % 1000:04}"
            dt, result = timed(ledger.query, user_id=user, limit=1000)
            assert len(result) == min(1000, n // 1000), len(result)
            times.append(dt)
            dt2, _ = timed(list, result)
            with_dicts.append(dt + dt2)
            start = 1 + (k * 7919) % max(1, n - 2000)
            dt3, res = timed(ledger.query, newest_first=False, cursor=f"s:{start}", limit=1000)
            baseline.append(dt3)
        out["query_1000_of_n_ms"] = statistics.median(times) * 1e3
        out["query_1000_plus_dicts_ms"] = statistics.median(with_dicts) * 1e3
        out["baseline_range_1000_ms"] = statistics.median(baseline) * 1e3
        out["query_vs_range_scan"] = out["query_1000_of_n_ms"] / out["baseline_range_1000_ms"]
    return out


def bench_export(path: str, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with bastion.Ledger.open(path, reader=True) as ledger:
        dt_query, result = timed(ledger.query, limit=None, newest_first=False)
        dt_pandas, df = timed(result.to_pandas)
        assert len(df) == n
        out["export_query_s"] = dt_query
        out["export_to_pandas_s"] = dt_pandas
        out["export_total_s"] = dt_query + dt_pandas
        del df
        try:
            dt_arrow, table = timed(result.to_arrow)
            out["export_to_arrow_s"] = dt_arrow
            del table
        except ImportError:
            pass
        # Baseline: the same records as one dict each (what iterating gives).
        sample = min(n, 200_000)
        dt_dicts, _ = timed(lambda: [result[i] for i in range(sample)])
        out["baseline_dicts_s_for_all"] = dt_dicts * n / sample
        out["export_vs_dicts"] = out["export_to_pandas_s"] / out["baseline_dicts_s_for_all"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--only-appends", action="store_true",
                    help="only the append figures (no 1 M-record build, query or export)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bastion-pybench-")
    try:
        results: dict[str, float] = {"records": args.records}
        results.update(bench_against_sqlite(tmp))
        results.update(bench_append_latency(tmp))
        if args.only_appends:
            return _report(results, args.json)
        results.update(build_ledger(f"{tmp}/big", args.records))
        results.update(bench_query(f"{tmp}/big", args.records))
        results.update(bench_export(f"{tmp}/big", args.records))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _report(results, args.json)


def _report(results: dict[str, float], json_path: str | None) -> None:
    width = max(map(len, results))
    for k, v in results.items():
        print(f"{k:<{width}}  {v:,.3f}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
