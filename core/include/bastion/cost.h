// Cost: what a model call cost, exactly, from a pricing table and the token
// usage the provider reported.
//
//   auto table = bastion::PricingTable::FromYamlFile("prices.yaml");
//   if (!table.ok()) { report(table.status()); return; }   // "prices.yaml:7:12: ..."
//
//   bastion::OpenAIUsage reported;                 // mapped from response["usage"]
//   reported.prompt_tokens = 1200; reported.cached_tokens = 1000;
//   reported.completion_tokens = 300; reported.reasoning_tokens = 100;
//   bastion::Result<bastion::Usage> usage = bastion::NormalizeOpenAI(reported);
//   if (!usage.ok()) { report(usage.status()); return; }  // names the bad field
//
//   // Or straight from the provider's usage dict, its shape recognised:
//   //   bastion::Result<bastion::ParsedUsage> parsed = bastion::ParseUsageReport(report, "auto");
//
//   bastion::Result<bastion::Cost> cost = bastion::PriceCall(*table, "openai/gpt-4o", *usage);
//   if (cost.status().IsNotFound()) { /* unpriced: record "unknown", never $0 */ }
//   record.cost_nanousd = cost->total_nanousd;
//
// Units. All money is integers; no floating point is ever involved, so adding
// up millions of calls cannot drift.
//   - A cost is NanoUsd (int64 nano-USD, 1e-9 USD; see bastion/money.h for its
//     text and double conversions), the unit of Record::cost_nanousd.
//   - A price is int64 femto-USD per token (1e-15 USD per token). That is the
//     same number as "nano-USD per million tokens": a table price of
//     $0.0375 / 1M tokens is 37,500,000 fUSD/token, exactly. Every price with up
//     to 9 decimal places per million tokens (or 15 per token, LiteLLM's unit)
//     is an exact integer here; nano-USD per token would not be (that price is
//     37.5 nUSD/token). The int64 range is $9,223 per token, far above any price.
//
// Rounding rule. A call's cost is computed exactly in fUSD (128-bit
// intermediates: tokens x price per component, summed), then rounded ONCE to
// nano-USD, half to even. Components are never rounded separately, so the
// breakdown (in exact fUSD) always adds up to Cost::total_fusd. The rounding
// error is at most 0.5 nUSD per call and, being per call and integral, a sum of
// N identical calls is exactly N x the cost of one.
//
// Unpriced models. A model the table cannot resolve is a NotFound status
// ("model 'x' has no price") from PricingTable::Find and PriceCall, never a
// zero cost: a caller that must record the call anyway records the cost as
// unknown and can re-price it later from the stored usage.
//
// Thread safety: a PricingTable is immutable after loading; const methods may
// be called from any number of threads. The free functions have no state.
#ifndef BASTION_COST_H_
#define BASTION_COST_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "bastion/money.h"
#include "bastion/status.h"
#include "bastion/value.h"

namespace bastion {

// --- prices ---

// One tier of prices, each in fUSD per token (= nano-USD per 1M tokens).
// A cache price left unset falls back as documented on ResolvedPrices.
struct TierPrices {
  int64_t input = 0;
  int64_t output = 0;
  std::optional<int64_t> cache_read;
  std::optional<int64_t> cache_write_5m;
  std::optional<int64_t> cache_write_1h;
  std::optional<int64_t> reasoning;
};

struct ModelPrice {
  TierPrices base;
  // The long-context tier: applies when the prompt (input + cache read + cache
  // writes) has strictly MORE than `long_context_above_input_tokens` tokens, to
  // every token of the call (the providers' rule, e.g. Anthropic's "> 200K").
  // Fields unset in the tier fall back to the same field of the base tier.
  std::optional<int64_t> long_context_above_input_tokens;
  std::optional<TierPrices> long_context;
};

// The six per-token prices actually charged for one call, after fallbacks:
// cache_read and both cache writes default to input (a provider that offers no
// caching discount or surcharge bills those tokens as input); cache_write_1h
// defaults to the resulting cache_write_5m; reasoning defaults to output.
struct ResolvedPrices {
  int64_t input = 0;
  int64_t output = 0;
  int64_t cache_read = 0;
  int64_t cache_write_5m = 0;
  int64_t cache_write_1h = 0;
  int64_t reasoning = 0;
};

// Model name -> prices, with aliases. Lookup (Find) tries, in order, for the
// name and then for the name with each leading "provider/" segment removed
// ("openrouter/openai/gpt-4o" -> "openai/gpt-4o" -> "gpt-4o"):
//   1. the exact model name, 2. an alias,
//   3. the same with a trailing date suffix removed ("-2024-08-06" or
//      "-20241022"), so an unlisted dated version resolves to its base model.
// Names are case-sensitive. The first match wins; a listed dated version is
// therefore always preferred to its base.
class PricingTable {
 public:
  PricingTable() = default;

  // Our YAML format (prices in USD per 1M tokens as decimals, at most 9
  // decimal places):
  //
  //   models:
  //     gpt-4o:
  //       input: 2.50
  //       output: 10.00
  //       cache_read: 1.25          # optional, as are cache_write_5m,
  //       aliases: [gpt-4o-2024-08-06]  # cache_write_1h, reasoning
  //       long_context: {above_input_tokens: 200000, input: 5.00, output: 20.00}
  //
  // Errors are InvalidArgument naming "source:line:col" and the field: syntax
  // errors, unknown keys, missing input/output, a negative or non-decimal price,
  // a positive price below 1e-15 USD per token (0.000000001 per 1M; 0 is a free
  // model), more than 9 decimal places, a model or a key of one listed twice,
  // an alias that is already a model or an alias of another model.
  static Result<PricingTable> FromYaml(const std::string& yaml, const std::string& source_name);
  // As FromYaml, reading the file (IOError when it cannot be read,
  // InvalidArgument for a directory or a file over 16 MiB).
  static Result<PricingTable> FromYamlFile(const std::string& path);

  // LiteLLM's model_prices_and_context_window.json: per-token USD numbers,
  // parsed exactly from their decimal text (never through double), rounded
  // half to even to the fUSD when a value has more than 15 decimal places.
  // Keys read: input_cost_per_token, output_cost_per_token,
  // cache_read_input_token_cost, cache_creation_input_token_cost (-> 5m write),
  // cache_creation_input_token_cost_above_1hr (-> 1h write),
  // output_cost_per_reasoning_token, and the same keys (but reasoning) with an
  // "_above_<N>k_tokens" suffix (-> the long-context tier above N x 1000 prompt
  // tokens). Other keys (e.g. "_priority"/"_flex" variants) are ignored.
  // Errors (InvalidArgument naming "source:line:col"): a negative or
  // non-decimal price, a positive price below 1e-15 USD per token (it would
  // round to 0 or up; 0 itself is a free model), a model or a key of one
  // listed twice.
  // Skipped, so those models stay unpriced: "sample_spec"; entries without both
  // input_cost_per_token and output_cost_per_token (image, audio, per-second
  // models); entries with more than one long-context threshold (one tier is
  // modelled; a wrong price is worse than none).
  static Result<PricingTable> FromLiteLlmJson(const std::string& json,
                                              const std::string& source_name);

  // Adds or replaces a model. Aliases pointing at `name` are kept; an alias
  // spelled `name` is dropped (a model name always wins).
  void Set(const std::string& name, ModelPrice price);
  // Makes `alias` resolve to `model`. InvalidArgument when `alias` is already a
  // model name or an alias of a different model; NotFound when `model` is not in
  // the table.
  Status AddAlias(const std::string& alias, const std::string& model);
  // Copies every model and alias of `other` into this table; `other` wins on
  // conflicts (e.g. our YAML overriding LiteLLM's data).
  void MergeFrom(const PricingTable& other);

  struct Match {
    std::string model;  // the canonical name the lookup resolved to
    const ModelPrice* price;  // owned by the table; valid while it lives unchanged
  };
  // NotFound "model 'x' has no price" when nothing matches (see class comment).
  Result<Match> Find(std::string_view model) const;

  size_t size() const { return models_.size(); }

 private:
  const ModelPrice* FindExactOrAlias(const std::string& name, std::string* canonical) const;

  std::map<std::string, ModelPrice, std::less<>> models_;
  std::map<std::string, std::string, std::less<>> aliases_;  // alias -> model
};

// Parses a non-negative decimal ("2.50", "0.0375", "3", "2.5e-06") exactly and
// returns it times 10^scale as an integer. With `allow_rounding` digits beyond
// that precision are rounded half to even; without it they are an error.
// InvalidArgument for anything else (signs, hex, inf/nan, overflow of int64).
Result<int64_t> ParseScaledDecimal(std::string_view text, int scale, bool allow_rounding);

// --- usage ---

// Token usage of one call, normalized: the six counts are disjoint, so each is
// billed once at its own price. `input` excludes cache reads and cache writes;
// `output` excludes reasoning tokens.
struct Usage {
  int64_t input = 0;
  int64_t cache_read = 0;
  int64_t cache_write_5m = 0;
  int64_t cache_write_1h = 0;
  int64_t output = 0;
  int64_t reasoning = 0;

  // Prompt-side tokens: what the long-context threshold is compared with.
  int64_t PromptTokens() const { return input + cache_read + cache_write_5m + cache_write_1h; }
  bool operator==(const Usage&) const = default;
};
// InvalidArgument naming the first negative field.
Status ValidateUsage(const Usage& u);

// Each provider's report, as plain integers (a missing field is 0). The
// Normalize* functions validate (InvalidArgument naming the field: negative
// counts, a part larger than the whole it is included in) and return the
// normalized Usage. A streamed response's final usage chunk carries the same
// numbers as the non-streamed response, so it maps to the same Usage.

// OpenAI chat/completions `usage`: prompt_tokens INCLUDES
// prompt_tokens_details.cached_tokens; completion_tokens INCLUDES
// completion_tokens_details.reasoning_tokens. OpenAI reports no cache writes.
struct OpenAIUsage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;     // prompt_tokens_details.cached_tokens
  int64_t reasoning_tokens = 0;  // completion_tokens_details.reasoning_tokens
};
Result<Usage> NormalizeOpenAI(const OpenAIUsage& r);

// Anthropic messages `usage`: input_tokens EXCLUDES cache_read_input_tokens and
// cache_creation_input_tokens. cache_creation.ephemeral_{5m,1h}_input_tokens,
// when either is non-zero, split the cache writes and must add up to
// cache_creation_input_tokens; otherwise all writes are 5-minute writes.
// Extended-thinking tokens are inside output_tokens and billed as output.
struct AnthropicUsage {
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cache_read_input_tokens = 0;
  int64_t cache_creation_input_tokens = 0;
  int64_t ephemeral_5m_input_tokens = 0;  // cache_creation.ephemeral_5m_input_tokens
  int64_t ephemeral_1h_input_tokens = 0;  // cache_creation.ephemeral_1h_input_tokens
};
Result<Usage> NormalizeAnthropic(const AnthropicUsage& r);

// Gemini `usageMetadata`: promptTokenCount INCLUDES cachedContentTokenCount;
// candidatesTokenCount EXCLUDES thoughtsTokenCount (thoughts are billed as
// output, separately reported); toolUsePromptTokenCount (the results of tools
// such as search fed back into the prompt) is NOT in promptTokenCount and is
// billed as input.
struct GeminiUsage {
  int64_t prompt_token_count = 0;
  int64_t candidates_token_count = 0;
  int64_t cached_content_token_count = 0;
  int64_t thoughts_token_count = 0;
  int64_t tool_use_prompt_token_count = 0;
};
Result<Usage> NormalizeGemini(const GeminiUsage& r);

// LangChain AIMessage.usage_metadata: input_tokens INCLUDES
// input_token_details.cache_read and .cache_creation; output_tokens INCLUDES
// output_token_details.reasoning. When ephemeral_5m/1h_input_tokens (sent by
// langchain-anthropic in input_token_details) are non-zero they split
// cache_creation as for Anthropic.
struct LangChainUsage {
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cache_read = 0;      // input_token_details.cache_read
  int64_t cache_creation = 0;  // input_token_details.cache_creation
  int64_t ephemeral_5m_input_tokens = 0;
  int64_t ephemeral_1h_input_tokens = 0;
  int64_t reasoning = 0;  // output_token_details.reasoning
};
Result<Usage> NormalizeLangChain(const LangChainUsage& r);

// --- usage reports as providers send them ---

// A usage report as received (a JSON-like tree: the provider's `usage` dict),
// read into a Usage by recognising its shape. The shapes, by provider name:
//
//   "openai"     OpenAI chat completions  prompt_tokens (required), completion_tokens,
//                                         prompt_tokens_details.cached_tokens,
//                                         completion_tokens_details.reasoning_tokens
//                OpenAI responses         input_tokens, output_tokens (both required),
//                                         input_tokens_details.cached_tokens,
//                                         output_tokens_details.reasoning_tokens
//   "anthropic"  Anthropic messages       input_tokens, output_tokens (both required),
//                                         cache_read_input_tokens,
//                                         cache_creation_input_tokens,
//                                         cache_creation.ephemeral_{5m,1h}_input_tokens
//   "gemini"     Gemini usageMetadata     promptTokenCount (required), candidatesTokenCount,
//                                         cachedContentTokenCount, thoughtsTokenCount,
//                                         toolUsePromptTokenCount; or the same in
//                                         snake_case (prompt_token_count, ...)
//   "langchain"  LangChain usage_metadata input_tokens, output_tokens (both required),
//                                         input_token_details.{cache_read,
//                                         cache_creation, ephemeral_5m_input_tokens,
//                                         ephemeral_1h_input_tokens},
//                                         output_token_details.reasoning
//   "auto"       any of the above.
//
// Each shape also knows fields it does not bill separately (total_tokens,
// OpenAI's audio and prediction token details, Anthropic's service_tier and
// server_tool_use, Gemini's *TokensDetails lists and trafficType). A report
// fits a shape when every top-level key is one of the shape's and its
// required keys are present. Inside a breakdown of a count that already
// includes them (OpenAI's *_details, LangChain's *_token_details, Anthropic's
// cache_creation) other keys are allowed: their tokens are inside the total
// and billed at its price. A report that fits several shapes is accepted only
// when they all read it the same way (e.g. {input_tokens, output_tokens}).
//
// Counts are non-negative integers up to 2^53; null or absent is 0 (an
// explicit {input_tokens: 0, output_tokens: 0} is an honest $0 call).
// Errors are InvalidArgument, never a zero Usage: a report that is not a map;
// an unknown provider name; a report that fits no shape (naming its keys and,
// for the closest shape, the unknown and missing keys); a count that is
// negative, too large, or not an integer (bool, float, string); the checks of
// the Normalize* functions; several fitting shapes that disagree.
struct ParsedUsage {
  Usage usage;
  std::string shape;  // "OpenAI chat completions", ... (several joined by " / ")
};
Result<ParsedUsage> ParseUsageReport(const Value& report, std::string_view provider);

// --- pricing a call ---

struct Cost {
  // The cost rounded once, half to even, to nano-USD (see "Rounding rule").
  NanoUsd total_nanousd = 0;
  // The exact cost in fUSD; equals the sum of the components below.
  int64_t total_fusd = 0;
  // Per component, exact, in fUSD (tokens x price).
  int64_t input_fusd = 0;
  int64_t cache_read_fusd = 0;
  int64_t cache_write_5m_fusd = 0;
  int64_t cache_write_1h_fusd = 0;
  int64_t output_fusd = 0;
  int64_t reasoning_fusd = 0;
  bool long_context_tier = false;
  std::string resolved_model;  // canonical table name used
  ResolvedPrices prices;       // the per-token prices charged
};

// Prices `usage` for `model`. Errors: NotFound "model 'x' has no price" (the
// model is unpriced, see above); InvalidArgument for a negative usage field or
// a call costing more than int64 fUSD can hold (~$9,223).
Result<Cost> PriceCall(const PricingTable& table, std::string_view model, const Usage& usage);

// The prices one call pays under `price`, given its prompt size (tier choice
// and fallbacks applied). Sets *long_tier when the long-context tier applies.
ResolvedPrices ResolvePrices(const ModelPrice& price, int64_t prompt_tokens, bool* long_tier);

// Rounds an exact fUSD amount (>= 0) to nano-USD, half to even.
NanoUsd RoundFusdToNanousd(int64_t fusd);

}  // namespace bastion

#endif  // BASTION_COST_H_
