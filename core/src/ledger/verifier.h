// Verification of the hash chain (and, optionally, the indexes) over a range.
// The main thread walks the records in key order and checks sequence and
// links; worker threads recompute hashes and decode records in parallel.
#ifndef BASTION_LEDGER_VERIFIER_H_
#define BASTION_LEDGER_VERIFIER_H_

#include "bastion/ledger.h"
#include "ledger/rocks_store.h"

namespace bastion {

VerifyReport VerifyLedger(RocksStore* store, const VerifyOptions& options);

}  // namespace bastion

#endif  // BASTION_LEDGER_VERIFIER_H_
