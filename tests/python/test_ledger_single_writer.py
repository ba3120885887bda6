"""One writer per ledger (and per budget state) directory, whatever path
leads to it: aliases in this process, a guard's own ledger, and another
process get BusyError; readers keep working beside the writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import bastion
from helpers import run_python


def aliases(tmp_path: Path, name: str) -> list[str]:
    """Every other spelling of tmp_path/name."""
    link = tmp_path / f"link-to-{name}"
    link.symlink_to(tmp_path / name, target_is_directory=True)
    (tmp_path / "sub").mkdir(exist_ok=True)
    base = str(tmp_path)
    return [str(link), f"{base}/./{name}", f"{base}//{name}", f"{base}/{name}/",
            f"{base}/sub/../{name}"]


def test_every_alias_of_an_open_ledger_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "led"
    with bastion.Ledger.open(str(path)) as ledger:
        ledger.append(action="a")
        canonical = os.path.realpath(path)
        for alias in aliases(tmp_path, "led"):
            with pytest.raises(bastion.BusyError, match="is in use") as caught:
                bastion.Ledger.open(alias)
            assert canonical in str(caught.value), (alias, str(caught.value))
        assert ledger.append(action="b") == 2


def test_two_writers_cannot_drop_each_others_records(tmp_path: Path) -> None:
    """The failure this guards against: two writers through two spellings
    each acknowledged its appends, and half of them vanished."""
    path = tmp_path / "led"
    first = bastion.Ledger.open(str(path))
    with pytest.raises(bastion.BusyError):
        bastion.Ledger.open(f"{tmp_path}//led/")
    acked = [first.append(action="a", input_summary=f"r{i}") for i in range(2000)]
    first.close()
    with bastion.Ledger.open(str(path), reader=True) as reader:
        assert reader.head()["seq"] == len(acked) == acked[-1]
        assert reader.get(1234)["input_summary"] == "r1233"
        assert reader.verify().ok


def test_closing_releases_every_spelling(tmp_path: Path) -> None:
    path = tmp_path / "led"
    bastion.Ledger.open(str(path)).close()
    for alias in aliases(tmp_path, "led"):
        with bastion.Ledger.open(alias) as ledger:
            ledger.append(action="a")
    with bastion.Ledger.open(str(path), reader=True) as reader:
        assert reader.head()["seq"] == 5
        assert reader.verify().ok


def test_readers_open_beside_the_writer_by_any_spelling(tmp_path: Path) -> None:
    path = tmp_path / "led"
    with bastion.Ledger.open(str(path)) as ledger:
        ledger.append(action="a")
        ledger.flush()
        for alias in aliases(tmp_path, "led"):
            with bastion.Ledger.open(alias, reader=True) as reader:
                assert reader.head()["seq"] == 1
        assert ledger.append(action="b") == 2


def test_a_guards_ledger_cannot_be_opened_again(tmp_path: Path) -> None:
    root = tmp_path / "guard"
    with bastion.Guard.open(root) as guard:
        call = guard.begin_model("gpt-4o", "hello", agent_id="a")
        call.end("hi", usage={"input_tokens": 3, "output_tokens": 2})
        for spelling in (f"{root}/ledger", f"{root}/./ledger/", f"{root}//ledger"):
            with pytest.raises(bastion.BusyError, match="is in use"):
                bastion.Ledger.open(spelling)
        with bastion.Ledger.open(f"{root}/ledger", reader=True) as reader:
            reader.refresh()
            assert reader.verify().ok
    with bastion.Ledger.open(f"{root}/ledger", reader=True) as reader:
        records = reader.query(limit=None, newest_first=False)
        assert [r["action"] for r in records] == ["model_call", "model_call"]
        assert reader.verify().ok


def test_a_writer_in_another_process_is_busy_by_any_spelling(tmp_path: Path) -> None:
    path = tmp_path / "led"
    with bastion.Ledger.open(str(path)) as ledger:
        ledger.append(action="a")
        ledger.flush()
        for alias in aliases(tmp_path, "led"):
            child = run_python(
                "import sys, bastion\n"
                "try:\n"
                "    bastion.Ledger.open(sys.argv[1])\n"
                "    print('opened')\n"
                "except bastion.BusyError as e:\n"
                "    print('busy:', e)\n"
                "with bastion.Ledger.open(sys.argv[1], reader=True) as r:\n"
                "    print('reader sees', r.head()['seq'])\n",
                alias,
            )
            assert child.returncode == 0, child.stderr
            assert child.stdout.startswith("busy: ledger at"), child.stdout
            assert "is in use" in child.stdout
            assert "reader sees 1" in child.stdout
        assert ledger.append(action="b") == 2


BUDGETS = """
version: 1
budgets:
  - id: per-user
    scope: user
    limit_usd: 100
    window: daily
"""


def test_every_alias_of_an_open_budget_state_is_busy(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with bastion.Budgets.open(yaml=BUDGETS, state_path=str(state)):
        for alias in aliases(tmp_path, "state"):
            with pytest.raises(bastion.BusyError, match="budget state .* is in use"):
                bastion.Budgets.open(yaml=BUDGETS, state_path=alias)
        child = run_python(
            "import sys, bastion\n"
            "try:\n"
            "    bastion.Budgets.open(yaml=sys.argv[2], state_path=sys.argv[1])\n"
            "    print('opened')\n"
            "except bastion.BusyError as e:\n"
            "    print('busy:', e)\n",
            f"{tmp_path}/./state/", BUDGETS,
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.startswith("busy: budget state at"), child.stdout
    with bastion.Budgets.open(yaml=BUDGETS, state_path=f"{tmp_path}//state"):
        pass


def test_a_guards_budget_state_cannot_be_opened_again(tmp_path: Path) -> None:
    root = tmp_path / "guard"
    root.mkdir()
    (root / "budgets.yaml").write_text(BUDGETS)
    with bastion.Guard.open(root):
        with pytest.raises(bastion.BusyError, match="is in use"):
            bastion.Budgets.open(yaml=BUDGETS, state_path=f"{root}/state/")
