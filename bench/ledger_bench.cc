// Ledger benchmarks. Each benchmark measures Bastion and an in-run baseline on
// the same data in the same process and reports both rates and their ratio,
// so the figures survive a noisy machine.
//
//   build/bench/bench/ledger_bench --benchmark_counters_tabular=true
//   BASTION_BENCH_RECORDS=1000000 (default) sets the ledger size.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <openssl/rand.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "bastion/ledger.h"
#include "bastion/merkle.h"
#include "bench_stats.h"
#include "ledger/hash_chain.h"
#include "ledger/record_codec.h"
#include "ledger/writer.h"
#include "util/sha256.h"

namespace bastion {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

size_t RecordCount() {
  const char* env = std::getenv("BASTION_BENCH_RECORDS");
  return env ? std::strtoull(env, nullptr, 10) : 1'000'000;
}

// A realistic mix: 20 agents, 1000 users (1000 records each at 1 M), 10
// tenants, model/tool calls and approvals, runs and traces of 10 steps.
Record MakeRecord(size_t i) {
  static const char* kActions[] = {"model_call", "tool_call", "model_call", "approval"};
  static const char* kEffects[] = {"allow", "allow", "allow", "modify", "deny", "require_approval"};
  Record r;
  r.action = kActions[i % 4];
  r.agent_id = fmt::format("agent-{:02}", i % 20);
  r.agent_role = "support";
  r.user_id = fmt::format("user-{:04}", i % 1000);
  r.tenant_id = fmt::format("tenant-{}", i % 10);
  r.model = "gpt-4o-mini-2024-07-18";
  if (r.action == "tool_call") {
    r.tool = fmt::format("tool-{:02}", i % 30);
    r.operation = "read";
    r.resource_id = fmt::format("order/{}", i % 50000);
  }
  r.input_summary = fmt::format("customer asks about order {} delivery date [masked]", i % 50000);
  r.output_summary = "answered with tracking link";
  r.tokens = {812 + i % 100, 95 + i % 50, 512, 0, i % 3 == 0 ? 64u : 0u};
  r.cost_nanousd = 3'100'000 + static_cast<int64_t>(i % 1000);
  r.effect = kEffects[i % 6];
  if (r.effect != "allow") r.reasons.push_back({"pii-redaction", "email in output"});
  r.timestamp_ns = 1'790'000'000'000'000'000 + static_cast<int64_t>(i) * 1'000'000;
  r.duration_ns = 850'000'000;
  r.trace_id = fmt::format("{:032x}", i / 10);
  r.span_id = fmt::format("{:016x}", i);
  r.run_id = fmt::format("run-{}", i / 10);
  r.step_index = static_cast<int64_t>(i % 10);
  r.risk_level = i % 5 == 0 ? "high" : "low";
  r.policy_version = "5f1c9a0e";
  r.attributes = {{"channel", "web"}, {"region", "eu-west-1"}};
  return r;
}

const std::vector<Record>& Records() {
  static const std::vector<Record> records = [] {
    std::vector<Record> v;
    v.reserve(RecordCount());
    for (size_t i = 0; i < RecordCount(); ++i) v.push_back(MakeRecord(i));
    return v;
  }();
  return records;
}

std::string FreshDir(const std::string& name) {
  const std::string dir = (fs::temp_directory_path() / ("bastion-bench-" + name)).string();
  fs::remove_all(dir);
  return dir;
}

// Baseline: what any hash-chained log on RocksDB must do at least — encode,
// SHA-256 chain, WriteBatch of 100 into one column family, no indexes.
double BaselineRate(const std::vector<Record>& records) {
  const std::string dir = FreshDir("baseline");
  rocksdb::Options o;
  o.create_if_missing = true;
  o.write_buffer_size = 64 << 20;
  o.max_background_jobs = 2;
  rocksdb::DB* raw;
  if (!rocksdb::DB::Open(o, dir, &raw).ok()) std::abort();
  std::unique_ptr<rocksdb::DB> db(raw);
  Sha256 sha;
  Hash prev{};
  std::string value;
  Hash digest;
  uint8_t salt[16];
  rocksdb::WriteBatch wb;
  const auto start = Clock::now();
  for (size_t i = 0; i < records.size(); ++i) {
    RAND_bytes(salt, sizeof(salt));
    codec::EncodeValue(records[i], salt, &value, &digest);
    prev = chain::Seal(&sha, &value, i + 1, prev, digest);
    wb.Put(codec::RecordKey(i + 1), value);
    if (wb.Count() == 100) {
      db->Write(rocksdb::WriteOptions(), &wb);
      wb.Clear();
    }
  }
  db->Write(rocksdb::WriteOptions(), &wb);
  db->FlushWAL(false);
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  db->Close();
  db.reset();
  fs::remove_all(dir);
  return records.size() / secs;
}

std::unique_ptr<Ledger> OpenLedger(const std::string& dir) {
  auto l = Ledger::Open(dir);
  if (!l.ok()) {
    fmt::print(stderr, "{}\n", l.status().ToString());
    std::abort();
  }
  return std::move(*l);
}

// Appends all records with `producers` threads; `batch` > 1 uses AppendBatch.
double AppendRate(const std::string& dir, Durability d, int producers, size_t batch,
                  size_t count) {
  const auto& records = Records();
  auto ledger = OpenLedger(dir);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < producers; ++t) {
    threads.emplace_back([&, t] {
      const size_t per = count / producers;
      const size_t lo = t * per, hi = t == producers - 1 ? count : lo + per;
      for (size_t i = lo; i < hi; i += batch) {
        if (batch == 1) {
          if (!ledger->Append(records[i], d).ok()) std::abort();
        } else {
          std::vector<Record> b(records.begin() + i,
                                records.begin() + std::min(hi, i + batch));
          if (!ledger->AppendBatch(std::move(b), d).ok()) std::abort();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  if (!ledger->Close().ok()) std::abort();  // drains the queue and fsyncs
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  return count / secs;
}

void BM_Append(benchmark::State& state, Durability d, int producers, size_t batch) {
  const auto& records = Records();
  // One producer waiting for every write is latency-bound: 10% of the records.
  const size_t count = d == Durability::kAsync || producers > 1 || batch > 1
                           ? records.size()
                           : records.size() / 10;
  double baseline = 0, rate = 0;
  for (auto _ : state) {
    baseline = BaselineRate(records);
    rate = AppendRate(FreshDir("append"), d, producers, batch, count);
  }
  state.counters["records"] = count;
  state.counters["records_per_s"] = rate;
  state.counters["baseline_per_s"] = baseline;
  state.counters["ratio"] = rate / baseline;
}
BENCHMARK_CAPTURE(BM_Append, async_1_producer, Durability::kAsync, 1, 1)
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Append, group_1_producer, Durability::kGroup, 1, 1)
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Append, group_8_producers, Durability::kGroup, 8, 1)
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Append, group_batches_of_100, Durability::kGroup, 1, 100)
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

// What the Merkle tree costs an append: the same async appends with the tree
// and without it (a writer switch for benchmarks only), alternated twice in
// one run; the better rate of each counts.
void BM_AppendMerkleTree(benchmark::State& state) {
  const size_t count = Records().size();
  double with_tree = 0, without = 0;
  for (auto _ : state) {
    for (int round = 0; round < 2; ++round) {
      SetMerkleTreeForBenchmarks(false);
      without = std::max(without, AppendRate(FreshDir("append-no-tree"), Durability::kAsync, 1, 1,
                                             count));
      SetMerkleTreeForBenchmarks(true);
      with_tree = std::max(with_tree, AppendRate(FreshDir("append-tree"), Durability::kAsync, 1,
                                                 1, count));
    }
  }
  fs::remove_all(FreshDir("append-no-tree"));
  fs::remove_all(FreshDir("append-tree"));
  state.counters["records"] = count;
  state.counters["with_tree_per_s"] = with_tree;
  state.counters["without_tree_per_s"] = without;
  state.counters["ratio"] = with_tree / without;
}
BENCHMARK(BM_AppendMerkleTree)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

// One producer appending one record at a time in `group` mode and waiting
// for each write: the latency a guarded call pays per record. The baseline is
// the floor for any RocksDB-backed log: encode, SHA-256 chain and one
// WAL-backed put of that record alone, in the same process.
void BM_GroupAppendLatency(benchmark::State& state) {
  const auto& records = Records();
  const size_t n = std::min<size_t>(records.size(), 200'000);
  std::vector<double> ours, floor_ns;  // us
  const std::string dir = FreshDir("latency-base");
  rocksdb::Options o;
  o.create_if_missing = true;
  o.write_buffer_size = 64 << 20;
  rocksdb::DB* raw;
  if (!rocksdb::DB::Open(o, dir, &raw).ok()) std::abort();
  std::unique_ptr<rocksdb::DB> db(raw);
  auto ledger = OpenLedger(FreshDir("latency"));
  Sha256 sha;
  Hash prev{}, digest;
  std::string value;
  uint8_t salt[16];
  size_t i = 0;
  for (auto _ : state) {
    const Record& r = records[i % n];
    auto t0 = Clock::now();
    if (!ledger->Append(r, Durability::kGroup).ok()) std::abort();
    auto t1 = Clock::now();
    RAND_bytes(salt, sizeof(salt));
    codec::EncodeValue(r, salt, &value, &digest);
    prev = chain::Seal(&sha, &value, i + 1, prev, digest);
    if (!db->Put(rocksdb::WriteOptions(), codec::RecordKey(i + 1), value).ok()) std::abort();
    auto t2 = Clock::now();
    ours.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    floor_ns.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    ++i;
  }
  (void)ledger->Close();
  db->Close();
  using bench::Percentile;
  state.counters["median_us"] = Percentile(ours, 0.5);
  state.counters["p99_us"] = Percentile(ours, 0.99);
  state.counters["floor_median_us"] = Percentile(floor_ns, 0.5);
  state.counters["floor_p99_us"] = Percentile(floor_ns, 0.99);
  state.counters["ratio"] = Percentile(ours, 0.5) / Percentile(floor_ns, 0.5);
}
BENCHMARK(BM_GroupAppendLatency)->Iterations(50'000)->UseRealTime();

// What one producer pays per async append (the writer thread does the rest,
// woken once per batch, not per record): the caller's time in Append against
// validating and encoding the same record alone, the floor of any append.
void BM_AsyncAppendCallerCost(benchmark::State& state) {
  const auto& records = Records();
  const size_t n = std::min<size_t>(records.size(), 200'000);
  std::vector<double> ours, floor_us;
  auto ledger = OpenLedger(FreshDir("async-cost"));
  std::string value;
  Hash digest;
  uint8_t salt[16];
  size_t i = 0;
  for (auto _ : state) {
    const Record& r = records[i % n];
    auto t0 = Clock::now();
    if (!ledger->Append(r, Durability::kAsync).ok()) std::abort();
    auto t1 = Clock::now();
    Record copy = r;
    if (!ValidateRecord(copy).ok()) std::abort();
    RAND_bytes(salt, sizeof(salt));
    codec::EncodeValue(copy, salt, &value, &digest);
    benchmark::DoNotOptimize(value.data());
    auto t2 = Clock::now();
    ours.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    floor_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    ++i;
  }
  if (!ledger->Close().ok()) std::abort();
  using bench::Percentile;
  state.counters["median_us"] = Percentile(ours, 0.5);
  state.counters["p99_us"] = Percentile(ours, 0.99);
  state.counters["floor_median_us"] = Percentile(floor_us, 0.5);
  state.counters["ratio"] = Percentile(ours, 0.5) / Percentile(floor_us, 0.5);
}
BENCHMARK(BM_AsyncAppendCallerCost)->Iterations(100'000)->UseRealTime();

// Sync appends for a fixed time with 1 and with 8 producers: group commit lets
// concurrent sync appends share an fsync.
double SyncRate(int producers, double seconds) {
  const auto& records = Records();
  auto ledger = OpenLedger(FreshDir("sync"));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> done{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int t = 0; t < producers; ++t) {
    threads.emplace_back([&, t] {
      size_t i = t;
      while (!stop.load(std::memory_order_relaxed)) {
        if (!ledger->Append(records[i % records.size()], Durability::kSync).ok()) std::abort();
        done.fetch_add(1, std::memory_order_relaxed);
        i += producers;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : threads) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  (void)ledger->Close();
  return done.load() / secs;
}

void BM_SyncGroupCommit(benchmark::State& state) {
  double one = 0, eight = 0;
  for (auto _ : state) {
    one = SyncRate(1, 2.0);
    eight = SyncRate(8, 2.0);
  }
  state.counters["1_producer_per_s"] = one;
  state.counters["8_producers_per_s"] = eight;
  state.counters["ratio"] = eight / one;
}
BENCHMARK(BM_SyncGroupCommit)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

// Verify over the ledger written above, against SHA-256 of the same stored
// bytes (read into memory first, one thread).
std::string VerifyLedgerDir() {
  static const std::string dir = [] {
    const std::string d = FreshDir("verify");
    AppendRate(d, Durability::kAsync, 1, 1, Records().size());
    return d;
  }();
  return dir;
}

double RawShaBytesPerSecond(const std::string& dir, uint64_t* total_bytes) {
  auto reader = Ledger::OpenReader(dir);
  if (!reader.ok()) std::abort();
  Query all;
  all.limit = 0;
  all.newest_first = false;
  auto values = (*reader)->Find(all);
  if (!values.ok()) std::abort();
  Sha256 sha;
  uint64_t bytes = 0;
  const auto start = Clock::now();
  for (const std::string& v : values->encoded) {
    sha.Update(v);
    benchmark::DoNotOptimize(sha.Final());
    bytes += v.size();
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  *total_bytes = bytes;
  return bytes / secs;
}

void BM_Verify(benchmark::State& state, bool check_indexes) {
  const std::string dir = VerifyLedgerDir();
  uint64_t bytes = 0;
  const double sha_rate = RawShaBytesPerSecond(dir, &bytes);
  auto reader = Ledger::OpenReader(dir);
  if (!reader.ok()) std::abort();
  double rate = 0;
  for (auto _ : state) {
    const auto start = Clock::now();
    VerifyOptions o;
    o.check_indexes = check_indexes;
    VerifyReport r = (*reader)->Verify(o);
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    if (!r.ok) {
      state.SkipWithError(r.message.c_str());
      return;
    }
    rate = r.bytes_checked / secs;
  }
  state.counters["MB_per_s"] = rate / 1e6;
  state.counters["sha256_MB_per_s"] = sha_rate / 1e6;
  state.counters["ratio"] = rate / sha_rate;
}
BENCHMARK_CAPTURE(BM_Verify, chain, false)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Verify, chain_and_indexes, true)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// Verify against a trusted tree head (the Merkle root recomputed from the
// records, chain only), against SHA-256 of the same stored bytes.
void BM_VerifyTrustedHead(benchmark::State& state) {
  const std::string dir = VerifyLedgerDir();
  uint64_t bytes = 0;
  const double sha_rate = RawShaBytesPerSecond(dir, &bytes);
  auto reader = Ledger::OpenReader(dir);
  if (!reader.ok()) std::abort();
  auto head = (*reader)->TreeHeadAt();
  if (!head.ok()) std::abort();
  double rate = 0, plain = 0;
  for (auto _ : state) {
    VerifyOptions o;
    o.check_indexes = false;
    auto start = Clock::now();
    VerifyReport r = (*reader)->Verify(o);
    plain = r.bytes_checked / std::chrono::duration<double>(Clock::now() - start).count();
    o.trusted = {*head};
    start = Clock::now();
    r = (*reader)->Verify(o);
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    if (!r.ok) {
      state.SkipWithError(r.message.c_str());
      return;
    }
    rate = r.bytes_checked / secs;
  }
  state.counters["MB_per_s"] = rate / 1e6;
  state.counters["without_trusted_MB_per_s"] = plain / 1e6;
  state.counters["sha256_MB_per_s"] = sha_rate / 1e6;
  state.counters["ratio"] = rate / sha_rate;
}
BENCHMARK(BM_VerifyTrustedHead)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();

// Inclusion proofs of random records in the tree of the whole 1 M-record
// ledger, by 1 and 2 threads sharing one reader (100 k proofs each); a proof
// of each thread is checked outside the timing.
void BM_InclusionProofs(benchmark::State& state) {
  const std::string dir = VerifyLedgerDir();
  auto reader = Ledger::OpenReader(dir);
  if (!reader.ok()) std::abort();
  Ledger* ledger = reader->get();
  auto head = ledger->TreeHeadAt();
  if (!head.ok()) std::abort();
  const int threads = static_cast<int>(state.range(0));
  constexpr size_t kPerThread = 100'000;
  double rate = 0;
  std::atomic<bool> failed{false};
  for (auto _ : state) {
    std::vector<std::thread> pool;
    const auto start = Clock::now();
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        uint64_t x = 88172645463325252ULL + t;
        uint64_t first = 0;
        for (size_t i = 0; i < kPerThread; ++i) {
          x ^= x << 13, x ^= x >> 7, x ^= x << 17;
          const uint64_t seq = 1 + x % head->size;
          if (i == 0) first = seq;
          auto proof = ledger->InclusionProof(seq, head->size);
          if (!proof.ok()) failed = true;
          benchmark::DoNotOptimize(proof);
        }
        auto rec = ledger->Get(first);
        auto proof = ledger->InclusionProof(first, head->size);
        if (!rec.ok() || !proof.ok() ||
            !VerifyInclusion(first - 1, head->size, MerkleLeafHash(rec->hash), *proof,
                             head->root)) {
          failed = true;
        }
      });
    }
    for (auto& th : pool) th.join();
    rate = threads * kPerThread / std::chrono::duration<double>(Clock::now() - start).count();
  }
  if (failed) {
    state.SkipWithError("a proof failed or does not verify");
    return;
  }
  state.counters["tree_size"] = head->size;
  state.counters["threads"] = threads;
  state.counters["proofs_per_s"] = rate;
}
BENCHMARK(BM_InclusionProofs)->Arg(1)->Arg(2)->Iterations(1)->UseRealTime();

// An indexed query returning 1000 of the records (one user's), and an
// intersection of two filters; baseline: reading the same number of records
// by sequence with one range scan.
void BM_Query(benchmark::State& state, int which) {
  const std::string dir = VerifyLedgerDir();
  auto reader = Ledger::OpenReader(dir);
  if (!reader.ok()) std::abort();
  size_t n = 0;
  int k = 0;
  for (auto _ : state) {
    Query q;
    q.limit = 1000;
    if (which == 0) {
      q.user_id = fmt::format("user-{:04}", (k++ * 37) % 1000);
    } else if (which == 1) {
      q.agent_id = fmt::format("agent-{:02}", (k++ * 7) % 20);
      q.effect = "deny";
    } else {
      q.cursor = fmt::format("s:{}", 1 + (k++ * 7919) % (Records().size() - 2000));
      q.newest_first = false;
    }
    auto r = (*reader)->Find(q);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
    n = r->encoded.size();
  }
  state.counters["returned"] = n;
}
BENCHMARK_CAPTURE(BM_Query, user_1000_of_1M, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Query, agent_and_effect, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Query, baseline_range_scan_1000, 2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
