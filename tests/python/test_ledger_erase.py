"""Ledger.erase: a data subject's personal data leaves the records, the indexes and
every file of the ledger directory, while the chain still verifies."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bastion
from helpers import child_env

REPO = Path(__file__).resolve().parents[2]
BASTION = str(Path(os.path.abspath(sys.executable)).parent / "bastion")

# Personal values whose 4-byte substrings occur nowhere else, so that a byte
# scan finds them even in LZ4-compressed table blocks (a first occurrence stays
# a literal).
GONE = "qJ7vErAsEdMk"
KEPT = "wX3kKePtMkZn"


def person(marker: str, user: str, i: int) -> dict:
    return {
        "action": "model_call", "agent_id": f"agent-{i % 3}", "user_id": user,
        "input_summary": f"{marker} asks {i}", "output_summary": f"{marker} answer {i}",
        "approved_by": f"{marker}-approver", "attributes": {f"{marker}-key": f"{marker}-{i}"},
        "cost_usd": "0.001", "effect": "allow",
    }


def files_holding(directory: str, needle: str) -> list[str]:
    found = []
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                if needle.encode() in f.read():
                    found.append(name)
    return found


@pytest.fixture
def filled(tmp_path) -> tuple[str, list[int]]:
    path = str(tmp_path / "audit")
    gone = []
    with bastion.Ledger.open(path) as ledger:
        for i in range(30):
            mine = i % 3 == 0
            seq = ledger.append(person(GONE if mine else KEPT, "u-42" if mine else "u-7", i))
            if mine:
                gone.append(seq)
    return path, gone


def test_the_documented_call_erases_and_reads_back_as_erased(filled):
    path, gone = filled
    with bastion.Ledger.open(path) as ledger:
        hashes = [ledger.get(s)["hash"] for s in range(1, 31)]
        n = ledger.erase(user_id="u-42", reason="GDPR art. 17 request #12", by="dpo@example.com")
        assert n == len(gone) == 10
        for seq in gone:
            rec = ledger.get(seq)
            assert rec["personal_data_erased"] is True
            for field in ("user_id", "input_summary", "output_summary", "approved_by",
                          "attributes"):
                assert rec[field] is None, field
            assert rec["agent_id"] == f"agent-{(seq - 1) % 3}"  # public fields stay
        kept = ledger.get(2)
        assert kept["personal_data_erased"] is False and kept["user_id"] == "u-7"
        assert [ledger.get(s)["hash"] for s in range(1, 31)] == hashes
        assert len(ledger.query(user_id="u-42", limit=None)) == 0
        assert len(ledger.query(user_id="u-7", limit=None)) == 20
        report = ledger.verify()
        assert report.ok, report.message
        erasure = ledger.get(31)
        assert erasure["action"] == "erasure" and erasure["agent_id"] == "dpo@example.com"
        assert erasure["risk_level"] == "high"
        message = erasure["reasons"][0]["message"]
        assert erasure["reasons"][0]["policy_id"] == "bastion.erasure"
        assert "10 records" in message and "GDPR art. 17 request #12" in message
        assert "1, 4, 7" in message and "u-42" not in json.dumps(erasure, default=str)
        assert erasure["attributes"]["erased_records"] == "10"
        assert erasure["attributes"]["seqs"].startswith("1, 4, 7, ")


def test_query_results_and_frames_show_the_erasure(filled):
    pd = pytest.importorskip("pandas")
    path, gone = filled
    with bastion.Ledger.open(path) as ledger:
        ledger.erase(user_id="u-42", reason="request 7", by="dpo")
        rows = list(ledger.query(agent_id="agent-0", limit=None, newest_first=False))
        assert [r["seq"] for r in rows if r["personal_data_erased"]] == gone
        assert all(r["user_id"] is None and r["attributes"] is None
                   for r in rows if r["personal_data_erased"])
        df = ledger.query(limit=None, newest_first=False).to_pandas()
    assert df["personal_data_erased"].dtype == bool
    erased = df[df["personal_data_erased"]]
    assert erased["seq"].tolist() == gone
    for col in ("user_id", "input_summary", "output_summary", "approved_by", "attributes"):
        assert erased[col].isna().all(), col
    assert df[~df["personal_data_erased"]]["user_id"].notna().sum() == 20  # + the erasure record
    assert pd.isna(df.iloc[-1]["user_id"])


def test_erase_report_and_already_erased(filled):
    path, gone = filled
    with bastion.Ledger.open(path) as ledger:
        first = ledger.erase_report(seqs=[gone[0], gone[1], 2], reason="wrong data", by="ops")
        assert (first.erased, first.already_erased, first.seqs) == (3, 0, [1, 2, 4])
        assert int(first) == 3 and first.erasure_seq == 31
        assert first.quarantine_folders == []
        second = ledger.erase_report(user_id="u-42", seqs=[2], reason="request", by="dpo")
        assert second.erased == 8 and second.already_erased == 1
        assert "erased 8 records" in repr(second)
        assert ledger.verify().ok


def test_bad_arguments(filled):
    path, _ = filled
    with bastion.Ledger.open(path) as ledger:
        with pytest.raises(TypeError, match="user_id must be str"):
            ledger.erase(user_id=42, reason="r", by="b")
        with pytest.raises(TypeError, match="seqs must be an iterable of int"):
            ledger.erase(seqs="1, 2", reason="r", by="b")
        with pytest.raises(TypeError, match="seqs must hold int"):
            ledger.erase(seqs=[1.0], reason="r", by="b")
        with pytest.raises(TypeError, match="reason must be str"):
            ledger.erase(user_id="u-42", reason=b"r", by="b")
        with pytest.raises(ValueError, match="'reason' is required"):
            ledger.erase(user_id="u-42", by="b")
        with pytest.raises(ValueError, match="'by' is required"):
            ledger.erase(user_id="u-42", reason="r")
        with pytest.raises(bastion.InvalidArgumentError, match="'by' is required and empty"):
            ledger.erase(user_id="u-42", reason="r", by="")
        with pytest.raises(bastion.InvalidArgumentError, match="no record 99"):
            ledger.erase(seqs=[1, 99], reason="r", by="b")
        with pytest.raises(ValueError, match="seq -1"):
            ledger.erase(seqs=[-1], reason="r", by="b")
        with pytest.raises(bastion.InvalidArgumentError, match="contains the user id"):
            ledger.erase(user_id="u-42", reason="request of u-42", by="b")
        with pytest.raises(bastion.InvalidArgumentError, match="no records"):
            ledger.erase(reason="r", by="b")
        assert ledger.head()["seq"] == 30
    with bastion.Ledger.open(path, reader=True) as reader:
        with pytest.raises(bastion.StateError, match="read-only"):
            reader.erase(user_id="u-42", reason="r", by="b")


def test_no_file_holds_the_erased_values_after_close(filled):
    path, _ = filled
    with bastion.Ledger.open(path) as ledger:
        for i in range(30, 40):  # some only in the memtable and the log
            ledger.append(person(GONE, "u-42", i))
        assert files_holding(path, GONE)
        ledger.erase(user_id="u-42", reason="GDPR art. 17", by="dpo")
    assert files_holding(path, GONE) == []
    assert files_holding(path, KEPT)  # the scan sees stored values
    assert files_holding(path, "u-7")


def bastion_cli(*args: str):
    return subprocess.run([BASTION, *args], capture_output=True, text=True, env=child_env(),
                          timeout=60)


def test_cli_erase(filled):
    path, gone = filled
    out = bastion_cli("ledger", "erase", path, "--user", "u-42", "--seq", "2", "--reason",
                      "GDPR art. 17 request #12", "--by", "dpo@example.com")
    assert out.returncode == 0, out.stderr
    assert "ERASED the personal data of 11 records: 1-2, 4, 7, 10, 13, 16, 19, 22, 25, 28" \
        in out.stdout
    assert "record 31 (action 'erasure')" in out.stdout
    again = bastion_cli("ledger", "erase", path, "--seq", "2", "--reason", "again", "--by",
                        "dpo", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"erased": 0, "already_erased": 1, "erasure_seq": 32,
                                        "seqs": [], "quarantine_folders": []}
    assert files_holding(path, GONE) == []
    verify = bastion_cli("ledger", "verify", path)
    assert verify.returncode == 0, verify.stdout


def test_cli_erase_refuses_a_ledger_open_elsewhere_and_bad_options(filled):
    path, _ = filled
    with bastion.Ledger.open(path):
        out = bastion_cli("ledger", "erase", path, "--user", "u-42", "--reason", "r", "--by", "b")
    assert out.returncode == 2
    assert "in use" in out.stderr and "erasing needs the ledger's writer" in out.stderr
    missing = bastion_cli("ledger", "erase", path, "--user", "u-42", "--by", "b")
    assert missing.returncode == 2 and "--reason" in missing.stderr
    nothing = bastion_cli("ledger", "erase", path, "--reason", "r", "--by", "b")
    assert nothing.returncode == 2 and "--user, --seq" in nothing.stderr
    absent = bastion_cli("ledger", "erase", str(Path(path).parent / "none"), "--user", "u",
                         "--reason", "r", "--by", "b")
    assert absent.returncode == 2 and "no ledger" in absent.stderr
    with bastion.Ledger.open(path, reader=True) as reader:
        assert reader.head()["seq"] == 30  # nothing was written


def test_the_guide_example_runs(tmp_path):
    text = (REPO / "docs" / "ledger.md").read_text()
    section = text.split("## Erasing personal data", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks
    cwd = os.getcwd()
    os.chdir(tmp_path)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            for code in blocks:
                exec(compile(code, "docs/ledger.md", "exec"), {"__name__": "__doc_example__"})
    finally:
        os.chdir(cwd)
    assert out.getvalue().splitlines()[:2] == ["1", "True None None"]
