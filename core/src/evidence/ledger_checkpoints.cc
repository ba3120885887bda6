// A ledger verified against signed checkpoints: the one the caller trusts and
// every checkpoint the ledger holds by the same key.
#include <utility>

#include <fmt/format.h>

#include "bastion/evidence.h"
#include "bastion/ledger.h"

namespace bastion {

Result<VerifyReport> VerifyAgainstCheckpoint(Ledger& ledger, std::string_view note,
                                             const NoteVerifier& verifier,
                                             VerifyOptions options) {
  auto given = OpenCheckpoint(note, verifier);
  if (!given.ok()) return given.status();
  options.trusted.push_back({given->size, given->root});
  auto stored = ledger.Checkpoints();
  if (!stored.ok()) return stored.status();
  for (const StoredCheckpoint& cp : *stored) {
    if (cp.key_id != verifier.key_id()) continue;
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
