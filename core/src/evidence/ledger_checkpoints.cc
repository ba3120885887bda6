// A ledger verified against signed checkpoints: the one the caller trusts and
// every checkpoint the ledger holds by the same key.
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bastion/evidence.h"
#include "bastion/ledger.h"

namespace bastion {

namespace {
constexpr size_t kMaxStoredCheckpoints = 1024;
}  // namespace

Result<VerifyReport> VerifyAgainstCheckpoint(Ledger& ledger, const Checkpoint& trusted,
                                             const NoteVerifier& verifier,
                                             VerifyOptions options) {
  options.trusted.push_back({trusted.size, trusted.root});
  auto stored = ledger.Checkpoints();
  if (!stored.ok()) return stored.status();
  std::vector<const StoredCheckpoint*> mine;
  for (const StoredCheckpoint& cp : *stored) {
    if (cp.key_id == verifier.key_id()) mine.push_back(&cp);
  }
  // Each trusted size costs the walk a root; beyond kMaxStoredCheckpoints an
  // even sample (with the newest) keeps a long-lived ledger's check linear.
  const size_t step = (mine.size() + kMaxStoredCheckpoints - 1) / kMaxStoredCheckpoints;
  for (size_t i = 0; i < mine.size(); ++i) {
    if (step > 1 && i % step != 0 && i + 1 != mine.size()) continue;
    const StoredCheckpoint& cp = *mine[i];
    auto opened = OpenCheckpoint(cp.note, verifier);
    if (!opened.ok() || opened->size != cp.size) {
      // Stored under this key's id, yet not signed by it: altered in place.
      VerifyReport report;
      report.problem = VerifyProblem::kCheckpointMismatch;
      report.bad_seq = cp.size;
      report.message = fmt::format(
          "the checkpoint the ledger holds for tree size {} under key {} does not verify: {}",
          cp.size, verifier.name(),
          opened.ok() ? fmt::format("it names tree size {}", opened->size)
                      : opened.status().message());
      return report;
    }
    options.trusted.push_back({opened->size, opened->root});
  }
  return ledger.Verify(options);
}

}  // namespace bastion
