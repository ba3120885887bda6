// Provider usage reports -> normalized Usage, and pricing one call.
#include <cstdint>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "bastion/cost.h"

namespace bastion {
namespace {

Status NonNegative(std::string_view provider, std::string_view field, int64_t v) {
  if (v >= 0) return Status::OK();
  return Status::InvalidArgument(fmt::format("{} usage: {} is negative ({})", provider, field, v));
}

Status PartOf(std::string_view provider, std::string_view part, int64_t part_v,
              std::string_view whole, int64_t whole_v) {
  if (part_v <= whole_v) return Status::OK();
  return Status::InvalidArgument(fmt::format("{} usage: {} ({}) exceeds {} ({})", provider, part,
                                             part_v, whole, whole_v));
}

// Splits `creation` into 5-minute and 1-hour writes (see AnthropicUsage).
Status SplitCacheWrites(std::string_view provider, std::string_view creation_field,
                        int64_t creation, int64_t w5m, int64_t w1h, Usage* u) {
  if (w5m == 0 && w1h == 0) {
    u->cache_write_5m = creation;
    return Status::OK();
  }
  if (w5m + w1h != creation) {
    return Status::InvalidArgument(fmt::format(
        "{} usage: ephemeral_5m_input_tokens ({}) + ephemeral_1h_input_tokens ({}) != {} ({})",
        provider, w5m, w1h, creation_field, creation));
  }
  u->cache_write_5m = w5m;
  u->cache_write_1h = w1h;
  return Status::OK();
}

// Counts above this are rejected so that sums of fields cannot overflow.
constexpr int64_t kMaxTokens = int64_t{1} << 53;

Status InRange(std::string_view provider, std::string_view field, int64_t v) {
  BASTION_RETURN_IF_ERROR(NonNegative(provider, field, v));
  if (v > kMaxTokens) {
    return Status::InvalidArgument(
        fmt::format("{} usage: {} is implausibly large ({})", provider, field, v));
  }
  return Status::OK();
}

}  // namespace

Status ValidateUsage(const Usage& u) {
  BASTION_RETURN_IF_ERROR(InRange("normalized", "input", u.input));
  BASTION_RETURN_IF_ERROR(InRange("normalized", "cached_input", u.cached_input));
  BASTION_RETURN_IF_ERROR(InRange("normalized", "cache_write_5m", u.cache_write_5m));
  BASTION_RETURN_IF_ERROR(InRange("normalized", "cache_write_1h", u.cache_write_1h));
  BASTION_RETURN_IF_ERROR(InRange("normalized", "output", u.output));
  BASTION_RETURN_IF_ERROR(InRange("normalized", "reasoning", u.reasoning));
  return Status::OK();
}

Result<Usage> NormalizeOpenAI(const OpenAIUsage& r) {
  constexpr std::string_view p = "OpenAI";
  BASTION_RETURN_IF_ERROR(InRange(p, "prompt_tokens", r.prompt_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "completion_tokens", r.completion_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "prompt_tokens_details.cached_tokens", r.cached_tokens));
  BASTION_RETURN_IF_ERROR(
      InRange(p, "completion_tokens_details.reasoning_tokens", r.reasoning_tokens));
  BASTION_RETURN_IF_ERROR(PartOf(p, "prompt_tokens_details.cached_tokens", r.cached_tokens,
                                 "prompt_tokens", r.prompt_tokens));
  BASTION_RETURN_IF_ERROR(PartOf(p, "completion_tokens_details.reasoning_tokens",
                                 r.reasoning_tokens, "completion_tokens", r.completion_tokens));
  Usage u;
  u.input = r.prompt_tokens - r.cached_tokens;
  u.cached_input = r.cached_tokens;
  u.output = r.completion_tokens - r.reasoning_tokens;
  u.reasoning = r.reasoning_tokens;
  return u;
}

Result<Usage> NormalizeAnthropic(const AnthropicUsage& r) {
  constexpr std::string_view p = "Anthropic";
  BASTION_RETURN_IF_ERROR(InRange(p, "input_tokens", r.input_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "output_tokens", r.output_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "cache_read_input_tokens", r.cache_read_input_tokens));
  BASTION_RETURN_IF_ERROR(
      InRange(p, "cache_creation_input_tokens", r.cache_creation_input_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "cache_creation.ephemeral_5m_input_tokens",
                                  r.ephemeral_5m_input_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "cache_creation.ephemeral_1h_input_tokens",
                                  r.ephemeral_1h_input_tokens));
  Usage u;
  u.input = r.input_tokens;
  u.cached_input = r.cache_read_input_tokens;
  BASTION_RETURN_IF_ERROR(SplitCacheWrites(p, "cache_creation_input_tokens",
                                           r.cache_creation_input_tokens,
                                           r.ephemeral_5m_input_tokens,
                                           r.ephemeral_1h_input_tokens, &u));
  u.output = r.output_tokens;
  return u;
}

Result<Usage> NormalizeGemini(const GeminiUsage& r) {
  constexpr std::string_view p = "Gemini";
  BASTION_RETURN_IF_ERROR(InRange(p, "promptTokenCount", r.prompt_token_count));
  BASTION_RETURN_IF_ERROR(InRange(p, "candidatesTokenCount", r.candidates_token_count));
  BASTION_RETURN_IF_ERROR(InRange(p, "cachedContentTokenCount", r.cached_content_token_count));
  BASTION_RETURN_IF_ERROR(InRange(p, "thoughtsTokenCount", r.thoughts_token_count));
  BASTION_RETURN_IF_ERROR(PartOf(p, "cachedContentTokenCount", r.cached_content_token_count,
                                 "promptTokenCount", r.prompt_token_count));
  Usage u;
  u.input = r.prompt_token_count - r.cached_content_token_count;
  u.cached_input = r.cached_content_token_count;
  u.output = r.candidates_token_count;
  u.reasoning = r.thoughts_token_count;
  return u;
}

Result<Usage> NormalizeLangChain(const LangChainUsage& r) {
  constexpr std::string_view p = "LangChain";
  BASTION_RETURN_IF_ERROR(InRange(p, "input_tokens", r.input_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "output_tokens", r.output_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "input_token_details.cache_read", r.cache_read));
  BASTION_RETURN_IF_ERROR(InRange(p, "input_token_details.cache_creation", r.cache_creation));
  BASTION_RETURN_IF_ERROR(InRange(p, "input_token_details.ephemeral_5m_input_tokens",
                                  r.ephemeral_5m_input_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "input_token_details.ephemeral_1h_input_tokens",
                                  r.ephemeral_1h_input_tokens));
  BASTION_RETURN_IF_ERROR(InRange(p, "output_token_details.reasoning", r.reasoning));
  BASTION_RETURN_IF_ERROR(PartOf(p, "input_token_details.cache_read + cache_creation",
                                 r.cache_read + r.cache_creation, "input_tokens", r.input_tokens));
  BASTION_RETURN_IF_ERROR(PartOf(p, "output_token_details.reasoning", r.reasoning,
                                 "output_tokens", r.output_tokens));
  Usage u;
  u.input = r.input_tokens - r.cache_read - r.cache_creation;
  u.cached_input = r.cache_read;
  BASTION_RETURN_IF_ERROR(SplitCacheWrites(p, "input_token_details.cache_creation",
                                           r.cache_creation, r.ephemeral_5m_input_tokens,
                                           r.ephemeral_1h_input_tokens, &u));
  u.output = r.output_tokens - r.reasoning;
  u.reasoning = r.reasoning;
  return u;
}

ResolvedPrices ResolvePrices(const ModelPrice& price, int64_t prompt_tokens, bool* long_tier) {
  TierPrices t = price.base;
  *long_tier = price.long_context.has_value() &&
               price.long_context_above_input_tokens.has_value() &&
               prompt_tokens > *price.long_context_above_input_tokens;
  if (*long_tier) {
    const TierPrices& l = *price.long_context;
    t.input = l.input;
    t.output = l.output;
    if (l.cache_read) t.cache_read = l.cache_read;
    if (l.cache_write_5m) t.cache_write_5m = l.cache_write_5m;
    if (l.cache_write_1h) t.cache_write_1h = l.cache_write_1h;
    if (l.reasoning) t.reasoning = l.reasoning;
  }
  ResolvedPrices r;
  r.input = t.input;
  r.output = t.output;
  r.cache_read = t.cache_read.value_or(t.input);
  r.cache_write_5m = t.cache_write_5m.value_or(t.input);
  r.cache_write_1h = t.cache_write_1h.value_or(r.cache_write_5m);
  r.reasoning = t.reasoning.value_or(t.output);
  return r;
}

Result<Cost> PriceCall(const PricingTable& table, std::string_view model, const Usage& usage) {
  BASTION_RETURN_IF_ERROR(ValidateUsage(usage));
  Result<PricingTable::Match> match = table.Find(model);
  if (!match.ok()) return match.status();
  Cost c;
  c.resolved_model = match->model;
  c.prices = ResolvePrices(*match->price, usage.PromptTokens(), &c.long_context_tier);

  constexpr __int128 kMax = std::numeric_limits<int64_t>::max();
  bool overflow = false;
  auto component = [&](int64_t tokens, int64_t price) -> int64_t {
    const __int128 v = static_cast<__int128>(tokens) * price;
    if (v > kMax) {
      overflow = true;
      return 0;
    }
    return static_cast<int64_t>(v);
  };
  c.input_fusd = component(usage.input, c.prices.input);
  c.cached_input_fusd = component(usage.cached_input, c.prices.cache_read);
  c.cache_write_5m_fusd = component(usage.cache_write_5m, c.prices.cache_write_5m);
  c.cache_write_1h_fusd = component(usage.cache_write_1h, c.prices.cache_write_1h);
  c.output_fusd = component(usage.output, c.prices.output);
  c.reasoning_fusd = component(usage.reasoning, c.prices.reasoning);
  const __int128 total = static_cast<__int128>(c.input_fusd) + c.cached_input_fusd +
                         c.cache_write_5m_fusd + c.cache_write_1h_fusd + c.output_fusd +
                         c.reasoning_fusd;
  if (overflow || total > kMax) {
    return Status::InvalidArgument(
        fmt::format("model '{}': the cost of this usage exceeds the representable range", model));
  }
  c.total_fusd = static_cast<int64_t>(total);
  c.total_nanousd = RoundFusdToNanousd(c.total_fusd);
  return c;
}

}  // namespace bastion
