// The fleet: state shared by every worker process of a deployment, on one
// Redis server (docs/fleet.md). Budgets (bastion/fleet_budgets.h), rate
// limits and circuit breakers (bastion/fleet_limits.h) each take these
// options.
//
//   bastion::StoreOptions store;
//   store.url = "redis://cache.internal:6379/0";
//   store.timeout_ns = 500'000'000;   // fail closed within 0.5 s
//
// Every key lives in the Redis hash slot "{<prefix>}", so one deployment's
// state stays on one server (and one slot of a cluster), and several
// deployments can share a server under different prefixes.
#ifndef BASTION_FLEET_H_
#define BASTION_FLEET_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "bastion/status.h"

namespace bastion {

struct StoreOptions {
  // redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N].
  std::string url;
  // Connecting and each command take at most this long; past it the call is
  // refused (Unavailable) unless degraded mode is on. Default 1 s.
  int64_t timeout_ns = 1'000'000'000;
  // The namespace of every key: "{bastion}:...".
  std::string prefix = "bastion";
  // This worker's name (e.g. the guard's shard); "" = "<hostname>:<pid>".
  // Names must be unique across the fleet: the server tells workers apart
  // by them (a dead worker's holds are reclaimed by name).
  std::string worker;
  // While the server cannot be reached: false (the default) refuses every
  // call that needs it (Unavailable, fail closed); true degrades to this
  // process's own state: budgets admit at most degraded_cap_nanousd per
  // budget and key (per window) in this process, rate limits and breakers
  // are this worker's. Entering and leaving degraded mode are StoreEvents,
  // which a guard records in its ledger.
  bool degrade_to_local = false;
  int64_t degraded_cap_nanousd = 0;
};

// A shared store went away or came back, for the ledger.
struct StoreEvent {
  std::string kind;    // "store_degraded" | "store_restored"
  std::string store;   // what was degraded: "budgets", "rate_limits", "breakers"
  std::string detail;  // the server and the error ("redis://10.0.0.5:6379/0: connection refused")
  int64_t at_ns = 0;   // UTC
};

// A guard directory's fleet.yaml (docs/fleet.md):
//
//   version: 1                        # optional
//   store: redis://cache:6379/0       # or a mapping:
//   store:
//     url: redis://cache:6379/0
//     timeout: 500ms                  # default 1s, at most 1h
//     prefix: support-prod            # default "bastion"
//     degraded_cap_usd: 0.50          # optional: degrade to local state
//
// InvalidArgument "source:line:col: store.timeout: what" for every problem,
// including a malformed URL (the password never shown).
Result<StoreOptions> ParseFleetYaml(std::string_view text, const std::string& source_name);
Result<StoreOptions> LoadFleetYamlFile(const std::string& path);

}  // namespace bastion

#endif  // BASTION_FLEET_H_
