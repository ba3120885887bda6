// Signed checkpoint benchmarks: signing a checkpoint (body, Ed25519 signature,
// note) and opening one (strict parse of note and body, signature check), each
// against an in-run baseline of the bare OpenSSL Ed25519 operation on the same
// bytes, so the figures survive a noisy machine and show what the format costs.
//
//   build/bench/bench/evidence_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <openssl/evp.h>

#include <string>

#include "bastion/evidence.h"

namespace bastion {
namespace {

constexpr std::string_view kName = "audit.example.com/ledger";

Hash Root() {
  Hash h;
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(i * 31 + 7);
  return h;
}

SigningKey Key() {
  auto k = SigningKey::Generate(kName);
  if (!k.ok()) std::abort();
  return std::move(*k);
}

void BM_SignCheckpoint(benchmark::State& state) {
  const SigningKey key = Key();
  const Hash root = Root();
  uint64_t size = 1'000'000;
  for (auto _ : state) {
    auto note = SignCheckpoint(key, ++size, root);
    benchmark::DoNotOptimize(note);
  }
  state.counters["per_s"] = benchmark::Counter(double(state.iterations()),
                                               benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SignCheckpoint);

void BM_OpenCheckpoint(benchmark::State& state) {
  const SigningKey key = Key();
  auto v = NoteVerifier::Parse(key.VerifierText());
  auto note = SignCheckpoint(key, 1'000'000, Root());
  if (!v.ok() || !note.ok()) std::abort();
  for (auto _ : state) {
    auto cp = OpenCheckpoint(*note, *v);
    if (!cp.ok()) state.SkipWithError("checkpoint did not open");
    benchmark::DoNotOptimize(cp);
  }
  state.counters["per_s"] = benchmark::Counter(double(state.iterations()),
                                               benchmark::Counter::kIsRate);
}
BENCHMARK(BM_OpenCheckpoint);

// Baselines: one raw Ed25519 signature / verification of a checkpoint body.
// A fresh Ed25519 key straight from OpenSSL.
EVP_PKEY* RawKey() {
  EVP_PKEY* pkey = nullptr;
  EVP_PKEY_CTX* kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  EVP_PKEY_keygen_init(kctx);
  EVP_PKEY_keygen(kctx, &pkey);
  EVP_PKEY_CTX_free(kctx);
  if (pkey == nullptr) std::abort();
  return pkey;
}

void BM_RawEd25519Sign(benchmark::State& state) {
  EVP_PKEY* pkey = RawKey();
  const std::string body = CheckpointBody(kName, 1'000'000, Root());
  unsigned char sig[64];
  for (auto _ : state) {
    size_t len = sizeof sig;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, pkey);
    EVP_DigestSign(ctx, sig, &len, reinterpret_cast<const unsigned char*>(body.data()),
                   body.size());
    EVP_MD_CTX_free(ctx);
    benchmark::DoNotOptimize(sig);
  }
  EVP_PKEY_free(pkey);
  state.counters["per_s"] = benchmark::Counter(double(state.iterations()),
                                               benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RawEd25519Sign);

void BM_RawEd25519Verify(benchmark::State& state) {
  EVP_PKEY* pkey = RawKey();
  const std::string body = CheckpointBody(kName, 1'000'000, Root());
  unsigned char sig[64];
  size_t len = sizeof sig;
  EVP_MD_CTX* sctx = EVP_MD_CTX_new();
  EVP_DigestSignInit(sctx, nullptr, nullptr, nullptr, pkey);
  EVP_DigestSign(sctx, sig, &len, reinterpret_cast<const unsigned char*>(body.data()),
                 body.size());
  EVP_MD_CTX_free(sctx);
  for (auto _ : state) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pkey);
    const int ok = EVP_DigestVerify(ctx, sig, len,
                                    reinterpret_cast<const unsigned char*>(body.data()),
                                    body.size());
    EVP_MD_CTX_free(ctx);
    if (ok != 1) state.SkipWithError("raw verify failed");
  }
  EVP_PKEY_free(pkey);
  state.counters["per_s"] = benchmark::Counter(double(state.iterations()),
                                               benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RawEd25519Verify);

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
