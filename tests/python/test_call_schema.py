"""One call schema: bastion._core.CALL_FIELDS drives the policies' view, the
Python keywords, the stubs and the DataFrame columns; old names are aliases."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bastion
from bastion import _core, frames
from helpers import guard_records as records

STUBS = Path(bastion.__file__).parent / "_core.pyi"


def stub_keys(class_name: str) -> list[str]:
    """The keys of a TypedDict of the stubs, in order."""
    for node in ast.parse(STUBS.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return [item.target.id for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)]
    raise AssertionError(f"{class_name} is not in {STUBS.name}")


def test_stub_call_fields_are_the_schema_and_its_aliases() -> None:
    names = [name for name, _, _ in _core.CALL_FIELDS if name != "hook"]
    aliases = [alias for alias, _ in _core.CALL_FIELD_ALIASES]
    assert stub_keys("CallFields") == names + aliases
    assert stub_keys("TokenCounts") == [name for name, _ in _core.TOKEN_FIELDS]


def test_every_recorded_call_field_is_a_frame_column() -> None:
    recorded = [field for _, field, _ in _core.CALL_FIELDS if field is not None]
    recorded += [field for _, field in _core.TOKEN_FIELDS]
    assert recorded, "the schema records nothing"
    assert [f for f in recorded if f not in frames.COLUMNS] == []


def test_schema_names_are_unique_and_recorded_names_match() -> None:
    names = [name for name, _, _ in _core.CALL_FIELDS]
    assert len(set(names)) == len(names)
    for name, field, personal in _core.CALL_FIELDS:
        assert field in (None, name), f"{name} is recorded as {field}"
        assert isinstance(personal, bool)
    # the record's personal fields (docs/ledger_format.md)
    assert {name for name, field, personal in _core.CALL_FIELDS if field and personal} == {
        "user_id", "attributes"}
    for alias, name in _core.CALL_FIELD_ALIASES:
        assert alias not in names and name in names


def echo_engine(expression: str) -> bastion.PolicyEngine:
    return bastion.PolicyEngine.from_sources([("echo.lua", (
        "return { id = 'echo', before_tool = function(call)\n"
        f"  return deny(tostring({expression})) end }}\n"))])


@pytest.mark.parametrize("name", [
    name for name, _, _ in _core.CALL_FIELDS
    if name not in ("hook", "args", "tokens", "attributes")])
def test_each_field_reaches_the_policies_under_its_own_name(name: str) -> None:
    value: object = 7 if name in ("step_index", "run_steps", "run_tool_calls") else f"v-{name}"
    d = echo_engine(f"call.{name}").evaluate("before_tool", **{name: value})
    assert d.reasons[0]["message"] == str(value)


@pytest.mark.parametrize(("alias", "name"), list(_core.CALL_FIELD_ALIASES))
def test_keyword_aliases_set_the_field_of_their_name(alias: str, name: str) -> None:
    value: object = 5 if name == "step_index" else "aliased"
    d = echo_engine(f"call.{name}").evaluate("before_tool", {alias: value})
    assert d.reasons[0]["message"] == str(value)
    d = echo_engine(f"call.{alias}").evaluate("before_tool", **{name: value})
    assert d.reasons[0]["message"] == str(value)


def test_a_field_and_its_alias_together_are_an_error() -> None:
    with pytest.raises(bastion.InvalidArgumentError,
                       match="call field 'resource_id' is given twice \\(also as 'resource'\\)"):
        echo_engine("call.resource_id").evaluate("before_tool", resource="a", resource_id="b")
    with pytest.raises(bastion.InvalidArgumentError, match="'step_index' is given twice"):
        echo_engine("call.step_index").evaluate("before_tool", {"step_index": 1}, step=2)


def test_the_hook_is_not_a_field() -> None:
    with pytest.raises(bastion.InvalidArgumentError, match="'hook' is not a call field"):
        echo_engine("call.hook").evaluate("before_tool", {"hook": "after_tool"})


def test_token_counts_use_the_record_names() -> None:
    d = echo_engine("call.tokens.cache_read + call.tokens.reasoning").evaluate(
        "before_tool", tokens={"cache_read": 3, "reasoning": 4})
    assert d.reasons[0]["message"] == "7"
    with pytest.raises(bastion.InvalidArgumentError, match="unknown token count 'tokens.cached'"):
        echo_engine("1").evaluate("before_tool", tokens={"cached": 1})


def test_guard_records_a_call_under_the_schema_names(tmp_path: Path) -> None:
    with bastion.Guard.open(tmp_path / "g") as g:
        g.begin_tool("search_kb", "read", resource="kb/shipping", step=3, agent_id="bot",
                     user_id="u-1")
        g.begin_tool("search_kb", "read", resource_id="kb/returns", step_index=4)
        with pytest.raises(bastion.InvalidArgumentError, match="'hook' is not a call field"):
            g.begin_tool("search_kb", hook="after_tool")
        rows = records(g)
    assert [(r["action"], r["resource_id"], r["step_index"]) for r in rows] == [
        ("tool_call", "kb/shipping", 3), ("tool_call", "kb/returns", 4)]
    assert rows[0]["user_id"] == "u-1" and rows[0]["agent_id"] == "bot"
