#include "ledger/sharded.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include "ledger/index_keys.h"
#include "ledger/query_engine.h"
#include "ledger/record_codec.h"
#include "util/path_arg.h"

namespace bastion {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kShardsFolder = "shards";

// One record of a merged page, with what orders it.
struct Entry {
  int64_t ts = 0;
  size_t shard = 0;  // index into the reader's shards, ordered by name
  uint64_t seq = 0;
  std::string encoded;
};

// The place a cursor of a sharded query names: the last record of a page.
struct MergeCursor {
  int64_t ts = 0;
  uint64_t seq = 0;
  std::string shard;
};

// "m:<ts>:<seq>:<shard>" (a shard name holds no ':').
std::string FormatCursor(int64_t ts, uint64_t seq, std::string_view shard) {
  return fmt::format("m:{}:{}:{}", ts, seq, shard);
}

Result<MergeCursor> ParseCursor(std::string_view text) {
  const auto bad = [&] {
    return Status::InvalidArgument(fmt::format(
        "cursor '{}' is not one this sharded ledger produced", text.substr(0, 64)));
  };
  if (!text.starts_with("m:")) return bad();
  std::string_view rest = text.substr(2);
  MergeCursor c;
  const size_t a = rest.find(':');
  if (a == std::string_view::npos) return bad();
  const size_t b = rest.find(':', a + 1);
  if (b == std::string_view::npos) return bad();
  const auto num = [](std::string_view s, auto* out) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
    return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
  };
  if (!num(rest.substr(0, a), &c.ts) || !num(rest.substr(a + 1, b - a - 1), &c.seq)) return bad();
  c.shard = std::string(rest.substr(b + 1));
  if (!c.shard.empty() && !ValidateShardName(c.shard).ok()) return bad();
  return c;
}

bool HasAnyEqualityFilter(const Query& q) {
  for (const auto* f : {&q.user_id, &q.agent_id, &q.tenant_id, &q.action, &q.tool, &q.effect,
                        &q.risk_level, &q.run_id, &q.trace_id}) {
    if (f->has_value()) return true;
  }
  return false;
}

}  // namespace

Status ValidateShardName(std::string_view name) {
  const auto bad = [&](std::string_view why) {
    std::string shown;
    for (char c : name.substr(0, 80)) {
      shown += c >= 0x20 && c < 0x7f ? std::string(1, c)
                                     : fmt::format("\\x{:02x}", static_cast<uint8_t>(c));
    }
    return Status::InvalidArgument(fmt::format(
        "shard name '{}' {}: a shard name is 1 to 64 bytes of A-Z, a-z, 0-9, '.', '_' and '-', "
        "not starting with '.'",
        shown, why));
  };
  if (name.empty()) return bad("is empty");
  if (name.size() > 64) return bad(fmt::format("is {} bytes", name.size()));
  if (name.front() == '.') return bad("starts with '.'");
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return bad("holds a character outside that set");
  }
  return Status::OK();
}

Result<std::string> ShardPath(const std::string& ledger_path, std::string_view name) {
  BASTION_RETURN_IF_ERROR(CheckPathArgument(ledger_path, "ledger path"));
  BASTION_RETURN_IF_ERROR(ValidateShardName(name));
  return (fs::path(ledger_path) / kShardsFolder / std::string(name)).string();
}

bool ShardedReader::HasShards(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(fs::path(path) / kShardsFolder, ec);
}

Result<std::unique_ptr<ShardedReader>> ShardedReader::Open(const std::string& path,
                                                           const ReaderOptions& options) {
  std::unique_ptr<ShardedReader> reader(new ShardedReader(path, options));
  BASTION_RETURN_IF_ERROR(reader->OpenNew());
  return reader;
}

std::string ShardedReader::PathOf(const std::string& name) const {
  if (name.empty()) return path_;
  return (fs::path(path_) / kShardsFolder / name).string();
}

std::string ShardedReader::Names() const {
  if (shards_.empty()) return "none yet";
  std::string out;
  for (const Shard& s : shards_) {
    out += fmt::format("{}{}", out.empty() ? "" : ", ", s.name.empty() ? "(main)" : s.name);
  }
  return out;
}

Status ShardedReader::PerShard(std::string_view what) const {
  std::string example = "<name>";
  for (const Shard& s : shards_) {
    if (!s.name.empty()) {
      example = s.name;
      break;
    }
  }
  return Status::FailedPrecondition(fmt::format(
      "sharded ledger '{}': {} belongs to one shard's chain; open {}/{}/{} (or '{}' alone, "
      "its main shard) for it (shards: {})",
      path_, what, path_, kShardsFolder, example, path_, Names()));
}

Status ShardedReader::OpenNew() {
  std::error_code ec;
  std::vector<std::string> names;
  if (fs::exists(fs::path(path_) / "CURRENT", ec)) names.emplace_back();
  const fs::path folder = fs::path(path_) / kShardsFolder;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    std::string name = entry.path().filename().string();
    // Hidden entries (editor and file system droppings) are not shards.
    if (name.starts_with(".")) continue;
    if (!entry.is_directory(ec)) continue;
    if (Status s = ValidateShardName(name); !s.ok()) {
      return s.WithContext(fmt::format("sharded ledger '{}': folder '{}'", path_,
                                       entry.path().string()));
    }
    // A writer creating the shard has not written CURRENT yet: not a ledger
    // until it has.
    if (!fs::exists(entry.path() / "CURRENT", ec)) continue;
    names.push_back(std::move(name));
  }
  if (ec) {
    return Status::IOError(fmt::format("sharded ledger '{}': cannot list '{}': {}", path_,
                                       folder.string(), ec.message()));
  }
  for (const std::string& name : names) {
    const bool open = std::any_of(shards_.begin(), shards_.end(),
                                  [&](const Shard& s) { return s.name == name; });
    if (open) continue;
    ReaderOptions o;
    if (!options_.secondary_path.empty()) {
      o.secondary_path =
          (fs::path(options_.secondary_path) / (name.empty() ? "main" : "shard-" + name)).string();
      fs::create_directories(o.secondary_path, ec);
    }
    auto ledger = Ledger::OpenOneReader(PathOf(name), o);
    // A writer creating a shard writes CURRENT before it adds the ledger's
    // column families: for a few milliseconds the store looks like no ledger.
    for (int attempt = 0; !ledger.ok() && ledger.status().IsInvalidArgument() && attempt < 6;
         ++attempt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10 << attempt));
      ledger = Ledger::OpenOneReader(PathOf(name), o);
    }
    if (!ledger.ok()) {
      return ledger.status().WithContext(
          fmt::format("sharded ledger '{}': shard '{}'", path_, name.empty() ? "(main)" : name));
    }
    shards_.push_back({name, std::move(*ledger)});
  }
  std::sort(shards_.begin(), shards_.end(),
            [](const Shard& a, const Shard& b) { return a.name < b.name; });
  return Status::OK();
}

Result<QueryResult> ShardedReader::Find(const Query& query) {
  BASTION_RETURN_IF_ERROR(ValidateQuery(query));  // also without any shard yet
  std::optional<MergeCursor> cursor;
  if (!query.cursor.empty()) {
    auto c = ParseCursor(query.cursor);
    if (!c.ok()) return c.status();
    cursor = std::move(*c);
  }
  const bool desc = query.newest_first;
  // (ts, shard name, seq), compared in the query's direction.
  const auto key_of = [&](const Entry& e) {
    return std::tuple<int64_t, std::string_view, uint64_t>(e.ts, shards_[e.shard].name, e.seq);
  };
  const auto after_cursor = [&](const Entry& e) {
    if (!cursor) return true;
    const auto k = key_of(e);
    const std::tuple<int64_t, std::string_view, uint64_t> c(cursor->ts, cursor->shard,
                                                            cursor->seq);
    return desc ? k < c : k > c;
  };
  // Without equality filters each shard walks its time index, already in
  // (time, seq) order: a page needs at most `limit` records of each shard,
  // after the cursor. Equality filters walk posting lists in seq order, which
  // need not be time order: every match is read and sorted. So is every
  // record without a limit (a scan of the records beats the time index then).
  const bool by_time = !HasAnyEqualityFilter(query) && query.limit != 0;
  std::vector<Entry> entries;
  bool more = false;
  for (size_t i = 0; i < shards_.size(); ++i) {
    Query q = query;
    q.cursor.clear();
    if (by_time) {
      if (!q.since_ns && !q.until_ns) q.since_ns = std::numeric_limits<int64_t>::min();
      if (cursor) {
        // The shard's own (time, seq) cursor equivalent to the merged one.
        const int cmp = shards_[i].name.compare(cursor->shard);
        uint64_t seq = cursor->seq;
        if (cmp < 0) seq = desc ? UINT64_MAX : UINT64_MAX - 1;  // past every seq at ts
        if (cmp > 0) seq = desc ? 1 : 0;                        // before every seq at ts
        q.cursor = fmt::format("t:{}:{}", cursor->ts, seq);
      }
    } else {
      q.limit = 0;
    }
    auto page = shards_[i].ledger->Find(q);
    if (!page.ok()) {
      return page.status().WithContext(
          fmt::format("shard '{}'", shards_[i].name.empty() ? "(main)" : shards_[i].name));
    }
    if (!page->next_cursor.empty()) more = true;
    for (std::string& value : page->encoded) {
      codec::ValueView view;
      index::IndexedFields fields;
      Status s = codec::ParseValue(value, &view);
      if (s.ok()) s = codec::DecodeSection(view.body, /*personal=*/false, &fields);
      if (!s.ok()) {
        return s.WithContext(fmt::format("shard '{}': record {}", shards_[i].name, view.seq));
      }
      Entry e{fields.timestamp_ns, i, view.seq, std::move(value)};
      if (after_cursor(e)) entries.push_back(std::move(e));
    }
  }
  std::sort(entries.begin(), entries.end(), [&](const Entry& a, const Entry& b) {
    return desc ? key_of(a) > key_of(b) : key_of(a) < key_of(b);
  });
  QueryResult out;
  const size_t limit = query.limit == 0 ? entries.size() : query.limit;
  if (entries.size() > limit) more = true;
  const size_t n = std::min(limit, entries.size());
  out.encoded.reserve(n);
  out.shards.reserve(n);
  for (size_t k = 0; k < n; ++k) {
    out.encoded.push_back(std::move(entries[k].encoded));
    out.shards.push_back(shards_[entries[k].shard].name);
  }
  if (more && query.limit != 0 && n > 0) {
    const Entry& last = entries[n - 1];
    out.next_cursor = FormatCursor(last.ts, last.seq, shards_[last.shard].name);
  }
  return out;
}

VerifyReport ShardedReader::Verify(const VerifyOptions& options) {
  VerifyReport report;
  if (!options.trusted.empty()) {
    report.error = PerShard("a checkpoint (trusted tree head)");
    report.message = report.error.ToString();
    return report;
  }
  if (options.from_seq || options.to_seq) {
    report.error = Status::InvalidArgument(fmt::format(
        "sharded ledger '{}': sequence numbers are per shard; verify a range on one shard "
        "(open {}/{}/<name>; shards: {})",
        path_, path_, kShardsFolder, Names()));
    report.message = report.error.ToString();
    return report;
  }
  // Progress over the whole: the shards' heads are the total.
  uint64_t total = 0;
  for (const Shard& s : shards_) {
    auto head = s.ledger->GetHead();
    if (head.ok()) total += head->seq;
  }
  report.ok = true;
  uint64_t done_before = 0;
  for (const Shard& s : shards_) {
    VerifyOptions o = options;
    if (options.progress) {
      o.progress = [&](uint64_t done, uint64_t) {
        return options.progress(done_before + done, std::max(total, done_before + done));
      };
    }
    VerifyReport r = s.ledger->Verify(o);
    r.shard = s.name;
    const std::string label = s.name.empty() ? "(main)" : s.name;
    if (!r.error.ok()) {
      r.error = r.error.WithContext(fmt::format("shard '{}' ({})", label, PathOf(s.name)));
    }
    report.records_checked += r.records_checked;
    report.bytes_checked += r.bytes_checked;
    done_before += r.records_checked;
    if (!r.ok) {
      r.message = fmt::format("shard '{}': {}", label, r.message);
      if (report.ok) {
        report.problem = r.problem;
        report.bad_seq = r.bad_seq;
        report.shard = s.name;
        report.message = r.message;
      } else {
        report.message += "; " + r.message;
      }
      report.ok = false;
      if (report.error.ok() && !r.error.ok()) report.error = r.error;
    }
    const bool cancelled = r.cancelled;
    report.shards.push_back(std::move(r));
    if (cancelled) {
      report.cancelled = true;
      break;
    }
  }
  if (report.ok) {
    report.message = fmt::format("{} records in {} shards verified", report.records_checked,
                                 shards_.size());
  }
  return report;
}

Result<LedgerStats> ShardedReader::Stats() {
  LedgerStats out;
  bool any_time = false;
  for (const Shard& s : shards_) {
    auto st = s.ledger->Stats();
    if (!st.ok()) {
      return st.status().WithContext(
          fmt::format("shard '{}'", s.name.empty() ? "(main)" : s.name));
    }
    out.records += st->records;
    out.by_shard[s.name] = st->records;
    out.disk_bytes += st->disk_bytes;
    if (out.format.empty()) out.format = st->format;
    if (st->records > 0) {
      const bool first = !any_time;
      out.first_timestamp_ns = first ? st->first_timestamp_ns
                                     : std::min(out.first_timestamp_ns, st->first_timestamp_ns);
      out.last_timestamp_ns = first ? st->last_timestamp_ns
                                    : std::max(out.last_timestamp_ns, st->last_timestamp_ns);
      any_time = true;
    }
    for (const auto& [k, v] : st->by_action) out.by_action[k] += v;
    for (const auto& [k, v] : st->by_effect) out.by_effect[k] += v;
    for (const auto& [k, v] : st->by_agent) out.by_agent[k] += v;
  }
  return out;
}

Status ShardedReader::Refresh() {
  for (Shard& s : shards_) {
    Status st = s.ledger->Refresh();
    if (!st.ok()) {
      return st.WithContext(fmt::format("shard '{}'", s.name.empty() ? "(main)" : s.name));
    }
  }
  return OpenNew();
}

Status ShardedReader::Close() {
  Status first;
  for (Shard& s : shards_) {
    Status st = s.ledger->Close();
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

}  // namespace bastion
