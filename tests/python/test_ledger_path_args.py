"""A path holding a NUL byte would be cut short by the operating system and
open another file: every path argument rejects it with InvalidArgumentError
(a ValueError) that names the argument, before anything is created."""

from __future__ import annotations

from pathlib import Path

import pytest

import bastion


@pytest.fixture
def bad(tmp_path: Path) -> str:
    return str(tmp_path / "x") + "\0y"


def nothing_created(tmp_path: Path) -> bool:
    return not (tmp_path / "x").exists()


@pytest.mark.parametrize("reader", [False, True])
def test_ledger_open(bad: str, tmp_path: Path, reader: bool) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match="ledger path holds a NUL byte"):
        bastion.Ledger.open(bad, reader=reader)
    assert nothing_created(tmp_path)


def test_budgets_state_path_and_config(bad: str, tmp_path: Path) -> None:
    yaml = "version: 1\nbudgets: []\n"
    with pytest.raises(ValueError, match="state_path holds a NUL byte"):
        bastion.Budgets.open(yaml=yaml, state_path=bad)
    with pytest.raises(bastion.InvalidArgumentError, match="budgets file path holds a NUL"):
        bastion.Budgets.open(bad)
    assert nothing_created(tmp_path)


def test_policy_engine_load_and_reload(bad: str) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match="policy bundle path holds a NUL"):
        bastion.PolicyEngine.load(bad)
    engine = bastion.PolicyEngine.from_sources(
        [("p.lua", "return {id = 'p', before_tool = function(call) end}")])
    with pytest.raises(bastion.InvalidArgumentError, match="policy bundle path holds a NUL"):
        engine.reload(bad)


def test_pricing_and_slo_config_loads(bad: str) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match="pricing file path holds a NUL"):
        bastion.PricingTable.load(bad)
    with pytest.raises(bastion.InvalidArgumentError, match="SLO file path holds a NUL"):
        bastion.SloMonitor.open(bad)


@pytest.mark.parametrize("argument", ["path", "policies", "budgets", "slos", "ledger", "state"])
def test_guard_open_names_the_argument(bad: str, tmp_path: Path, argument: str) -> None:
    kwargs = {} if argument == "path" else {"path": str(tmp_path / "g")}
    kwargs[argument] = bad
    with pytest.raises(bastion.InvalidArgumentError, match=f"{argument} holds a NUL byte"):
        bastion.Guard.open(**kwargs)
    assert nothing_created(tmp_path)
    assert not (tmp_path / "g").exists()


def test_guard_open_names_the_pricing_file(bad: str, tmp_path: Path) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match=r"pricing\[1\] holds a NUL byte"):
        bastion.Guard.open(tmp_path / "g", pricing=["ok.yaml", bad])


def test_guard_open_checks_bytes_paths(bad: str, tmp_path: Path) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match="policies holds a NUL byte"):
        bastion.Guard.open(tmp_path / "g", policies=bad.encode())
    assert not (tmp_path / "g").exists()
