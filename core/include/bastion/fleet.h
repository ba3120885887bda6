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
  std::string worker;
};

}  // namespace bastion

#endif  // BASTION_FLEET_H_
