// Erasure of a data subject's personal data (Ledger::Erase) and the scrub
// that removes the old values from the store's files. docs/ledger_format.md
// specifies the erased record, the erasure record and the "scrub" mark.
#ifndef BASTION_LEDGER_ERASE_H_
#define BASTION_LEDGER_ERASE_H_

#include <functional>
#include <string_view>
#include <vector>

#include "bastion/ledger.h"
#include "ledger/rocks_store.h"
#include "ledger/writer.h"

namespace bastion {

// Present between an erasure's write and the end of its scrub: u64le first
// seq ‖ u64le last seq of the records whose old values the scrub removes.
inline constexpr std::string_view kMetaScrubKey = "scrub";

// Appends `record` (sync) with `writes` in the same RocksDB batch; returns
// its sequence number.
using AppendWithWrites = std::function<Result<uint64_t>(Record, std::vector<ExtraWrite>)>;

// Ledger::Erase, for the ledger's writer. The caller keeps the store open and
// erasures serialized.
Result<EraseReport> EraseRecords(RocksStore* store, Writer* writer, const EraseRequest& request,
                                 const AppendWithWrites& append);

// Finishes the scrub of an erasure that a crash interrupted (the meta key
// "scrub" is present); OK when there is none. A writer's open runs it before
// anything else.
Status ResumeScrub(RocksStore* store);

// Called at each stage of an erasure ("prepared", "written", "flushed",
// "compacted", "scrubbed") with its name; the crash tests kill the process
// there. nullptr: none.
void SetEraseStageHookForTesting(void (*hook)(std::string_view stage));

}  // namespace bastion

#endif  // BASTION_LEDGER_ERASE_H_
