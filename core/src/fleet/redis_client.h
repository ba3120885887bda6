// A small, thread-safe Redis client over hiredis: what the fleet's shared
// budgets, rate limits and breakers need, and nothing more.
//
//   auto endpoint = fleet::ParseRedisUrl("redis://127.0.0.1:6379/0");
//   fleet::RedisClient::Options options;
//   options.endpoint = *endpoint;
//   options.timeout_ns = 1'000'000'000;          // connect and each command
//   auto redis = fleet::RedisClient::Connect(options);   // Unavailable if unreachable
//   static const fleet::RedisScript kIncr("return redis.call('INCRBY', KEYS[1], ARGV[1])");
//   auto reply = (*redis)->Eval(kIncr, {"{bastion}:n"}, {"5"});
//
// Failure model. Every command either returns within the timeout or fails
// with Unavailable naming the server ("redis://127.0.0.1:6379/0: connection
// refused"). A connection that failed is dropped, never reused; the next
// command connects again, so a server that comes back is used again without
// restarting anything. An idle connection the server closed (it restarted)
// is dropped before a command is sent on it. A command that fails after it
// was sent is never retried: it may have run. After a failed connect, commands fail at once with the
// same error for `retry_interval_ns` instead of each waiting for the timeout.
// An error reply from the server (a script error, a wrong type) is Internal:
// our scripts and commands never cause one on a healthy server.
//
// Scripts run with EVALSHA; a server that does not know the script (after a
// restart or SCRIPT FLUSH) gets it with SCRIPT LOAD and the call is retried
// once.
//
// Thread safety: RedisClient is thread-safe. Connections are pooled: a
// command takes an idle one (or connects a new one) and gives it back.
#ifndef BASTION_FLEET_REDIS_CLIENT_H_
#define BASTION_FLEET_REDIS_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/status.h"

struct redisContext;

namespace bastion::fleet {

// Where a Redis server is: redis://[[user]:password@]host[:port][/db] or
// unix:///path/to/socket[?db=N]. Port defaults to 6379, db to 0.
struct RedisEndpoint {
  std::string host;       // empty for a unix socket
  int port = 6379;
  std::string unix_path;  // set for unix://
  int db = 0;
  std::string user;
  std::string password;

  // The URL without the password ("redis://127.0.0.1:6379/0"): what error
  // messages name.
  std::string ToString() const;
};

// InvalidArgument naming the URL (password masked) and what is wrong.
Result<RedisEndpoint> ParseRedisUrl(std::string_view url);

// "<hostname>:<pid>": a worker's name in the shared state when none is given.
std::string HostAndPid();

struct RedisReply {
  enum class Type : unsigned char { kNil, kInteger, kString, kStatus, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;  // kString, kStatus
  std::vector<RedisReply> elements;  // kArray

  bool is_nil() const { return type == Type::kNil; }
};

// A TIME reply ({seconds, microseconds}) in UTC nanoseconds; Internal naming
// `where` for anything else.
Result<int64_t> ParseServerTime(const RedisReply& reply, std::string_view where);

// A Lua script and its SHA-1 (computed once).
class RedisScript {
 public:
  explicit RedisScript(std::string body);
  const std::string& body() const { return body_; }
  const std::string& sha1() const { return sha1_; }

 private:
  std::string body_;
  std::string sha1_;  // lowercase hex
};

class RedisClient {
 public:
  struct Options {
    RedisEndpoint endpoint;
    // Connect and each command (send + reply): at most this long.
    int64_t timeout_ns = 1'000'000'000;
    // After a failed connect, fail at once for this long before trying again.
    int64_t retry_interval_ns = 200'000'000;
    // Idle connections kept for reuse.
    size_t max_idle = 16;
  };

  // Connects one connection now, so a wrong address or password fails here
  // (Unavailable; InvalidArgument for a rejected password or db).
  static Result<std::shared_ptr<RedisClient>> Connect(Options options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // One command; binary-safe arguments.
  Result<RedisReply> Command(const std::vector<std::string_view>& argv);
  // Several commands sent together on one connection, replies in order.
  Result<std::vector<RedisReply>> Pipeline(
      const std::vector<std::vector<std::string_view>>& commands);
  // EVALSHA (SCRIPT LOAD and retry on NOSCRIPT).
  Result<RedisReply> Eval(const RedisScript& script, const std::vector<std::string_view>& keys,
                          const std::vector<std::string_view>& args);

  // The server's clock (TIME), in UTC nanoseconds.
  Result<int64_t> ServerTimeNs();

  // "redis://host:port/db": for messages.
  const std::string& where() const { return where_; }
  const Options& options() const { return options_; }

  // Connections made so far (for tests of reconnection).
  uint64_t connects() const { return connects_.load(std::memory_order_relaxed); }

 private:
  explicit RedisClient(Options options);
  struct Connection;
  Result<std::unique_ptr<Connection>> Take();
  void Give(std::unique_ptr<Connection> c);
  Result<std::unique_ptr<Connection>> Dial();
  Result<std::vector<RedisReply>> Run(const std::vector<std::vector<std::string_view>>& commands,
                                      bool allow_noscript);

  const Options options_;
  const std::string where_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;  // GUARDED_BY(mu_)
  int64_t down_until_ns_ = 0;                      // GUARDED_BY(mu_), steady clock
  std::string down_error_;                         // GUARDED_BY(mu_)
  std::atomic<uint64_t> connects_{0};
};

}  // namespace bastion::fleet

#endif  // BASTION_FLEET_REDIS_CLIENT_H_
