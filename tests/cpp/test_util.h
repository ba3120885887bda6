// Helpers shared by the C++ tests: temporary directories and sample records.
#ifndef BASTION_TESTS_TEST_UTIL_H_
#define BASTION_TESTS_TEST_UTIL_H_

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/ledger.h"

namespace bastion::testing {

// A file's bytes ("" if it cannot be read).
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// 2026-11-21T12:00:00Z, in ns: the "now" of tests on a ManualClock.
inline constexpr int64_t kNoon = 1'795'262'400LL * 1'000'000'000;

// Replaces a file's bytes, creating its folders; fails the test if they
// cannot be written.
inline void WriteFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

inline void ExpectMentions(const Status& s, const std::string& text) {
  EXPECT_NE(s.message().find(text), std::string::npos)
      << "'" << s.message() << "' does not mention '" << text << "'";
}

// A fresh directory, removed with everything in it when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "bastion-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A realistic record; `i` varies ids so indexes get many distinct values.
inline Record SampleRecord(int i) {
  Record r;
  r.action = i % 3 == 0 ? "tool_call" : "model_call";
  r.agent_id = fmt::format("agent-{}", i % 5);
  r.agent_role = "support";
  r.user_id = fmt::format("user-{}", i % 7);
  r.tenant_id = fmt::format("tenant-{}", i % 2);
  r.model = "gpt-4o-mini";
  if (i % 3 == 0) {
    r.tool = fmt::format("tool-{}", i % 4);
    r.operation = "read";
  }
  r.input_summary = fmt::format("question number {} about an order", i);
  r.output_summary = "an answer";
  r.tokens = {static_cast<uint64_t>(100 + i), 50, 10, 0, 5};
  r.cost_nanousd = 1234567 + i;
  r.effect = i % 10 == 0 ? "deny" : "allow";
  if (r.effect == "deny") r.reasons.push_back({"no-refunds", "refunds need a human"});
  r.timestamp_ns = 1'700'000'000'000'000'000 + static_cast<int64_t>(i) * 1'000'000;
  r.duration_ns = 1'500'000;
  r.trace_id = fmt::format("trace-{}", i / 4);
  r.span_id = fmt::format("span-{}", i);
  r.run_id = fmt::format("run-{}", i / 8);
  r.step_index = i % 8;
  r.risk_level = i % 4 == 0 ? "high" : "low";
  r.policy_version = "p1";
  r.attributes = {{"channel", "web"}, {"order", fmt::format("A-{}", i)}};
  return r;
}

inline std::unique_ptr<Ledger> OpenOrDie(const std::string& path, LedgerOptions options = {}) {
  auto opened = Ledger::Open(path, options);
  EXPECT_TRUE(opened.ok()) << opened.status().ToString();
  return opened.ok() ? std::move(*opened) : nullptr;
}

// Every record of `ledger`, oldest first, after a flush; a failure to read
// fails the calling test.
inline std::vector<Record> AllRecords(Ledger* ledger) {
  EXPECT_TRUE(ledger->Flush().ok());
  Query q;
  q.newest_first = false;
  q.limit = 0;
  auto page = ledger->Find(q);
  EXPECT_TRUE(page.ok()) << page.status().ToString();
  std::vector<Record> out;
  if (!page.ok()) return out;
  for (const std::string& e : page->encoded) {
    auto stored = DecodeStoredRecord(e);
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    if (stored.ok()) out.push_back(stored->record);
  }
  return out;
}

}  // namespace bastion::testing

#endif  // BASTION_TESTS_TEST_UTIL_H_
