"""Configuration that would silently disable a guarantee is refused, through
the installed package: YAML alias bombs in every file the package reads, and
policy scopes it cannot use. And a policy reads `call.args` on a call without
arguments as an empty table."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import bastion


def billion_laughs(indent: str = "") -> str:
    """9 lists of 9 aliases to the list before: 9**9 "lol"s once expanded."""
    lines = [f"{indent}a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{indent}{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


BOMB = billion_laughs()
# Where the expansion crosses a million nodes: the second alias of list 'g'.
AT = ":7:"
POLICY = "return { id = 'p', before_tool = function(call) return deny('x') end }"

LOADERS = {
    "parse_yaml": lambda: bastion._core.parse_yaml(BOMB, "cases.yaml"),
    "bundle.yaml": lambda: bastion.PolicyEngine.from_sources(
        [("p.lua", POLICY)], bundle_yaml="data:\n" + billion_laughs("  ")),
    "permissions.yaml": lambda: bastion.PolicyEngine.from_sources(
        [("p.lua", POLICY)], permissions_yaml=BOMB),
    "budgets": lambda: bastion.Budgets.open(yaml=BOMB),
    "slos": lambda: bastion.SloMonitor.open(yaml=BOMB),
    "pricing": lambda: bastion.PricingTable.from_yaml(BOMB, "pricing.yaml"),
    "litellm": lambda: bastion.PricingTable.from_litellm_json(BOMB, "litellm.json"),
}


@pytest.mark.parametrize("loader", LOADERS)
def test_billion_laughs_is_refused_quickly(loader: str) -> None:
    start = time.monotonic()
    with pytest.raises(bastion.InvalidArgumentError,
                       match="more than 1000000 nodes once aliases are expanded") as caught:
        LOADERS[loader]()
    assert time.monotonic() - start < 0.5
    where = ":8:" if loader == "bundle.yaml" else AT
    assert where in str(caught.value)


@pytest.mark.parametrize("name", ["budgets.yaml", "slos.yaml", "pricing.yaml",
                                  "policies/bundle.yaml"])
def test_guard_refuses_a_billion_laughs_file(tmp_path: Path, name: str) -> None:
    root = tmp_path / "g"
    if name.startswith("policies/"):
        (root / "policies").mkdir(parents=True)
        (root / "policies" / "p.lua").write_text(POLICY)
        text = "data:\n" + billion_laughs("  ")
    else:
        root.mkdir()
        text = BOMB
    (root / name).write_text(text)
    start = time.monotonic()
    with pytest.raises(bastion.InvalidArgumentError, match=name.split("/")[-1] + r":\d+:\d+: "
                       "more than 1000000 nodes"):
        bastion.Guard.open(root)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("scope, expected", [
    ("{ tools = {'delete_[*'} }", r"p\.lua:1: policy 'p': scope\.tools\[1\]: invalid glob "
                                  r"'delete_\[\*'"),
    ("{ tools = '' }", "scope.tools: empty glob"),
    ("{ tools = {} }", "scope.tools: empty list"),
    ("{ tools = 42 }", "scope.tools: expected a glob or a list of globs, found a number"),
    ("{ tool = {'x'} }", "unknown scope 'tool'"),
])
def test_unusable_scopes_are_load_errors(scope: str, expected: str) -> None:
    code = f"return {{ id = 'p', scope = {scope}, before_tool = function() return deny('x') end }}"
    with pytest.raises(bastion.InvalidArgumentError, match=expected):
        bastion.PolicyEngine.from_sources([("p.lua", code)])


def test_call_args_is_an_empty_table_without_arguments() -> None:
    engine = bastion.PolicyEngine.from_sources([("refunds.lua", """
return {
  id = "big-refunds",
  before_tool = function(call)
    if (call.args.amount or 0) > 100 then return require_approval("big refund") end
    return allow(tostring(#call.args))
  end,
}""")])
    d = engine.evaluate("before_tool", tool="refund")
    assert d.effect == "allow" and not d.errors
    assert engine.evaluate("before_tool", tool="refund", args={"amount": 250}).effect == (
        "require_approval")
