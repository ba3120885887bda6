// budgets.yaml: parsing into BudgetRules, on the shared YAML reader.
#include <unordered_map>

#include <fmt/format.h>

#include "bastion/budget_set.h"
#include "bastion/permissions.h"
#include "bastion/time_zone.h"
#include "util/yaml_reader.h"

namespace bastion {

namespace {

using yaml::Field;
using yaml::Members;

constexpr int kVersion = 1;

class BudgetParser : private yaml::Reader {
 public:
  explicit BudgetParser(std::string source) : yaml::Reader(std::move(source)) {}

  Result<BudgetConfig> Parse(std::string_view text) {
    auto doc = LoadListDocument(text, kVersion, "budgets");
    if (!doc.ok()) return doc.status();
    zone_ = doc->zone;
    BudgetConfig config;
    config.source = source();
    const std::vector<Field>& items = doc->items;
    std::unordered_map<std::string, int> lines;  // id -> line
    for (const Field& item : items) {
      auto rule = ParseBudget(item);
      if (!rule.ok()) return rule.status();
      auto [it, fresh] = lines.emplace(rule->spec.id, rule->line);
      if (!fresh) {
        return Error(item, fmt::format("duplicate budget id '{}' (first defined at line {})",
                                       rule->spec.id, it->second));
      }
      config.budgets.push_back(std::move(*rule));
    }
    return config;
  }

 private:
  Result<Scope::Kind> ScopeKind(const Field& f) const {
    auto s = String(f);
    if (!s.ok()) return s.status();
    static const std::pair<std::string_view, Scope::Kind> kKinds[] = {
        {"run", Scope::Kind::kRun},       {"agent", Scope::Kind::kAgent},
        {"user", Scope::Kind::kUser},     {"tenant", Scope::Kind::kTenant},
        {"tag", Scope::Kind::kTag},       {"global", Scope::Kind::kGlobal}};
    for (const auto& [name, kind] : kKinds) {
      if (*s == name) return kind;
    }
    return Error(f, fmt::format("unknown scope '{}' (use run, agent, user, tenant, tag or global)",
                                *s));
  }

  // "daily", "weekly", "monthly", "per_run", "rolling 1h".
  Result<Window> ParseWindow(const Field& f) const {
    auto s = String(f);
    if (!s.ok()) return s.status();
    const std::string& w = *s;
    if (w == "per_run" || w == "per-run") return Window::PerRun();
    if (w == "daily") return Window::Daily();
    if (w == "weekly") return Window::Weekly();
    if (w == "monthly") return Window::Monthly();
    if (w.rfind("rolling", 0) == 0) {
      auto d = yaml::ParseDuration(std::string_view(w).substr(7));
      if (!d.ok() || *d <= 0) {
        return Error(f, fmt::format("'{}': a rolling window needs a length, e.g. 'rolling 1h'",
                                    w));
      }
      return Window::Rolling(*d);
    }
    return Error(f, fmt::format("unknown window '{}' (use per_run, daily, weekly, monthly or "
                                "'rolling <duration>')",
                                w));
  }

  Result<int> Percent(const Field& f) const {
    auto v = Fraction(f, 0.01, 10.0);
    if (!v.ok()) return v.status();
    const double pct = *v * 100;
    const double rounded = static_cast<double>(static_cast<int64_t>(pct + 0.5));
    if (pct - rounded > 1e-9 || rounded - pct > 1e-9) {
      return Error(f, fmt::format("'{}' must be a whole percentage", f.node.Scalar()));
    }
    return static_cast<int>(rounded);
  }

  Status ParseAlert(const Field& f, BudgetRule* rule) const {
    Members m;
    BASTION_RETURN_IF_ERROR(
        GetMembers(f, {"at", "level", "action", "cooldown", "model", "rate"}, "key", &m));
    AlertThreshold t;
    std::string model;
    std::optional<RateLimit> rate;
    const Field* at = nullptr;
    const Field* action_field = nullptr;
    for (const auto& [key, value] : m) {
      if (key == "at") {
        auto p = Percent(value);
        if (!p.ok()) return p.status();
        t.percent = *p;
        at = &value;
      } else if (key == "level") {
        auto s = String(value);
        if (!s.ok()) return s.status();
        if (*s == "info") {
          t.level = AlertLevel::kInfo;
        } else if (*s == "warning") {
          t.level = AlertLevel::kWarning;
        } else if (*s == "critical") {
          t.level = AlertLevel::kCritical;
        } else {
          return Error(value, fmt::format("unknown level '{}' (use info, warning or critical)", *s));
        }
      } else if (key == "action") {
        auto s = String(value);
        if (!s.ok()) return s.status();
        static const std::pair<std::string_view, AlertAction> kActions[] = {
            {"log", AlertAction::kLog},
            {"notify", AlertAction::kNotify},
            {"throttle", AlertAction::kThrottle},
            {"downgrade", AlertAction::kDowngrade},
            {"halt", AlertAction::kHalt}};
        bool found = false;
        for (const auto& [name, action] : kActions) {
          if (*s == name) {
            t.action = action;
            found = true;
          }
        }
        if (!found) {
          return Error(value, fmt::format("unknown action '{}' (use log, notify, throttle, "
                                          "downgrade or halt)",
                                          *s));
        }
        action_field = &value;
      } else if (key == "cooldown") {
        auto d = Duration(value, /*allow_zero=*/true);
        if (!d.ok()) return d.status();
        t.cooldown_ns = *d;
      } else if (key == "model") {
        auto s = Name(value);
        if (!s.ok()) return s.status();
        model = *s;
      } else {
        auto s = String(value);
        if (!s.ok()) return s.status();
        auto r = ParseRateLimit(*s);
        if (!r.ok()) return Error(value, r.status().message());
        rate = *r;
      }
    }
    if (at == nullptr) return Error(f, "missing required key 'at' (e.g. 'at: 80%')");
    if (t.action == AlertAction::kDowngrade && model.empty()) {
      return Error(*action_field, "a downgrade needs 'model': the model to use instead");
    }
    if (t.action != AlertAction::kDowngrade && !model.empty()) {
      return Error(f, "'model' is only for action: downgrade");
    }
    if (t.action == AlertAction::kThrottle && !rate) {
      return Error(*action_field, "a throttle needs 'rate', e.g. 'rate: 10/min'");
    }
    if (t.action != AlertAction::kThrottle && rate) {
      return Error(f, "'rate' is only for action: throttle");
    }
    if (t.action == AlertAction::kHalt && t.percent > 100) {
      return Error(*at, "a halt threshold must be at most 100%");
    }
    rule->spec.thresholds.push_back(t);
    rule->downgrade_models.push_back(model);
    rule->throttle_rates.push_back(rate.value_or(RateLimit{}));
    return Status::OK();
  }

  Result<BudgetRule> ParseBudget(const Field& f) {
    Members m;
    BASTION_RETURN_IF_ERROR(GetMembers(f,
                                       {"id", "scope", "key", "match", "limit_usd", "window",
                                        "time_zone", "reserve_percent", "enforcement", "alerts"},
                                       "key", &m));
    BudgetRule rule;
    rule.line = f.mark.line + 1;
    bool has_limit = false, has_scope = false;
    std::shared_ptr<const TimeZone> zone = zone_;
    const Field* zone_field = nullptr;
    const Field* window_field = nullptr;
    for (const auto& [key, value] : m) {
      if (key == "id") {
        auto s = Name(value);
        if (!s.ok()) return s.status();
        rule.spec.id = *s;
      } else if (key == "scope") {
        auto k = ScopeKind(value);
        if (!k.ok()) return k.status();
        rule.spec.scope.kind = *k;
        has_scope = true;
      } else if (key == "key") {
        auto s = Name(value);
        if (!s.ok()) return s.status();
        rule.spec.scope.key = *s;
      } else if (key == "match") {
        Members mm;
        BASTION_RETURN_IF_ERROR(GetMembers(value, {"agent", "model", "tool"}, "key", &mm));
        for (const auto& [mk, mv] : mm) {
          auto globs = GlobList(mv, /*allow_single=*/true);
          if (!globs.ok()) return globs.status();
          (mk == "agent" ? rule.agents : mk == "model" ? rule.models : rule.tools) = *globs;
        }
      } else if (key == "limit_usd") {
        auto v = Usd(value);
        if (!v.ok()) return v.status();
        if (*v <= 0) return Error(value, "must be more than zero");
        rule.spec.limit_nanousd = *v;
        has_limit = true;
      } else if (key == "window") {
        auto w = ParseWindow(value);
        if (!w.ok()) return w.status();
        rule.spec.window = std::move(*w);
        window_field = &value;
      } else if (key == "time_zone") {
        auto z = Zone(value);
        if (!z.ok()) return z.status();
        zone = std::move(*z);
        zone_field = &value;
      } else if (key == "reserve_percent") {
        auto v = Unsigned(value);
        if (!v.ok()) return v.status();
        if (*v > 100) return Error(value, "must be between 0 and 100");
        rule.spec.reserve_percent = static_cast<int>(*v);
      } else if (key == "enforcement") {
        auto s = String(value);
        if (!s.ok()) return s.status();
        if (*s == "hard") {
          rule.spec.enforcement = BudgetSpec::Enforcement::kHard;
        } else if (*s == "soft") {
          rule.spec.enforcement = BudgetSpec::Enforcement::kSoft;
        } else {
          return Error(value, fmt::format("unknown enforcement '{}' (use hard or soft)", *s));
        }
      } else {
        std::vector<Field> alerts;
        BASTION_RETURN_IF_ERROR(Items(value, &alerts));
        for (const Field& a : alerts) BASTION_RETURN_IF_ERROR(ParseAlert(a, &rule));
      }
    }
    if (rule.spec.id.empty()) return Error(f, "missing required key 'id'");
    if (!has_scope) return Error(f, "missing required key 'scope'");
    if (!has_limit) return Error(f, "missing required key 'limit_usd'");
    if (window_field == nullptr) return Error(f, "missing required key 'window'");
    if (rule.spec.scope.kind == Scope::Kind::kGlobal && !rule.spec.scope.key.empty()) {
      return Error(f, "a global budget has no 'key'");
    }
    const bool calendar = rule.spec.window.kind == Window::Kind::kDaily ||
                          rule.spec.window.kind == Window::Kind::kWeekly ||
                          rule.spec.window.kind == Window::Kind::kMonthly;
    if (zone_field != nullptr && !calendar) {
      return Error(*zone_field, "time_zone applies only to daily, weekly and monthly windows");
    }
    if (calendar) rule.spec.window.zone = zone;
    if (Status s = ValidateBudgetSpec(rule.spec); !s.ok()) return Error(f, s.message());
    return rule;
  }

  std::shared_ptr<const TimeZone> zone_;  // the file's default; null = UTC
};

}  // namespace

Result<BudgetConfig> ParseBudgetYaml(std::string_view yaml, const std::string& source_name) {
  return BudgetParser(source_name).Parse(yaml);
}

Result<BudgetConfig> LoadBudgetYamlFile(const std::string& path) {
  auto content = yaml::ReadConfigFile(path, "budgets");
  if (!content.ok()) return content.status();
  return ParseBudgetYaml(*content, path);
}

}  // namespace bastion
