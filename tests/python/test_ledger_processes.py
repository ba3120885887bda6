"""Several processes: a reader following a live writer, kill -9 during
appends in every durability mode, and the ``bastion`` command line."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

import bastion
from helpers import child_env, raw_store, realistic_record, run_python, seq_key

VENV_BIN = Path(os.path.abspath(sys.executable)).parent
BASTION = str(VENV_BIN / "bastion")
SECOND = 1_000_000_000


class Child:
    """A child interpreter running `code`, with its stdout lines collected by a
    thread (so a chatty child never blocks on a full pipe)."""

    def __init__(self, code: str, *args: str, cwd: str | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=child_env(), cwd=cwd)
        self.lines: list[str] = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_for(self, predicate, timeout: float = 30) -> None:
        """Waits until predicate(lines) is true; fails with the child's stderr if
        it exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    self.kill()
                    pytest.fail(f"child did not get there (exit {self.proc.returncode}); "
                                f"last lines {self.lines[-3:]}; stderr:\n{self.stderr()}")
                self._cv.wait(min(left, 0.05))

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)

    def close(self) -> None:
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


@pytest.fixture
def children():
    started: list[Child] = []

    def start(code: str, *args: str, **kwargs) -> Child:
        child = Child(code, *args, **kwargs)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()


# --- a reader beside a live writer --------------------------------------------------

LIVE_WRITER = r"""
import sys, threading, time, bastion
ledger = bastion.Ledger.open(sys.argv[1])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
print("ready", flush=True)
n = 0
while not stop.is_set():
    batch = [{"action": "model_call", "agent_id": f"agent-{(n + k) % 3}", "step_index": n + k,
              "run_id": f"run-{(n + k) // 100}"} for k in range(10)]
    last = ledger.append_many(batch)[-1]
    n += 10
    print("appended", last, flush=True)
    time.sleep(0.003)
ledger.close()
print("closed", n, flush=True)
"""


def test_a_reader_follows_a_live_writer(ledger_path, children):
    writer = children(LIVE_WRITER, ledger_path)
    writer.wait_for(lambda lines: "ready" in lines)
    writer.wait_for(lambda lines: len(lines) >= 3)
    heads = []
    with bastion.Ledger.open(ledger_path, reader=True) as reader:
        assert reader.read_only
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline or len(set(heads)) < 4:
            assert time.monotonic() < deadline + 20, f"the head does not move: {heads[-5:]}"
            reader.refresh()
            head = reader.head()
            n = head["seq"]
            heads.append(n)
            # Everything a reader sees is one consistent state: the head, the
            # records, the indexes and verify agree with each other.
            everything = reader.query(limit=None)
            assert len(everything) == n
            if n:
                assert everything[0]["seq"] == n and everything[-1]["seq"] == 1
                assert everything[0]["hash"] == head["hash"] == reader.get(n)["hash"]
                assert everything[0]["step_index"] == n - 1
            for agent in range(3):
                want = len(range(agent, n, 3))
                assert len(reader.query(agent_id=f"agent-{agent}", limit=None)) == want
            report = reader.verify()
            assert report.ok, report
            assert (report.to_seq, report.records_checked) == (n, n)
            assert reader.stats()["records"] == n
            # Without refresh() the view stays put while the writer goes on.
            time.sleep(0.02)
            assert reader.head() == head
            with pytest.raises(bastion.StateError):
                reader.append(action="a")
        assert heads == sorted(heads)
        assert len(set(heads)) >= 4 and heads[-1] > heads[0]

        writer.proc.stdin.write("stop\n")
        writer.proc.stdin.flush()
        writer.wait_for(lambda lines: lines and lines[-1].startswith("closed"))
        assert writer.proc.wait(timeout=30) == 0, writer.stderr()
        total = int(writer.lines[-1].split()[1])
        assert total >= heads[-1]
        reader.refresh()
        assert reader.head()["seq"] == total
        assert reader.verify().ok
    # The writer let go of the ledger: it can be opened for writing again.
    with bastion.Ledger.open(ledger_path) as led:
        assert led.append(action="after") == total + 1


# --- kill -9 while appending --------------------------------------------------------

CRASH_WRITER = r"""
import sys, threading, time, bastion
ledger = bastion.Ledger.open(sys.argv[1], durability=sys.argv[2])
lock = threading.Lock()
def work(t):
    i = 0
    while True:
        seq = ledger.append(action="model_call", agent_id=f"w{t}", step_index=i,
                            cost_usd="0.0001", user_id=f"u{t}")
        i += 1
        with lock:
            sys.stdout.write(f"ack {seq}\n")
            sys.stdout.flush()
for t in range(int(sys.argv[3])):
    threading.Thread(target=work, args=(t,), daemon=True).start()
time.sleep(3600)
"""


@pytest.mark.parametrize("durability", ["sync", "group", "async"])
def test_kill_9_during_appends(ledger_path, children, durability):
    writer = children(CRASH_WRITER, ledger_path, durability, "4")
    writer.wait_for(lambda lines: len(lines) >= 500)
    writer.kill(signal.SIGKILL)
    assert writer.proc.returncode == -signal.SIGKILL
    acked = [int(line.split()[1]) for line in writer.lines if line.startswith("ack ")]
    assert len(acked) >= 500 and len(set(acked)) == len(acked)

    with bastion.Ledger.open(ledger_path) as led:  # a writer opens a crashed ledger
        report = led.verify()
        assert report.ok, report
        head = led.head()["seq"]
        assert report.records_checked == head
        if durability in ("sync", "group"):
            # sync and group return once the record is written: a process crash
            # (unlike a power failure) loses none of them.
            assert max(acked) <= head
            for seq in acked:
                got = led.get(seq)
                assert got["seq"] == seq and got["agent_id"].startswith("w")
        else:
            # async acknowledges a queued record: the queue dies with the process,
            # but what was written is a whole, verifiable prefix.
            assert all(led.get(seq)["seq"] == seq for seq in acked if seq <= head)
        # Every thread's records are in its own order.
        by_thread = collections.defaultdict(list)
        for r in led.query(limit=None, newest_first=False):
            by_thread[r["agent_id"]].append(r["step_index"])
        for steps in by_thread.values():
            assert steps == list(range(len(steps)))
        assert led.append(action="after-crash") == head + 1
        assert led.verify().ok


@pytest.mark.soak
def test_soak_repeated_kill_9(ledger_path, children):
    expected_head = 0
    for round_ in range(30):
        durability = ("sync", "group", "async")[round_ % 3]
        writer = children(CRASH_WRITER, ledger_path, durability, "8")
        writer.wait_for(lambda lines: len(lines) >= 2000)
        writer.kill(signal.SIGKILL)
        acked = [int(line.split()[1]) for line in writer.lines if line.startswith("ack ")]
        with bastion.Ledger.open(ledger_path) as led:
            assert led.verify().ok
            head = led.head()["seq"]
            assert head >= expected_head
            if durability != "async":
                assert max(acked) <= head
            expected_head = head


# --- the command line ---------------------------------------------------------------

def bastion_cli(*args: str, cwd: str | None = None, timeout: float = 60):
    env = child_env()
    env["COLUMNS"] = "100"  # argparse wraps help text to the terminal width
    return subprocess.run([BASTION, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def words(text: str) -> str:
    return " ".join(text.split())


def test_the_console_script_is_the_installed_one():
    assert os.access(BASTION, os.X_OK), BASTION
    with open(BASTION) as f:
        script = f.read()
    assert "from bastion.cli import main" in script
    shebang = script.splitlines()[0]
    if not shebang.startswith("#!/bin/sh"):  # pip's trampoline for very long paths
        assert Path(os.path.abspath(shebang[2:].strip())).parent == VENV_BIN


@pytest.fixture(scope="module")
def cli_ledger(tmp_path_factory) -> str:
    """40 records: 30 from three hours ago, 10 from now, by three agents."""
    path = str(tmp_path_factory.mktemp("cli") / "ledger")
    now = time.time_ns() // SECOND * SECOND + SECOND // 2  # mid-second: ISO times truncate
    old = [realistic_record(i, timestamp_ns=now - 3 * 3600 * SECOND + i * SECOND)
           for i in range(30)]
    new = [realistic_record(i, timestamp_ns=None) for i in range(30, 40)]
    with bastion.Ledger.open(path) as led:
        led.append_many(old)
        led.append_many(new)
    return path


def api_query(path: str, **kwargs) -> list[dict]:
    with bastion.Ledger.open(path, reader=True) as reader:
        return list(reader.query(limit=None, **kwargs))


def test_cli_help_reads_well():
    top = bastion_cli("--help")
    assert top.returncode == 0
    assert top.stdout.startswith("usage: bastion")
    assert "ledger" in top.stdout
    assert "verify, query, tail, summarize and repair an audit ledger" in words(top.stdout)
    assert "Run 'bastion ledger COMMAND --help' for a command's options." in words(top.stdout)
    sub = bastion_cli("ledger", "--help")
    assert sub.returncode == 0
    for command in ("verify", "query", "tail", "stats", "repair"):
        assert re.search(rf"^\s+{command}\s+\S", sub.stdout, re.M), (command, sub.stdout)
    assert "PATH is opened read-only, so these commands are safe while an agent is writing" \
        in words(sub.stdout)
    for command, option in (("verify", "--progress"), ("query", "--since"), ("tail", "--follow"),
                            ("stats", "--json")):
        h = bastion_cli("ledger", command, "--help")
        assert h.returncode == 0 and option in h.stdout and "PATH" in h.stdout
    version = bastion_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"bastion {bastion.__version__}"
    bare = bastion_cli()
    assert bare.returncode == 2 and "usage: bastion" in bare.stderr
    module = subprocess.run([sys.executable, "-m", "bastion", "ledger", "--help"],
                            capture_output=True, text=True, env=child_env())
    assert module.returncode == 0 and "stats" in module.stdout


def test_cli_verify(cli_ledger):
    human = bastion_cli("ledger", "verify", cli_ledger)
    assert human.returncode == 0, human.stderr
    assert re.fullmatch(r"OK: records 1\.\.40 verified \(40 records, [\d,]+ bytes\)\n",
                        human.stdout), human.stdout
    assert human.stderr == ""  # no progress bar when stderr is not a terminal
    out = bastion_cli("ledger", "verify", cli_ledger, "--json")
    assert out.returncode == 0
    report = json.loads(out.stdout)
    assert report == {"ok": True, "records_checked": 40, "from_seq": 1, "to_seq": 40,
                      "problem": None, "bad_seq": None, "message": "records 1..40 verified"}
    ranged = json.loads(bastion_cli("ledger", "verify", cli_ledger, "--json", "--from", "5",
                                    "--to", "9", "--no-indexes").stdout)
    assert (ranged["ok"], ranged["from_seq"], ranged["to_seq"], ranged["records_checked"]) == \
        (True, 5, 9, 5)


def test_cli_verify_progress_bar(cli_ledger):
    out = bastion_cli("ledger", "verify", cli_ledger, "--progress")
    assert out.returncode == 0
    assert out.stdout.startswith("OK: ")
    assert "verifying [" in out.stderr and "100.0%" in out.stderr
    assert "[##############################]" in out.stderr
    assert out.stderr.endswith("\n")
    quiet = bastion_cli("ledger", "verify", cli_ledger, "--progress", "--json")
    assert json.loads(quiet.stdout)["ok"] and "verifying [" in quiet.stderr


def test_cli_verify_a_tampered_ledger(tmp_path):
    path = str(tmp_path / "ledger")
    with bastion.Ledger.open(path) as led:
        led.append_many([realistic_record(i) for i in range(12)])
    with raw_store(path) as cf:
        value = bytearray(cf["records"][seq_key(5)])
        value[100] ^= 0x01
        cf["records"][seq_key(5)] = bytes(value)
    human = bastion_cli("ledger", "verify", path)
    assert human.returncode == 1, human.stderr
    assert human.stdout.startswith("FAILED at record 5: hash_mismatch: record 5: ")
    out = bastion_cli("ledger", "verify", path, "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert (report["ok"], report["problem"], report["bad_seq"]) == (False, "hash_mismatch", 5)
    assert bastion_cli("ledger", "verify", path, "--to", "4").returncode == 0


def test_cli_query(cli_ledger):
    out = bastion_cli("ledger", "query", cli_ledger, "--limit", "0")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.match(r"SEQ\s+TIME \(UTC\)\s+ACTION\s+AGENT\s+USER\s+MODEL/TOOL\s+EFFECT\s+COST \$$",
                    lines[0])
    assert lines[-1] == "(40 records)"
    rows = [line for line in lines[1:-1] if not line.startswith(" ")]
    assert [int(r.split()[0]) for r in rows] == list(range(40, 0, -1))
    assert any(line.strip().startswith("↳ write-tools-need-approval: ") for line in lines)
    first = api_query(cli_ledger)[0]
    assert rows[0].split()[3:5] == [first["action"], first["agent_id"]]

    out = bastion_cli("ledger", "query", cli_ledger, "--agent", "planner", "--effect", "allow",
                      "--json", "--limit", "0")
    # cost_usd is a JSON number with the digits of the exact amount.
    records = [json.loads(line, parse_float=Decimal) for line in out.stdout.splitlines()]
    want = api_query(cli_ledger, agent_id="planner", effect="allow")
    assert records == want and len(records) > 3


def test_cli_query_pages(cli_ledger):
    out = bastion_cli("ledger", "query", cli_ledger, "--limit", "15", "--oldest-first")
    last = out.stdout.splitlines()[-1]
    m = re.fullmatch(r"\(15 records; next page: --cursor (\S+)\)", last)
    assert m, last
    more = bastion_cli("ledger", "query", cli_ledger, "--limit", "30", "--oldest-first",
                       "--json", "--cursor", m.group(1))
    assert [json.loads(x)["seq"] for x in more.stdout.splitlines()] == list(range(16, 41))
    assert len(bastion_cli("ledger", "query", cli_ledger, "--json").stdout.splitlines()) == 40


def test_cli_query_since(cli_ledger):
    out = bastion_cli("ledger", "query", cli_ledger, "--since", "2h", "--json")
    assert out.returncode == 0, out.stderr
    seqs = [json.loads(line)["seq"] for line in out.stdout.splitlines()]
    assert sorted(seqs) == list(range(31, 41))
    out = bastion_cli("ledger", "query", cli_ledger, "--until", "150m", "--json", "--limit", "0")
    assert sorted(json.loads(x)["seq"] for x in out.stdout.splitlines()) == list(range(1, 31))
    records = api_query(cli_ledger, newest_first=False)
    ts = records[9]["timestamp_ns"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // SECOND))
    out = bastion_cli("ledger", "query", cli_ledger, "--since", str(ts), "--until", str(ts),
                      "--json")
    assert [json.loads(x)["seq"] for x in out.stdout.splitlines()] == [10]
    out = bastion_cli("ledger", "query", cli_ledger, "--until", iso + "Z", "--json",
                      "--limit", "0")
    assert max(json.loads(x)["seq"] for x in out.stdout.splitlines()) == 9  # 10 is later in the second
    bad = bastion_cli("ledger", "query", cli_ledger, "--since", "yesterday")
    assert bad.returncode == 2 and "'yesterday' is not a time" in bad.stderr


def test_cli_tail(cli_ledger):
    out = bastion_cli("ledger", "tail", cli_ledger, "-n", "3", "--json")
    assert [json.loads(x)["seq"] for x in out.stdout.splitlines()] == [38, 39, 40]
    human = bastion_cli("ledger", "tail", cli_ledger)
    lines = human.stdout.splitlines()
    assert lines[0].startswith("SEQ")
    assert [int(x.split()[0]) for x in lines[1:] if not x.startswith(" ")] == list(range(31, 41))
    none = bastion_cli("ledger", "tail", cli_ledger, "-n", "0", "--json")
    assert none.returncode == 0 and none.stdout == ""


def test_cli_stats(cli_ledger):
    records = api_query(cli_ledger)
    out = bastion_cli("ledger", "stats", cli_ledger, "--json")
    assert out.returncode == 0
    stats = json.loads(out.stdout)
    assert stats["records"] == stats["head_seq"] == 40
    assert stats["head_hash"] == records[0]["hash"]
    assert stats["format"] == "bastion-ledger/2"
    assert stats["by_action"] == dict(collections.Counter(r["action"] for r in records))
    assert stats["by_agent"] == dict(collections.Counter(r["agent_id"] for r in records))
    assert stats["first_timestamp_ns"] == min(r["timestamp_ns"] for r in records)
    assert stats["last_timestamp_ns"] == max(r["timestamp_ns"] for r in records)
    human = bastion_cli("ledger", "stats", cli_ledger).stdout
    assert re.search(r"^records\s+40$", human, re.M)
    assert re.search(rf"^head\s+#40 {records[0]['hash']}$", human, re.M)
    assert "by action:" in human and "by effect:" in human and "by agent:" in human
    for action, count in stats["by_action"].items():
        assert re.search(rf"^\s+{action}\s+{count}$", human, re.M)


@pytest.mark.parametrize("command", ["verify", "query", "tail", "stats"])
def test_cli_bad_path(tmp_path, command):
    out = bastion_cli("ledger", command, str(tmp_path / "missing"))
    assert out.returncode == 2
    assert out.stderr.startswith("bastion: error: no ledger at ")
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize(
    "args",
    [["tail", "-n", "-1"], ["query", "--limit", "-5"], ["verify", "--from", "-1"],
     ["tail", "-f", "--interval", "0"], ["query", "--limit", "lots"]],
    ids=" ".join,
)
def test_cli_bad_arguments(cli_ledger, args):
    out = bastion_cli("ledger", args[0], cli_ledger, *args[1:])
    assert out.returncode == 2, out
    assert f"bastion ledger {args[0]}: error: argument" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_reads_beside_an_open_writer(ledger_path):
    with bastion.Ledger.open(ledger_path) as led:
        led.append_many([realistic_record(i) for i in range(5)])
        out = bastion_cli("ledger", "query", ledger_path, "--json")
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.splitlines()) == 5
        assert bastion_cli("ledger", "verify", ledger_path).returncode == 0
        assert led.append(action="still-writing") == 6


FOLLOW_WRITER = r"""
import sys, bastion
ledger = bastion.Ledger.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for i in range(5):
    ledger.append(action="tool_call", agent_id="follower-test", step_index=i, tool="t")
ledger.close()
print("done", flush=True)
"""


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_cli_tail_follow_prints_records_appended_meanwhile(ledger_path, children, as_json):
    with bastion.Ledger.open(ledger_path) as led:
        led.append_many([{"action": "a", "agent_id": "before"}] * 3)
    writer = children(FOLLOW_WRITER, ledger_path)  # started and waiting: no start-up delay
    writer.wait_for(lambda lines: "ready" in lines)
    tail = subprocess.Popen(
        [BASTION, "ledger", "tail", ledger_path, "-n", "2", "-f", "--follow-for", "1",
         "--interval", "0.05", *(["--json"] if as_json else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        first = [tail.stdout.readline() for _ in range(2 if as_json else 3)]
        writer.proc.stdin.write("go\n")
        writer.proc.stdin.flush()
        writer.wait_for(lambda lines: "done" in lines)
        rest, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.communicate()
    assert tail.returncode == 0, err
    if as_json:
        assert [json.loads(x)["seq"] for x in first] == [2, 3]
        new = [json.loads(x) for x in rest.splitlines()]
        assert [r["seq"] for r in new] == [4, 5, 6, 7, 8]
        assert [r["step_index"] for r in new] == list(range(5))
        assert all(r["agent_id"] == "follower-test" for r in new)
    else:
        assert first[0].startswith("SEQ")
        assert [int(x.split()[0]) for x in first[1:]] == [2, 3]
        rows = rest.splitlines()
        assert [int(x.split()[0]) for x in rows] == [4, 5, 6, 7, 8]
        assert all("follower-test" in x for x in rows)
        assert not any(x.startswith("SEQ") for x in rows)  # no second header


def test_tail_follow_from_an_empty_start(ledger_path, children):
    with bastion.Ledger.open(ledger_path) as led:
        led.append_many([{"action": "a"}] * 4)
    writer = children(FOLLOW_WRITER, ledger_path)
    writer.wait_for(lambda lines: "ready" in lines)
    tail = subprocess.Popen(
        [BASTION, "ledger", "tail", ledger_path, "-n", "0", "-f", "--follow-for", "1",
         "--interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        header = tail.stdout.readline()  # printed once tail has read the head
        writer.proc.stdin.write("go\n")
        writer.proc.stdin.flush()
        writer.wait_for(lambda lines: "done" in lines)
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.communicate()
    assert tail.returncode == 0, err
    assert header.startswith("SEQ")
    # -n 0 shows no old records and follows from the head.
    assert [int(x.split()[0]) for x in out.splitlines()] == [5, 6, 7, 8, 9]


def test_a_child_process_imports_the_installed_package():
    out = run_python("import bastion; print(bastion.__file__)")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).parent == Path(bastion.__file__).parent
