#include <string>

#include <gtest/gtest.h>

#include "bastion/fleet.h"
#include "test_util.h"

namespace bastion {
namespace {

using bastion::testing::ExpectMentions;

TEST(FleetYaml, ReadsTheShortAndTheLongForm) {
  auto s = ParseFleetYaml("store: redis://cache:6379/2\n", "fleet.yaml");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->url, "redis://cache:6379/2");
  EXPECT_EQ(s->timeout_ns, 1'000'000'000);
  EXPECT_EQ(s->prefix, "bastion");
  EXPECT_FALSE(s->degrade_to_local);
  s = ParseFleetYaml(
      "version: 1\nstore:\n  url: redis://cache\n  timeout: 250ms\n  prefix: support-prod\n"
      "  degraded_cap_usd: 0.50\n",
      "fleet.yaml");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->timeout_ns, 250'000'000);
  EXPECT_EQ(s->prefix, "support-prod");
  EXPECT_TRUE(s->degrade_to_local);
  EXPECT_EQ(s->degraded_cap_nanousd, 500'000'000);
}

TEST(FleetYaml, EveryMistakeNamesItsPlace) {
  struct Case {
    const char* yaml;
    const char* mentions;
  } cases[] = {
      {"", "fleet.yaml"},
      {"version: 1\n", "needs a 'store'"},
      {"version: 2\nstore: redis://h\n", "fleet.yaml:1:10: version: unsupported version 2"},
      {"stor: redis://h\n", "did you mean 'store'"},
      {"store:\n  timeout: 1s\n", "fleet.yaml:2:3: store: needs a 'url'"},
      {"store:\n  url: redis://h\n  timeout: soon\n", "fleet.yaml:3:12: store.timeout"},
      {"store:\n  url: redis://h\n  timeout: 2h\n", "store.timeout: must be at most 1h"},
      {"store:\n  url: redis://h\n  prefix: 'a{b}'\n", "store.prefix: must not contain"},
      {"store:\n  url: redis://h\n  degraded_cap_usd: 0\n", "store.degraded_cap_usd: must be more"},
      {"store:\n  url: redis://h\n  pool: 4\n", "fleet.yaml:3:3"},
      {"store: http://h\n", "the scheme must be redis:// or unix://"},
      {"store: redis://u:hunter2@h:0\n", "the port must be 1..65535"},
      {"store: [a, b]\n", "fleet.yaml:1:8"},
  };
  for (const Case& c : cases) {
    auto s = ParseFleetYaml(c.yaml, "fleet.yaml");
    ASSERT_FALSE(s.ok()) << c.yaml;
    EXPECT_TRUE(s.status().IsInvalidArgument()) << c.yaml;
    ExpectMentions(s.status(), c.mentions);
    EXPECT_EQ(s.status().message().find("hunter2"), std::string::npos) << s.status().message();
  }
}

TEST(FleetYaml, AMissingFileIsNotFound) {
  auto s = LoadFleetYamlFile("/nonexistent/fleet.yaml");
  EXPECT_TRUE(s.status().IsNotFound()) << s.status().ToString();
  ExpectMentions(s.status(), "/nonexistent/fleet.yaml");
}

}  // namespace
}  // namespace bastion
