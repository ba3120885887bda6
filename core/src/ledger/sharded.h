// The sharded reader: the main ledger and the shards under <L>/shards/, each
// a complete ledger with its own chain, read as one (see Ledger::OpenReader).
#ifndef BASTION_LEDGER_SHARDED_H_
#define BASTION_LEDGER_SHARDED_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/ledger.h"

namespace bastion {

class ShardedReader {
 public:
  // Whether `path` has a shards/ folder, which makes OpenReader sharded.
  static bool HasShards(const std::string& path);

  // Opens a reader on the main ledger (when `path` holds one) and on every
  // complete shard. Errors: InvalidArgument naming a folder of shards/ whose
  // name is not a shard name; a shard's open error, naming the shard.
  static Result<std::unique_ptr<ShardedReader>> Open(const std::string& path,
                                                     const ReaderOptions& options);

  Result<QueryResult> Find(const Query& query);
  VerifyReport Verify(const VerifyOptions& options);
  Result<LedgerStats> Stats();
  // Catches every shard up with its writer, then opens the shards that have
  // become complete since.
  Status Refresh();
  Status Close();

  // FailedPrecondition: `what` belongs to one shard's chain; names the paths.
  Status PerShard(std::string_view what) const;

 private:
  struct Shard {
    std::string name;  // "" for the main shard
    std::unique_ptr<Ledger> ledger;
  };

  ShardedReader(std::string path, ReaderOptions options)
      : path_(std::move(path)), options_(std::move(options)) {}
  // Opens what is complete and not open yet, keeping shards_ ordered by name.
  Status OpenNew();
  std::string PathOf(const std::string& name) const;
  std::string Names() const;

  const std::string path_;
  const ReaderOptions options_;
  std::vector<Shard> shards_;
};

}  // namespace bastion

#endif  // BASTION_LEDGER_SHARDED_H_
