// Query execution: intersects the posting lists of the equality filters
// (leapfrog, in sequence order), or walks the time index, or the records;
// candidates are fetched in batches and checked against every filter.
#ifndef BASTION_LEDGER_QUERY_ENGINE_H_
#define BASTION_LEDGER_QUERY_ENGINE_H_

#include "bastion/ledger.h"
#include "ledger/rocks_store.h"

namespace bastion {

Result<QueryResult> RunQuery(RocksStore* store, const Query& query);

// InvalidArgument, naming the filter, for a filter value that can match no
// record (RunQuery checks it too); OK otherwise.
Status ValidateQuery(const Query& query);

}  // namespace bastion

#endif  // BASTION_LEDGER_QUERY_ENGINE_H_
