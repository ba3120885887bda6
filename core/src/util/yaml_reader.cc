#include "util/yaml_reader.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/anchor.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include "bastion/cost.h"
#include "bastion/glob.h"
#include "util/path_arg.h"

namespace bastion::yaml {

namespace {

bool IsPlainKey(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string At(std::string_view source, const YAML::Mark& mark) {
  if (mark.line < 0) return std::string(source);
  return fmt::format("{}:{}:{}", source, mark.line + 1, mark.column + 1);
}

// Raised by BoundsCheck to stop the parser at the node that crosses a limit.
struct OverLimit {
  YAML::Mark mark;
  std::string what;
};

// Follows the parser's events and keeps, for each anchored node, the size and
// height it has with its own aliases expanded; an alias then costs what it
// refers to, without the tree ever being built or walked.
class BoundsCheck : public YAML::EventHandler {
 public:
  BoundsCheck(const LoadLimits& limits, std::string_view text) : limits_(limits), text_(text) {}

  void OnDocumentStart(const YAML::Mark& mark) override {
    // yaml-cpp's parser stalls on some input (a stray ',' at the top level):
    // it starts empty documents at the same place forever without moving on.
    if (documents_++ > 0 && mark.pos == last_start_) {
      const size_t pos = static_cast<size_t>(mark.pos);
      throw OverLimit{mark, pos < text_.size()
                                ? fmt::format("malformed YAML: unexpected '{}'", text_[pos])
                                : std::string("malformed YAML")};
    }
    last_start_ = mark.pos;
    anchors_.clear();
    open_.clear();
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Node(mark, anchor, 1, 1);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string&) override {
    Node(mark, anchor, 1, 1);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (++aliases_ > limits_.max_aliases) {
      throw OverLimit{mark, fmt::format("more than {} aliases (the limit)", limits_.max_aliases)};
    }
    if (anchor >= anchors_.size() || anchors_[anchor].nodes == 0) {
      throw OverLimit{mark, "an alias inside the node it refers to (a cycle)"};
    }
    const Size size = anchors_[anchor];
    Node(mark, YAML::NullAnchor, size.nodes, size.height);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Size {
    uint64_t nodes = 0;  // 0: not complete yet
    int height = 0;
  };
  struct Container {
    YAML::anchor_t anchor;
    Size size;
  };

  void Count(const YAML::Mark& mark, uint64_t nodes, int height) {
    const size_t depth = open_.size() + static_cast<size_t>(height);
    if (depth > static_cast<size_t>(limits_.max_depth)) {
      throw OverLimit{mark,
                      fmt::format("nested deeper than {} levels (the limit)", limits_.max_depth)};
    }
    total_ = nodes > limits_.max_nodes ? limits_.max_nodes + 1 : total_ + nodes;
    if (total_ > limits_.max_nodes) {
      throw OverLimit{mark, fmt::format("more than {} nodes once aliases are expanded (the limit)",
                                        limits_.max_nodes)};
    }
  }
  void Remember(YAML::anchor_t anchor, Size size) {
    if (anchor == YAML::NullAnchor) return;
    if (anchor >= anchors_.size()) anchors_.resize(anchor + 1);
    anchors_[anchor] = size;
  }
  // Adds a complete node to the container it is in.
  void AddToParent(Size size) {
    if (open_.empty()) return;
    Size& parent = open_.back().size;
    parent.nodes = std::min(parent.nodes + size.nodes, limits_.max_nodes + 1);
    parent.height = std::max(parent.height, size.height + 1);
  }
  void Node(const YAML::Mark& mark, YAML::anchor_t anchor, uint64_t nodes, int height) {
    Count(mark, nodes, height);
    Remember(anchor, {nodes, height});
    AddToParent({nodes, height});
  }
  void Open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    Count(mark, 1, 1);
    if (anchor != YAML::NullAnchor) Remember(anchor, {});  // known, not complete
    open_.push_back({anchor, {1, 1}});
  }
  void Close() {
    const Container done = open_.back();
    open_.pop_back();
    Remember(done.anchor, done.size);
    AddToParent(done.size);
  }

  const LoadLimits& limits_;
  std::string_view text_;
  uint64_t documents_ = 0;
  int last_start_ = -1;
  std::vector<Size> anchors_;  // by the parser's anchor number, per document
  std::vector<Container> open_;
  uint64_t total_ = 0;    // over all documents
  uint64_t aliases_ = 0;  // over all documents
};

}  // namespace

Result<std::vector<YAML::Node>> LoadDocuments(std::string_view text, std::string_view source,
                                              const LoadLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return Status::InvalidArgument(fmt::format("{}: {} bytes, over the limit of {} bytes", source,
                                               text.size(), limits.max_bytes));
  }
  const std::string copy(text);
  try {
    std::istringstream in(copy);
    YAML::Parser parser(in);
    BoundsCheck check(limits, copy);
    while (parser.HandleNextDocument(check)) {
    }
    return YAML::LoadAll(copy);
  } catch (const OverLimit& e) {
    return Status::InvalidArgument(
        fmt::format("{}: {}", At(source, e.mark), e.what));
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(
        fmt::format("{}: malformed YAML: {}", At(source, e.mark), e.msg));
  }
}

Result<YAML::Node> LoadDocument(std::string_view text, std::string_view source,
                                const LoadLimits& limits) {
  auto docs = LoadDocuments(text, source, limits);
  if (!docs.ok()) return docs.status();
  if (docs->empty()) return YAML::Node(YAML::NodeType::Null);
  if (docs->size() > 1) {
    return Status::InvalidArgument(
        fmt::format("{}: more than one YAML document (remove the extra '---')",
                    At(source, (*docs)[1].Mark())));
  }
  return std::move((*docs)[0]);
}

std::string ChildPath(std::string_view path, std::string_view key) {
  if (IsPlainKey(key)) return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
  std::string quoted;
  for (char c : key) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return fmt::format("{}[\"{}\"]", path, quoted);
}

std::string IndexPath(std::string_view path, size_t i) { return fmt::format("{}[{}]", path, i); }

std::string_view KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "nothing";
  }
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

bool HasControlChars(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) return true;
  }
  return false;
}

Result<Field> Reader::Load(std::string_view text, std::string_view expected) const {
  auto loaded = LoadDocuments(text, source_);
  if (!loaded.ok()) return loaded.status();
  const std::vector<YAML::Node>& docs = *loaded;
  if (docs.empty() || docs[0].IsNull()) {
    YAML::Mark first;
    first.line = 0;
    first.column = 0;
    return Error(first, "", fmt::format("empty document (expected {})", expected));
  }
  if (docs.size() > 1) {
    return Error(docs[1].Mark(), "", "more than one YAML document (remove the extra '---')");
  }
  return Field{docs[0], docs[0].Mark(), docs[0].Mark(), ""};
}

Status Reader::Error(const YAML::Mark& mark, std::string_view path, std::string_view what) const {
  std::string where = source_;
  if (mark.line >= 0) where += fmt::format(":{}:{}", mark.line + 1, mark.column + 1);
  if (path.empty()) return Status::InvalidArgument(fmt::format("{}: {}", where, what));
  return Status::InvalidArgument(fmt::format("{}: {}: {}", where, path, what));
}

Status Reader::GetMembers(const Field& f, std::initializer_list<std::string_view> allowed,
                          std::string_view noun, Members* out) const {
  if (!f.node.IsMap()) {
    return Error(f, fmt::format("expected a mapping, found {}", KindName(f.node)));
  }
  std::unordered_map<std::string, int> seen;  // key -> line
  for (const auto& member : f.node) {
    // Copies: yaml-cpp's iterators hand out temporaries.
    const YAML::Node key = member.first;
    const YAML::Node value = member.second;
    if (!key.IsScalar()) return Error(key.Mark(), f.path, "keys must be strings");
    const std::string& name = key.Scalar();
    if (name.empty()) return Error(key.Mark(), f.path, fmt::format("empty {} name", noun));
    if (allowed.size() > 0 && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string_view best;
      size_t best_distance = 3;
      for (std::string_view a : allowed) {
        const size_t d = EditDistance(name, a);
        if (d < best_distance) {
          best_distance = d;
          best = a;
        }
      }
      if (!best.empty()) {
        return Error(key.Mark(), f.path,
                     fmt::format("unknown key '{}' (did you mean '{}'?)", name, best));
      }
      return Error(key.Mark(), f.path,
                   fmt::format("unknown key '{}' (allowed: {})", name, fmt::join(allowed, ", ")));
    }
    if (auto [it_seen, fresh] = seen.emplace(name, key.Mark().line + 1); !fresh) {
      return Error(
          key.Mark(), f.path,
          fmt::format("duplicate {} '{}' (first defined at line {})", noun, name, it_seen->second));
    }
    Field child;
    child.node = value;
    child.mark = (value.IsNull() || !value.IsDefined()) ? key.Mark() : value.Mark();
    child.key_mark = key.Mark();
    child.path = ChildPath(f.path, name);
    out->emplace_back(name, std::move(child));
  }
  return Status::OK();
}

Status Reader::Items(const Field& f, std::vector<Field>* out) const {
  if (!f.node.IsSequence()) {
    return Error(f, fmt::format("expected a list, found {}", KindName(f.node)));
  }
  for (size_t i = 0; i < f.node.size(); ++i) {
    const YAML::Node item = f.node[i];
    Field child;
    child.node = item;
    child.mark = item.IsNull() ? f.mark : item.Mark();
    child.key_mark = child.mark;
    child.path = IndexPath(f.path, i);
    out->push_back(std::move(child));
  }
  return Status::OK();
}

Result<std::string> Reader::String(const Field& f) const {
  if (!f.node.IsScalar()) {
    return Error(f, fmt::format("expected a string, found {}", KindName(f.node)));
  }
  return f.node.Scalar();
}

Result<std::string> Reader::Name(const Field& f) const {
  auto s = String(f);
  if (!s.ok()) return s;
  if (s->empty()) return Error(f, "must not be empty");
  if (HasControlChars(*s)) return Error(f, "must not contain control characters");
  return s;
}

Result<std::vector<std::string>> Reader::StringList(const Field& f) const {
  if (!f.node.IsSequence()) return Error(f, "expected a list of strings");
  if (f.node.size() == 0) return Error(f, "must not be empty (omit the key instead)");
  std::vector<std::string> out;
  for (size_t i = 0; i < f.node.size(); ++i) {
    const YAML::Node item = f.node[i];
    if (!item.IsScalar()) {
      return Error(item.IsNull() ? f.mark : item.Mark(), IndexPath(f.path, i),
                   fmt::format("expected a string, found {}", KindName(item)));
    }
    out.push_back(item.Scalar());
  }
  return out;
}

Result<std::vector<std::string>> Reader::GlobList(const Field& f, bool allow_single) const {
  std::vector<std::string> list;
  const bool single = allow_single && f.node.IsScalar();
  if (single) {
    list.push_back(f.node.Scalar());
  } else {
    auto l = StringList(f);
    if (!l.ok()) return l.status();
    list = std::move(*l);
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string& p = list[i];
    const YAML::Mark mark = single ? f.mark : f.node[i].Mark();
    const std::string path = single ? f.path : IndexPath(f.path, i);
    if (p.empty()) return Error(mark, path, "empty pattern");
    if (Status s = ValidateGlob(p); !s.ok()) {
      return Error(mark, path, fmt::format("invalid glob '{}': {}", p, s.message()));
    }
  }
  return list;
}

Result<uint64_t> Reader::Unsigned(const Field& f) const {
  if (!f.node.IsScalar()) {
    return Error(f, fmt::format("expected a non-negative integer, found {}", KindName(f.node)));
  }
  const std::string& s = f.node.Scalar();
  uint64_t value = 0;
  bool digits = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_' && digits && i + 1 < s.size()) continue;  // 200_000
    if (c < '0' || c > '9') {
      return Error(f, fmt::format("expected a non-negative integer, found '{}'", s));
    }
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - d) / 10) return Error(f, fmt::format("'{}' is too large", s));
    value = value * 10 + d;
    digits = true;
  }
  if (!digits) return Error(f, fmt::format("expected a non-negative integer, found '{}'", s));
  return value;
}

Result<bool> Reader::Bool(const Field& f) const {
  if (f.node.IsScalar()) {
    const std::string& s = f.node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    return Error(f, fmt::format("expected true or false, found '{}'", s));
  }
  return Error(f, fmt::format("expected true or false, found {}", KindName(f.node)));
}

Result<double> Reader::Number(const Field& f) const {
  if (!f.node.IsScalar()) {
    return Error(f, fmt::format("expected a number, found {}", KindName(f.node)));
  }
  const std::string& s = f.node.Scalar();
  double v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || !std::isfinite(v)) {
    return Error(f, fmt::format("expected a number, found '{}'", s));
  }
  return v;
}

Result<double> Reader::Fraction(const Field& f, double lo, double hi) const {
  if (!f.node.IsScalar()) {
    return Error(f, fmt::format("expected a percentage or fraction, found {}", KindName(f.node)));
  }
  std::string_view s = TrimSpaces(f.node.Scalar());
  const bool percent = !s.empty() && s.back() == '%';
  if (percent) s = TrimSpaces(s.substr(0, s.size() - 1));
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) {
    return Error(f, fmt::format("expected a percentage ('99.9%') or a fraction (0.999), found '{}'",
                                f.node.Scalar()));
  }
  if (percent) v /= 100;
  if (v < lo || v > hi) {
    return Error(f, fmt::format("{} must be between {}% and {}%", f.node.Scalar(), lo * 100,
                                hi * 100));
  }
  return v;
}

Result<int64_t> ParseDuration(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(fmt::format("invalid duration '{}': {}", text, why));
  };
  std::string_view s = TrimSpaces(text);
  if (s.empty()) return bad("expected e.g. 250ms, 30s, 5m, 1h, 7d");
  __int128 total = 0;
  size_t i = 0;
  bool bare = true;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
    if (i == start) return bad("expected a number before each unit");
    const std::string_view number = s.substr(start, i - start);
    start = i;
    while (i < s.size() && s[i] >= 'a' && s[i] <= 'z') ++i;
    const std::string_view unit = s.substr(start, i - start);
    int64_t unit_ns;
    if (unit.empty()) {
      if (!bare || i != s.size()) return bad("every number needs a unit (ms, s, m, h, d, w)");
      unit_ns = 1'000'000'000;
    } else if (unit == "ns") {
      unit_ns = 1;
    } else if (unit == "us") {
      unit_ns = 1'000;
    } else if (unit == "ms") {
      unit_ns = 1'000'000;
    } else if (unit == "s") {
      unit_ns = 1'000'000'000;
    } else if (unit == "m" || unit == "min") {
      unit_ns = 60'000'000'000;
    } else if (unit == "h") {
      unit_ns = 3'600'000'000'000;
    } else if (unit == "d") {
      unit_ns = 86'400'000'000'000;
    } else if (unit == "w") {
      unit_ns = 7 * 86'400'000'000'000;
    } else {
      return bad(fmt::format("unknown unit '{}' (use ms, s, m, h, d or w)", unit));
    }
    bare = false;
    // Exact: the number is read as a decimal with up to 9 fractional digits.
    auto scaled = ParseScaledDecimal(number, 9, /*allow_rounding=*/false);
    if (!scaled.ok()) return bad("expected a number with at most 9 decimal places");
    const __int128 part = static_cast<__int128>(*scaled) * unit_ns / 1'000'000'000;
    total += part;
    if (total > INT64_MAX) return bad("too long");
  }
  return static_cast<int64_t>(total);
}

std::string FormatDuration(int64_t ns) {
  static constexpr std::pair<int64_t, const char*> kUnits[] = {
      {86'400'000'000'000, "d"}, {3'600'000'000'000, "h"}, {60'000'000'000, "m"},
      {1'000'000'000, "s"},      {1'000'000, "ms"},        {1'000, "us"},
      {1, "ns"}};
  for (const auto& [unit, name] : kUnits) {
    if (ns != 0 && ns % unit == 0) return fmt::format("{}{}", ns / unit, name);
  }
  return "0s";
}

Result<int64_t> Reader::Duration(const Field& f, bool allow_zero) const {
  if (!f.node.IsScalar()) {
    return Error(f, fmt::format("expected a duration such as 30s or 5m, found {}",
                                KindName(f.node)));
  }
  auto d = ParseDuration(f.node.Scalar());
  if (!d.ok()) return Error(f, d.status().message());
  if (*d == 0 && !allow_zero) return Error(f, "must be longer than zero");
  return d;
}

Result<int64_t> Reader::Usd(const Field& f) const {
  if (!f.node.IsScalar()) {
    return Error(f, fmt::format("expected an amount in USD, found {}", KindName(f.node)));
  }
  std::string_view s = TrimSpaces(f.node.Scalar());
  if (!s.empty() && s.front() == '$') s.remove_prefix(1);
  std::string digits;
  for (char c : s) {
    if (c != '_' && c != ',') digits += c;  // 1_000, 1,000
  }
  auto v = ParseUsd(digits);
  if (!v.ok()) {
    return Error(f, fmt::format("expected an amount in USD with at most 9 decimal places, "
                                "found '{}'",
                                f.node.Scalar()));
  }
  return v;
}

Result<std::shared_ptr<const TimeZone>> Reader::Zone(const Field& f) const {
  auto name = Name(f);
  if (!name.ok()) return name.status();
  auto zone = TimeZone::Load(*name);
  if (!zone.ok()) return Error(f, zone.status().message());
  return zone;
}

Status Reader::Version(const Field& f, uint64_t supported) const {
  auto v = Unsigned(f);
  if (!v.ok()) return v.status();
  if (*v != supported) {
    return Error(f, fmt::format("unsupported version {} (this build reads version {})", *v,
                                supported));
  }
  return Status::OK();
}

Result<Reader::ListDocument> Reader::LoadListDocument(std::string_view text, uint64_t supported,
                                                     std::string_view list_key) const {
  auto root = Load(text, fmt::format("a mapping starting with 'version: {}'", supported));
  if (!root.ok()) return root.status();
  Members top;
  BASTION_RETURN_IF_ERROR(GetMembers(*root, {"version", "time_zone", list_key}, "key", &top));
  ListDocument doc;
  doc.root = *root;
  bool has_version = false;
  const Field* list = nullptr;
  for (const auto& [key, value] : top) {
    if (key == "version") {
      BASTION_RETURN_IF_ERROR(Version(value, supported));
      has_version = true;
    } else if (key == "time_zone") {
      auto zone = Zone(value);
      if (!zone.ok()) return zone.status();
      doc.zone = std::move(*zone);
    } else {
      list = &value;
    }
  }
  if (!has_version) {
    return Error(*root, fmt::format("missing required key 'version' (write 'version: {}' first)",
                                    supported));
  }
  if (list == nullptr) return Error(*root, fmt::format("missing required key '{}'", list_key));
  BASTION_RETURN_IF_ERROR(Items(*list, &doc.items));
  return doc;
}

Result<std::string> ReadConfigFile(const std::string& path, std::string_view what,
                                   size_t max_bytes) {
  BASTION_RETURN_IF_ERROR(CheckPathArgument(path, fmt::format("the {} file path", what)));
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument(
        fmt::format("cannot read {} file '{}': it is a directory", what, path));
  }
  // Checked again while reading: the file may grow, or not be a regular file.
  if (const auto size = std::filesystem::file_size(path, ec); !ec && size > max_bytes) {
    return Status::InvalidArgument(fmt::format(
        "cannot read {} file '{}': {} bytes, over the limit of {} bytes", what, path, size,
        max_bytes));
  }
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    const int err = errno;
    const std::string msg =
        fmt::format("cannot read {} file '{}': {}", what, path, std::strerror(err));
    return err == ENOENT ? Status::NotFound(msg) : Status::IOError(msg);
  }
  std::string content;
  char buffer[1 << 14];
  size_t n;
  bool too_large = false;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) {
    if (content.size() + n > max_bytes) {
      too_large = true;
      break;
    }
    content.append(buffer, n);
  }
  if (too_large) {
    std::fclose(file);
    return Status::InvalidArgument(fmt::format(
        "cannot read {} file '{}': over the limit of {} bytes", what, path, max_bytes));
  }
  const bool failed = std::ferror(file) != 0;
  const int err = errno;
  std::fclose(file);
  if (failed) {
    return Status::IOError(
        fmt::format("cannot read {} file '{}': {}", what, path, std::strerror(err)));
  }
  return content;
}

}  // namespace bastion::yaml
