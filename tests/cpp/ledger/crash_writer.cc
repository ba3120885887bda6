// bastion_crash_writer PATH MODE THREADS
//
// Opens the ledger at PATH and appends records from THREADS threads forever
// with durability MODE (sync, group or async). After each Append returns it
// prints "ack <seq>" on its own line and flushes stdout, so a test that kills
// this process with SIGKILL knows exactly which records were acknowledged.
// Used by crash_test.cc; deliberately free of gtest.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bastion/ledger.h"

namespace {

bastion::Record MakeRecord(int thread, uint64_t i) {
  bastion::Record r;
  r.action = i % 3 == 0 ? "tool_call" : "model_call";
  r.agent_id = fmt::format("agent-{}", thread);
  r.agent_role = "crash-test";
  r.user_id = fmt::format("user-{}", i % 7);
  r.tenant_id = fmt::format("tenant-{}", i % 2);
  r.model = "gpt-4o-mini";
  if (i % 3 == 0) {
    r.tool = fmt::format("tool-{}", i % 4);
    r.operation = "write";
  }
  r.input_summary = fmt::format("thread {} request {}", thread, i);
  r.output_summary = "done";
  r.tokens = {100 + i, 50, 0, 0, 3};
  r.cost_nanousd = 1000 + static_cast<int64_t>(i);
  r.effect = i % 10 == 0 ? "deny" : "allow";
  if (r.effect == "deny") r.reasons.push_back({"crash-policy", "denied for the test"});
  r.duration_ns = 1000;
  r.trace_id = fmt::format("trace-{}-{}", thread, i / 4);
  r.span_id = fmt::format("span-{}-{}", thread, i);
  r.run_id = fmt::format("run-{}", thread);
  r.step_index = static_cast<int64_t>(i % 8);
  r.risk_level = i % 4 == 0 ? "high" : "low";
  r.attributes = {{"thread", std::to_string(thread)}, {"i", std::to_string(i)}};
  return r;  // timestamp_ns 0: the ledger stamps "now"
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s PATH sync|group|async THREADS\n", argv[0]);
    return 64;
  }
  const std::string path = argv[1];
  const auto mode = bastion::DurabilityFromName(argv[2]);
  const int threads = std::atoi(argv[3]);
  if (!mode || threads < 1) {
    std::fprintf(stderr, "bad mode '%s' or thread count '%s'\n", argv[2], argv[3]);
    return 64;
  }
  bastion::LedgerOptions options;
  options.default_durability = *mode;
  auto opened = bastion::Ledger::Open(path, options);
  if (!opened.ok()) {
    std::fprintf(stderr, "crash_writer: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<bastion::Ledger> ledger = std::move(*opened);

  std::mutex print_mu;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (uint64_t i = 0;; ++i) {
        auto seq = ledger->Append(MakeRecord(t, i), *mode);
        if (!seq.ok()) {
          std::lock_guard<std::mutex> lock(print_mu);
          std::fprintf(stderr, "crash_writer: append failed: %s\n",
                       seq.status().ToString().c_str());
          std::fflush(stderr);
          std::_Exit(2);
        }
        std::lock_guard<std::mutex> lock(print_mu);
        std::printf("ack %" PRIu64 "\n", *seq);
        std::fflush(stdout);
      }
    });
  }
  for (auto& w : workers) w.join();  // never returns: killed by the test
  return 0;
}
