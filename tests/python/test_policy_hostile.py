"""Hostile input and careless policies, through the installed package: the
sandbox's limits hold whatever the policy catches, and fail closed."""

from __future__ import annotations

import time

import pytest

import bastion


def engine(body: str, hook: str = "before_model", bundle_yaml: str = "") -> bastion.PolicyEngine:
    source = f"return {{ id = 'p', {hook} = function(call, text)\n{body}\nend }}\n"
    return bastion.PolicyEngine.from_sources([("p.lua", source)], bundle_yaml=bundle_yaml)


def only_error(d: bastion.Decision) -> dict[str, str]:
    assert d.effect == "deny", d
    assert len(d.errors) == 1, d.errors
    assert d.errors[0]["policy_id"] == "p"
    return d.errors[0]


def test_memory_limit_inside_pcall_fails_closed() -> None:
    # The card number must not go out because pii.find ran out of memory
    # inside pcall and the policy fell through.
    e = engine("local ok, hits = pcall(pii.find, text.text, 'credit_card')\n"
               "if ok and #hits > 0 then return redact(hits) end\n"
               "return allow('nothing found')", hook="after_model")
    output = "card 4111 1111 1111 1111 ok " * 80_000  # 2.2 MB
    d = e.evaluate("after_model", output=output)
    error = only_error(d)
    assert error["kind"] == "memory_limit"
    assert "not enough memory" in error["message"]
    assert d.reasons[0]["policy_id"] == "p"
    # The engine keeps serving, and short outputs are redacted as before.
    short = e.evaluate("after_model", output="card 4111 1111 1111 1111")
    assert short.effect == "modify"
    assert short.apply("card 4111 1111 1111 1111", "output") == "card [CREDIT_CARD]"


@pytest.mark.parametrize("body", [
    "pcall(string.rep, 'x', 1 << 30) return allow()",
    "pcall(string.rep, 'x', 1 << 30) error({})",
    "xpcall(string.rep, function(e) local t = {} for i = 1, 100 do t[i] = {i} end return t end,"
    " 'x', 1 << 30) return allow()",
])
def test_memory_limit_is_sticky(body: str) -> None:
    d = engine(body, bundle_yaml="limits:\n  memory_kb: 1024\n").evaluate("before_model")
    assert only_error(d)["kind"] == "memory_limit"


@pytest.mark.parametrize("call", [
    "string.find(text.text, '(.-)%s*=%s*(.-)%s*;')",
    "text.text:find('.-.-.-.-x')",
    "string.match(text.text, '.*.*.*x')",
    "string.gsub(text.text, '.-.-x', '')",
    "pcall(string.find, text.text, '(.-)%s*=%s*(.-)%s*;')",
])
def test_backtracking_patterns_on_attacker_input_end_within_the_limit(call: str) -> None:
    e = engine(f"local r = {call} return allow()")
    prompt = "a = b " * 20_000  # 120 kB: hours for the stock matcher
    start = time.monotonic()
    d = e.evaluate("before_model", input=prompt)
    elapsed = time.monotonic() - start
    error = only_error(d)
    assert error["kind"] == "instruction_limit"
    assert "instruction limit exceeded" in error["message"]
    assert elapsed < 5, elapsed


def test_balanced_match_over_many_parentheses_ends() -> None:
    e = engine("return string.find(text.text, '%b()') and deny('nested') or nil")
    start = time.monotonic()
    d = e.evaluate("before_model", input="(" * 500_000)
    assert only_error(d)["kind"] == "instruction_limit"
    assert time.monotonic() - start < 5
    # An ordinary prompt is matched as the standard library would.
    assert e.evaluate("before_model", input="f(a(b)c)").effect == "deny"
    assert e.evaluate("before_model", input="f(a(b c").effect == "allow"


def test_patterns_agree_with_lua_on_ordinary_input() -> None:
    e = engine("local k, v = string.match(text.text, '^%s*([%w_]+)%s*=%s*(.-)%s*;')\n"
               "local n = select(2, string.gsub(text.text, '%f[%w]%w+', '%0'))\n"
               "return deny(string.format('%s|%s|%d', k, v, n))")
    d = e.evaluate("before_model", input="  api_key = sk-123 ; more words")
    # %w has no underscore: api, key, sk, 123, more, words
    assert d.reasons[0]["message"] == "api_key|sk-123|6"


def test_counter_keys_are_bounded_and_fail_closed() -> None:
    e = engine("local pad = string.rep('k', 1000)\n"
               "for i = 1, 10000 do pcall(counter.add, pad .. i, 3600) end\n"
               "return allow()", bundle_yaml="limits:\n  counter_key_bytes: 2048\n"
                                             "  counter_keys: 500\n")
    for _ in range(10):
        error = only_error(e.evaluate("before_model"))
        assert error["kind"] == "counter_limit"
        assert "limits.counter_keys" in error["message"]


def test_long_counter_keys_are_refused() -> None:
    e = engine("return counter.add(text.text, 60) > 1 and deny('again') or nil")
    assert e.evaluate("before_model", input="user-1").effect == "allow"
    assert e.evaluate("before_model", input="user-1").effect == "deny"
    error = only_error(e.evaluate("before_model", input="u" * 1024))
    assert error["kind"] == "counter_limit"
    assert "limits.counter_key_bytes" in error["message"]


def test_counter_limits_are_validated() -> None:
    with pytest.raises(bastion.InvalidArgumentError,
                       match="limits.counter_keys: expected a positive integer"):
        engine("return nil", bundle_yaml="limits:\n  counter_keys: -1\n")
