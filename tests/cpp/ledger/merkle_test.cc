// The RFC 9162 Merkle tree: the ledger's roots and proofs against a reference
// written straight from RFC 9162's recursive definitions (MTH, PATH, PROOF /
// SUBPROOF), first on the pure functions, then through a real ledger.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <bit>
#include <functional>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>

#include "bastion/evidence.h"
#include "bastion/ledger.h"
#include "bastion/merkle.h"
#include "ledger/hash_chain.h"
#include "ledger/index_keys.h"
#include "ledger/merkle.h"
#include "ledger/raw_store.h"
#include "ledger/record_codec.h"
#include "ledger/writer.h"
#include "test_util.h"

namespace bastion {
namespace {

// ---- The reference: RFC 9162 section 2.1, recursively, with OpenSSL. ----

Hash Sha(const std::string& bytes) {
  Hash h;
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), h.data());
  return h;
}
std::string Bytes(const Hash& h) { return std::string(reinterpret_cast<const char*>(h.data()), 32); }

// k: the largest power of two smaller than n (n > 1).
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

struct Reference {
  std::vector<Hash> inputs;  // D[0..n): the leaves' inputs (chain hashes)

  Hash Mth(uint64_t lo, uint64_t hi) const {
    if (hi == lo) return Sha("");
    if (hi - lo == 1) return Sha(std::string(1, '\0') + Bytes(inputs[lo]));
    auto [it, fresh] = memo.try_emplace({lo, hi});  // only saves time: same definition
    if (fresh) {
      const uint64_t k = SplitPoint(hi - lo);
      it->second = Sha(std::string(1, '\1') + Bytes(Mth(lo, lo + k)) + Bytes(Mth(lo + k, hi)));
    }
    return it->second;
  }
  mutable std::map<std::pair<uint64_t, uint64_t>, Hash> memo;
  // PATH(m, D[lo:hi]).
  std::vector<Hash> Path(uint64_t m, uint64_t lo, uint64_t hi) const {
    const uint64_t n = hi - lo;
    if (n == 1) return {};
    const uint64_t k = SplitPoint(n);
    std::vector<Hash> out;
    if (m < k) {
      out = Path(m, lo, lo + k);
      out.push_back(Mth(lo + k, hi));
    } else {
      out = Path(m - k, lo + k, hi);
      out.push_back(Mth(lo, lo + k));
    }
    return out;
  }
  // SUBPROOF(m, D[lo:hi], b).
  std::vector<Hash> Subproof(uint64_t m, uint64_t lo, uint64_t hi, bool b) const {
    const uint64_t n = hi - lo;
    if (m == n) {
      if (b) return {};
      return {Mth(lo, hi)};
    }
    const uint64_t k = SplitPoint(n);
    std::vector<Hash> out;
    if (m <= k) {
      out = Subproof(m, lo, lo + k, b);
      out.push_back(Mth(lo + k, hi));
    } else {
      out = Subproof(m - k, lo + k, hi, false);
      out.push_back(Mth(lo, lo + k));
    }
    return out;
  }
  std::vector<Hash> Proof(uint64_t m, uint64_t n) const {
    if (m == n) return {};  // RFC 9162: the proof between equal sizes is empty
    return Subproof(m, 0, n, true);
  }
};

Hash Input(uint64_t i) { return Sha(fmt::format("chain hash of record {}", i + 1)); }

// The ledger's side without RocksDB: every perfect node, as a writer's
// compact range emits them, and the proofs the plans assemble from them.
struct Tree {
  Sha256 sha;
  merkle::CompactRange range;
  std::map<std::pair<int, uint64_t>, Hash> nodes;

  void Append(const Hash& input) {
    range.AppendLeaf(&sha, merkle::LeafHash(&sha, input.data()),
                     [&](uint8_t level, uint64_t index, const Hash& h) {
                       EXPECT_TRUE(nodes.emplace(std::make_pair(level, index), h).second)
                           << "node (" << int(level) << ", " << index << ") emitted twice";
                     });
  }
  std::vector<Hash> Fetch(const std::vector<merkle::NodeId>& ids) {
    std::vector<Hash> out;
    for (const auto& id : ids) {
      auto it = nodes.find({id.level, id.index});
      EXPECT_NE(it, nodes.end()) << "node (" << int(id.level) << ", " << id.index
                                 << ") is not stored";
      out.push_back(it == nodes.end() ? Hash{} : it->second);
    }
    return out;
  }
  Hash Root(uint64_t n) {
    const auto ids = merkle::Decompose(0, n);
    const auto hashes = Fetch(ids);
    return merkle::Fold(&sha, hashes.data(), hashes.size());
  }
  std::vector<Hash> Inclusion(uint64_t m, uint64_t n) {
    const merkle::ProofPlan plan = merkle::InclusionPlan(m, n);
    return plan.Assemble(&sha, Fetch(plan.nodes));
  }
  std::vector<Hash> Consistency(uint64_t m, uint64_t n) {
    const merkle::ProofPlan plan = merkle::ConsistencyPlan(m, n);
    return plan.Assemble(&sha, Fetch(plan.nodes));
  }
};

std::string Hex(const std::vector<Hash>& proof) {
  std::string out;
  for (const Hash& h : proof) out += HashToHex(h).substr(0, 8) + " ";
  return out;
}

class MerkleFunctions : public ::testing::Test {
 protected:
  static constexpr uint64_t kLeaves = 3000;
  static void SetUpTestSuite() {
    ref_ = new Reference();
    tree_ = new Tree();
    for (uint64_t i = 0; i < kLeaves; ++i) {
      ref_->inputs.push_back(Input(i));
      tree_->Append(ref_->inputs.back());
    }
  }
  static void TearDownTestSuite() {
    delete ref_;
    delete tree_;
  }
  static Reference* ref_;
  static Tree* tree_;
};
Reference* MerkleFunctions::ref_ = nullptr;
Tree* MerkleFunctions::tree_ = nullptr;

TEST_F(MerkleFunctions, EmptyTreeRootIsHashOfEmptyString) {
  EXPECT_EQ(merkle::EmptyRoot(), Sha(""));
  EXPECT_EQ(tree_->Root(0), Sha(""));
}

TEST_F(MerkleFunctions, LeafHashIsPrefixedChainHash) {
  const Hash in = Input(7);
  EXPECT_EQ(MerkleLeafHash(in), Sha(std::string(1, '\0') + Bytes(in)));
  EXPECT_EQ(MerkleLeafHash(in), ref_->Mth(7, 8));
}

TEST_F(MerkleFunctions, RootsMatchTheReferenceForEverySize) {
  for (uint64_t n = 0; n <= 300; ++n) {
    ASSERT_EQ(tree_->Root(n), ref_->Mth(0, n)) << "tree size " << n;
  }
  std::mt19937_64 rng(1);
  for (int i = 0; i < 20; ++i) {
    const uint64_t n = 301 + rng() % (kLeaves - 300);
    ASSERT_EQ(tree_->Root(n), ref_->Mth(0, n)) << "tree size " << n;
  }
  ASSERT_EQ(tree_->Root(kLeaves), ref_->Mth(0, kLeaves));
}

TEST_F(MerkleFunctions, CompactRangeRootIsTheTreeRoot) {
  Tree t;
  for (uint64_t n = 1; n <= 300; ++n) {
    t.Append(ref_->inputs[n - 1]);
    ASSERT_EQ(t.range.Root(&t.sha), ref_->Mth(0, n)) << "tree size " << n;
    ASSERT_EQ(t.range.roots().size(), static_cast<size_t>(std::popcount(n)));
  }
}

TEST_F(MerkleFunctions, InclusionProofsMatchTheReferenceForEveryPosition) {
  for (uint64_t n = 1; n <= 300; ++n) {
    const Hash root = ref_->Mth(0, n);
    for (uint64_t m = 0; m < n; ++m) {
      const std::vector<Hash> proof = tree_->Inclusion(m, n);
      const std::vector<Hash> want = ref_->Path(m, 0, n);
      ASSERT_EQ(proof, want) << "leaf " << m << " of " << n << ": got " << Hex(proof)
                             << "want " << Hex(want);
      ASSERT_TRUE(VerifyInclusion(m, n, ref_->Mth(m, m + 1), proof, root))
          << "leaf " << m << " of " << n;
    }
  }
}

TEST_F(MerkleFunctions, InclusionProofsMatchTheReferenceInLargerTrees) {
  std::mt19937_64 rng(2);
  for (int i = 0; i < 40; ++i) {
    const uint64_t n = 301 + rng() % (kLeaves - 300);
    const Hash root = ref_->Mth(0, n);
    for (uint64_t m : {uint64_t{0}, n - 1, rng() % n, rng() % n, rng() % n}) {
      const std::vector<Hash> proof = tree_->Inclusion(m, n);
      ASSERT_EQ(proof, ref_->Path(m, 0, n)) << "leaf " << m << " of " << n;
      ASSERT_TRUE(VerifyInclusion(m, n, ref_->Mth(m, m + 1), proof, root));
    }
  }
}

TEST_F(MerkleFunctions, ConsistencyProofsMatchTheReferenceForAllPairs) {
  for (uint64_t n = 1; n <= 100; ++n) {
    const Hash new_root = ref_->Mth(0, n);
    for (uint64_t m = 1; m <= n; ++m) {
      const std::vector<Hash> proof = tree_->Consistency(m, n);
      const std::vector<Hash> want = ref_->Proof(m, n);
      ASSERT_EQ(proof, want) << m << " -> " << n << ": got " << Hex(proof) << "want "
                             << Hex(want);
      ASSERT_TRUE(VerifyConsistency(m, n, ref_->Mth(0, m), new_root, proof))
          << m << " -> " << n;
    }
  }
}

TEST_F(MerkleFunctions, ConsistencyProofsMatchTheReferenceInLargerTrees) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200; ++i) {
    uint64_t a = 1 + rng() % kLeaves, b = 1 + rng() % kLeaves;
    if (a > b) std::swap(a, b);
    const std::vector<Hash> proof = tree_->Consistency(a, b);
    ASSERT_EQ(proof, ref_->Proof(a, b)) << a << " -> " << b;
    ASSERT_TRUE(VerifyConsistency(a, b, ref_->Mth(0, a), ref_->Mth(0, b), proof))
        << a << " -> " << b;
  }
}

TEST_F(MerkleFunctions, AlteredInclusionProofsFail) {
  std::mt19937_64 rng(4);
  for (uint64_t n = 1; n <= 70; ++n) {
    const Hash root = ref_->Mth(0, n);
    for (uint64_t m = 0; m < n; ++m) {
      const Hash leaf = ref_->Mth(m, m + 1);
      const std::vector<Hash> proof = tree_->Inclusion(m, n);
      const std::string what = fmt::format("leaf {} of {}", m, n);
      // Another leaf, root, position or size.
      EXPECT_FALSE(VerifyInclusion(m, n, ref_->Mth((m + 1) % (n + 1), (m + 1) % (n + 1) + 1),
                                   proof, root)) << what;
      Hash bad_root = root;
      bad_root[rng() % 32] ^= 1;
      EXPECT_FALSE(VerifyInclusion(m, n, leaf, proof, bad_root)) << what;
      // (A proof of the same shape in a larger tree may verify: the size is
      // authenticated only by the shape of the path. Sizes whose paths differ
      // in length fail.)
      if (merkle::InclusionPlan(m, n + 1).elements.size() != proof.size()) {
        EXPECT_FALSE(VerifyInclusion(m, n + 1, leaf, proof, root)) << what;
      }
      if (n > 1) {
        EXPECT_FALSE(VerifyInclusion((m + 1) % n, n, leaf, proof, root)) << what;
      }
      EXPECT_FALSE(VerifyInclusion(n, n, leaf, proof, root)) << what << ": index == size";
      // A flipped bit, a missing or an extra element.
      for (size_t i = 0; i < proof.size(); ++i) {
        std::vector<Hash> p = proof;
        p[i][rng() % 32] ^= static_cast<uint8_t>(1 << (rng() % 8));
        EXPECT_FALSE(VerifyInclusion(m, n, leaf, p, root)) << what << ", element " << i;
      }
      if (!proof.empty()) {
        std::vector<Hash> p(proof.begin(), proof.end() - 1);
        EXPECT_FALSE(VerifyInclusion(m, n, leaf, p, root)) << what << ", last dropped";
      }
      std::vector<Hash> p = proof;
      p.push_back(root);
      EXPECT_FALSE(VerifyInclusion(m, n, leaf, p, root)) << what << ", one added";
    }
  }
}

TEST_F(MerkleFunctions, AlteredConsistencyProofsFail) {
  std::mt19937_64 rng(5);
  for (uint64_t n = 1; n <= 60; ++n) {
    for (uint64_t m = 1; m <= n; ++m) {
      const Hash old_root = ref_->Mth(0, m), new_root = ref_->Mth(0, n);
      const std::vector<Hash> proof = tree_->Consistency(m, n);
      const std::string what = fmt::format("{} -> {}", m, n);
      Hash bad = old_root;
      bad[rng() % 32] ^= 0x80;
      EXPECT_FALSE(VerifyConsistency(m, n, bad, new_root, proof)) << what;
      bad = new_root;
      bad[rng() % 32] ^= 0x01;
      EXPECT_FALSE(VerifyConsistency(m, n, old_root, bad, proof)) << what;
      // Sizes are authenticated by the proof's shape only (see above).
      if (merkle::ConsistencyPlan(m, n + 1).elements.size() != proof.size()) {
        EXPECT_FALSE(VerifyConsistency(m, n + 1, old_root, new_root, proof)) << what;
      }
      if (m > 1 && merkle::ConsistencyPlan(m - 1, n).elements.size() != proof.size()) {
        EXPECT_FALSE(VerifyConsistency(m - 1, n, old_root, new_root, proof)) << what;
      }
      for (size_t i = 0; i < proof.size(); ++i) {
        std::vector<Hash> p = proof;
        p[i][rng() % 32] ^= 0x10;
        EXPECT_FALSE(VerifyConsistency(m, n, old_root, new_root, p)) << what << ", element " << i;
      }
      if (!proof.empty()) {
        std::vector<Hash> p(proof.begin() + 1, proof.end());
        EXPECT_FALSE(VerifyConsistency(m, n, old_root, new_root, p)) << what << ", first dropped";
      }
      std::vector<Hash> p = proof;
      p.push_back(new_root);
      EXPECT_FALSE(VerifyConsistency(m, n, old_root, new_root, p)) << what << ", one added";
    }
  }
}

TEST_F(MerkleFunctions, ConsistencyEdgeCases) {
  const Hash r5 = ref_->Mth(0, 5);
  EXPECT_TRUE(VerifyConsistency(5, 5, r5, r5, {}));
  EXPECT_FALSE(VerifyConsistency(5, 5, r5, ref_->Mth(0, 6), {}));
  EXPECT_FALSE(VerifyConsistency(5, 5, r5, r5, {r5}));
  EXPECT_FALSE(VerifyConsistency(0, 5, Sha(""), r5, {})) << "nothing to prove from size 0";
  EXPECT_FALSE(VerifyConsistency(6, 5, ref_->Mth(0, 6), r5, tree_->Consistency(5, 6)));
  EXPECT_FALSE(VerifyInclusion(0, 0, ref_->Mth(0, 1), {}, Sha("")));
}

TEST_F(MerkleFunctions, SliceRangesMergeIntoTheWholeTree) {
  // What verification does: aligned slices build their own compact ranges,
  // merged in order by appending their roots.
  for (uint64_t n : {uint64_t{1}, uint64_t{64}, uint64_t{65}, uint64_t{200}, uint64_t{257}}) {
    Sha256 sha;
    merkle::CompactRange whole;
    std::map<std::pair<int, uint64_t>, Hash> emitted;
    auto keep = [&](uint8_t l, uint64_t i, const Hash& h) { emitted[{l, i}] = h; };
    for (uint64_t lo = 0; lo < n; lo += 64) {
      merkle::CompactRange slice(lo);
      for (uint64_t i = lo; i < std::min(n, lo + 64); ++i) {
        slice.AppendLeaf(&sha, merkle::LeafHash(&sha, ref_->inputs[i].data()), keep);
      }
      uint64_t at = slice.begin();
      for (const Hash& h : slice.roots()) {
        const int level = std::bit_width(slice.end() - at) - 1;
        whole.AppendNode(&sha, level, h, keep);
        at += uint64_t{1} << level;
      }
    }
    EXPECT_EQ(whole.Root(&sha), ref_->Mth(0, n)) << n;
    for (const auto& [id, h] : emitted) {
      EXPECT_EQ(h, tree_->nodes.at(id)) << "node (" << id.first << ", " << id.second << ")";
    }
  }
}

// ---- Through a real ledger ----

using testing::OpenOrDie;
using testing::RawDb;
using testing::SampleRecord;
using testing::SeqKey;
using testing::TempDir;

std::string Describe(const VerifyReport& r) {
  return fmt::format("ok={} problem={} bad_seq={} message='{}' error='{}'", r.ok,
                     VerifyProblemName(r.problem), r.bad_seq, r.message, r.error.ToString());
}

// The reference over a ledger's stored chain hashes, records 1..n.
Reference ReferenceOf(Ledger* ledger, uint64_t n) {
  Reference ref;
  for (uint64_t seq = 1; seq <= n; ++seq) {
    auto rec = ledger->Get(seq);
    EXPECT_TRUE(rec.ok()) << rec.status().ToString();
    ref.inputs.push_back(rec.ok() ? rec->hash : Hash{});
  }
  return ref;
}

void AppendSamples(Ledger* ledger, int from, int count) {
  std::vector<Record> batch;
  for (int i = from; i < from + count; ++i) batch.push_back(SampleRecord(i));
  auto first = ledger->AppendBatch(std::move(batch), Durability::kGroup);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(*first, static_cast<uint64_t>(from) + 1);
}

// Every root, every inclusion proof of sizes up to `all_upto` and a sample
// beyond, and consistency proofs, against the reference.
void ExpectMatchesReference(Ledger* ledger, const Reference& ref, uint64_t all_upto) {
  const uint64_t n = ref.inputs.size();
  auto head = ledger->TreeHeadAt();
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->size, n);
  EXPECT_EQ(head->root, ref.Mth(0, n));
  for (uint64_t size = 0; size <= n; ++size) {
    auto at = ledger->TreeHeadAt(size);
    ASSERT_TRUE(at.ok()) << at.status().ToString();
    ASSERT_EQ(at->root, ref.Mth(0, size)) << "tree size " << size;
  }
  for (uint64_t size = 1; size <= n; size += size < all_upto ? 1 : 37) {
    const Hash root = ref.Mth(0, size);
    for (uint64_t seq = 1; seq <= size; seq += size <= all_upto ? 1 : 13) {
      auto proof = ledger->InclusionProof(seq, size);
      ASSERT_TRUE(proof.ok()) << proof.status().ToString();
      ASSERT_EQ(*proof, ref.Path(seq - 1, 0, size)) << "record " << seq << " of " << size;
      ASSERT_TRUE(VerifyInclusion(seq - 1, size, MerkleLeafHash(ref.inputs[seq - 1]), *proof, root));
    }
    for (uint64_t old = 1; old <= size; old += size <= all_upto ? 1 : 11) {
      auto proof = ledger->ConsistencyProof(old, size);
      ASSERT_TRUE(proof.ok()) << proof.status().ToString();
      ASSERT_EQ(*proof, ref.Proof(old, size)) << old << " -> " << size;
      ASSERT_TRUE(VerifyConsistency(old, size, ref.Mth(0, old), root, *proof));
    }
  }
  auto last = ledger->InclusionProof(n);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, ref.Path(n - 1, 0, n)) << "the head is the default tree size";
}

TEST(MerkleLedger, StoredTreeMatchesTheReferenceAcrossReopenAndInAReader) {
  TempDir dir;
  const std::string path = dir.Sub("ledger");
  {
    auto ledger = OpenOrDie(path);
    auto empty = ledger->TreeHeadAt();
    ASSERT_TRUE(empty.ok()) << empty.status().ToString();
    EXPECT_EQ(empty->size, 0u);
    EXPECT_EQ(empty->root, Sha("")) << "the empty tree's root is SHA-256 of nothing";
    // Batches of odd sizes, and single appends, so batches end anywhere.
    int next = 0;
    for (int count : {1, 1, 1, 5, 17, 3, 40, 1, 64, 2}) {
      AppendSamples(ledger.get(), next, count);
      next += count;
    }
    ASSERT_EQ(next, 135);
    ExpectMatchesReference(ledger.get(), ReferenceOf(ledger.get(), 135), 80);
    ASSERT_TRUE(ledger->Close().ok());
  }
  auto ledger = OpenOrDie(path);
  AppendSamples(ledger.get(), 135, 70);  // continues from the restored right edge
  for (int i = 205; i < 210; ++i) ASSERT_TRUE(ledger->Append(SampleRecord(i)).ok());
  const Reference ref = ReferenceOf(ledger.get(), 210);
  ExpectMatchesReference(ledger.get(), ref, 40);
  ASSERT_TRUE(ledger->Flush().ok());

  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  ExpectMatchesReference(reader->get(), ref, 20);
  AppendSamples(ledger.get(), 210, 30);
  ASSERT_TRUE(ledger->Flush().ok());
  auto stale = (*reader)->TreeHeadAt();
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->size, 210u) << "a reader answers as of its last refresh";
  ASSERT_TRUE((*reader)->Refresh().ok());
  auto fresh = (*reader)->TreeHeadAt();
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->size, 240u);
  EXPECT_EQ(fresh->root, ReferenceOf(ledger.get(), 240).Mth(0, 240));
  VerifyReport report = (*reader)->Verify({});
  EXPECT_TRUE(report.ok) << Describe(report);
}

TEST(MerkleLedger, ProofArgumentsOutOfRangeAreRefusedNamingTheNumbers) {
  TempDir dir;
  auto ledger = OpenOrDie(dir.Sub("ledger"));
  AppendSamples(ledger.get(), 0, 10);
  auto past = ledger->TreeHeadAt(11);
  ASSERT_TRUE(past.status().IsInvalidArgument());
  testing::ExpectMentions(past.status(), "11");
  for (auto [seq, size] : {std::pair<uint64_t, uint64_t>{0, 5}, {6, 5}, {3, 11}}) {
    auto proof = ledger->InclusionProof(seq, size);
    ASSERT_TRUE(proof.status().IsInvalidArgument()) << seq << " in " << size;
    testing::ExpectMentions(proof.status(), fmt::format("record {} in the tree of size {}", seq, size));
  }
  EXPECT_TRUE(ledger->InclusionProof(11).status().IsInvalidArgument());
  for (auto [m, n] : {std::pair<uint64_t, uint64_t>{0, 5}, {6, 5}, {3, 11}}) {
    auto proof = ledger->ConsistencyProof(m, n);
    ASSERT_TRUE(proof.status().IsInvalidArgument()) << m << " -> " << n;
    testing::ExpectMentions(proof.status(), fmt::format("from tree size {} to {}", m, n));
  }
  auto same = ledger->ConsistencyProof(7, 7);
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(same->empty());
}

TEST(MerkleLedger, CheckpointsAreStoredInOrderAndSurviveReopen) {
  TempDir dir;
  const std::string path = dir.Sub("ledger");
  {
    auto ledger = OpenOrDie(path);
    AppendSamples(ledger.get(), 0, 300);
    auto none = ledger->Checkpoints();
    ASSERT_TRUE(none.ok());
    EXPECT_TRUE(none->empty());
    for (auto [size, key] : {std::pair<uint64_t, uint32_t>{256, 7}, {10, 9}, {256, 3}, {300, 1}}) {
      ASSERT_TRUE(ledger->PutCheckpoint({size, key, fmt::format("note {} {}\n", size, key)}).ok());
    }
    ASSERT_TRUE(ledger->PutCheckpoint({10, 9, "replaced\n"}).ok());
    Status past = ledger->PutCheckpoint({301, 1, "x"});
    EXPECT_TRUE(past.IsInvalidArgument()) << past.ToString();
    testing::ExpectMentions(past, "301");
    ASSERT_TRUE(ledger->Close().ok());
  }
  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.ok());
  auto cps = (*reader)->Checkpoints();
  ASSERT_TRUE(cps.ok()) << cps.status().ToString();
  ASSERT_EQ(cps->size(), 4u);
  const std::vector<std::tuple<uint64_t, uint32_t, std::string>> want = {
      {10, 9, "replaced\n"}, {256, 3, "note 256 3\n"}, {256, 7, "note 256 7\n"},
      {300, 1, "note 300 1\n"}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(std::make_tuple((*cps)[i].size, (*cps)[i].key_id, (*cps)[i].note), want[i]) << i;
  }
  EXPECT_TRUE((*reader)->PutCheckpoint({1, 1, "x"}).IsFailedPrecondition());
  // Checkpoints live beside the nodes and never disturb the tree.
  VerifyReport report = (*reader)->Verify({});
  EXPECT_TRUE(report.ok) << Describe(report);
}

// Rewrites a closed ledger from record `from` on, as an attacker with write
// access would: each record's value comes from `edit` (nullopt: keep it),
// chain hashes are resealed from `from` to `last`, records past `last` are
// removed, and the head, the posting lists (rebuilt by the next writer) and
// the Merkle tree are made to match, honestly.
void Rewrite(const std::string& path, uint64_t from, uint64_t last,
             const std::function<void(uint64_t, Record*)>& edit) {
  auto db = RawDb::Open(path);
  ASSERT_NE(db, nullptr);
  Sha256 sha;
  Hash prev{};
  if (from > 1) {
    codec::ValueView view;
    const std::string value = db->Get(db->records(), SeqKey(from - 1));
    ASSERT_TRUE(codec::ParseValue(value, &view).ok());
    std::memcpy(prev.data(), view.hash.data(), 32);
  }
  for (const auto& [key, value] : db->Scan(db->records())) {
    const uint64_t seq = codec::GetFixed64BE(key.data());
    if (seq < from) continue;
    auto stored = DecodeStoredRecord(value);
    ASSERT_TRUE(stored.ok());
    if (seq > last) {
      db->Delete(db->records(), key);
      db->Delete(db->index(), index::TimeKey(stored->record.timestamp_ns, seq));
      continue;
    }
    std::string v = value;
    Hash digest;
    if (edit) {
      Record r = stored->record;
      edit(seq, &r);
      const uint8_t salt[codec::kSaltBytes] = {1, 2, 3};
      codec::EncodeValue(r, salt, &v, &digest);
    } else {
      codec::ValueView view;
      ASSERT_TRUE(codec::ParseValue(v, &view).ok());
      digest = codec::PersonalDigest(view.personal);
    }
    prev = chain::Seal(&sha, &v, seq, prev, digest);
    db->Put(db->records(), key, v);
  }
  db->Put(db->meta(), "head", EncodeHead({last, prev}));
  // The posting lists: dropped, with the mark at 0; the next writer rebuilds them.
  for (const auto& [key, value] : db->Scan(db->index())) {
    if (static_cast<uint8_t>(key[0]) != static_cast<uint8_t>(index::Kind::kTime)) {
      db->Delete(db->index(), key);
    }
  }
  db->Put(db->meta(), "indexed", EncodeIndexed(0));
  // The tree, recomputed from the resealed chain.
  for (const auto& [key, value] : db->Scan(db->tree())) {
    if (key.size() == merkle::kNodeKeyBytes) db->Delete(db->tree(), key);
  }
  merkle::CompactRange range;
  for (const auto& [key, value] : db->Scan(db->records())) {
    codec::ValueView view;
    ASSERT_TRUE(codec::ParseValue(value, &view).ok());
    range.AppendLeaf(&sha, merkle::LeafHash(&sha, reinterpret_cast<const uint8_t*>(view.hash.data())),
                     [&](uint8_t level, uint64_t index, const Hash& h) {
                       if (level < merkle::kLowestStoredLevel) return;
                       db->Put(db->tree(), merkle::NodeKey({level, index}),
                               std::string(reinterpret_cast<const char*>(h.data()), 32));
                     });
  }
  db->Close();
  auto writer = OpenOrDie(path);  // rebuilds the postings
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->Close().ok());
}

class MerkleTamper : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Sub("ledger");
    auto ledger = OpenOrDie(path_);
    AppendSamples(ledger.get(), 0, 30);  // records 11 and 21 are denials
    auto early = ledger->TreeHeadAt(15);
    auto late = ledger->TreeHeadAt();
    ASSERT_TRUE(early.ok() && late.ok());
    early_ = *early;
    late_ = *late;
    auto rec = ledger->Get(21);
    ASSERT_TRUE(rec.ok());
    ASSERT_EQ(rec->record.effect, "deny");
    ASSERT_TRUE(ledger->Close().ok());
  }
  VerifyReport VerifyWith(std::vector<TreeHead> trusted, bool check_indexes = true) {
    auto reader = Ledger::OpenReader(path_);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    if (!reader.ok()) return {};
    VerifyOptions o;
    o.trusted = std::move(trusted);
    o.check_indexes = check_indexes;
    return (*reader)->Verify(o);
  }
  TempDir dir_;
  std::string path_;
  TreeHead early_, late_;
};

TEST_F(MerkleTamper, IntactLedgerMatchesItsTrustedHeads) {
  VerifyReport r = VerifyWith({early_, late_, TreeHead{0, Sha("")}});
  EXPECT_TRUE(r.ok) << Describe(r);
}

TEST_F(MerkleTamper, ResealedRewriteFailsAgainstATrustedHead) {
  Rewrite(path_, 21, 30, [](uint64_t seq, Record* r) {
    if (seq == 21) {
      r->effect = "allow";
      r->reasons.clear();
    }
  });
  {
    auto reader = Ledger::OpenReader(path_);
    ASSERT_TRUE(reader.ok());
    auto rec = (*reader)->Get(21);
    ASSERT_TRUE(rec.ok());
    ASSERT_EQ(rec->record.effect, "allow") << "the rewrite took";
  }
  VerifyReport plain = VerifyWith({});
  ASSERT_TRUE(plain.ok) << "the rewrite is self-consistent: " << Describe(plain);

  VerifyReport one = VerifyWith({late_});
  EXPECT_FALSE(one.ok);
  EXPECT_EQ(one.problem, VerifyProblem::kCheckpointMismatch) << Describe(one);
  EXPECT_EQ(one.bad_seq, 30u);
  EXPECT_NE(one.message.find("checkpoint of tree size 30"), std::string::npos) << one.message;

  VerifyReport two = VerifyWith({late_, early_});
  EXPECT_EQ(two.problem, VerifyProblem::kCheckpointMismatch) << Describe(two);
  EXPECT_EQ(two.bad_seq, 30u);
  EXPECT_NE(two.message.find("records 1..30 do not match the checkpoint of tree size 30"),
            std::string::npos) << two.message;
  EXPECT_NE(two.message.find("still matches the checkpoint of size 15"), std::string::npos)
      << two.message;
  EXPECT_NE(two.message.find("a record in 16..30 was changed"), std::string::npos) << two.message;

  VerifyReport before = VerifyWith({early_});
  EXPECT_TRUE(before.ok) << "records 1..15 are untouched: " << Describe(before);
  VerifyReport no_index = VerifyWith({late_}, /*check_indexes=*/false);
  EXPECT_EQ(no_index.problem, VerifyProblem::kCheckpointMismatch) << Describe(no_index);
}

TEST_F(MerkleTamper, RecordsRemovedFromTheEndAreARollBack) {
  Rewrite(path_, 28, 27, nullptr);
  VerifyReport plain = VerifyWith({});
  ASSERT_TRUE(plain.ok) << Describe(plain);
  VerifyReport r = VerifyWith({early_, late_});
  EXPECT_EQ(r.problem, VerifyProblem::kRolledBack) << Describe(r);
  EXPECT_EQ(r.bad_seq, 28u);
  EXPECT_NE(r.message.find("records 28..30 were removed"), std::string::npos) << r.message;
}

TEST_F(MerkleTamper, FlippedStoredNodeIsTreeInconsistent) {
  {
    auto db = RawDb::Open(path_);
    ASSERT_NE(db, nullptr);
    const std::string key = merkle::NodeKey({2, 1});  // records 5..8
    std::string value = db->Get(db->tree(), key);
    ASSERT_EQ(value.size(), 32u);
    value[5] ^= 0x20;
    db->Put(db->tree(), key, value);
  }
  VerifyReport r = VerifyWith({});
  EXPECT_EQ(r.problem, VerifyProblem::kTreeInconsistent) << Describe(r);
  EXPECT_EQ(r.bad_seq, 8u);
  EXPECT_NE(r.message.find("level 2, index 1"), std::string::npos) << r.message;
  // The trusted heads are checked against the records, not the stored tree.
  VerifyReport trusted = VerifyWith({late_}, /*check_indexes=*/false);
  EXPECT_TRUE(trusted.ok) << Describe(trusted);
  // ... whose proofs now fail to verify.
  auto reader = Ledger::OpenReader(path_);
  ASSERT_TRUE(reader.ok());
  auto proof = (*reader)->InclusionProof(2, 30);
  ASSERT_TRUE(proof.ok());
  auto rec = (*reader)->Get(2);
  ASSERT_TRUE(rec.ok());
  EXPECT_FALSE(VerifyInclusion(1, 30, MerkleLeafHash(rec->hash), *proof, late_.root));
}

TEST_F(MerkleTamper, DeletedNodeAndNodePastTheHeadAreTreeInconsistent) {
  {
    auto db = RawDb::Open(path_);
    db->Delete(db->tree(), merkle::NodeKey({2, 1}));  // records 5..8
  }
  VerifyReport r = VerifyWith({});
  EXPECT_EQ(r.problem, VerifyProblem::kTreeInconsistent) << Describe(r);
  EXPECT_EQ(r.bad_seq, 8u);
  EXPECT_NE(r.message.find("missing"), std::string::npos) << r.message;
  {
    auto db = RawDb::Open(path_);
    db->Put(db->tree(), merkle::NodeKey({2, 1}), std::string(32, 'x'));
    db->Put(db->tree(), merkle::NodeKey({2, 10}), std::string(32, 'x'));  // records 41..44
  }
  r = VerifyWith({});
  EXPECT_EQ(r.problem, VerifyProblem::kTreeInconsistent) << Describe(r);
  EXPECT_NE(r.message.find("past the chain head"), std::string::npos) << r.message;
}

TEST_F(MerkleTamper, TrustedHeadsNeedTheWalkToStartAtRecordOne) {
  auto reader = Ledger::OpenReader(path_);
  ASSERT_TRUE(reader.ok());
  VerifyOptions o;
  o.trusted = {late_};
  o.from_seq = 2;
  VerifyReport r = (*reader)->Verify(o);
  EXPECT_TRUE(r.error.IsInvalidArgument()) << Describe(r);
  o.from_seq = 1;
  o.to_seq = 20;
  r = (*reader)->Verify(o);
  EXPECT_TRUE(r.error.IsInvalidArgument()) << Describe(r);
  testing::ExpectMentions(r.error, "30");
  o.to_seq = 30;
  r = (*reader)->Verify(o);
  EXPECT_TRUE(r.ok) << Describe(r);
  o.trusted = {TreeHead{0, Hash{}}};
  o.to_seq.reset();
  r = (*reader)->Verify(o);
  EXPECT_EQ(r.problem, VerifyProblem::kCheckpointMismatch) << "the empty tree's root is fixed";
}

// A ledger of format 1 as an older version left it: no tree column family.
void MakeFormat1(const std::string& path, int records) {
  {
    auto ledger = OpenOrDie(path);
    AppendSamples(ledger.get(), 0, records);
    ASSERT_TRUE(ledger->Close().ok());
  }
  auto db = RawDb::Open(path);
  ASSERT_NE(db, nullptr);
  db->DropTree();
  db->Put(db->meta(), "format", "bastion-ledger/1");
}

TEST(MerkleUpgrade, Format1IsReadableAndAWriterBuildsItsTree) {
  TempDir dir;
  const std::string path = dir.Sub("ledger");
  MakeFormat1(path, 200);
  Reference ref;
  {
    auto reader = Ledger::OpenReader(path);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    auto head = (*reader)->TreeHeadAt();
    ASSERT_TRUE(head.status().IsFailedPrecondition()) << head.status().ToString();
    testing::ExpectMentions(head.status(), "open it for writing once to build its Merkle tree");
    EXPECT_TRUE((*reader)->InclusionProof(1).status().IsFailedPrecondition());
    EXPECT_TRUE((*reader)->ConsistencyProof(1, 2).status().IsFailedPrecondition());
    ref = ReferenceOf(reader->get(), 200);
    VerifyOptions o;
    o.trusted = {TreeHead{200, ref.Mth(0, 200)}, TreeHead{77, ref.Mth(0, 77)}};
    VerifyReport r = (*reader)->Verify(o);
    EXPECT_TRUE(r.ok) << "trusted heads are checked from the records: " << Describe(r);
  }
  auto ledger = OpenOrDie(path);
  ASSERT_NE(ledger, nullptr);
  auto stats = ledger->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->format, "bastion-ledger/2");
  ExpectMatchesReference(ledger.get(), ref, 30);
  AppendSamples(ledger.get(), 200, 5);
  ASSERT_TRUE(ledger->Close().ok());
  auto db = RawDb::Open(path);
  ASSERT_NE(db->tree(), nullptr);
  std::string mark;
  EXPECT_TRUE(db->db()->Get(rocksdb::ReadOptions(), db->meta(), "tree", &mark).IsNotFound())
      << "the upgrade's mark is removed once it is done";
  db->Close();
  auto reader = Ledger::OpenReader(path);
  ASSERT_TRUE(reader.ok());
  VerifyReport r = (*reader)->Verify({});
  EXPECT_TRUE(r.ok) << Describe(r);
}

TEST(MerkleUpgrade, AnInterruptedUpgradeResumesFromItsMark) {
  TempDir dir;
  const std::string path = dir.Sub("ledger");
  MakeFormat1(path, 100);
  {
    // What a crash after the first batches leaves: the tree over records
    // 1..37 and the mark, the format still 1.
    auto db = RawDb::Open(path);
    db->CreateTree();
    Sha256 sha;
    merkle::CompactRange range;
    for (uint64_t seq = 1; seq <= 37; ++seq) {
      codec::ValueView view;
      const std::string value = db->Get(db->records(), SeqKey(seq));
      ASSERT_TRUE(codec::ParseValue(value, &view).ok());
      range.AppendLeaf(
          &sha, merkle::LeafHash(&sha, reinterpret_cast<const uint8_t*>(view.hash.data())),
          [&](uint8_t level, uint64_t index, const Hash& h) {
            if (level < merkle::kLowestStoredLevel) return;
            db->Put(db->tree(), merkle::NodeKey({level, index}),
                    std::string(reinterpret_cast<const char*>(h.data()), 32));
          });
    }
    std::string mark;
    codec::PutFixed64(&mark, 37);
    db->Put(db->meta(), "tree", mark);
  }
  {
    auto reader = Ledger::OpenReader(path);
    ASSERT_TRUE(reader.ok());
    EXPECT_TRUE((*reader)->TreeHeadAt().status().IsFailedPrecondition())
        << "a half-built tree is not used";
  }
  auto ledger = OpenOrDie(path);
  ASSERT_NE(ledger, nullptr);
  ExpectMatchesReference(ledger.get(), ReferenceOf(ledger.get(), 100), 20);
  ASSERT_TRUE(ledger->Close().ok());
  auto reader = Ledger::OpenReader(path);
  VerifyReport r = (*reader)->Verify({});
  EXPECT_TRUE(r.ok) << Describe(r);
}

TEST(MerkleVerify, TrustedHeadsAcrossManySlices) {
  // More than two 64k slices, so the slices' ranges are merged.
  TempDir dir;
  const std::string path = dir.Sub("ledger");
  auto ledger = OpenOrDie(path);
  constexpr uint64_t kN = 140'000;
  std::vector<Record> batch;
  for (uint64_t i = 0; i < kN; ++i) {
    Record r;
    r.action = "model_call";
    r.agent_id = "a";
    batch.push_back(std::move(r));
    if (batch.size() == 10'000) {
      ASSERT_TRUE(ledger->AppendBatch(std::move(batch), Durability::kAsync).ok());
      batch.clear();
    }
  }
  ASSERT_TRUE(ledger->Flush().ok());
  std::vector<TreeHead> trusted;
  for (uint64_t size : {uint64_t{1}, uint64_t{65'535}, uint64_t{65'536}, uint64_t{65'537},
                        uint64_t{131'072}, uint64_t{131'073}, uint64_t{139'999}, kN}) {
    auto head = ledger->TreeHeadAt(size);
    ASSERT_TRUE(head.ok());
    trusted.push_back(*head);
  }
  for (unsigned threads : {1u, 2u, 4u}) {
    VerifyOptions o;
    o.trusted = trusted;
    o.threads = threads;
    VerifyReport r = ledger->Verify(o);
    EXPECT_TRUE(r.ok) << threads << " threads: " << Describe(r);
    EXPECT_EQ(r.records_checked, kN);
    std::vector<TreeHead> wrong = trusted;
    wrong[4].root[0] ^= 1;  // size 131072
    o.trusted = wrong;
    r = ledger->Verify(o);
    EXPECT_EQ(r.problem, VerifyProblem::kCheckpointMismatch) << Describe(r);
    EXPECT_EQ(r.bad_seq, 131'072u);
    EXPECT_NE(r.message.find("still matches the checkpoint of size 65537"), std::string::npos)
        << r.message;
  }
}


// --- Signed checkpoints: taken on demand and on a schedule, checked by
// VerifyAgainstCheckpoint ---

std::shared_ptr<const SigningKey> TestKey(const std::string& name = "example.com/ledger") {
  auto key = SigningKey::Generate(name);
  EXPECT_TRUE(key.ok()) << key.status().ToString();
  return std::make_shared<const SigningKey>(std::move(key).value());
}

NoteVerifier VerifierOf(const SigningKey& key) {
  auto v = NoteVerifier::Parse(key.VerifierText());
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return std::move(v).value();
}

// Sizes of the checkpoints a ledger holds by `key`.
std::vector<uint64_t> CheckpointSizes(Ledger* ledger, const SigningKey& key) {
  auto cps = ledger->Checkpoints();
  EXPECT_TRUE(cps.ok()) << cps.status().ToString();
  std::vector<uint64_t> out;
  if (!cps.ok()) return out;
  const NoteVerifier v = VerifierOf(key);
  for (const StoredCheckpoint& cp : *cps) {
    if (cp.key_id != key.key_id()) continue;
    auto opened = OpenCheckpoint(cp.note, v);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (opened.ok()) EXPECT_EQ(opened->size, cp.size);
    out.push_back(cp.size);
  }
  return out;
}

TEST(SignedCheckpoints, ACheckpointSignsTheTreeHeadAndIsStored) {
  TempDir dir;
  auto key = TestKey();
  auto ledger = OpenOrDie(dir.Sub("ledger"));
  AppendSamples(ledger.get(), 0, 13);
  auto note = ledger->Checkpoint(*key);
  ASSERT_TRUE(note.ok()) << note.status().ToString();
  auto cp = OpenCheckpoint(*note, VerifierOf(*key));
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  auto head = ledger->TreeHeadAt();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(cp->origin, "example.com/ledger");
  EXPECT_EQ(cp->size, 13u);
  EXPECT_EQ(cp->root, head->root);
  auto stored = ledger->Checkpoints();
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].note, *note);
  EXPECT_EQ((*stored)[0].key_id, key->key_id());
  // An empty ledger's checkpoint is the empty tree's.
  auto empty = OpenOrDie(dir.Sub("empty"));
  auto none = empty->Checkpoint(*key);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  auto opened = OpenCheckpoint(*none, VerifierOf(*key));
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->size, 0u);
  EXPECT_EQ(opened->root, Sha(""));
  // A reader signs nothing.
  ASSERT_TRUE(ledger->Close().ok());
  auto reader = Ledger::OpenReader(dir.Sub("ledger"));
  ASSERT_TRUE(reader.ok());
  EXPECT_TRUE((*reader)->Checkpoint(*key).status().IsFailedPrecondition());
}

TEST(SignedCheckpoints, TheScheduleTakesThemByCountByTimeAndOnClose) {
  TempDir dir;
  auto key = TestKey();
  std::mutex mu;
  std::vector<std::string> sunk;
  LedgerOptions o;
  o.checkpoints.key = key;
  o.checkpoints.every_records = 10;
  o.checkpoints.sink = [&](const std::string& note) {
    std::lock_guard<std::mutex> lock(mu);
    sunk.push_back(note);
    return Status::OK();
  };
  const auto sunk_count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return sunk.size();
  };
  const auto wait_for = [&](size_t n) {
    for (int i = 0; i < 400 && sunk_count() < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return sunk_count();
  };
  const std::string path = dir.Sub("ledger");
  {
    auto ledger = OpenOrDie(path, o);
    AppendSamples(ledger.get(), 0, 9);
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    EXPECT_EQ(sunk_count(), 0u) << "9 records are fewer than the count";
    AppendSamples(ledger.get(), 9, 3);
    ASSERT_EQ(wait_for(1), 1u);
    AppendSamples(ledger.get(), 12, 4);  // 16: 4 since the last, none due
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    EXPECT_EQ(sunk_count(), 1u);
    EXPECT_TRUE(ledger->CheckpointStatus().ok());
    ASSERT_TRUE(ledger->Close().ok());  // the closing one covers all 16
  }
  ASSERT_EQ(sunk_count(), 2u);
  {
    auto reader = Ledger::OpenReader(path);
    ASSERT_TRUE(reader.ok());
    EXPECT_EQ(CheckpointSizes(reader->get(), *key), (std::vector<uint64_t>{12, 16}));
    const NoteVerifier v = VerifierOf(*key);
    auto last = OpenCheckpoint(sunk.back(), v);
    ASSERT_TRUE(last.ok());
    EXPECT_EQ(last->size, 16u);
  }
  {
    // Reopened and closed with nothing new: no checkpoint is signed again.
    auto ledger = OpenOrDie(path, o);
    ASSERT_TRUE(ledger->Close().ok());
    EXPECT_EQ(sunk_count(), 2u);
  }
  {
    // By time: a period with new records takes one, a quiet one none.
    LedgerOptions t = o;
    t.checkpoints.every_records = 0;
    t.checkpoints.interval = std::chrono::milliseconds(30);
    t.checkpoints.on_close = false;
    auto ledger = OpenOrDie(path, t);
    AppendSamples(ledger.get(), 16, 2);
    EXPECT_EQ(wait_for(3), 3u);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_EQ(sunk_count(), 3u) << "no new records, no new checkpoint";
    AppendSamples(ledger.get(), 18, 1);
    ASSERT_TRUE(ledger->Close().ok());  // on_close is off
    auto reader = Ledger::OpenReader(path);
    ASSERT_TRUE(reader.ok());
    const std::vector<uint64_t> sizes = CheckpointSizes(reader->get(), *key);
    ASSERT_FALSE(sizes.empty());
    EXPECT_EQ(sizes.back() == 18 || sizes.back() == 19, true) << sizes.back();
  }
}

TEST(SignedCheckpoints, AFailingSinkIsReportedRetriedAndReturnedByClose) {
  TempDir dir;
  auto key = TestKey();
  std::atomic<int> calls{0};
  std::atomic<bool> fail{true};
  LedgerOptions o;
  o.checkpoints.key = key;
  o.checkpoints.every_records = 5;
  o.checkpoints.sink = [&](const std::string&) {
    ++calls;
    return fail ? Status::IOError("the transparency log is unreachable") : Status::OK();
  };
  auto ledger = OpenOrDie(dir.Sub("ledger"), o);
  AppendSamples(ledger.get(), 0, 5);
  for (int i = 0; i < 400 && calls == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GE(calls.load(), 1);
  for (int i = 0; i < 400 && ledger->CheckpointStatus().ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const Status failed = ledger->CheckpointStatus();
  EXPECT_TRUE(failed.IsIOError()) << failed.ToString();
  EXPECT_NE(failed.message().find("tree size 5"), std::string::npos) << failed.ToString();
  EXPECT_NE(failed.message().find("unreachable"), std::string::npos) << failed.ToString();
  // Retried while it fails; once it works the status clears.
  const int before = calls;
  for (int i = 0; i < 400 && calls == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GT(calls.load(), before) << "a failed sink is called again";
  fail = false;
  for (int i = 0; i < 400 && !ledger->CheckpointStatus().ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(ledger->CheckpointStatus().ok()) << ledger->CheckpointStatus().ToString();
  // The closing checkpoint fails: Close says so, and the records are kept.
  AppendSamples(ledger.get(), 5, 1);
  fail = true;
  const Status closed = ledger->Close();
  EXPECT_TRUE(closed.IsIOError()) << closed.ToString();
  EXPECT_NE(closed.message().find("closing checkpoint"), std::string::npos) << closed.ToString();
  auto reader = Ledger::OpenReader(dir.Sub("ledger"));
  ASSERT_TRUE(reader.ok());
  auto head = (*reader)->GetHead();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->seq, 6u);
}

TEST(SignedCheckpoints, ARewrittenHistoryFailsAgainstTheSignedCheckpoints) {
  TempDir dir;
  auto key = TestKey();
  const std::string path = dir.Sub("ledger");
  std::string external;  // kept off the host
  {
    auto ledger = OpenOrDie(path);
    AppendSamples(ledger.get(), 0, 10);
    ASSERT_TRUE(ledger->Checkpoint(*key).ok());
    AppendSamples(ledger.get(), 10, 10);
    ASSERT_TRUE(ledger->Checkpoint(*key).ok());
    AppendSamples(ledger.get(), 20, 10);  // record 21 is a denial
    auto note = ledger->Checkpoint(*key);
    ASSERT_TRUE(note.ok());
    external = *note;
    ASSERT_TRUE(ledger->Close().ok());
  }
  const NoteVerifier v = VerifierOf(*key);
  const auto verify = [&](const std::string& note) -> Result<VerifyReport> {
    auto trusted = OpenCheckpoint(note, v);
    if (!trusted.ok()) return trusted.status();
    auto reader = Ledger::OpenReader(path);
    if (!reader.ok()) return reader.status();
    return VerifyAgainstCheckpoint(**reader, *trusted, v, VerifyOptions{});
  };
  auto intact = verify(external);
  ASSERT_TRUE(intact.ok()) << intact.status().ToString();
  EXPECT_TRUE(intact->ok) << Describe(*intact);

  Rewrite(path, 21, 30, [](uint64_t seq, Record* r) {
    if (seq == 21) {
      r->effect = "allow";
      r->reasons.clear();
    }
  });
  auto r = verify(external);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->problem, VerifyProblem::kCheckpointMismatch) << Describe(*r);
  EXPECT_EQ(r->bad_seq, 30u);
  EXPECT_NE(r->message.find("still matches the checkpoint of size 20"), std::string::npos)
      << r->message;

  // The attacker also replaces the stored checkpoint of size 30 with a
  // forgery: the stored one no longer verifies, and is named.
  {
    auto db = RawDb::Open(path);
    ASSERT_NE(db, nullptr);
    std::string forged = external;
    forged[forged.size() - 10] ^= 0x01;
    db->Put(db->tree(), merkle::CheckpointKey(30, key->key_id()), forged);
  }
  auto f = verify(external);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->problem, VerifyProblem::kCheckpointMismatch) << Describe(*f);
  EXPECT_NE(f->message.find("does not verify"), std::string::npos) << f->message;

  // Bad evidence is the caller's error, not a verdict on the ledger.
  auto other = TestKey();
  auto wrong = verify(*SignCheckpoint(*other, 30, Sha("x")));
  EXPECT_TRUE(wrong.status().IsCorruption()) << wrong.status().ToString();
  auto altered = external;
  altered.replace(altered.find("\n30\n"), 4, "\n31\n");
  EXPECT_FALSE(verify(altered).ok());
}

}  // namespace
}  // namespace bastion
