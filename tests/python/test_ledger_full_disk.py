"""A ledger (and a budget state) on a file system that runs full: every
affected call raises StorageError, the process lives on, nothing acknowledged
is lost, and writing resumes once there is room again."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import bastion


class SmallFs:
    """A tmpfs of a few MiB mounted for one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self) -> None:
        """Takes every free byte."""
        with open(self.filler, "ab", buffering=0) as f:
            size = 64 << 10
            while size:
                try:
                    f.write(b"x" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    size //= 2

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    root = tmp_path / "fs"
    root.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallFs(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def summary(i: int) -> str:
    return f"record {i} " + "p" * 200


def append_until_refused(ledger: bastion.Ledger, acked: dict[int, int], start: int,
                         durability: str) -> tuple[int, bastion.StorageError]:
    for i in range(start, start + 20000):
        try:
            acked[ledger.append(action="model_call", input_summary=summary(i),
                                durability=durability)] = i
        except bastion.StorageError as e:
            return i + 1, e
    pytest.fail("the full disk never refused an append")


def expect_every_acked_record(ledger: bastion.Ledger, acked: dict[int, int]) -> None:
    assert ledger.head()["seq"] == len(acked), "a gap, or records nobody acknowledged"
    for seq, i in acked.items():
        assert ledger.get(seq)["input_summary"] == summary(i), f"record {seq}"
    report = ledger.verify()
    assert report.ok, report.message


@pytest.mark.parametrize("durability", ["sync", "group"])
def test_full_disk_raises_on_every_append_and_recovers(small_fs: SmallFs,
                                                       durability: str) -> None:
    path = str(small_fs.root / "ledger")
    acked: dict[int, int] = {}
    with bastion.Ledger.open(path) as ledger:
        for i in range(50):
            acked[ledger.append(action="model_call", input_summary=summary(i),
                                durability=durability)] = i
        small_fs.fill()
        next_i, refusal = append_until_refused(ledger, acked, 50, durability)
        assert path in str(refusal)
        for i in range(next_i, next_i + 5):  # still full: each append says so
            with pytest.raises(bastion.StorageError, match="No space left"):
                ledger.append(action="model_call", input_summary=summary(i),
                              durability=durability)
        with pytest.raises(bastion.StorageError):
            ledger.flush()
        assert ledger.get(1)["input_summary"] == summary(0)  # reads still work

        small_fs.free()
        for i in range(next_i + 5, next_i + 105):
            acked[ledger.append(action="model_call", input_summary=summary(i),
                                durability=durability)] = i
        ledger.flush()
        expect_every_acked_record(ledger, acked)
    with bastion.Ledger.open(path) as ledger:
        expect_every_acked_record(ledger, acked)


def test_async_appends_lost_to_a_full_disk_are_reported(small_fs: SmallFs) -> None:
    path = str(small_fs.root / "ledger")
    with bastion.Ledger.open(path) as ledger:
        for i in range(20):
            ledger.append(action="model_call", input_summary=summary(i), durability="sync")
        small_fs.fill()
        with pytest.raises(bastion.StorageError):
            for i in range(20000):
                ledger.append(action="model_call", input_summary=summary(i), durability="async")
                if i % 100 == 99:
                    ledger.flush()
        small_fs.free()
        try:
            ledger.flush()
        except bastion.StorageError as e:  # the loss, reported once
            assert "were not written" in str(e)
            ledger.flush()
        seq = ledger.append(action="model_call", durability="sync")
        assert ledger.head()["seq"] == seq
        assert ledger.verify().ok


def test_close_on_a_full_disk_keeps_what_was_acknowledged(small_fs: SmallFs) -> None:
    path = str(small_fs.root / "ledger")
    acked: dict[int, int] = {}
    ledger = bastion.Ledger.open(path)
    small_fs.fill()
    append_until_refused(ledger, acked, 0, "group")
    try:
        ledger.close()
    except bastion.StorageError:
        pass  # the disk is still full; what was acknowledged is on it all the same
    small_fs.free()
    with bastion.Ledger.open(path) as ledger:
        expect_every_acked_record(ledger, acked)


BUDGETS = """
version: 1
budgets:
  - id: per-user
    scope: user
    limit_usd: 1000
    window: daily
"""


def test_budget_state_on_a_full_disk(small_fs: SmallFs) -> None:
    state = str(small_fs.root / "state")
    spent = 0
    with bastion.Budgets.open(yaml=BUDGETS, state_path=state, flush_interval=0) as budgets:
        def settle() -> None:
            nonlocal spent
            hold = budgets.reserve(0.001, user="alice")
            spent += 1
            budgets.settle(hold, 0.001)

        settle()
        small_fs.fill()
        with pytest.raises(bastion.StorageError):
            for _ in range(20000):
                settle()
        with pytest.raises(bastion.StorageError):
            settle()
        # The spend is kept in memory while the disk is full.
        assert budgets.usage_of("per-user", "alice")["spent_usd"] * 1000 == spent
        small_fs.free()
        budgets.flush()
        settle()
    with bastion.Budgets.open(yaml=BUDGETS, state_path=state) as budgets:
        assert budgets.usage_of("per-user", "alice")["spent_usd"] * 1000 == spent
