"""Usage reports are read by their shape: never a silent zero."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import bastion

NOON = 1_795_262_400 * 10**9  # 2026-11-21T12:00:00Z

# One call, as each provider (and LangChain) reports it.
OPENAI_CHAT = {"prompt_tokens": 1300, "completion_tokens": 400, "total_tokens": 1700,
               "prompt_tokens_details": {"cached_tokens": 1000, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 150, "audio_tokens": 0,
                                             "accepted_prediction_tokens": 0,
                                             "rejected_prediction_tokens": 0}}
OPENAI_RESPONSES = {"input_tokens": 1300, "output_tokens": 400, "total_tokens": 1700,
                    "input_tokens_details": {"cached_tokens": 1000},
                    "output_tokens_details": {"reasoning_tokens": 150}}
GEMINI = {"promptTokenCount": 1300, "candidatesTokenCount": 250, "totalTokenCount": 1700,
          "cachedContentTokenCount": 1000, "thoughtsTokenCount": 150,
          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1300}]}
LANGCHAIN = {"input_tokens": 1300, "output_tokens": 400, "total_tokens": 1700,
             "input_token_details": {"cache_read": 1000, "audio": 0},
             "output_token_details": {"reasoning": 150}}
SAME_CALL = bastion.Usage(input=300, cache_read=1000, output=250, reasoning=150)


@pytest.mark.parametrize("report", [OPENAI_CHAT, OPENAI_RESPONSES, GEMINI, LANGCHAIN],
                         ids=["openai-chat", "openai-responses", "gemini", "langchain"])
def test_every_shape_is_recognised_without_naming_the_provider(report: dict) -> None:
    assert bastion.Usage.parse(report) == SAME_CALL
    assert bastion.Usage.parse(report, "auto") == SAME_CALL


def test_anthropic_is_recognised_by_its_cache_keys() -> None:
    report = {"input_tokens": 50, "output_tokens": 1000, "cache_read_input_tokens": 100,
              "cache_creation_input_tokens": 150,
              "cache_creation": {"ephemeral_5m_input_tokens": 100,
                                 "ephemeral_1h_input_tokens": 50},
              "server_tool_use": None, "service_tier": "standard"}
    assert bastion.Usage.parse(report) == bastion.Usage(
        input=50, cache_read=100, cache_write_5m=100, cache_write_1h=50, output=1000)


def test_an_explicit_zero_usage_is_an_honest_zero() -> None:
    table = bastion.default_pricing()
    cost = table.price("gpt-4o", {"input_tokens": 0, "output_tokens": 0})
    assert cost.usd == Decimal(0)


class _SdkUsage:
    """The shape of an SDK's pydantic usage object: unset details dump as None."""

    def model_dump(self) -> dict[str, Any]:
        return {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                "prompt_tokens_details": None, "completion_tokens_details": None}


def test_sdk_objects_with_null_details() -> None:
    assert bastion.Usage.parse(_SdkUsage()) == bastion.Usage(input=10, output=5)


@pytest.mark.parametrize("usage,provider,match", [
    ({}, "auto", r"usage is empty"),
    ([{"prompt_tokens": 1}], "auto", r"usage must be a map .*got list"),
    (None, "auto", r"got null"),
    ("100 tokens", "auto", r"got str"),
    ({"prompt_tokens": 100, "completion_token": 50}, "auto",
     r"keys 'prompt_tokens', 'completion_token' .*unknown key 'completion_token'"),
    ({"promptTokens": 100, "outputTokens": 5}, "auto",
     r"keys 'promptTokens', 'outputTokens' is not a known usage report"),
    (OPENAI_CHAT, "langchain",
     r"not a usage report of provider 'langchain'.*unknown keys 'prompt_tokens'"),
    (LANGCHAIN, "anthropic", r"unknown keys? 'total_tokens', 'input_token_details'"),
    ({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 1,
      "input_token_details": {"cache_read": 1}}, "auto", r"not a known usage report"),
    ({"prompt_tokens": 12.0}, "auto",
     r"usage.prompt_tokens must be an integer token count, got float"),
    ({"prompt_tokens": True}, "openai", r"usage.prompt_tokens must be an integer .*got bool"),
    ({"prompt_tokens": "12"}, "openai", r"usage.prompt_tokens must be an integer .*got str"),
    ({"input_tokens": -1, "output_tokens": 0}, "anthropic", r"input_tokens is negative"),
    ({"input_tokens": 2**70, "output_tokens": 0}, "langchain",
     r"usage.input_tokens is out of range"),
    ({"prompt_tokens": 2**60}, "openai", r"implausibly large"),
    ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": "5"}}, "openai",
     r"usage.prompt_tokens_details.cached_tokens must be an integer"),
    ({"prompt_tokens": 1}, "cohere", r"unknown usage provider 'cohere'"),
])
def test_anything_else_is_an_error_naming_the_keys(usage: object, provider: str,
                                                   match: str) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match=match):
        bastion.Usage.parse(usage, provider)  # type: ignore[arg-type]
    with pytest.raises(bastion.InvalidArgumentError, match=match):
        bastion.default_pricing().price("gpt-4o", usage, provider=provider)  # type: ignore[arg-type]


@pytest.fixture
def budgeted_guard(tmp_path: Path) -> Iterator[bastion.Guard]:
    root = tmp_path / "bastion"
    root.mkdir()
    (root / "budgets.yaml").write_text(
        "version: 1\nbudgets:\n  - {id: per-user, scope: user, limit_usd: 1.00, window: daily}\n")
    g = bastion.Guard.open(root, clock=bastion.ManualClock(NOON))
    yield g
    g.close()


def test_a_raw_openai_report_is_priced_and_charged_to_the_budget(
        budgeted_guard: bastion.Guard) -> None:
    # 150k prompt tokens on gpt-4o is about $0.39 a call: a $1 budget admits
    # the calls whose small estimates fit, and refuses once spend is counted.
    report = {"prompt_tokens": 150_000, "completion_tokens": 1_000, "total_tokens": 151_000}
    expected = budgeted_guard.pricing.price("gpt-4o", bastion.Usage(input=150_000, output=1_000))
    assert expected.usd > Decimal("0.3")
    admitted = 0
    for _ in range(20):
        call = budgeted_guard.begin_model("gpt-4o", "summarise", user_id="u", input_tokens=10,
                                          max_output_tokens=10)
        if call.effect == "deny":
            break
        end = call.end("ok", usage=report)
        assert not end.unpriced
        assert end.cost_usd == expected.usd
        admitted += 1
    assert admitted == 3  # $0.385 x 3 = $1.155: the third call overshoots, the fourth is refused
    spent = budgeted_guard.budgets.usage_of("per-user", "u")["spent_usd"]
    assert spent == 3 * expected.usd


def test_a_report_of_the_wrong_shape_fails_the_end_call(budgeted_guard: bastion.Guard) -> None:
    call = budgeted_guard.begin_model("gpt-4o", "hi", user_id="u")
    with pytest.raises(bastion.InvalidArgumentError, match="completion_token"):
        call.end("ok", usage={"prompt_tokens": 100, "completion_token": 5})
    with pytest.raises(bastion.InvalidArgumentError, match="langchain"):
        call.end("ok", usage={"prompt_tokens": 100}, usage_provider="langchain")
    # The call is still open: a correct report ends it.
    end = call.end("ok", usage={"prompt_tokens": 100, "completion_tokens": 5})
    assert end.cost_usd is not None and end.cost_usd > 0


@pytest.mark.parametrize("text,match", [
    ('{"m": {"input_cost_per_token": 1e-6,\n "output_cost_per_token": 4e-16}}',
     r"litellm.json:2:\d+: m.output_cost_per_token: price '4e-16' is below .*1e-15 USD per token"),
    ('{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},\n'
     ' "m": {"input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7}}',
     r"litellm.json:2:2: m: model listed twice"),
])
def test_litellm_prices_below_the_smallest_or_listed_twice_fail_to_load(text: str,
                                                                        match: str) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match=match):
        bastion.PricingTable.from_litellm_json(text, "litellm.json")


@pytest.mark.parametrize("text,match", [
    ("models:\n  m: {input: 1, output: 0.0000000001}\n",
     r"prices.yaml:2:\d+: models.m.output: price '0.0000000001' is below"),
    ("models:\n  m: {input: 1, output: 1}\n  m: {input: 2, output: 2}\n",
     r"prices.yaml:3:3: models.m: model listed twice"),
    ("models:\n  m:\n    input: 1\n    output: 1\n    output: 2\n",
     r"prices.yaml:5:5: models.m.output: key listed twice"),
])
def test_yaml_prices_below_the_smallest_or_listed_twice_fail_to_load(text: str,
                                                                     match: str) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match=match):
        bastion.PricingTable.from_yaml(text, "prices.yaml")
