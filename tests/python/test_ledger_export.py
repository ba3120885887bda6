"""Parquet export partitioned by UTC day (QueryResult.to_parquet and
`bastion ledger export`), read back with pyarrow.dataset and DuckDB."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bastion
from helpers import BASE_NS, child_env

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
ds = pytest.importorskip("pyarrow.dataset")

HOUR = 3600 * 10**9
DAYS = ("2026-11-21", "2026-11-22", "2026-11-23")  # BASE_NS is 2026-11-21 09:00 UTC


def fill(path: str, shard: str | None, hours: list[int], agent: str) -> None:
    """Appends one record per entry of `hours` (hours after BASE_NS) to the
    main ledger at `path` (shard None) or to its shard."""
    target = path if shard is None else bastion.shard_path(path, shard)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with bastion.Ledger.open(target) as ledger:
        for i, h in enumerate(hours):
            ledger.append(action="tool_call" if i % 2 else "model_call", agent_id=agent,
                          user_id=f"u{i % 3}", timestamp_ns=BASE_NS + h * HOUR + i,
                          cost_usd="0.0125", effect="allow" if i % 4 else "deny",
                          reasons=[("p", "why")] if i % 4 == 0 else [],
                          attributes={"i": str(i)}, step_index=i if i % 2 else None)


@pytest.fixture
def sharded(tmp_path: Path) -> str:
    """A ledger with a main shard and two shards, records over three UTC days:
    day 1 (hours 0..14), day 2 (15..38), day 3 (39..); five a day."""
    path = str(tmp_path / "ledger")
    fill(path, None, [0, 20, 40, 41], "main")
    fill(path, "a", [1, 2, 16, 30, 45], "a")
    fill(path, "b", [3, 14, 15, 38, 50, 60], "b")
    return path


def expected_days(df) -> dict[str, int]:
    return df["timestamp"].dt.strftime("%Y-%m-%d").value_counts().sort_index().to_dict()


def test_to_parquet_partitions_by_day_and_reads_back(sharded: str, tmp_path: Path) -> None:
    with bastion.Ledger.open(sharded, reader=True) as reader:
        result = reader.query(limit=None, newest_first=False)
        df = result.to_pandas()
        out = tmp_path / "export"
        files = result.to_parquet(out)
    assert len(df) == 15
    assert expected_days(df) == {DAYS[0]: 5, DAYS[1]: 5, DAYS[2]: 5}
    assert sorted(p.name for p in out.iterdir()) == [f"day={d}" for d in DAYS]
    assert sorted(files) == sorted(str(p) for p in out.glob("day=*/part-*.parquet"))
    assert not list(out.rglob(".*")), "no hidden temporary file is left"

    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    back = table.to_pandas().sort_values(["timestamp", "shard", "seq"]).reset_index(drop=True)
    assert len(back) == len(df)
    assert [str(d)[:10] for d in back["day"]] == df["timestamp"].dt.strftime("%Y-%m-%d").tolist()
    assert tuple(c for c in back.columns if c != "day") == tuple(df.columns)
    for col in ("shard", "seq", "timestamp", "agent_id", "user_id", "action", "effect",
                "cost_usd", "hash"):
        assert back[col].tolist() == df[col].tolist(), col
    assert back["step_index"].isna().tolist() == df["step_index"].isna().tolist()
    assert [dict(a) for a in back["attributes"]] == df["attributes"].tolist()
    assert [[dict(r) for r in rs] for rs in back["reasons"]] == [list(rs) for rs in df["reasons"]]
    assert set(back["shard"]) == {"", "a", "b"}


def test_each_export_adds_files_and_an_empty_result_writes_none(sharded, tmp_path) -> None:
    out = tmp_path / "export"
    with bastion.Ledger.open(sharded, reader=True) as reader:
        first = reader.query(limit=None, until=BASE_NS + 15 * HOUR).to_parquet(out)
        second = reader.query(limit=None, since=BASE_NS + 15 * HOUR + 1).to_parquet(out)
        assert reader.query(agent_id="nobody").to_parquet(tmp_path / "none") == []
    assert not set(first) & set(second)
    assert len(ds.dataset(out, partitioning="hive").to_table()) == 15


def test_duckdb_groups_the_partitioned_export_by_day(sharded: str, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "export"
    with bastion.Ledger.open(sharded, reader=True) as reader:
        reader.query(limit=None).to_parquet(out)
    con = duckdb.connect()
    rows = con.execute(f"""
        SELECT CAST(day AS VARCHAR) AS day, count(*) AS n, sum(cost_usd) AS usd,
               count(DISTINCT shard) AS shards
        FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)
        GROUP BY day ORDER BY day""").fetchall()
    assert [(d, n, s) for d, n, _, s in rows] == [(DAYS[0], 5, 3), (DAYS[1], 5, 3),
                                                    (DAYS[2], 5, 3)]
    assert [round(usd, 6) for _, _, usd, _ in rows] == [0.0625] * 3
    (denied,), = con.execute(f"""
        SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)
        WHERE effect = 'deny' AND day = '{DAYS[0]}'""").fetchall()
    assert denied == sum(1 for _ in _denied_on_day(sharded, DAYS[0]))


def _denied_on_day(path: str, day: str):
    with bastion.Ledger.open(path, reader=True) as reader:
        for r in reader.query(effect="deny", limit=None):
            if pd.Timestamp(r["timestamp_ns"], tz="UTC").strftime("%Y-%m-%d") == day:
                yield r


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bastion", "ledger", *args],
                          capture_output=True, text=True, env=child_env(), timeout=60)


def test_cli_export_parquet_csv_jsonl_with_filters(sharded: str, tmp_path: Path) -> None:
    out = tmp_path / "pq"
    r = cli("export", sharded, "--format", "parquet", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["records"] == 15 and len(summary["files"]) == 3
    assert len(ds.dataset(out, partitioning="hive").to_table()) == 15

    r = cli("export", sharded, "--format", "jsonl", "--out", str(tmp_path / "a.jsonl"),
            "--agent", "a")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [x["agent_id"] for x in lines] == ["a"] * 5
    assert [x["timestamp_ns"] for x in lines] == sorted(x["timestamp_ns"] for x in lines)
    assert {x["shard"] for x in lines} == {"a"}

    since = str(BASE_NS + 39 * HOUR)
    r = cli("export", sharded, "--format", "csv", "--out", str(tmp_path / "d3.csv"),
            "--since", since)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "d3.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    assert {row["shard"] for row in rows} == {"", "a", "b"}
    assert all(int(row["timestamp_ns"]) >= int(since) for row in rows)
    assert all(json.loads(row["attributes"]).keys() == {"i"} for row in rows)

    bad = cli("export", sharded, "--format", "csv", "--out", str(out))
    assert bad.returncode == 2 and "is a folder" in bad.stderr


def test_cli_reads_a_guard_directory_and_sharded_stats_and_query(tmp_path: Path) -> None:
    root = tmp_path / "g"
    for worker in ("w1", "w2"):
        with bastion.Guard.open(root, worker=worker) as g:
            g.record(action="run_start", agent_id=worker)
    r = cli("stats", str(root), "--json")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["records"] == 2 and stats["by_shard"] == {"w1": 1, "w2": 1}
    r = cli("query", str(root), "--json", "--agent", "w2")
    assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert rec["shard"] == "w2" and rec["seq"] == 1
    r = cli("verify", str(root))
    assert r.returncode == 0 and "OK: 2 shards" in r.stdout, r.stdout + r.stderr
    r = cli("tail", str(root), "-n", "5")
    assert r.returncode == 0 and r.stdout.count("run_start") == 2, r.stdout + r.stderr
    assert os.path.isdir(root / "ledger" / "shards")


def doc_block(heading: str) -> str:
    """The first ```python block after `heading` in docs/ledger.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "ledger.md").read_text()
    start = text.index(heading)
    m = re.search(r"^```python\n(.*?)^```", text[start:], flags=re.S | re.M)
    assert m, heading
    return m.group(1)


@pytest.mark.parametrize("heading", ["## Sharded ledgers",
                                     "### Querying exported Parquet with DuckDB"])
def test_the_guide_examples_run(heading: str, tmp_path: Path, monkeypatch) -> None:
    if "DuckDB" in heading:
        pytest.importorskip("duckdb")
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(doc_block(heading), f"docs/ledger.md:{heading}", "exec"), {})
    if "DuckDB" in heading:
        assert (tmp_path / "audit-parquet" / "day=2026-11-23").is_dir()
        assert "agent-0" in out.getvalue() and "2026-11-21" not in out.getvalue()
    else:
        assert "w1 1 model_call" in out.getvalue()


def test_cli_tail_follows_a_sharded_ledger(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger")
    fill(path, "a", [0], "a")
    follow = subprocess.Popen(
        [sys.executable, "-m", "bastion", "ledger", "tail", path, "-n", "1", "-f", "--json",
         "--interval", "0.05", "--follow-for", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        first = json.loads(follow.stdout.readline())
        assert (first["shard"], first["agent_id"]) == ("a", "a")
        fill(path, "b", [1], "late")  # a new shard, created after the reader opened
        second = json.loads(follow.stdout.readline())
        assert (second["shard"], second["agent_id"], second["seq"]) == ("b", "late", 1)
    finally:
        follow.kill()
        follow.communicate()
