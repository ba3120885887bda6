// PII detector benchmarks. Each measures FindPii and an in-run baseline on the
// same text in the same process — one memchr pass looking for '@', the least
// any email detector must do — and reports both rates and their ratio, so the
// figures survive a noisy machine.
//
//   build/bench/bench/pii_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "bastion/pii.h"

namespace bastion {
namespace {

using Clock = std::chrono::steady_clock;

// Turns of an ordinary support chat; three of them carry PII, the rest carry
// the numbers that must not match (order ids, dates, prices, versions, times).
const char* const kChatTurns[] = {
    "user: Hi, I ordered a standing desk last week (order #100234871) and it still "
    "hasn't shipped. The tracking page says 'label created' since Monday 2024-03-11.\n",
    "assistant: Sorry about the delay! I can see order 100234871 was packed on March 12 "
    "and is waiting for the carrier pickup. It should leave the warehouse by 5:30 pm.\n",
    "user: ok. can you send the invoice to maria.gonzalez@example.com instead of my work "
    "address? and my new phone is +1 (415) 555-2671 if the driver needs to call.\n",
    "assistant: Done, the invoice for $1,249.99 (incl. $49.00 shipping) goes to the new "
    "address and I updated the delivery contact. Anything else I can help with today?\n",
    "user: yes, I was charged twice on my card 4111 1111 1111 1111, can you refund one "
    "of the charges? Both show up as pending in the app (version 3.14.2).\n",
    "assistant: I see both authorizations. The duplicate will be released within 3-5 "
    "business days; no action is needed from you. Your reference is RF-20240312-0042.\n",
    "user: great, thanks. also our dev team wants API access, they pasted this in the "
    "ticket by mistake: sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3Hg5Ra0We. please revoke it.\n",
    "assistant: Thanks for flagging it. I have revoked that key and opened a security "
    "ticket so the team can create a new one from the dashboard at 10:00 tomorrow.\n",
};

std::string ChatText(size_t bytes) {
  std::string text;
  for (size_t i = 0; text.size() < bytes; ++i) {
    text += kChatTurns[i % (sizeof(kChatTurns) / sizeof(kChatTurns[0]))];
  }
  text.resize(bytes);
  return text;
}

// The baseline: bytes per second of counting '@' with memchr over `text`.
double MemchrRate(const std::string& text) {
  size_t bytes = 0, found = 0;
  const auto start = Clock::now();
  double secs = 0;
  while (secs < 0.2) {
    for (int r = 0; r < 64; ++r) {
      const char* p = text.data();
      const char* end = p + text.size();
      while ((p = static_cast<const char*>(std::memchr(p, '@', end - p))) != nullptr) {
        ++found;
        ++p;
      }
      bytes += text.size();
    }
    benchmark::DoNotOptimize(found);
    secs = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return bytes / secs;
}

void BM_FindPii(benchmark::State& state, size_t bytes, PiiKinds kinds) {
  const std::string text = ChatText(bytes);
  const double baseline = MemchrRate(text);
  size_t matches = 0;
  const auto start = Clock::now();
  for (auto _ : state) {
    std::vector<PiiMatch> found = FindPii(text, kinds);
    matches = found.size();
    benchmark::DoNotOptimize(found.data());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double rate = static_cast<double>(state.iterations()) * text.size() / secs;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["matches"] = static_cast<double>(matches);
  state.counters["MB_per_s"] = rate / 1e6;
  state.counters["memchr_MB_per_s"] = baseline / 1e6;
  state.counters["ratio"] = rate / baseline;
  state.counters["ns_per_KB"] = 1e9 * secs / state.iterations() / (text.size() / 1024.0);
}
BENCHMARK_CAPTURE(BM_FindPii, all_kinds_1KB, 1024, kAllPii)->UseRealTime();
BENCHMARK_CAPTURE(BM_FindPii, all_kinds_64KB, 64 * 1024, kAllPii)->UseRealTime();
BENCHMARK_CAPTURE(BM_FindPii, email_only_64KB, 64 * 1024, PiiKindBit(PiiKind::kEmail))
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_FindPii, numbers_64KB, 64 * 1024,
                  PiiKindBit(PiiKind::kPhone) | PiiKindBit(PiiKind::kCreditCard) |
                      PiiKindBit(PiiKind::kUsSsn) | PiiKindBit(PiiKind::kKrRrn) |
                      PiiKindBit(PiiKind::kIpv4))
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_FindPii, keys_and_secrets_64KB, 64 * 1024,
                  PiiKindBit(PiiKind::kApiKey) | PiiKindBit(PiiKind::kSecret))
    ->UseRealTime();

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
