// SLO specs: validation, the YAML format (on the shared YAML reader) and its
// writer. See bastion/slo_monitor.h.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bastion/glob.h"
#include "bastion/money.h"
#include "bastion/permissions.h"
#include "bastion/slo_monitor.h"
#include "bastion/time_zone.h"
#include "util/yaml_reader.h"

namespace bastion {
namespace {

using yaml::Field;
using yaml::Members;

constexpr int kVersion = 1;

// `when` words that are not alert rule names.
constexpr std::string_view kWhenWords[] = {"page", "ticket", "latency", "cost", "breaker_open",
                                           "any"};

bool IsWhenWord(std::string_view s) {
  return std::find(std::begin(kWhenWords), std::end(kWhenWords), s) != std::end(kWhenWords);
}

// Calendar SLO windows keep at most this much history; alert windows must fit.
constexpr int64_t kCalendarMaxNs = 31 * kNsPerDay;
// The ring a calendar window may need (a month plus DST slack), rounded up to
// buckets: what the monitor's ring never exceeds.
constexpr int64_t kCalendarRingBoundNs = 32 * kNsPerDay;

int64_t RoundUp(int64_t v, int64_t unit) { return (v + unit - 1) / unit * unit; }

using yaml::FormatDuration;

// ---------------------------------------------------------------------------
// Validation

// A problem with a spec: the field as the struct names it, as the YAML names
// it (relative to the SLO's list item), and what is wrong.
struct Problem {
  Problem(std::string field_, std::string yaml_, std::string what_, std::string yaml_what_ = "")
      : field(std::move(field_)),
        yaml(std::move(yaml_)),
        what(std::move(what_)),
        yaml_what(std::move(yaml_what_)) {}
  std::string field;
  std::string yaml;
  std::string what;
  std::string yaml_what;  // `what` in the file's words, when they differ
};

// "excluded_error_classes[1]: must not be empty" -> the field and the rest.
std::pair<std::string, std::string> SplitFieldMessage(const std::string& message) {
  const size_t colon = message.find(": ");
  if (colon == std::string::npos) return {"", message};
  return {message.substr(0, colon), message.substr(colon + 2)};
}

// Renames the field of a nested Validate() message for YAML ("window_size" ->
// "window"), keeping an index suffix ("excluded_error_classes[1]" ->
// "exclude[1]").
std::string YamlName(const std::string& field,
                     std::initializer_list<std::pair<std::string_view, std::string_view>> names) {
  const size_t bracket = field.find('[');
  const std::string base = field.substr(0, bracket);
  const std::string suffix = bracket == std::string::npos ? "" : field.substr(bracket);
  for (const auto& [cpp, yaml_name] : names) {
    if (base == cpp) return std::string(yaml_name) + suffix;
  }
  return field;
}

// A nested Validate() message as the file's reader should see it: struct
// field names replaced by the keys the file uses.
std::string YamlText(std::string text) {
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"long_window_ns", "long"},
      {"short_window_ns", "short"},
      {"window_ns", "window"},
      {"bucket_ns", "bucket"},
      {"window_size", "window"}};
  for (const auto& [cpp, yaml_name] : kNames) {
    for (size_t at = text.find(cpp); at != std::string::npos;
         at = text.find(cpp, at + yaml_name.size())) {
      text.replace(at, cpp.size(), yaml_name);
    }
  }
  return text;
}

std::string Join(const std::vector<std::string>& v) { return fmt::format("{}", fmt::join(v, ", ")); }

std::optional<Problem> PatternProblem(const std::vector<std::string>& patterns,
                                      std::string_view field, std::string_view yaml_key) {
  if (patterns.empty()) {
    return Problem{std::string(field), std::string(yaml_key),
                   "must not be empty (use [\"*\"] for any)"};
  }
  for (size_t i = 0; i < patterns.size(); ++i) {
    const std::string f = fmt::format("{}[{}]", field, i);
    const std::string y = fmt::format("{}[{}]", yaml_key, i);
    if (patterns[i].empty()) return Problem{f, y, "empty pattern"};
    if (Status s = ValidateGlob(patterns[i]); !s.ok()) {
      return Problem{f, y, fmt::format("invalid glob '{}': {}", patterns[i], s.message())};
    }
  }
  return std::nullopt;
}

std::optional<Problem> LatencyProblem(const LatencyObjective& l) {
  struct Target {
    const std::optional<int64_t>& value;
    const char* name;
  };
  const Target targets[] = {{l.p50_ns, "p50"}, {l.p95_ns, "p95"}, {l.p99_ns, "p99"}};
  if (!l.p50_ns && !l.p95_ns && !l.p99_ns && !l.timeout_ns) {
    return Problem{"latency", "latency", "set at least one of p50, p95, p99 and timeout"};
  }
  const Target* previous = nullptr;
  for (const Target& t : targets) {
    if (!t.value) continue;
    const std::string f = fmt::format("latency.{}_ns", t.name);
    const std::string y = fmt::format("latency.{}", t.name);
    if (*t.value <= 0) return Problem{f, y, "must be > 0"};
    if (previous != nullptr && *t.value < *previous->value) {
      return Problem{f, y,
                     fmt::format("must not be below the {} target ({} < {})", previous->name,
                                 FormatDuration(*t.value), FormatDuration(*previous->value))};
    }
    previous = &t;
  }
  if (l.timeout_ns && *l.timeout_ns <= 0) {
    return Problem{"latency.timeout_ns", "latency.timeout", "must be > 0"};
  }
  if (l.window_ns < 12) {
    return Problem{"latency.window_ns", "latency.window", "must be at least 12 ns"};
  }
  return std::nullopt;
}

std::optional<Problem> SuccessProblem(const SuccessObjective& s) {
  const bool calendar = s.window_kind == Window::Kind::kDaily ||
                        s.window_kind == Window::Kind::kWeekly ||
                        s.window_kind == Window::Kind::kMonthly;
  if (!calendar && s.window_kind != Window::Kind::kRolling) {
    return Problem{"success.window_kind", "success.window",
                   "must be rolling, daily, weekly or monthly"};
  }
  SloOptions options;
  options.target = s.target;
  options.bucket_ns = s.bucket_ns;
  options.excluded_error_classes = s.excluded_error_classes;
  options.window_ns = s.window_ns;
  if (calendar && s.bucket_ns > 0) options.window_ns = RoundUp(kCalendarRingBoundNs, s.bucket_ns);
  if (Status st = options.Validate(); !st.ok()) {
    auto [field, what] = SplitFieldMessage(st.message());
    const std::string yaml_field = YamlName(field, {{"target", "target"},
                                                    {"bucket_ns", "bucket"},
                                                    {"window_ns", calendar ? "bucket" : "window"},
                                                    {"excluded_error_classes", "exclude"}});
    return Problem{"success." + field, "success." + yaml_field, what, YamlText(what)};
  }
  // Rules are judged against the history they may look at.
  SloOptions bounds = options;
  if (calendar) bounds.window_ns = kCalendarMaxNs;
  for (size_t i = 0; i < s.alerts.size(); ++i) {
    const BurnRateRule& rule = s.alerts[i];
    const std::string f = fmt::format("success.alerts[{}]", i);
    if (Status st = rule.Validate(bounds); !st.ok()) {
      auto [field, what] = SplitFieldMessage(st.message());
      const std::string yaml_field =
          YamlName(field, {{"name", "name"},
                           {"long_window_ns", "long"},
                           {"short_window_ns", "short"},
                           {"burn_rate", "burn_rate"},
                           {"severity", "severity"}});
      const std::string prefix = rule.name.empty() ? "" : fmt::format("alert '{}': ", rule.name);
      std::string limit;
      if (field == "long_window_ns") {
        limit = calendar ? " (31 days for a calendar window)"
                         : fmt::format(" ({} here)", FormatDuration(s.window_ns));
      }
      return Problem{f + "." + field, f + "." + yaml_field, prefix + what + limit,
                     prefix + YamlText(what) + limit};
    }
    if (IsWhenWord(rule.name)) {
      return Problem{f + ".name", f + ".name",
                     fmt::format("'{}' is reserved for on_breach.when; name the rule otherwise",
                                 rule.name)};
    }
    for (size_t j = 0; j < i; ++j) {
      if (s.alerts[j].name == rule.name) {
        return Problem{f + ".name", f + ".name",
                       fmt::format("duplicate alert name '{}' (also alerts[{}])", rule.name, j)};
      }
    }
  }
  return std::nullopt;
}

std::optional<Problem> CostProblem(const CostObjective& c) {
  if (!c.max_per_request_nanousd && !c.p95_per_request_nanousd && !c.per_day_nanousd) {
    return Problem{"cost", "cost",
                   "set at least one of max_per_request_usd, p95_per_request_usd and per_day_usd"};
  }
  struct Target {
    const std::optional<int64_t>& value;
    const char* field;
    const char* yaml;
  };
  const Target targets[] = {
      {c.max_per_request_nanousd, "cost.max_per_request_nanousd", "cost.max_per_request_usd"},
      {c.p95_per_request_nanousd, "cost.p95_per_request_nanousd", "cost.p95_per_request_usd"},
      {c.per_day_nanousd, "cost.per_day_nanousd", "cost.per_day_usd"}};
  for (const Target& t : targets) {
    if (t.value && *t.value <= 0) return Problem{t.field, t.yaml, "must be more than zero"};
  }
  if (c.window_ns < 12) return Problem{"cost.window_ns", "cost.window", "must be at least 12 ns"};
  return std::nullopt;
}

std::optional<Problem> BreachProblem(const SloSpec& spec, size_t i) {
  const BreachAction& a = spec.on_breach[i];
  const std::string base = fmt::format("on_breach[{}]", i);
  // What `when` may select in this spec.
  bool page = false, ticket = false, named = false;
  std::vector<std::string> rule_names;
  if (spec.success) {
    for (const BurnRateRule& r : spec.success->alerts) {
      page = page || r.severity == AlertSeverity::kPage;
      ticket = ticket || r.severity == AlertSeverity::kTicket;
      named = named || r.name == a.when;
      rule_names.push_back(r.name);
    }
  }
  const bool latency =
      spec.latency && (spec.latency->p50_ns || spec.latency->p95_ns || spec.latency->p99_ns);
  std::string missing;
  if (a.when.empty()) {
    return Problem{base + ".when", base + ".when", "must not be empty"};
  } else if (a.when == "page" && !page) {
    missing = "no alert rule of severity page";
  } else if (a.when == "ticket" && !ticket) {
    missing = "no alert rule of severity ticket";
  } else if (a.when == "latency" && !latency) {
    missing = "no latency target (p50, p95 or p99)";
  } else if (a.when == "cost" && !spec.cost) {
    missing = "no cost objective";
  } else if (a.when == "breaker_open" && !spec.breaker) {
    missing = "no circuit_breaker";
  } else if (!IsWhenWord(a.when) && !named) {
    return Problem{
        base + ".when", base + ".when",
        fmt::format("unknown trigger '{}' (use page, ticket, latency, cost, breaker_open, any{})",
                    a.when,
                    rule_names.empty() ? std::string()
                                       : " or an alert rule name: " + Join(rule_names))};
  }
  if (!missing.empty()) {
    return Problem{base + ".when", base + ".when",
                   fmt::format("'{}' can never fire: this SLO has {}", a.when, missing)};
  }
  switch (a.kind) {
    case BreachAction::Kind::kLog:
    case BreachAction::Kind::kDowngrade:
    case BreachAction::Kind::kDisable:
    case BreachAction::Kind::kRateLimit:
    case BreachAction::Kind::kEscalate:
      break;
    default:
      return Problem{base + ".kind", base + ".action", "unknown action kind"};
  }
  if (a.kind == BreachAction::Kind::kDowngrade) {
    if (a.model.empty()) return Problem{base + ".model", base + ".model", "downgrade needs a model"};
    if (yaml::HasControlChars(a.model)) {
      return Problem{base + ".model", base + ".model", "must not contain control characters"};
    }
    if (spec.kind == "tool") {
      return Problem{base + ".kind", base + ".action",
                     "downgrade changes the model of model calls, and this SLO matches only tool "
                     "calls"};
    }
  } else if (!a.model.empty()) {
    return Problem{base + ".model", base + ".model",
                   fmt::format("model applies only to downgrade, not {}",
                               BreachActionKindName(a.kind))};
  }
  if (a.kind == BreachAction::Kind::kRateLimit) {
    if (!(std::isfinite(a.rate_per_second) && a.rate_per_second > 0)) {
      return Problem{base + ".rate_per_second", base + ".rate", "must be more than zero per second"};
    }
  } else if (a.rate_per_second != 0) {
    return Problem{base + ".rate_per_second", base + ".rate",
                   fmt::format("rate applies only to rate_limit, not {}",
                               BreachActionKindName(a.kind))};
  }
  return std::nullopt;
}

std::optional<Problem> FindProblem(const SloSpec& spec) {
  if (spec.id.empty()) return Problem{"id", "id", "must not be empty"};
  if (yaml::HasControlChars(spec.id)) {
    return Problem{"id", "id", "must not contain control characters"};
  }
  if (spec.kind != "model" && spec.kind != "tool" && spec.kind != "*") {
    return Problem{"kind", "match.kind",
                   fmt::format("unknown kind '{}' (use model, tool or \"*\")", spec.kind)};
  }
  if (auto p = PatternProblem(spec.agents, "agents", "match.agent")) return p;
  if (auto p = PatternProblem(spec.models, "models", "match.model")) return p;
  if (auto p = PatternProblem(spec.tools, "tools", "match.tool")) return p;
  for (size_t i = 0; i < spec.group_by.size(); ++i) {
    const std::string& g = spec.group_by[i];
    const std::string f = fmt::format("group_by[{}]", i);
    if (g != "agent" && g != "model" && g != "tool") {
      return Problem{f, f, fmt::format("unknown field '{}' (use agent, model or tool)", g)};
    }
    for (size_t j = 0; j < i; ++j) {
      if (spec.group_by[j] == g) return Problem{f, f, fmt::format("'{}' appears twice", g)};
    }
  }
  if (spec.max_series < 0) return Problem{"max_series", "max_series", "must not be negative"};
  if (!spec.latency && !spec.success && !spec.cost && !spec.breaker) {
    return Problem{"", "",
                   "nothing to monitor: set latency, success, cost or circuit_breaker"};
  }
  if (spec.latency) {
    if (auto p = LatencyProblem(*spec.latency)) return p;
  }
  if (spec.success) {
    if (auto p = SuccessProblem(*spec.success)) return p;
  }
  if (spec.cost) {
    if (auto p = CostProblem(*spec.cost)) return p;
  }
  if (spec.breaker) {
    if (Status st = spec.breaker->Validate(); !st.ok()) {
      auto [field, what] = SplitFieldMessage(st.message());
      const std::string yaml_field =
          YamlName(field, {{"failure_rate_threshold_pct", "failure_rate"},
                           {"slow_call_duration_ns", "slow_call"},
                           {"slow_call_rate_threshold_pct", "slow_call_rate"},
                           {"minimum_calls", "minimum_calls"},
                           {"window_size", "window"},
                           {"open_duration_ns", "open_for"},
                           {"half_open_probes", "half_open_probes"}});
      return Problem{"breaker." + field, "circuit_breaker." + yaml_field, what, YamlText(what)};
    }
  }
  for (size_t i = 0; i < spec.on_breach.size(); ++i) {
    if (auto p = BreachProblem(spec, i)) return p;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Parsing

class SloParser : private yaml::Reader {
 public:
  explicit SloParser(std::string source) : yaml::Reader(std::move(source)) {}

  Result<std::vector<SloSpec>> Parse(std::string_view text) {
    auto doc = LoadListDocument(text, kVersion, "slos");
    if (!doc.ok()) return doc.status();
    file_zone_ = doc->zone;
    const std::vector<Field>& items = doc->items;
    std::vector<SloSpec> specs;
    std::unordered_map<std::string, int> lines;  // id -> line of its item
    for (const Field& item : items) {
      fields_.clear();
      SloSpec spec;
      BASTION_RETURN_IF_ERROR(ParseSlo(item, &spec));
      if (auto [it, fresh] = lines.emplace(spec.id, item.mark.line + 1); !fresh) {
        return Error(fields_.at(item.path + ".id"),
                     fmt::format("duplicate slo id '{}' (first defined at line {})", spec.id,
                                 it->second));
      }
      if (std::optional<Problem> p = FindProblem(spec)) return Locate(item, *p);
      specs.push_back(std::move(spec));
    }
    return specs;
  }

 private:
  // Remembers where a field was written, for validation errors.
  const Field& Remember(const Field& f) { return fields_[f.path] = f; }

  // Members of `f`, each remembered.
  Status MembersOf(const Field& f, std::initializer_list<std::string_view> allowed, Members* out) {
    BASTION_RETURN_IF_ERROR(GetMembers(f, allowed, "key", out));
    for (const auto& [key, value] : *out) Remember(value);
    return Status::OK();
  }

  // Remembers the items of a list field (no-op for a scalar written as a list
  // of one).
  void RememberItems(const Field& f) {
    if (!f.node.IsSequence()) return;
    for (size_t i = 0; i < f.node.size(); ++i) {
      Field item;
      item.node = f.node[i];
      item.mark = item.node.IsNull() ? f.mark : item.node.Mark();
      item.key_mark = item.mark;
      item.path = yaml::IndexPath(f.path, i);
      Remember(item);
    }
  }

  // An error for `p` at the most precise field written in the file: the one it
  // names, else its nearest enclosing one (then the message names the rest).
  Status Locate(const Field& item, const Problem& p) {
    const std::string full = p.yaml.empty() ? item.path : item.path + "." + p.yaml;
    std::string path = full;
    while (path.size() > item.path.size() && fields_.count(path) == 0) {
      size_t cut = path.find_last_of(".[");
      if (cut == std::string::npos || cut < item.path.size()) cut = item.path.size();
      path.resize(cut);
    }
    std::string_view rest = std::string_view(full).substr(path.size());
    if (!rest.empty() && rest.front() == '.') rest.remove_prefix(1);
    const std::string& yaml_what = p.yaml_what.empty() ? p.what : p.yaml_what;
    const std::string what = rest.empty() ? yaml_what : fmt::format("{}: {}", rest, yaml_what);
    if (auto it = fields_.find(path); it != fields_.end()) return Error(it->second, what);
    return Error(item, what);
  }

  // A list of strings, or one string as a list of one.
  Result<std::vector<std::string>> ListOrOne(const Field& f) const {
    if (f.node.IsScalar()) return std::vector<std::string>{f.node.Scalar()};
    return StringList(f);
  }

  Result<int64_t> Int64(const Field& f) const {
    auto v = Unsigned(f);
    if (!v.ok()) return v.status();
    if (*v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Error(f, fmt::format("{} is too large", *v));
    }
    return static_cast<int64_t>(*v);
  }

  Result<int32_t> Int32(const Field& f) const {
    auto v = Unsigned(f);
    if (!v.ok()) return v.status();
    if (*v > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
      return Error(f, fmt::format("{} is too large", *v));
    }
    return static_cast<int32_t>(*v);
  }

  Status ParseSlo(const Field& item, SloSpec* spec) {
    Members m;
    BASTION_RETURN_IF_ERROR(MembersOf(item,
                                      {"id", "match", "group_by", "time_zone", "max_series",
                                       "latency", "success", "cost", "circuit_breaker",
                                       "on_breach"},
                                      &m));
    bool has_id = false;
    spec->zone = file_zone_;
    for (const auto& [key, value] : m) {
      if (key == "id") {
        auto id = Name(value);
        if (!id.ok()) return id.status();
        spec->id = std::move(*id);
        has_id = true;
      } else if (key == "match") {
        BASTION_RETURN_IF_ERROR(ParseMatch(value, spec));
      } else if (key == "group_by") {
        auto list = ListOrOne(value);
        if (!list.ok()) return list.status();
        RememberItems(value);
        spec->group_by = std::move(*list);
      } else if (key == "time_zone") {
        auto zone = Zone(value);
        if (!zone.ok()) return zone.status();
        spec->zone = std::move(*zone);
      } else if (key == "max_series") {
        auto n = Int64(value);
        if (!n.ok()) return n.status();
        if (*n == 0) return Error(value, "must be at least 1");
        spec->max_series = *n;
      } else if (key == "latency") {
        BASTION_RETURN_IF_ERROR(ParseLatency(value, &spec->latency.emplace()));
      } else if (key == "success") {
        BASTION_RETURN_IF_ERROR(ParseSuccess(value, &spec->success.emplace()));
      } else if (key == "cost") {
        BASTION_RETURN_IF_ERROR(ParseCost(value, &spec->cost.emplace()));
      } else if (key == "circuit_breaker") {
        BASTION_RETURN_IF_ERROR(ParseBreaker(value, &spec->breaker.emplace()));
      } else if (key == "on_breach") {
        std::vector<Field> actions;
        BASTION_RETURN_IF_ERROR(Items(value, &actions));
        for (const Field& a : actions) {
          Remember(a);
          BASTION_RETURN_IF_ERROR(ParseAction(a, &spec->on_breach.emplace_back()));
        }
      }
    }
    if (!has_id) return Error(item, "missing required key 'id'");
    return Status::OK();
  }

  Status ParseMatch(const Field& f, SloSpec* spec) {
    Members m;
    BASTION_RETURN_IF_ERROR(MembersOf(f, {"kind", "agent", "model", "tool"}, &m));
    for (const auto& [key, value] : m) {
      if (key == "kind") {
        auto kind = String(value);
        if (!kind.ok()) return kind.status();
        if (*kind != "model" && *kind != "tool" && *kind != "*") {
          return Error(value, fmt::format("unknown kind '{}' (use model, tool or \"*\")", *kind));
        }
        spec->kind = std::move(*kind);
        continue;
      }
      auto globs = GlobList(value, /*allow_single=*/true);
      if (!globs.ok()) return globs.status();
      RememberItems(value);
      (key == "agent" ? spec->agents : key == "model" ? spec->models : spec->tools) =
          std::move(*globs);
    }
    return Status::OK();
  }

  Status ParseLatency(const Field& f, LatencyObjective* l) {
    Members m;
    BASTION_RETURN_IF_ERROR(MembersOf(f, {"p50", "p95", "p99", "timeout", "window"}, &m));
    for (const auto& [key, value] : m) {
      auto d = Duration(value);
      if (!d.ok()) return d.status();
      if (key == "p50") l->p50_ns = *d;
      if (key == "p95") l->p95_ns = *d;
      if (key == "p99") l->p99_ns = *d;
      if (key == "timeout") l->timeout_ns = *d;
      if (key == "window") l->window_ns = *d;
    }
    return Status::OK();
  }

  Status ParseSuccess(const Field& f, SuccessObjective* s) {
    Members m;
    BASTION_RETURN_IF_ERROR(
        MembersOf(f, {"target", "window", "bucket", "exclude", "alerts"}, &m));
    for (const auto& [key, value] : m) {
      if (key == "target") {
        auto t = Fraction(value, 0, 1);
        if (!t.ok()) return t.status();
        s->target = *t;
      } else if (key == "window") {
        if (!value.node.IsScalar()) {
          return Error(value, fmt::format("expected a duration such as 30d, or calendar_day, "
                                          "calendar_week or calendar_month, found {}",
                                          yaml::KindName(value.node)));
        }
        const std::string& w = value.node.Scalar();
        if (w == "calendar_day" || w == "calendar_week" || w == "calendar_month") {
          s->window_kind = w == "calendar_day"    ? Window::Kind::kDaily
                           : w == "calendar_week" ? Window::Kind::kWeekly
                                                  : Window::Kind::kMonthly;
          continue;
        }
        auto d = yaml::ParseDuration(w);
        if (!d.ok()) {
          return Error(value, fmt::format("{} (or calendar_day, calendar_week, calendar_month)",
                                          d.status().message()));
        }
        if (*d == 0) return Error(value, "must be longer than zero");
        s->window_kind = Window::Kind::kRolling;
        s->window_ns = *d;
      } else if (key == "bucket") {
        auto d = Duration(value);
        if (!d.ok()) return d.status();
        s->bucket_ns = *d;
      } else if (key == "exclude") {
        auto list = ListOrOne(value);
        if (!list.ok()) return list.status();
        RememberItems(value);
        s->excluded_error_classes = std::move(*list);
      } else if (key == "alerts") {
        BASTION_RETURN_IF_ERROR(ParseAlerts(value, &s->alerts));
      }
    }
    return Status::OK();
  }

  Status ParseAlerts(const Field& f, std::vector<BurnRateRule>* rules) {
    if (f.node.IsScalar()) {
      if (f.node.Scalar() == "default") {
        *rules = DefaultBurnRateRules();
        return Status::OK();
      }
      if (f.node.Scalar() == "none") {
        rules->clear();
        return Status::OK();
      }
      return Error(f, fmt::format("expected 'default', 'none' or a list of rules, found '{}'",
                                  f.node.Scalar()));
    }
    std::vector<Field> items;
    BASTION_RETURN_IF_ERROR(Items(f, &items));
    rules->clear();
    for (const Field& item : items) {
      Remember(item);
      Members m;
      BASTION_RETURN_IF_ERROR(
          MembersOf(item, {"name", "long", "short", "burn_rate", "severity"}, &m));
      BurnRateRule rule;
      bool has[4] = {false, false, false, false};
      for (const auto& [key, value] : m) {
        if (key == "name") {
          auto n = Name(value);
          if (!n.ok()) return n.status();
          rule.name = std::move(*n);
          has[0] = true;
        } else if (key == "long" || key == "short") {
          auto d = Duration(value);
          if (!d.ok()) return d.status();
          (key == "long" ? rule.long_window_ns : rule.short_window_ns) = *d;
          has[key == "long" ? 1 : 2] = true;
        } else if (key == "burn_rate") {
          auto n = Number(value);
          if (!n.ok()) return n.status();
          rule.burn_rate = *n;
          has[3] = true;
        } else if (key == "severity") {
          auto sv = String(value);
          if (!sv.ok()) return sv.status();
          if (*sv == "page") {
            rule.severity = AlertSeverity::kPage;
          } else if (*sv == "ticket") {
            rule.severity = AlertSeverity::kTicket;
          } else {
            return Error(value, fmt::format("unknown severity '{}' (use page or ticket)", *sv));
          }
        }
      }
      const char* names[] = {"name", "long", "short", "burn_rate"};
      for (int i = 0; i < 4; ++i) {
        if (!has[i]) return Error(item, fmt::format("missing required key '{}'", names[i]));
      }
      rules->push_back(std::move(rule));
    }
    return Status::OK();
  }

  Status ParseCost(const Field& f, CostObjective* c) {
    Members m;
    BASTION_RETURN_IF_ERROR(MembersOf(
        f, {"max_per_request_usd", "p95_per_request_usd", "per_day_usd", "window"}, &m));
    for (const auto& [key, value] : m) {
      if (key == "window") {
        auto d = Duration(value);
        if (!d.ok()) return d.status();
        c->window_ns = *d;
        continue;
      }
      auto usd = Usd(value);
      if (!usd.ok()) return usd.status();
      if (key == "max_per_request_usd") c->max_per_request_nanousd = *usd;
      if (key == "p95_per_request_usd") c->p95_per_request_nanousd = *usd;
      if (key == "per_day_usd") c->per_day_nanousd = *usd;
    }
    return Status::OK();
  }

  Status ParseBreaker(const Field& f, CircuitBreakerOptions* b) {
    Members m;
    BASTION_RETURN_IF_ERROR(MembersOf(f,
                                      {"failure_rate", "slow_call", "slow_call_rate",
                                       "minimum_calls", "window", "open_for", "half_open_probes"},
                                      &m));
    for (const auto& [key, value] : m) {
      if (key == "failure_rate" || key == "slow_call_rate") {
        auto v = Fraction(value, 0, 1);
        if (!v.ok()) return v.status();
        (key == "failure_rate" ? b->failure_rate_threshold_pct
                               : b->slow_call_rate_threshold_pct) = *v * 100;
      } else if (key == "slow_call" || key == "open_for") {
        auto d = Duration(value);
        if (!d.ok()) return d.status();
        (key == "slow_call" ? b->slow_call_duration_ns : b->open_duration_ns) = *d;
      } else {
        auto n = Int32(value);
        if (!n.ok()) return n.status();
        if (key == "minimum_calls") b->minimum_calls = *n;
        if (key == "window") b->window_size = *n;
        if (key == "half_open_probes") b->half_open_probes = *n;
      }
    }
    return Status::OK();
  }

  Status ParseAction(const Field& f, BreachAction* a) {
    Members m;
    BASTION_RETURN_IF_ERROR(MembersOf(f, {"when", "action", "model", "rate"}, &m));
    bool has_when = false, has_action = false;
    for (const auto& [key, value] : m) {
      if (key == "when") {
        auto w = Name(value);
        if (!w.ok()) return w.status();
        a->when = std::move(*w);
        has_when = true;
      } else if (key == "action") {
        auto s = String(value);
        if (!s.ok()) return s.status();
        static constexpr std::pair<std::string_view, BreachAction::Kind> kKinds[] = {
            {"log", BreachAction::Kind::kLog},
            {"downgrade", BreachAction::Kind::kDowngrade},
            {"disable", BreachAction::Kind::kDisable},
            {"rate_limit", BreachAction::Kind::kRateLimit},
            {"escalate", BreachAction::Kind::kEscalate}};
        bool known = false;
        for (const auto& [name, kind] : kKinds) {
          if (*s == name) {
            a->kind = kind;
            known = true;
          }
        }
        if (!known) {
          return Error(value, fmt::format("unknown action '{}' (use log, downgrade, disable, "
                                          "rate_limit or escalate)",
                                          *s));
        }
        has_action = true;
      } else if (key == "model") {
        auto model = Name(value);
        if (!model.ok()) return model.status();
        a->model = std::move(*model);
      } else if (key == "rate") {
        auto rate = Rate(value);
        if (!rate.ok()) return rate.status();
        a->rate_per_second = *rate;
      }
    }
    if (!has_when) return Error(f, "missing required key 'when'");
    if (!has_action) return Error(f, "missing required key 'action'");
    return Status::OK();
  }

  // "10/s", "600/min", "5/h" (as permissions.yaml writes rates), in calls per
  // second.
  Result<double> Rate(const Field& f) const {
    auto s = String(f);
    if (!s.ok()) return s.status();
    auto limit = ParseRateLimit(*s);
    if (!limit.ok()) return Error(f, limit.status().message());
    return static_cast<double>(limit->count) * kNsPerSecond / static_cast<double>(limit->period_ns);
  }

  std::shared_ptr<const TimeZone> file_zone_;
  // Fields of the SLO being parsed, by path.
  std::unordered_map<std::string, Field> fields_;
};

// ---------------------------------------------------------------------------
// Writing

// A YAML double-quoted scalar: safe for any text.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7F) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string QuoteList(const std::vector<std::string>& v) {
  std::vector<std::string> quoted;
  for (const std::string& s : v) quoted.push_back(Quote(s));
  return fmt::format("[{}]", fmt::join(quoted, ", "));
}

// Rates come from "N/s", "N/min" or "N/h", so one of those writes them back.
std::string FormatRate(double per_second) {
  for (const auto& [seconds, unit] :
       {std::pair<double, const char*>{1, "s"}, {60, "min"}, {3600, "h"}}) {
    const double count = std::round(per_second * seconds);
    if (count >= 1 && std::abs(count - per_second * seconds) <= 1e-9 * count) {
      return fmt::format("{}/{}", static_cast<int64_t>(count), unit);
    }
  }
  return fmt::format("{}/s", per_second);
}

}  // namespace

const char* BreachActionKindName(BreachAction::Kind kind) {
  switch (kind) {
    case BreachAction::Kind::kLog: return "log";
    case BreachAction::Kind::kDowngrade: return "downgrade";
    case BreachAction::Kind::kDisable: return "disable";
    case BreachAction::Kind::kRateLimit: return "rate_limit";
    case BreachAction::Kind::kEscalate: return "escalate";
  }
  return "?";
}

std::string BreachActionText(const BreachAction& action) {
  std::string text = BreachActionKindName(action.kind);
  if (action.kind == BreachAction::Kind::kDowngrade) text += ":" + action.model;
  if (action.kind == BreachAction::Kind::kRateLimit) {
    text += fmt::format(":{}/s", action.rate_per_second);
  }
  return text;
}

Status ValidateSloSpec(const SloSpec& spec) {
  std::optional<Problem> p = FindProblem(spec);
  if (!p) return Status::OK();
  if (p->field.empty()) return Status::InvalidArgument(fmt::format("slo '{}': {}", spec.id, p->what));
  return Status::InvalidArgument(fmt::format("slo '{}': {}: {}", spec.id, p->field, p->what));
}

Result<std::vector<SloSpec>> ParseSloYaml(std::string_view yaml, const std::string& source_name) {
  try {
    return SloParser(source_name).Parse(yaml);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(fmt::format("{}: {}", source_name, e.what()));
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("{}: {}", source_name, e.what()));
  }
}

Result<std::vector<SloSpec>> LoadSloYamlFile(const std::string& path) {
  auto content = yaml::ReadConfigFile(path, "SLO");
  if (!content.ok()) return content.status();
  return ParseSloYaml(*content, path);
}

std::string FormatSloYaml(const std::vector<SloSpec>& specs) {
  std::string out = "version: 1\nslos:\n";
  for (const SloSpec& s : specs) {
    out += fmt::format("  - id: {}\n", Quote(s.id));
    out += fmt::format("    match: {{kind: {}, agent: {}, model: {}, tool: {}}}\n", Quote(s.kind),
                       QuoteList(s.agents), QuoteList(s.models), QuoteList(s.tools));
    if (!s.group_by.empty()) out += fmt::format("    group_by: {}\n", QuoteList(s.group_by));
    if (s.zone) out += fmt::format("    time_zone: {}\n", Quote(s.zone->Name()));
    if (s.max_series > 0) out += fmt::format("    max_series: {}\n", s.max_series);
    if (const auto& l = s.latency) {
      std::vector<std::string> parts;
      if (l->p50_ns) parts.push_back("p50: " + FormatDuration(*l->p50_ns));
      if (l->p95_ns) parts.push_back("p95: " + FormatDuration(*l->p95_ns));
      if (l->p99_ns) parts.push_back("p99: " + FormatDuration(*l->p99_ns));
      if (l->timeout_ns) parts.push_back("timeout: " + FormatDuration(*l->timeout_ns));
      parts.push_back("window: " + FormatDuration(l->window_ns));
      out += fmt::format("    latency: {{{}}}\n", fmt::join(parts, ", "));
    }
    if (const auto& su = s.success) {
      out += "    success:\n";
      out += fmt::format("      target: {}\n", su->target);
      switch (su->window_kind) {
        case Window::Kind::kDaily: out += "      window: calendar_day\n"; break;
        case Window::Kind::kWeekly: out += "      window: calendar_week\n"; break;
        case Window::Kind::kMonthly: out += "      window: calendar_month\n"; break;
        default: out += fmt::format("      window: {}\n", FormatDuration(su->window_ns)); break;
      }
      out += fmt::format("      bucket: {}\n", FormatDuration(su->bucket_ns));
      if (!su->excluded_error_classes.empty()) {
        out += fmt::format("      exclude: {}\n", QuoteList(su->excluded_error_classes));
      }
      if (su->alerts.empty()) {
        out += "      alerts: none\n";
      } else {
        out += "      alerts:\n";
        for (const BurnRateRule& r : su->alerts) {
          out += fmt::format(
              "        - {{name: {}, long: {}, short: {}, burn_rate: {}, severity: {}}}\n",
              Quote(r.name), FormatDuration(r.long_window_ns), FormatDuration(r.short_window_ns),
              r.burn_rate, AlertSeverityName(r.severity));
        }
      }
    }
    if (const auto& c = s.cost) {
      std::vector<std::string> parts;
      if (c->max_per_request_nanousd) {
        parts.push_back("max_per_request_usd: " + FormatUsdDecimal(*c->max_per_request_nanousd));
      }
      if (c->p95_per_request_nanousd) {
        parts.push_back("p95_per_request_usd: " + FormatUsdDecimal(*c->p95_per_request_nanousd));
      }
      if (c->per_day_nanousd) parts.push_back("per_day_usd: " + FormatUsdDecimal(*c->per_day_nanousd));
      parts.push_back("window: " + FormatDuration(c->window_ns));
      out += fmt::format("    cost: {{{}}}\n", fmt::join(parts, ", "));
    }
    if (const auto& b = s.breaker) {
      out += fmt::format(
          "    circuit_breaker: {{failure_rate: {}, slow_call: {}, slow_call_rate: {}, "
          "minimum_calls: {}, window: {}, open_for: {}, half_open_probes: {}}}\n",
          b->failure_rate_threshold_pct / 100, FormatDuration(b->slow_call_duration_ns),
          b->slow_call_rate_threshold_pct / 100, b->minimum_calls, b->window_size,
          FormatDuration(b->open_duration_ns), b->half_open_probes);
    }
    if (!s.on_breach.empty()) {
      out += "    on_breach:\n";
      for (const BreachAction& a : s.on_breach) {
        std::string item = fmt::format("when: {}, action: {}", Quote(a.when),
                                       BreachActionKindName(a.kind));
        if (!a.model.empty()) item += ", model: " + Quote(a.model);
        if (a.kind == BreachAction::Kind::kRateLimit) item += ", rate: " + FormatRate(a.rate_per_second);
        out += fmt::format("      - {{{}}}\n", item);
      }
    }
  }
  return out;
}

}  // namespace bastion
