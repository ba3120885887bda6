#include "fleet/redis_client.h"

#include <hiredis.h>
#include <openssl/evp.h>
#include <poll.h>

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "bastion/clock.h"

namespace bastion::fleet {
namespace {

timeval ToTimeval(int64_t ns) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  tv.tv_usec = static_cast<suseconds_t>((ns % 1'000'000'000) / 1000);
  return tv;
}

bool ParseInt(std::string_view text, int lo, int hi, int* out) {
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi) return false;
  *out = v;
  return true;
}

std::string MaskedUrl(std::string_view url) {
  // redis://user:secret@host -> redis://user:***@host
  size_t scheme = url.find("://");
  size_t at = url.rfind('@');
  if (scheme == std::string_view::npos || at == std::string_view::npos || at < scheme) {
    return std::string(url);
  }
  size_t colon = url.find(':', scheme + 3);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return fmt::format("{}***{}", url.substr(0, colon + 1), url.substr(at));
}

// Copies a hiredis reply; error replies become kError with their text.
RedisReply Convert(const redisReply* r, bool* is_error, std::string* error) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      *is_error = true;
      if (error->empty()) error->assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) {
        out.elements.push_back(Convert(r->element[i], is_error, error));
      }
      break;
    default:  // REDIS_REPLY_NIL
      break;
  }
  return out;
}

}  // namespace

std::string RedisEndpoint::ToString() const {
  if (!unix_path.empty()) return fmt::format("unix://{}?db={}", unix_path, db);
  return fmt::format("redis://{}:{}/{}", host, port, db);
}

Result<RedisEndpoint> ParseRedisUrl(std::string_view url) {
  auto bad = [&](std::string_view what) {
    return Status::InvalidArgument(
        fmt::format("store '{}': {} (expected redis://[[user]:password@]host[:port][/db] or "
                    "unix:///path[?db=N])",
                    MaskedUrl(url), what));
  };
  RedisEndpoint e;
  if (url.starts_with("unix://")) {
    std::string_view rest = url.substr(7);
    if (size_t q = rest.find('?'); q != std::string_view::npos) {
      std::string_view query = rest.substr(q + 1);
      rest = rest.substr(0, q);
      if (!query.starts_with("db=") || !ParseInt(query.substr(3), 0, 1 << 20, &e.db)) {
        return bad("the query may only be db=N");
      }
    }
    if (rest.empty() || rest[0] != '/') return bad("a unix socket path must be absolute");
    e.unix_path = std::string(rest);
    return e;
  }
  if (!url.starts_with("redis://")) return bad("the scheme must be redis:// or unix://");
  std::string_view rest = url.substr(8);
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = auth.find(':');
    if (colon == std::string_view::npos) {
      e.password = std::string(auth);  // redis://secret@host
    } else {
      e.user = std::string(auth.substr(0, colon));
      e.password = std::string(auth.substr(colon + 1));
    }
  }
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty() && !ParseInt(db, 0, 1 << 20, &e.db)) return bad("the database must be a number");
  }
  std::string_view host = rest;
  if (host.starts_with('[')) {  // [::1]:6379
    size_t close = host.find(']');
    if (close == std::string_view::npos) return bad("an IPv6 address needs its closing ']'");
    std::string_view after = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!after.empty()) {
      if (after[0] != ':' || !ParseInt(after.substr(1), 1, 65535, &e.port)) {
        return bad("the port must be 1..65535");
      }
    }
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    if (!ParseInt(host.substr(colon + 1), 1, 65535, &e.port)) return bad("the port must be 1..65535");
    host = host.substr(0, colon);
  }
  if (host.empty()) return bad("the host is missing");
  e.host = std::string(host);
  return e;
}

RedisScript::RedisScript(std::string body) : body_(std::move(body)) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(body_.data(), body_.size(), digest, &len, EVP_sha1(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  sha1_.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    sha1_.push_back(kHex[digest[i] >> 4]);
    sha1_.push_back(kHex[digest[i] & 15]);
  }
}

struct RedisClient::Connection {
  redisContext* ctx = nullptr;
  ~Connection() {
    if (ctx != nullptr) redisFree(ctx);
  }
};

RedisClient::RedisClient(Options options)
    : options_(std::move(options)), where_(options_.endpoint.ToString()) {}

RedisClient::~RedisClient() = default;

Result<std::shared_ptr<RedisClient>> RedisClient::Connect(Options options) {
  if (options.timeout_ns <= 0) {
    return Status::InvalidArgument(
        fmt::format("store {}: the timeout must be > 0", options.endpoint.ToString()));
  }
  std::shared_ptr<RedisClient> client(new RedisClient(std::move(options)));
  auto c = client->Dial();
  if (!c.ok()) return c.status();
  client->Give(std::move(*c));
  return client;
}

Result<std::unique_ptr<RedisClient::Connection>> RedisClient::Dial() {
  const RedisEndpoint& e = options_.endpoint;
  timeval tv = ToTimeval(options_.timeout_ns);
  auto c = std::make_unique<Connection>();
  c->ctx = e.unix_path.empty() ? redisConnectWithTimeout(e.host.c_str(), e.port, tv)
                               : redisConnectUnixWithTimeout(e.unix_path.c_str(), tv);
  auto fail = [&](std::string what) -> Status {
    std::lock_guard lock(mu_);
    down_until_ns_ = SteadyNowNs() + options_.retry_interval_ns;
    down_error_ = fmt::format("{}: {} (timeout {} ms)", where_, what, options_.timeout_ns / 1'000'000);
    return Status::Unavailable(down_error_);
  };
  if (c->ctx == nullptr) return fail("cannot allocate a connection");
  if (c->ctx->err != 0) return fail(c->ctx->errstr);
  if (redisSetTimeout(c->ctx, tv) != REDIS_OK) return fail("cannot set the socket timeout");
  connects_.fetch_add(1, std::memory_order_relaxed);
  auto setup = [&](std::vector<std::string> argv) -> Status {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c->ctx, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
    if (r == nullptr) return fail(c->ctx->errstr);
    std::string err;
    if (r->type == REDIS_REPLY_ERROR) err.assign(r->str, r->len);
    freeReplyObject(r);
    if (!err.empty()) {
      return Status::InvalidArgument(fmt::format("{}: {} refused: {}", where_, argv[0], err));
    }
    return Status::OK();
  };
  if (!e.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!e.user.empty()) auth.push_back(e.user);
    auth.push_back(e.password);
    BASTION_RETURN_IF_ERROR(setup(std::move(auth)));
  }
  if (e.db != 0) BASTION_RETURN_IF_ERROR(setup({"SELECT", std::to_string(e.db)}));
  {
    std::lock_guard lock(mu_);
    down_until_ns_ = 0;
  }
  return c;
}

Result<std::unique_ptr<RedisClient::Connection>> RedisClient::Take() {
  {
    std::lock_guard lock(mu_);
    while (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      // An idle connection has nothing to read: if it has, the server closed
      // it (it restarted) or broke the protocol. Drop it before sending, so a
      // command is never sent on a connection already known dead (a command
      // that fails after it was sent is not retried: it may have run).
      pollfd p{c->ctx->fd, POLLIN, 0};
      if (poll(&p, 1, 0) != 0) continue;
      return c;
    }
    if (down_until_ns_ != 0 && SteadyNowNs() < down_until_ns_) return Status::Unavailable(down_error_);
  }
  return Dial();
}

void RedisClient::Give(std::unique_ptr<Connection> c) {
  std::lock_guard lock(mu_);
  if (idle_.size() < options_.max_idle) idle_.push_back(std::move(c));
}

Result<std::vector<RedisReply>> RedisClient::Run(
    const std::vector<std::vector<std::string_view>>& commands, bool allow_noscript) {
  auto taken = Take();
  if (!taken.ok()) return taken.status();
  std::unique_ptr<Connection> c = std::move(*taken);
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const auto& argv : commands) {
    ptrs.clear();
    lens.clear();
    for (std::string_view a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c->ctx, static_cast<int>(argv.size()), ptrs.data(),
                               lens.data()) != REDIS_OK) {
      return Status::Unavailable(fmt::format("{}: cannot queue a command: {}", where_,
                                             c->ctx->errstr));  // c is dropped
    }
  }
  std::vector<RedisReply> replies;
  replies.reserve(commands.size());
  std::string error;
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(c->ctx, &raw) != REDIS_OK || raw == nullptr) {
      const int saved_errno = errno;
      const bool timed_out = c->ctx->err == REDIS_ERR_IO &&
                             (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK);
      std::string what = timed_out
                             ? fmt::format("no reply within {} ms", options_.timeout_ns / 1'000'000)
                             : std::string(c->ctx->errstr);
      // Never reused; the next command connects afresh. Not retried: the
      // command may have run.
      return Status::Unavailable(fmt::format("{}: {}", where_, what));
    }
    auto* r = static_cast<redisReply*>(raw);
    bool is_error = false;
    std::string text;
    replies.push_back(Convert(r, &is_error, &text));
    freeReplyObject(r);
    if (is_error && error.empty()) error = std::move(text);
  }
  Give(std::move(c));
  if (!error.empty()) {
    if (allow_noscript && error.starts_with("NOSCRIPT")) {
      return Status::NotFound(error);  // Eval loads the script and retries
    }
    return Status::Internal(fmt::format("{}: the server refused a command: {}", where_, error));
  }
  return replies;
}

Result<RedisReply> RedisClient::Command(const std::vector<std::string_view>& argv) {
  auto replies = Run({argv}, false);
  if (!replies.ok()) return replies.status();
  return std::move(replies->front());
}

Result<std::vector<RedisReply>> RedisClient::Pipeline(
    const std::vector<std::vector<std::string_view>>& commands) {
  if (commands.empty()) return std::vector<RedisReply>{};
  return Run(commands, false);
}

Result<RedisReply> RedisClient::Eval(const RedisScript& script,
                                     const std::vector<std::string_view>& keys,
                                     const std::vector<std::string_view>& args) {
  std::string nkeys = std::to_string(keys.size());
  std::vector<std::string_view> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(nkeys);
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  auto replies = Run({argv}, true);
  if (replies.ok()) return std::move(replies->front());
  if (!replies.status().IsNotFound()) return replies.status();
  // The server does not know the script (restarted, flushed): load and retry.
  auto loaded = Run({{"SCRIPT", "LOAD", script.body()}}, false);
  if (!loaded.ok()) return loaded.status();
  replies = Run({argv}, false);
  if (!replies.ok()) return replies.status();
  return std::move(replies->front());
}

Result<int64_t> ParseServerTime(const RedisReply& reply, std::string_view where) {
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 2) {
    return Status::Internal(fmt::format("{}: TIME gave an unexpected reply", where));
  }
  int64_t parts[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    const std::string& s = reply.elements[i].str;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), parts[i]);
    if (ec != std::errc() || end != s.data() + s.size() || parts[i] < 0 ||
        parts[i] > (i == 0 ? int64_t{1} << 32 : 999'999)) {
      return Status::Internal(fmt::format("{}: TIME gave '{}'", where, s));
    }
  }
  return parts[0] * 1'000'000'000 + parts[1] * 1000;
}

Result<int64_t> RedisClient::ServerTimeNs() {
  auto r = Command({"TIME"});
  if (!r.ok()) return r.status();
  return ParseServerTime(*r, where_);
}

std::string HostAndPid() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "host");
  return fmt::format("{}:{}", host, getpid());
}

}  // namespace bastion::fleet
