"""The policy engine from Python: evaluation, decisions, errors, hot reload."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import bastion

DENY_RM = ("rm.lua", "return { id = 'no-rm', before_tool = function(call)\n"
                     "  if call.tool == 'rm' then return deny('rm by ' .. call.agent.id) end end }\n")
REDACT = ("pii.lua", "return { id = 'pii', after_model = function(call, out)\n"
                     "  local hits = pii.find(out.text, {'email'})\n"
                     "  if #hits > 0 then return redact(hits, 'email in output') end end }\n")


def engine(*files: tuple[str, str], **kw: str) -> bastion.PolicyEngine:
    return bastion.PolicyEngine.from_sources(list(files), **kw)


def test_evaluate_with_a_dict_or_keywords() -> None:
    e = engine(DENY_RM)
    d1 = e.evaluate("before_tool", {"agent_id": "bot", "tool": "rm"})
    d2 = e.evaluate("before_tool", agent_id="bot", tool="rm")
    for d in (d1, d2):
        assert d.effect == "deny"
        assert not d.allowed
        assert d.reasons == [{"policy_id": "no-rm", "message": "rm by bot"}]
        assert d.policy_version == e.version and len(e.version) == 64
    ok = e.evaluate("before_tool", agent_id="bot", tool="ls")
    assert ok.effect == "allow" and ok.allowed and ok.reasons == []
    assert "no-rm" in repr(d1)


def test_redaction_is_reported_and_applied() -> None:
    e = engine(REDACT)
    text = "write to jane@example.com today"
    d = e.evaluate("after_model", output=text)
    assert d.effect == "modify"
    assert d.redactions == [{"target": "output", "start": 9, "end": 25, "label": "[EMAIL]",
                             "policy_id": "pii"}]
    assert d.apply(text, "output") == "write to [EMAIL] today"
    assert d.apply(text, "input") == text


def test_explain_lists_every_policy() -> None:
    e = engine(DENY_RM, REDACT)
    d = e.evaluate("before_tool", tool="rm", agent_id="x")
    by_id = {o["policy_id"]: o for o in d.explain}
    assert by_id["no-rm"]["applied"] and by_id["no-rm"]["effect"] == "deny"
    assert not by_id["pii"]["applied"] and by_id["pii"]["effect"] is None
    assert e.policy_ids == ["pii", "no-rm"]  # bundle order is file-name order


def test_args_are_json_like_views() -> None:
    e = engine(("a.lua", "return { id='a', before_tool = function(call)\n"
                         "  return deny(call.args.to .. ' ' .. #call.args.cc .. ' ' .. "
                         "tostring(call.args.n) .. ' ' .. tostring(call.args.opt.flag)) end }"))
    d = e.evaluate("before_tool", tool="mail",
                   args={"to": "a@b.c", "cc": ["x", "y"], "n": 2.5, "opt": {"flag": True}})
    assert d.reasons[0]["message"] == "a@b.c 2 2.5 true"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"tool": b"rm"}, TypeError, "'tool' must be str"),
    ({"step_index": "3"}, TypeError, "'step_index' must be int"),
    ({"step_index": True}, TypeError, "'step_index' must be int"),
    ({"args": {"x": object()}}, TypeError, "args.x"),
    ({"args": {1: "x"}}, TypeError, "keys of 'args' must be str"),
    ({"tokens": {"bogus": 1}}, bastion.InvalidArgumentError, "tokens.bogus"),
    ({"toool": "rm"}, bastion.InvalidArgumentError, "unknown call field 'toool'"),
    ({"tool": "\udcff"}, bastion.InvalidArgumentError, "'tool' is not valid UTF-8"),
])
def test_bad_call_fields_name_the_field(kwargs, error, match) -> None:
    e = engine(DENY_RM)
    with pytest.raises(error, match=match):
        e.evaluate("before_tool", **kwargs)


def test_unknown_hook_is_rejected() -> None:
    with pytest.raises(bastion.InvalidArgumentError, match="unknown hook 'before_tools'"):
        engine(DENY_RM).evaluate("before_tools", tool="rm")


def test_deeply_nested_args_are_rejected_not_a_crash() -> None:
    args: dict = {}
    node = args
    for _ in range(200):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(bastion.InvalidArgumentError, match="nested more than 64"):
        engine(DENY_RM).evaluate("before_tool", tool="x", args=args)


def test_huge_and_binary_text_is_handled() -> None:
    e = engine(REDACT)
    big = ("lorem ipsum " * 100_000) + "bob@example.org"
    d = e.evaluate("after_model", output=big)
    assert d.effect == "modify" and d.apply(big, "output").endswith("[EMAIL]")
    d = e.evaluate("after_model", output="\x00\x01\x02 no pii here \x7f")
    assert d.effect == "allow"


def test_load_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.lua").write_text("return {\n  before_tool = function(call)\n    return deny(\n  end }\n")
    with pytest.raises(bastion.InvalidArgumentError, match=r"bad\.lua:4:"):
        bastion.PolicyEngine.load(str(tmp_path))
    with pytest.raises(bastion.NotFoundError):
        bastion.PolicyEngine.load(str(tmp_path / "missing"))


def test_reload_swaps_atomically_and_a_broken_bundle_keeps_the_old(tmp_path: Path) -> None:
    (tmp_path / "p.lua").write_text("return { id='v1', before_tool=function() return deny('v1') end }")
    e = bastion.PolicyEngine.load(str(tmp_path))
    v1 = e.version
    assert e.evaluate("before_tool", tool="x").reasons[0]["message"] == "v1"

    (tmp_path / "p.lua").write_text("return { id='v2', before_tool=function() return deny('v2') end }")
    e.reload(str(tmp_path))
    assert e.version != v1
    assert e.evaluate("before_tool", tool="x").reasons[0]["message"] == "v2"

    v2 = e.version
    (tmp_path / "p.lua").write_text("return { id='v3', before_tool=function() return deny( end }")
    with pytest.raises(bastion.InvalidArgumentError, match=r"p\.lua:1:"):
        e.reload(str(tmp_path))
    assert e.version == v2
    assert e.evaluate("before_tool", tool="x").reasons[0]["message"] == "v2"


def test_hot_reload_under_concurrent_evaluation(tmp_path: Path) -> None:
    def write(version: int) -> None:
        (tmp_path / "p.lua").write_text(
            f"return {{ id='p', before_tool=function() return deny('v{version}') end }}")

    write(0)
    e = bastion.PolicyEngine.load(str(tmp_path))
    seen: list[set[str]] = [set() for _ in range(4)]
    bad: list[str] = []
    stop = threading.Event()

    def evaluate(i: int) -> None:
        while not stop.is_set():
            d = e.evaluate("before_tool", tool="x")
            if d.effect != "deny" or d.errors or d.policy_version == "":
                bad.append(repr(d))
            seen[i].add(d.reasons[0]["message"])

    threads = [threading.Thread(target=evaluate, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for v in range(1, 21):
        write(v)
        e.reload(str(tmp_path))
    stop.set()
    for t in threads:
        t.join()
    assert not bad
    assert e.evaluate("before_tool", tool="x").reasons[0]["message"] == "v20"
    assert all(s <= {f"v{i}" for i in range(21)} for s in seen)


def test_hostile_policy_fails_closed_and_engine_keeps_serving() -> None:
    e = engine(("loop.lua", "return { id='loop', before_tool=function() while true do end end }"),
               DENY_RM, bundle_yaml="limits:\n  instructions: 100000\n")
    for _ in range(3):
        d = e.evaluate("before_tool", tool="ls", agent_id="a")
        assert d.effect == "deny"
        assert d.errors == [{"policy_id": "loop", "kind": "instruction_limit",
                             "message": d.errors[0]["message"]}]
        assert "instruction limit exceeded" in d.errors[0]["message"]
