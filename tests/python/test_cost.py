"""Pricing tables, usage normalization and exact cost from Python."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

import bastion

TABLE_YAML = """
models:
  model-a:
    input: 3.00
    output: 15.00
    cache_read: 0.30
    cache_write_5m: 3.75
    cache_write_1h: 6.00
    aliases: [model-a-latest]
    long_context: {above_input_tokens: 200000, input: 6.00, output: 22.50}
  model-r:
    input: 1.10
    output: 4.40
    cache_read: 0.275
"""


@pytest.fixture(scope="module")
def table() -> bastion.PricingTable:
    return bastion.PricingTable.from_yaml(TABLE_YAML, "prices.yaml")


def test_shipped_table_loads_and_prices_major_models() -> None:
    shipped = bastion.default_pricing()
    assert len(shipped) >= 100
    for model in ["gpt-4o", "openai/gpt-4o-2024-08-06", "claude-sonnet-4-5", "gemini-2.5-pro",
                  "mistral-large-latest", "deepseek-chat"]:
        assert model in shipped, model
        cost = shipped.price(model, bastion.Usage(input=1000, output=100))
        assert cost.usd > 0


# One call, reported in each provider's shape, normalizes to the same usage
# and therefore the same exact cost.
SHAPES = [
    ("openai", {"prompt_tokens": 1300, "completion_tokens": 400,
                "prompt_tokens_details": {"cached_tokens": 1000},
                "completion_tokens_details": {"reasoning_tokens": 150}}),
    ("openai", {"input_tokens": 1300, "output_tokens": 400, "total_tokens": 1700,
                "input_tokens_details": {"cached_tokens": 1000},
                "output_tokens_details": {"reasoning_tokens": 150}}),
    ("langchain", {"input_tokens": 1300, "output_tokens": 400, "total_tokens": 1700,
                   "input_token_details": {"cache_read": 1000},
                   "output_token_details": {"reasoning": 150}}),
    ("gemini", {"promptTokenCount": 1300, "candidatesTokenCount": 250,
                "cachedContentTokenCount": 1000, "thoughtsTokenCount": 150}),
    ("gemini", {"prompt_token_count": 1300, "candidates_token_count": 250,
                "cached_content_token_count": 1000, "thoughts_token_count": 150}),
]


@pytest.mark.parametrize("provider,usage", SHAPES)
def test_every_usage_shape_normalizes_to_the_same_usage(provider: str, usage: dict) -> None:
    u = bastion.Usage.parse(usage, provider)
    assert u == bastion.Usage(input=300, cache_read=1000, output=250, reasoning=150)


def test_usage_cache_read_and_its_former_name_cached_input() -> None:
    u = bastion.Usage(input=300, cache_read=1000, output=250)
    assert u.cache_read == 1000 and u.cached_input == 1000
    assert bastion.Usage(input=300, cached_input=1000, output=250) == u
    assert u.to_dict() == {"input": 300, "cache_read": 1000, "cache_write_5m": 0,
                           "cache_write_1h": 0, "output": 250, "reasoning": 0}
    assert "cache_read=1000" in repr(u)
    assert bastion.Usage.parse({"prompt_tokens": 1300, "completion_tokens": 250,
                                "prompt_tokens_details": {"cached_tokens": 1000}}) == u
    with pytest.raises(AttributeError):
        u.cached_input = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        u.cache_read = 5  # type: ignore[misc]
    with pytest.raises(bastion.InvalidArgumentError, match="cache_read or its former name"):
        bastion.Usage(cache_read=1, cached_input=1)
    with pytest.raises(bastion.InvalidArgumentError, match="cache_read"):
        bastion.Usage(cached_input=-1)


def test_cost_is_exact_per_component(table: bastion.PricingTable) -> None:
    cost = table.price("model-r", bastion.Usage(input=300, cache_read=1000, output=250,
                                                  reasoning=150))
    # 300 x 1.10 + 1000 x 0.275 + 250 x 4.40 + 150 x 4.40 (reasoning bills as output), per 1M
    assert cost.usd == Decimal("0.002365")
    assert cost.nanousd == 2_365_000
    assert cost.components["cache_read"] == Decimal("0.000275")
    assert cost.components["reasoning"] == Decimal("0.00066")
    assert sum(cost.components.values()) == cost.usd


def test_anthropic_cache_writes_and_the_long_context_tier(table: bastion.PricingTable) -> None:
    usage = {"input_tokens": 50, "output_tokens": 1000, "cache_read_input_tokens": 100_000,
             "cache_creation_input_tokens": 150_000,
             "cache_creation": {"ephemeral_5m_input_tokens": 100_000,
                                "ephemeral_1h_input_tokens": 50_000}}
    cost = table.price("model-a-latest", usage, provider="anthropic")
    assert cost.model == "model-a"
    assert cost.long_context_tier  # 250,050 prompt tokens > 200,000
    # Long tier: input 6.00, output 22.50; cache prices fall back to the base tier's.
    expected = (Decimal(50) * Decimal("6.00") + Decimal(100_000) * Decimal("0.30")
                + Decimal(100_000) * Decimal("3.75") + Decimal(50_000) * Decimal("6.00")
                + Decimal(1000) * Decimal("22.50")) / Decimal(1_000_000)
    assert cost.usd == expected


def test_streamed_and_whole_usage_cost_the_same(table: bastion.PricingTable) -> None:
    # A streamed response's final chunk reports the same usage as the whole
    # response; LangChain merges chunk usage by addition.
    chunks = [{"input_tokens": 1300, "output_tokens": 0, "total_tokens": 1300,
               "input_token_details": {"cache_read": 1000}},
              {"input_tokens": 0, "output_tokens": 400, "total_tokens": 400,
               "output_token_details": {"reasoning": 150}}]
    merged = {"input_tokens": 1300, "output_tokens": 400, "total_tokens": 1700,
              "input_token_details": {"cache_read": 1000},
              "output_token_details": {"reasoning": 150}}
    summed = sum((table.price("model-r", c).nanousd for c in chunks), 0)
    whole = table.price("model-r", merged).nanousd
    assert whole == table.price("model-r", SHAPES[0][1], provider="openai").nanousd
    # Each chunk rounds on its own, so the sum can differ by at most 0.5 nUSD per chunk.
    assert abs(summed - whole) <= 1


def test_millions_of_calls_do_not_drift(table: bastion.PricingTable) -> None:
    one = table.price("model-r", bastion.Usage(input=7, output=3))
    assert one.usd == Decimal("0.0000209")
    total = sum((table.price("model-r", bastion.Usage(input=7, output=3)).nanousd
                 for _ in range(100_000)), 0)
    assert total == 100_000 * one.nanousd


def test_unknown_models_are_never_free(table: bastion.PricingTable) -> None:
    assert "nope" not in table
    with pytest.raises(bastion.NotFoundError, match="model 'nope' has no price"):
        table.price("nope", bastion.Usage(input=1))
    with pytest.raises(bastion.NotFoundError):
        table.resolve("nope")


def test_litellm_json_and_merge(table: bastion.PricingTable) -> None:
    data = {"sample_spec": {"input_cost_per_token": 0},
            "model-z": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}}
    other = bastion.PricingTable.from_litellm_json(json.dumps(data))
    assert "model-z" in other and "sample_spec" not in other
    merged = bastion.PricingTable.from_yaml(TABLE_YAML)
    merged.merge(other)
    assert "model-z" in merged and "model-a" in merged
    assert "model-z" not in table  # merging copies; the original is unchanged
    assert merged.price("model-z", bastion.Usage(input=1_000_000)).usd == Decimal("2.5")


@pytest.mark.parametrize("usage,provider,error,match", [
    ({"prompt_tokens": "12"}, "openai", bastion.InvalidArgumentError,
     r"usage.prompt_tokens must be an integer token count, got str"),
    ({"prompt_tokens": True}, "openai", bastion.InvalidArgumentError,
     r"usage.prompt_tokens must be an integer token count, got bool"),
    ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}}, "openai",
     bastion.InvalidArgumentError, "cached_tokens"),
    ({"input_tokens": -1, "output_tokens": 1}, "anthropic", bastion.InvalidArgumentError,
     "input_tokens is negative"),
    ({"input_tokens": 2**70, "output_tokens": 1}, "langchain", bastion.InvalidArgumentError,
     "out of range"),
    ({"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 10,
      "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 3}},
     "anthropic", bastion.InvalidArgumentError, r"!= cache_creation_input_tokens \(10\)"),
    ([1, 2], "openai", bastion.InvalidArgumentError, "usage must be a map of token counts"),
    ({}, "cohere", bastion.InvalidArgumentError, "unknown usage provider 'cohere'"),
])
def test_bad_usage_is_a_clear_error(usage: object, provider: str, error: type,
                                    match: str) -> None:
    with pytest.raises(error, match=match):
        bastion.Usage.parse(usage, provider)  # type: ignore[arg-type]


def test_sdk_objects_are_accepted_through_model_dump() -> None:
    class CompletionUsage:  # the shape of an SDK's pydantic object
        def model_dump(self) -> dict:
            return {"prompt_tokens": 10, "completion_tokens": 5}
    assert bastion.Usage.parse(CompletionUsage(), "openai") == bastion.Usage(input=10, output=5)


@pytest.mark.parametrize("yaml_text,match", [
    ("models: {m: {input: 1}}", r"prices.yaml:1:\d+: .*output"),
    ("models: {m: {input: -1, output: 1}}", r"prices.yaml:1:\d+"),
    ("models: {m: {input: 1, output: 1, colour: red}}", r"prices.yaml:1:\d+: .*colour"),
    ("models: [", r"prices.yaml:\d+:\d+"),
])
def test_bad_pricing_yaml_names_where(yaml_text: str, match: str) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match=match):
        bastion.PricingTable.from_yaml(yaml_text, "prices.yaml")
