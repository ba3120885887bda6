// Provider usage reports -> normalized Usage, and pricing one call.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
  BASTION_RETURN_IF_ERROR(InRange("normalized", "cache_read", u.cache_read));
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
  u.cache_read = r.cached_tokens;
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
  u.cache_read = r.cache_read_input_tokens;
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
  BASTION_RETURN_IF_ERROR(InRange(p, "toolUsePromptTokenCount", r.tool_use_prompt_token_count));
  Usage u;
  u.input = r.prompt_token_count - r.cached_content_token_count + r.tool_use_prompt_token_count;
  u.cache_read = r.cached_content_token_count;
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
  u.cache_read = r.cache_read;
  BASTION_RETURN_IF_ERROR(SplitCacheWrites(p, "input_token_details.cache_creation",
                                           r.cache_creation, r.ephemeral_5m_input_tokens,
                                           r.ephemeral_1h_input_tokens, &u));
  u.output = r.output_tokens - r.reasoning;
  u.reasoning = r.reasoning;
  return u;
}

namespace {

// --- usage reports: shapes ---

// Reads one count: 0 when absent or null; InvalidArgument naming the field
// for anything but a non-negative integer.
class ReportReader {
 public:
  explicit ReportReader(const Value& report) : report_(report) {}

  int64_t Count(std::string_view path) {
    // "usage" and the first `end` bytes of the path: the value's name in an
    // error (made only then: counts are read on every guarded call's end).
    auto name = [&](size_t end) {
      return end == 0 ? std::string("usage") : fmt::format("usage.{}", path.substr(0, end));
    };
    const Value* v = &report_;
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      const size_t end = dot == std::string_view::npos ? path.size() : dot;
      if (v->type() != Value::Type::kObject) {
        Fail(fmt::format("{} must be a map, got {}", name(start == 0 ? 0 : start - 1),
                         TypeName(*v)));
        return 0;
      }
      v = v->Find(path.substr(start, end - start));
      if (v == nullptr || v->is_null()) return 0;
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
    if (v->type() != Value::Type::kInt) {
      Fail(fmt::format("{} must be an integer token count, got {}", name(path.size()),
                       Describe(*v)));
      return 0;
    }
    return v->as_int();
  }

  const Status& status() const { return status_; }

  static std::string_view TypeName(const Value& v) {
    switch (v.type()) {
      case Value::Type::kNull:
        return "null";
      case Value::Type::kBool:
        return "bool";
      case Value::Type::kInt:
        return "int";
      case Value::Type::kDouble:
        return "float";
      case Value::Type::kString:
        return "str";
      case Value::Type::kArray:
        return "list";
      case Value::Type::kObject:
        return "map";
    }
    return "?";
  }

 private:
  static std::string Describe(const Value& v) {
    switch (v.type()) {
      case Value::Type::kBool:
        return fmt::format("bool {}", v.as_bool() ? "true" : "false");
      case Value::Type::kDouble:
        return fmt::format("float {}", v.as_double());
      case Value::Type::kString:
        return fmt::format("str '{}'", v.as_string().substr(0, 40));
      default:
        return std::string(TypeName(v));
    }
  }
  void Fail(std::string message) {
    if (status_.ok()) status_ = Status::InvalidArgument(std::move(message));
  }

  const Value& report_;
  Status status_;
};

// A report's shape: the top-level keys it may have (what they mean is in its
// read function) and those it must have.
struct ShapeSpec {
  std::string_view name;
  std::string_view provider;
  std::vector<std::string_view> required;
  std::vector<std::string_view> keys;
  Result<Usage> (*read)(ReportReader& r);
};

// Where each count of a provider's raw usage struct T is in a report: one
// table per shape, read by one function.
template <typename T>
using FieldPaths = std::pair<std::string_view, int64_t T::*>;

template <typename T, Result<Usage> (*Normalize)(const T&), const auto& kPaths>
Result<Usage> Read(ReportReader& r) {
  T raw;
  for (const FieldPaths<T>& field : kPaths) raw.*field.second = r.Count(field.first);
  if (!r.status().ok()) return r.status();
  return Normalize(raw);
}

constexpr FieldPaths<OpenAIUsage> kOpenAIChat[] = {
    {"prompt_tokens", &OpenAIUsage::prompt_tokens},
    {"completion_tokens", &OpenAIUsage::completion_tokens},
    {"prompt_tokens_details.cached_tokens", &OpenAIUsage::cached_tokens},
    {"completion_tokens_details.reasoning_tokens", &OpenAIUsage::reasoning_tokens},
};
constexpr FieldPaths<OpenAIUsage> kOpenAIResponses[] = {
    {"input_tokens", &OpenAIUsage::prompt_tokens},
    {"output_tokens", &OpenAIUsage::completion_tokens},
    {"input_tokens_details.cached_tokens", &OpenAIUsage::cached_tokens},
    {"output_tokens_details.reasoning_tokens", &OpenAIUsage::reasoning_tokens},
};
constexpr FieldPaths<AnthropicUsage> kAnthropic[] = {
    {"input_tokens", &AnthropicUsage::input_tokens},
    {"output_tokens", &AnthropicUsage::output_tokens},
    {"cache_read_input_tokens", &AnthropicUsage::cache_read_input_tokens},
    {"cache_creation_input_tokens", &AnthropicUsage::cache_creation_input_tokens},
    {"cache_creation.ephemeral_5m_input_tokens", &AnthropicUsage::ephemeral_5m_input_tokens},
    {"cache_creation.ephemeral_1h_input_tokens", &AnthropicUsage::ephemeral_1h_input_tokens},
};
constexpr FieldPaths<GeminiUsage> kGeminiRest[] = {
    {"promptTokenCount", &GeminiUsage::prompt_token_count},
    {"candidatesTokenCount", &GeminiUsage::candidates_token_count},
    {"cachedContentTokenCount", &GeminiUsage::cached_content_token_count},
    {"thoughtsTokenCount", &GeminiUsage::thoughts_token_count},
    {"toolUsePromptTokenCount", &GeminiUsage::tool_use_prompt_token_count},
};
constexpr FieldPaths<GeminiUsage> kGeminiSdk[] = {
    {"prompt_token_count", &GeminiUsage::prompt_token_count},
    {"candidates_token_count", &GeminiUsage::candidates_token_count},
    {"cached_content_token_count", &GeminiUsage::cached_content_token_count},
    {"thoughts_token_count", &GeminiUsage::thoughts_token_count},
    {"tool_use_prompt_token_count", &GeminiUsage::tool_use_prompt_token_count},
};
constexpr FieldPaths<LangChainUsage> kLangChain[] = {
    {"input_tokens", &LangChainUsage::input_tokens},
    {"output_tokens", &LangChainUsage::output_tokens},
    {"input_token_details.cache_read", &LangChainUsage::cache_read},
    {"input_token_details.cache_creation", &LangChainUsage::cache_creation},
    {"input_token_details.ephemeral_5m_input_tokens", &LangChainUsage::ephemeral_5m_input_tokens},
    {"input_token_details.ephemeral_1h_input_tokens", &LangChainUsage::ephemeral_1h_input_tokens},
    {"output_token_details.reasoning", &LangChainUsage::reasoning},
};

const std::vector<ShapeSpec>& Shapes() {
  static const std::vector<ShapeSpec>* const shapes = new std::vector<ShapeSpec>{
      {"OpenAI chat completions",
       "openai",
       {"prompt_tokens"},
       {"prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details"},
       &Read<OpenAIUsage, NormalizeOpenAI, kOpenAIChat>},
      {"OpenAI responses",
       "openai",
       {"input_tokens", "output_tokens"},
       {"input_tokens",
        "output_tokens",
        "total_tokens",
        "input_tokens_details",
        "output_tokens_details"},
       &Read<OpenAIUsage, NormalizeOpenAI, kOpenAIResponses>},
      {"Anthropic messages",
       "anthropic",
       {"input_tokens", "output_tokens"},
       {"input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_creation",
        "server_tool_use",
        "service_tier"},
       &Read<AnthropicUsage, NormalizeAnthropic, kAnthropic>},
      {"Gemini usageMetadata",
       "gemini",
       {"promptTokenCount"},
       {"promptTokenCount",
        "candidatesTokenCount",
        "cachedContentTokenCount",
        "thoughtsTokenCount",
        "toolUsePromptTokenCount",
        "totalTokenCount",
        "promptTokensDetails",
        "cacheTokensDetails",
        "candidatesTokensDetails",
        "toolUsePromptTokensDetails",
        "trafficType"},
       &Read<GeminiUsage, NormalizeGemini, kGeminiRest>},
      {"Gemini usage_metadata (Python SDK)",
       "gemini",
       {"prompt_token_count"},
       {"prompt_token_count",
        "candidates_token_count",
        "cached_content_token_count",
        "thoughts_token_count",
        "tool_use_prompt_token_count",
        "total_token_count",
        "prompt_tokens_details",
        "cache_tokens_details",
        "candidates_tokens_details",
        "tool_use_prompt_tokens_details",
        "traffic_type"},
       &Read<GeminiUsage, NormalizeGemini, kGeminiSdk>},
      {"LangChain usage_metadata",
       "langchain",
       {"input_tokens", "output_tokens"},
       {"input_tokens",
        "output_tokens",
        "total_tokens",
        "input_token_details",
        "output_token_details"},
       &Read<LangChainUsage, NormalizeLangChain, kLangChain>},
  };
  return *shapes;
}

// How well a report's keys fit a shape: keys the shape does not know (dotted
// paths), and required keys that are absent or null.
struct Fit {
  const ShapeSpec* shape;
  std::vector<std::string> unknown;
  std::vector<std::string> missing;
  bool ok() const { return unknown.empty() && missing.empty(); }
  size_t problems() const { return unknown.size() + missing.size(); }
};

bool Knows(const ShapeSpec& shape, std::string_view key) {
  return std::find(shape.keys.begin(), shape.keys.end(), key) != shape.keys.end();
}

// Only top-level keys decide the fit: a breakdown's unknown parts are
// already billed within the count it splits, and its known parts are type
// checked when read.
Fit FitOf(const ShapeSpec& shape, const Value::Object& report) {
  Fit fit{&shape, {}, {}};
  for (const auto& [key, unused] : report) {
    if (!Knows(shape, key)) fit.unknown.push_back(key);
  }
  for (std::string_view key : shape.required) {
    const Value* v = nullptr;
    for (const auto& [k, value] : report) {
      if (k == key) v = &value;
    }
    if (v == nullptr || v->is_null()) fit.missing.emplace_back(key);
  }
  return fit;
}

// FitOf(...).ok(), without gathering what does not fit (the common case is
// a report that fits: checked on every guarded call's end).
bool Fits(const ShapeSpec& shape, const Value::Object& report) {
  for (const auto& [key, unused] : report) {
    if (!Knows(shape, key)) return false;
  }
  for (std::string_view key : shape.required) {
    const Value* v = nullptr;
    for (const auto& [k, value] : report) {
      if (k == key) v = &value;
    }
    if (v == nullptr || v->is_null()) return false;
  }
  return true;
}

std::string QuotedList(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out += ", ";
    out += "'" + s + "'";
  }
  return out;
}

std::string FitProblems(const Fit& fit) {
  std::string out;
  if (!fit.unknown.empty()) {
    out += fmt::format("unknown key{} {}", fit.unknown.size() > 1 ? "s" : "",
                       QuotedList(fit.unknown));
  }
  if (!fit.missing.empty()) {
    if (!out.empty()) out += "; ";
    out += fmt::format("missing {}", QuotedList(fit.missing));
  }
  return out;
}

constexpr std::string_view kProviders[] = {"auto", "openai", "anthropic", "gemini", "langchain"};

}  // namespace

Result<ParsedUsage> ParseUsageReport(const Value& report, std::string_view provider) {
  if (std::find(std::begin(kProviders), std::end(kProviders), provider) == std::end(kProviders)) {
    return Status::InvalidArgument(fmt::format(
        "unknown usage provider '{}' (use auto, openai, anthropic, gemini or langchain)",
        provider));
  }
  if (report.type() != Value::Type::kObject) {
    return Status::InvalidArgument(fmt::format(
        "usage must be a map of token counts (a provider's usage report), got {}",
        ReportReader::TypeName(report)));
  }
  const Value::Object& object = report.as_object();
  // Every shape the report fits must read the same counts from it.
  std::optional<ParsedUsage> out;
  for (const ShapeSpec& shape : Shapes()) {
    if (provider != "auto" && shape.provider != provider) continue;
    if (!Fits(shape, object)) continue;
    ReportReader reader(report);
    Result<Usage> u = shape.read(reader);
    if (!u.ok()) return u.status();
    if (!out) {
      out = ParsedUsage{.usage = *u, .shape = std::string(shape.name)};
    } else if (*u == out->usage) {
      out->shape += " / " + std::string(shape.name);
    } else {
      return Status::InvalidArgument(fmt::format(
          "usage is ambiguous: it reads as {} and as {} with different token counts; pass the "
          "provider",
          out->shape, shape.name));
    }
  }
  if (out) return *std::move(out);

  // No shape fits: name the closest and what keeps it from fitting.
  std::vector<Fit> misfits;
  for (const ShapeSpec& shape : Shapes()) {
    if (provider != "auto" && shape.provider != provider) continue;
    misfits.push_back(FitOf(shape, object));
  }
  const std::string expected =
      provider == "auto" ? std::string("a known usage report")
                         : fmt::format("a usage report of provider '{}'", provider);
  std::vector<std::string> keys;
  for (const auto& [k, v] : object) keys.push_back(k);
  const Fit& closest = *std::min_element(
      misfits.begin(), misfits.end(),
      [](const Fit& a, const Fit& b) { return a.problems() < b.problems(); });
  if (keys.empty()) {
    return Status::InvalidArgument(fmt::format(
        "usage is empty: expected {} (closest shape {}: {})", expected, closest.shape->name,
        FitProblems(closest)));
  }
  return Status::InvalidArgument(fmt::format(
      "usage with keys {} is not {}; closest shape {}: {}", QuotedList(keys), expected,
      closest.shape->name, FitProblems(closest)));
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
  c.cache_read_fusd = component(usage.cache_read, c.prices.cache_read);
  c.cache_write_5m_fusd = component(usage.cache_write_5m, c.prices.cache_write_5m);
  c.cache_write_1h_fusd = component(usage.cache_write_1h, c.prices.cache_write_1h);
  c.output_fusd = component(usage.output, c.prices.output);
  c.reasoning_fusd = component(usage.reasoning, c.prices.reasoning);
  const __int128 total = static_cast<__int128>(c.input_fusd) + c.cache_read_fusd +
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
