// Every YAML text Bastion reads is held to the same limits before any code
// walks it: the classic "billion laughs" document, which yaml-cpp parses small
// (aliases share nodes) but which expands to ~10^9 nodes when walked, is
// refused by every loader within milliseconds, naming the file and line.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bastion/budget_set.h"
#include "bastion/cost.h"
#include "bastion/permissions.h"
#include "bastion/policy.h"
#include "bastion/slo_monitor.h"
#include "policy/bundle.h"
#include "test_util.h"
#include "util/yaml_reader.h"

namespace bastion {
namespace {

// Nine lists of nine aliases to the list before: 9^9 (387 420 489) "lol"s.
// Indented by `indent` spaces, so it can sit under a key.
std::string BillionLaughs(int indent = 0) {
  const std::string pad(indent, ' ');
  std::string doc = pad + "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (char c = 'b'; c <= 'i'; ++c) {
    const char p = static_cast<char>(c - 1);
    doc += fmt::format("{}{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n", pad, c, c, p,
                       p, p, p, p, p, p, p, p);
  }
  return doc;
}

// The line where the expansion crosses a million nodes: list 'g' (line 7 of
// the bomb), whose second alias to 'f' (597 871 nodes) does it.
constexpr int kBombLine = 7;

void ExpectRefusedQuickly(const std::string& name, const std::function<Status()>& load,
                          const std::string& where) {
  const auto start = std::chrono::steady_clock::now();
  const Status s = load();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  EXPECT_TRUE(s.IsInvalidArgument()) << name << ": " << s.ToString();
  EXPECT_NE(s.message().find(where), std::string::npos)
      << name << ": expected '" << where << "' in: " << s.message();
  EXPECT_NE(s.message().find("more than 1000000 nodes once aliases are expanded"),
            std::string::npos)
      << name << ": " << s.message();
  EXPECT_LT(ms, 500) << name << " took " << ms << " ms";
}

TEST(YamlLimits, BillionLaughsIsRefusedByEveryLoader) {
  const std::string bomb = BillionLaughs();
  const std::string line = fmt::format(":{}:", kBombLine);
  ExpectRefusedQuickly("LoadDocuments",
                       [&] { return yaml::LoadDocuments(bomb, "doc.yaml").status(); },
                       "doc.yaml" + line);
  ExpectRefusedQuickly("Permissions::Parse",
                       [&] { return Permissions::Parse(bomb, "permissions.yaml").status(); },
                       "permissions.yaml" + line);
  ExpectRefusedQuickly("ParseBudgetYaml",
                       [&] { return ParseBudgetYaml(bomb, "budgets.yaml").status(); },
                       "budgets.yaml" + line);
  ExpectRefusedQuickly("ParseSloYaml", [&] { return ParseSloYaml(bomb, "slos.yaml").status(); },
                       "slos.yaml" + line);
  ExpectRefusedQuickly("PricingTable::FromYaml",
                       [&] { return PricingTable::FromYaml(bomb, "pricing.yaml").status(); },
                       "pricing.yaml" + line);
  ExpectRefusedQuickly(
      "PricingTable::FromLiteLlmJson",
      [&] { return PricingTable::FromLiteLlmJson(bomb, "litellm.json").status(); },
      "litellm.json" + line);
  ExpectRefusedQuickly("ParseYamlValue (test cases, parse_yaml)",
                       [&] { return policy::ParseYamlValue(bomb, "cases.yaml").status(); },
                       "cases.yaml" + line);
  const std::string policy = "return { before_tool = function() end }";
  // bundle.yaml's data: the bomb one level down.
  ExpectRefusedQuickly(
      "bundle.yaml data",
      [&] {
        return PolicyEngine::FromSources({{"p.lua", policy}}, "data:\n" + BillionLaughs(2))
            .status();
      },
      fmt::format("bundle.yaml:{}:", kBombLine + 1));
  ExpectRefusedQuickly(
      "bundle permissions.yaml",
      [&] { return PolicyEngine::FromSources({{"p.lua", policy}}, "", bomb).status(); },
      "permissions.yaml" + line);
}

TEST(YamlLimits, BillionLaughsFilesAreRefusedByEveryFileLoader) {
  testing::TempDir dir;
  const std::string bomb = BillionLaughs();
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.Sub(name), std::ios::binary) << text;
    return dir.Sub(name);
  };
  const std::string line = fmt::format(":{}:", kBombLine);
  const std::string permissions = write("permissions.yaml", bomb);
  ExpectRefusedQuickly("Permissions::LoadFile",
                       [&] { return Permissions::LoadFile(permissions).status(); },
                       permissions + line);
  const std::string budgets = write("budgets.yaml", bomb);
  ExpectRefusedQuickly("LoadBudgetYamlFile",
                       [&] { return LoadBudgetYamlFile(budgets).status(); }, budgets + line);
  const std::string slos = write("slos.yaml", bomb);
  ExpectRefusedQuickly("LoadSloYamlFile", [&] { return LoadSloYamlFile(slos).status(); },
                       slos + line);
  const std::string pricing = write("pricing.yaml", bomb);
  ExpectRefusedQuickly("PricingTable::FromYamlFile",
                       [&] { return PricingTable::FromYamlFile(pricing).status(); },
                       pricing + line);
  std::filesystem::create_directory(dir.Sub("bundle"));
  write("bundle/p.lua", "return { before_tool = function() end }");
  write("bundle/bundle.yaml", "data:\n" + BillionLaughs(2));
  ExpectRefusedQuickly("PolicyEngine::Load",
                       [&] { return PolicyEngine::Load(dir.Sub("bundle")).status(); },
                       fmt::format("bundle.yaml:{}:", kBombLine + 1));
}

TEST(YamlLimits, EachLimitIsEnforcedWhereItIsCrossed) {
  struct Case {
    std::string name, text, expected;
  };
  std::string deep;  // 65 lists, one inside the other
  for (int i = 0; i < 65; ++i) deep += "[";
  for (int i = 0; i < 65; ++i) deep += "]";
  std::string deep_by_alias = "a: &a ";  // 40 levels, aliased 30 levels down
  for (int i = 0; i < 40; ++i) deep_by_alias += "[";
  for (int i = 0; i < 40; ++i) deep_by_alias += "]";
  deep_by_alias += "\nb: ";
  for (int i = 0; i < 30; ++i) deep_by_alias += "[";
  deep_by_alias += "*a";
  for (int i = 0; i < 30; ++i) deep_by_alias += "]";
  deep_by_alias += "\n";
  std::string many_aliases = "a: &a x\nb:\n";
  for (int i = 0; i < 10'001; ++i) many_aliases += "  - *a\n";
  const std::vector<Case> cases = {
      {"deep", deep, "doc.yaml:1:65: nested deeper than 64 levels (the limit)"},
      {"deep by alias", deep_by_alias, "doc.yaml:2:34: nested deeper than 64 levels"},
      {"aliases", many_aliases, "doc.yaml:10003:5: more than 10000 aliases (the limit)"},
      {"cycle", "a: &a [x, *a]\n", "doc.yaml:1:11: an alias inside the node it refers to"},
      {"size", std::string((16 << 20) + 1, '#'),
       "doc.yaml: 16777217 bytes, over the limit of 16777216 bytes"},
      {"malformed", "a: [1, 2\n", "doc.yaml:2:1: malformed YAML"},
  };
  for (const Case& c : cases) {
    auto loaded = yaml::LoadDocuments(c.text, "doc.yaml");
    ASSERT_FALSE(loaded.ok()) << c.name;
    EXPECT_NE(loaded.status().message().find(c.expected), std::string::npos)
        << c.name << ": expected '" << c.expected << "' in: " << loaded.status().message();
  }
}

TEST(YamlLimits, DocumentsWithinTheLimitsLoadWithTheirAliases) {
  // Aliases shared a few times, 63 levels of nesting under the root, a
  // document of exactly the node limit: all fine.
  auto shared = yaml::LoadDocument("base: &b {x: 1, y: [a, b]}\none: *b\ntwo: [*b, *b]\n",
                                   "doc.yaml");
  ASSERT_TRUE(shared.ok()) << shared.status().ToString();
  EXPECT_EQ((*shared)["two"][1]["y"][1].Scalar(), "b");
  std::string deep = "x: ";
  for (int i = 0; i < 63; ++i) deep += "[";
  for (int i = 0; i < 63; ++i) deep += "]";
  EXPECT_TRUE(yaml::LoadDocument(deep, "doc.yaml").ok());
  // A mapping and its three keys and three values: 7 nodes; one more is refused.
  yaml::LoadLimits limits;
  limits.max_nodes = 7;
  EXPECT_TRUE(yaml::LoadDocument("{a: 1, b: 2, c: 3}", "doc.yaml", limits).ok());
  auto over = yaml::LoadDocument("{a: 1, b: 2, c: [3]}", "doc.yaml", limits);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("more than 7 nodes"), std::string::npos)
      << over.status().message();
  auto two = yaml::LoadDocument("a: 1\n---\nb: 2\n", "doc.yaml");
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().message().find("more than one YAML document"), std::string::npos);
  auto empty = yaml::LoadDocument("", "doc.yaml");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->IsNull());
}

TEST(YamlLimits, ConfigFilesOverTheSizeLimitAreNotRead) {
  testing::TempDir dir;
  const std::string path = dir.Sub("big.yaml");
  std::ofstream(path, std::ios::binary) << std::string(2048, '#');
  auto small = yaml::ReadConfigFile(path, "budgets", 4096);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_EQ(small->size(), 2048u);
  auto big = yaml::ReadConfigFile(path, "budgets", 1024);
  ASSERT_FALSE(big.ok());
  EXPECT_TRUE(big.status().IsInvalidArgument());
  EXPECT_NE(big.status().message().find(
                fmt::format("cannot read budgets file '{}': 2048 bytes, over the limit of 1024 "
                            "bytes",
                            path)),
            std::string::npos)
      << big.status().message();
}

}  // namespace
}  // namespace bastion
