// Verification of the hash chain (and, optionally, the indexes) over a range.
// The range is cut into slices that threads scan in parallel, each with its
// own iterator (sequence, links, hashes); the slices are then joined in order,
// checking the links between them, so the first problem is reported.
#ifndef BASTION_LEDGER_VERIFIER_H_
#define BASTION_LEDGER_VERIFIER_H_

#include "bastion/ledger.h"
#include "ledger/rocks_store.h"

namespace bastion {

VerifyReport VerifyLedger(RocksStore* store, const VerifyOptions& options);

}  // namespace bastion

#endif  // BASTION_LEDGER_VERIFIER_H_
