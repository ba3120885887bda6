// Reading configuration YAML with errors that point at the problem.
//
// Every config file of Bastion (permissions, budgets, SLOs) is read through a
// YamlReader so its errors look the same:
//   "budgets.yaml:12:5: budgets[2].limit_usd: expected a decimal amount, found 'ten'"
// i.e. source:line:column, the field's path from the document root, and what
// is wrong. yaml-cpp exceptions never escape: malformed YAML is an error like
// any other.
//
// Every YAML text Bastion reads (these files, bundle.yaml, pricing tables,
// LiteLLM's JSON, policy test cases) is parsed by LoadDocuments, which holds it
// to LoadLimits before any code walks the tree. yaml-cpp shares an aliased
// node instead of copying it, so a "billion laughs" document parses small and
// only blows up when walked; LoadDocuments computes the size the tree has once
// its aliases are expanded, from the parser's events, and refuses the text at
// the alias that crosses a limit.
#ifndef BASTION_UTIL_YAML_READER_H_
#define BASTION_UTIL_YAML_READER_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "bastion/status.h"
#include "bastion/time_zone.h"

namespace bastion::yaml {

// A YAML value with what error messages need to point at it.
struct Field {
  YAML::Node node;
  YAML::Mark mark;      // the value's, or its key's when the value is empty
  YAML::Mark key_mark;  // its key's, for members of a mapping
  std::string path;     // "roles.support.tools[1].operations"
};

using Members = std::vector<std::pair<std::string, Field>>;

// "roles" + "support" -> "roles.support"; odd keys are quoted: agents["*-ro"].
std::string ChildPath(std::string_view path, std::string_view key);
std::string IndexPath(std::string_view path, size_t i);
// "a mapping", "a list", "a scalar", "nothing".
std::string_view KindName(const YAML::Node& node);
size_t EditDistance(std::string_view a, std::string_view b);
bool HasControlChars(std::string_view s);

// The bounds on one YAML text. Nodes are counted as a walk of the tree meets
// them: keys, values and list items each count one, and an alias counts every
// node of what it refers to.
struct LoadLimits {
  size_t max_bytes = 16 << 20;     // the text
  uint64_t max_nodes = 1'000'000;  // the tree with its aliases expanded
  uint64_t max_aliases = 10'000;   // alias references ("*name")
  int max_depth = 64;              // nesting of mappings and lists, aliases expanded
};

// Parses every document of `text`. InvalidArgument, naming
// "source:line:column", for malformed YAML, for a text over the limits (at the
// node that crosses them) and for an alias to a node that contains it (a cycle
// that no walk of the tree would finish).
Result<std::vector<YAML::Node>> LoadDocuments(std::string_view text, std::string_view source,
                                              const LoadLimits& limits = {});
// The one document of `text` (a Null node for an empty text); a second
// document is an error.
Result<YAML::Node> LoadDocument(std::string_view text, std::string_view source,
                                const LoadLimits& limits = {});

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  // Parses exactly one YAML document. An empty document or a second document
  // is an error; `expected` describes the root for the empty-document message
  // ("a mapping starting with 'version: 1'").
  Result<Field> Load(std::string_view text, std::string_view expected) const;

  Status Error(const YAML::Mark& mark, std::string_view path, std::string_view what) const;
  Status Error(const Field& f, std::string_view what) const { return Error(f.mark, f.path, what); }

  // The members of mapping `f`, in order. Keys must be non-empty strings,
  // unique, and (if `allowed` is not empty) among `allowed`, with a
  // "did you mean" hint for near misses. `noun` names what a duplicate key is
  // ("key", "role", "budget").
  Status GetMembers(const Field& f, std::initializer_list<std::string_view> allowed,
                    std::string_view noun, Members* out) const;
  // The items of list `f`, with their paths ("budgets[3]").
  Status Items(const Field& f, std::vector<Field>* out) const;

  Result<std::string> String(const Field& f) const;
  // A non-empty string without control characters.
  Result<std::string> Name(const Field& f) const;
  // A non-empty list of strings.
  Result<std::vector<std::string>> StringList(const Field& f) const;
  // A non-empty list of valid glob patterns; with `allow_single` a single
  // string is accepted as a list of one.
  Result<std::vector<std::string>> GlobList(const Field& f, bool allow_single = false) const;
  // Digits, with '_' allowed between them (200_000).
  Result<uint64_t> Unsigned(const Field& f) const;
  Result<bool> Bool(const Field& f) const;
  // A finite decimal number.
  Result<double> Number(const Field& f) const;
  // "99.9%" -> 0.999, or a plain fraction 0.999. Must lie in [lo, hi].
  Result<double> Fraction(const Field& f, double lo, double hi) const;
  // "250ms", "30s", "5m", "1h", "7d", "2w" (or a combination like "1h30m");
  // a bare number is seconds. Returns nanoseconds, > 0 unless allow_zero.
  Result<int64_t> Duration(const Field& f, bool allow_zero = false) const;
  // US dollars as a decimal with at most 9 places ("5", "0.25", "$12.50"),
  // returned in nano-USD.
  Result<int64_t> Usd(const Field& f) const;
  // An IANA zone name or a fixed offset (TimeZone::Load).
  Result<std::shared_ptr<const TimeZone>> Zone(const Field& f) const;
  // A 'version:' value, which must equal `supported`.
  Status Version(const Field& f, uint64_t supported) const;

  // The shape shared by the budgets and SLO files: a mapping with a required
  // `version` (== supported), an optional `time_zone`, and a required list
  // under `list_key`.
  struct ListDocument {
    Field root;
    std::shared_ptr<const TimeZone> zone;  // null when not given
    std::vector<Field> items;
  };
  Result<ListDocument> LoadListDocument(std::string_view text, uint64_t supported,
                                        std::string_view list_key) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

// Parses a duration as Reader::Duration does; InvalidArgument with the reason.
Result<int64_t> ParseDuration(std::string_view text);
// The inverse, in the largest unit that divides exactly: "30d", "5m",
// "250ms", "7ns"; "0s" for zero.
std::string FormatDuration(int64_t ns);

// The bytes of a configuration file. Errors name `what` and the path: NotFound
// when it does not exist, InvalidArgument for a directory or a file over
// `max_bytes` (checked before reading it), IOError otherwise ("cannot read SLO
// file 'x': Permission denied").
Result<std::string> ReadConfigFile(const std::string& path, std::string_view what,
                                   size_t max_bytes = LoadLimits{}.max_bytes);

}  // namespace bastion::yaml

#endif  // BASTION_UTIL_YAML_READER_H_
