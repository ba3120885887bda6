"""Several processes on one guard directory: each writes its own ledger shard,
and a reader of <dir>/ledger sees them all as one ledger."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bastion
from helpers import RedisServer, child_env, raw_store, seq_key

N = 20  # guarded calls per process

# A worker: opens the guard, says so, waits for "go" (so that all three hold
# the directory at once), runs N guarded calls and prints the shard it wrote.
WORKER = """
import os, sys, time
import bastion
root, worker, n = sys.argv[1], sys.argv[2] or None, int(sys.argv[3])
guard = bastion.Guard.open(root, worker=worker)
print("ready", flush=True)
go = os.path.join(root, "go")
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(n):
    call = guard.begin_model("gpt-4o", f"question {i}", agent_id="agent", run_id=f"run-{i}")
    assert call.allowed, call.decision
    call.end(f"answer {i}", usage={"input_tokens": 10, "output_tokens": 5})
guard.close()
print("shard", guard.shard if guard.shard is not None else "", flush=True)
"""


def run_workers(root: Path, workers: list[str], env: dict[str, str] | None = None) -> list[str]:
    """Starts one process per entry of `workers` ("" for no name), all at once;
    returns the shard each wrote ("" for the main one)."""
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), w, str(N)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env or child_env())
             for w in workers]
    try:
        for p in procs:
            line = p.stdout.readline()
            assert line == "ready\n", (line, p.stderr.read() if p.poll() is not None else "")
        (root / "go").touch()
        shards = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            shards.append(out.split("shard ", 1)[1].strip())
        return shards
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def read_all(ledger: str) -> list[dict]:
    with bastion.Ledger.open(ledger, reader=True) as reader:
        report = reader.verify()
        assert report.ok, report.message
        return list(reader.query(limit=None, newest_first=False))


def check_one_ledger(records: list[dict], shards: set[str]) -> None:
    assert len(records) == 3 * 2 * N  # a decision and an outcome per call
    assert {r["shard"] for r in records} == shards
    keys = [(r["timestamp_ns"], r["shard"], r["seq"]) for r in records]
    assert keys == sorted(keys)
    for shard in shards:
        mine = [r for r in records if r["shard"] == shard]
        assert [r["seq"] for r in sorted(mine, key=lambda r: r["seq"])] == list(
            range(1, 2 * N + 1))
        phases = [r["attributes"]["phase"] for r in mine]
        assert phases.count("decision") == phases.count("outcome") == N


def test_three_named_workers_write_shards_read_as_one(tmp_path: Path) -> None:
    root = tmp_path / "guard"
    root.mkdir()
    shards = run_workers(root, ["w1", "w2", "w3"])
    assert shards == ["w1", "w2", "w3"]
    for part in ("ledger", "calls"):
        assert sorted(os.listdir(root / part / "shards")) == ["w1", "w2", "w3"]
    assert not (root / "ledger" / "CURRENT").exists(), "no process wrote the main shard"
    records = read_all(str(root / "ledger"))
    check_one_ledger(records, {"w1", "w2", "w3"})
    with bastion.Ledger.open(str(root / "ledger"), reader=True) as reader:
        report = reader.verify()
        assert [(r.shard, r.ok, r.records_checked) for r in report.shards] == [
            (w, True, 2 * N) for w in ("w1", "w2", "w3")]
        assert report.records_checked == 6 * N and report.shard is None
        assert repr(report) == f"<VerifyReport ok: {6 * N} records in 3 shards>"
        df = reader.query(limit=None, newest_first=False).to_pandas()
        assert df["shard"].tolist() == [r["shard"] for r in records]
        assert reader.stats()["by_shard"] == {"w1": 2 * N, "w2": 2 * N, "w3": 2 * N}

    # The same worker reopened appends to its own shard.
    with bastion.Guard.open(root, worker="w2") as again:
        assert again.shard == again.worker == "w2"
        assert again.ledger_path == str(root / "ledger" / "shards" / "w2")
        again.begin_model("gpt-4o", "once more", agent_id="agent").end(
            "yes", usage={"input_tokens": 1, "output_tokens": 1})
    with bastion.Ledger.open(str(root / "ledger" / "shards" / "w2"), reader=True) as w2:
        assert w2.head()["seq"] == 2 * N + 2


def test_unnamed_workers_take_the_main_ledger_then_host_shards(tmp_path: Path) -> None:
    root = tmp_path / "guard"
    root.mkdir()
    env = child_env()
    env.pop("BASTION_WORKER", None)
    shards = run_workers(root, ["", "", ""], env)
    host = bastion.guard._host_prefix()
    assert sorted(shards) == ["", f"{host}-1", f"{host}-2"]
    check_one_ledger(read_all(str(root / "ledger")), {"", f"{host}-1", f"{host}-2"})


def test_worker_from_the_environment_and_argument_precedence(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BASTION_WORKER", "from-env")
    with bastion.Guard.open(tmp_path / "g") as g:
        assert g.shard == "from-env"
        assert Path(g.ledger_path) == tmp_path / "g" / "ledger" / "shards" / "from-env"
    with bastion.Guard.open(tmp_path / "g", worker="explicit") as g:
        assert g.shard == "explicit"
    monkeypatch.delenv("BASTION_WORKER")
    with bastion.Guard.open(tmp_path / "g") as g:
        assert g.shard is None and g.ledger_path == str(tmp_path / "g" / "ledger")


def test_a_busy_main_ledger_sends_the_guard_to_a_host_shard_and_a_busy_name_fails(
        tmp_path: Path) -> None:
    root = tmp_path / "g"
    host = bastion.guard._host_prefix()
    with bastion.Guard.open(root) as first, bastion.Guard.open(root) as second:
        assert first.shard is None
        assert second.shard == f"{host}-1"
        # A named worker whose shard is held fails: its name is its identity.
        with bastion.Guard.open(root, worker="w") as _, pytest.raises(bastion.BusyError):
            bastion.Guard.open(root, worker="w")
    # All closed: the next unnamed guard takes the main paths again.
    with bastion.Guard.open(root) as again:
        assert again.shard is None


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "x" * 65, "sp ace"])
def test_a_bad_worker_name_is_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match="shard name"):
        bastion.Guard.open(tmp_path / "g", worker=name)
    assert not (tmp_path / "g" / "ledger" / "shards").exists()


def test_a_shard_with_budgets_needs_a_store(tmp_path: Path, redis_server: RedisServer) -> None:
    root = tmp_path / "g"
    root.mkdir()
    (root / "budgets.yaml").write_text(
        "version: 1\nbudgets:\n  - {id: all, scope: global, limit_usd: 10, window: daily}\n")
    # Budgets kept per process would let every worker spend the limit again.
    with pytest.raises(bastion.InvalidArgumentError, match="store="):
        bastion.Guard.open(root, worker="w1")
    assert not (root / "state" / "shards" / "w1").exists()
    # The main paths alone keep their own state, as before.
    with bastion.Guard.open(root) as g:
        assert g.shard is None and g.budgets is not None
    # With a store (a fleet.yaml in the directory), the shard's budgets are the fleet's.
    (root / "fleet.yaml").write_text(f"store:\n  url: {redis_server.url}\n  timeout: 500ms\n")
    with bastion.Guard.open(root, worker="w1") as g, bastion.Guard.open(root, worker="w2") as h:
        for guard in (g, h):
            guard.begin_model("gpt-4o", "hi", agent_id="a", max_output_tokens=10).end(
                "ok", usage={"input_tokens": 1000, "output_tokens": 10})
        assert g.budgets is None  # kept on the store, not in the process
    budgets = bastion.Budgets.open(root / "budgets.yaml", store=redis_server.url)
    try:
        spent = budgets.usage_of("all")["spent_usd"]
    finally:
        budgets.close()
    assert not (root / "state" / "shards" / "w1").exists()
    with bastion.Ledger.open(str(root / "ledger"), reader=True) as reader:
        outcomes = [r for r in reader.query(action="model_call")
                    if r["attributes"].get("phase") == "outcome"]
    assert sorted(r["shard"] for r in outcomes) == ["w1", "w2"]
    assert spent == sum(r["cost_usd"] for r in outcomes) > 0


def test_a_bad_fleet_file_names_its_line(tmp_path: Path) -> None:
    root = tmp_path / "g"
    root.mkdir()
    (root / "fleet.yaml").write_text("store:\n  url: redis://h:6379\n  timeout: soon\n")
    with pytest.raises(bastion.InvalidArgumentError, match=r"fleet.yaml:3:\d+: store.timeout"):
        bastion.Guard.open(root)
    (root / "fleet.yaml").write_text("store: http://h\n")
    with pytest.raises(bastion.InvalidArgumentError, match="scheme must be redis"):
        bastion.Guard.open(root)


def test_a_flipped_byte_in_one_shard_is_named_by_verify(tmp_path: Path) -> None:
    root = tmp_path / "g"
    for worker in ("a", "b"):
        with bastion.Guard.open(root, worker=worker) as g:
            for i in range(3):
                g.begin_model("gpt-4o", f"q{i}", agent_id="x").end(
                    "ok", usage={"input_tokens": 1, "output_tokens": 1})
    with raw_store(str(root / "ledger" / "shards" / "b")) as cf:
        value = bytearray(cf["records"][seq_key(4)])
        value[100] ^= 0x01
        cf["records"][seq_key(4)] = bytes(value)
    with bastion.Ledger.open(str(root / "ledger"), reader=True) as reader:
        report = reader.verify()
    assert not report.ok
    assert report.shard == "b" and report.bad_seq == 4 and report.problem == "hash_mismatch"
    assert report.message.startswith("shard 'b': ")
    assert [(r.shard, r.ok) for r in report.shards] == [("a", True), ("b", False)]
    # The CLI names the shard too, on the ledger or on the guard directory.
    for path in (root / "ledger", root):
        cli = subprocess.run([sys.executable, "-m", "bastion", "ledger", "verify", str(path)],
                             capture_output=True, text=True, env=child_env(), timeout=60)
        assert cli.returncode == 1, cli.stderr
        assert "shard 'a': OK" in cli.stdout
        assert "shard 'b': FAILED at record 4: hash_mismatch" in cli.stdout


def test_one_chain_operations_on_a_sharded_reader_name_the_shards(tmp_path: Path) -> None:
    root = tmp_path / "g"
    with bastion.Guard.open(root, worker="w1") as g:
        g.record(action="run_start", agent_id="x")
    with bastion.Ledger.open(str(root / "ledger"), reader=True) as reader:
        for call in (reader.head, lambda: reader.get(1), reader.tree_head,
                     reader.checkpoints):
            with pytest.raises(bastion.StateError, match=r"shards/w1"):
                call()
        assert len(reader.query(limit=None)) == 1
    with bastion.Ledger.open(str(root / "ledger" / "shards" / "w1"), reader=True) as one:
        report = one.verify()  # a shard opened alone is a plain ledger
        assert report.ok and report.shard is None and report.shards == []
        assert one.head()["seq"] == 1 and one.get(1)["shard"] == ""


def test_shard_path() -> None:
    assert bastion.shard_path("/srv/ledger", "w1") == os.path.join("/srv/ledger", "shards", "w1")
    with pytest.raises(bastion.InvalidArgumentError, match="'../up'"):
        bastion.shard_path("/srv/ledger", "../up")


def test_a_reader_follows_shards_created_after_it_opened(tmp_path: Path) -> None:
    root = tmp_path / "g"
    with bastion.Guard.open(root, worker="early") as g:
        g.record(action="run_start", agent_id="x")
    with bastion.Ledger.open(str(root / "ledger"), reader=True) as reader:
        assert len(reader.query(limit=None)) == 1
        with bastion.Guard.open(root, worker="late") as g:
            g.record(action="run_start", agent_id="y")
            g.flush()
            reader.refresh()
            assert sorted(r["shard"] for r in reader.query(limit=None)) == ["early", "late"]
