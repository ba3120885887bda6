#include "policy/bundle.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "ledger/record_codec.h"
#include "util/sha256.h"
#include "util/utf8.h"
#include "util/yaml_reader.h"

namespace bastion::policy {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxPolicyFileBytes = 1 << 20;

std::string Where(const std::string& source, const YAML::Mark& mark) {
  if (mark.is_null()) return source;
  return fmt::format("{}:{}:{}", source, mark.line + 1, mark.column + 1);
}

Result<Value> ToValue(const YAML::Node& node, const std::string& source, int depth) {
  if (depth > 64) return Status::InvalidArgument(Where(source, node.Mark()) + ": nested too deeply");
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return Value();
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() == "!") return Value(s);  // quoted: a string, whatever it looks like
      if (s == "true" || s == "True" || s == "TRUE") return Value(true);
      if (s == "false" || s == "False" || s == "FALSE") return Value(false);
      if (s == "null" || s == "~" || s.empty()) return Value();
      char* end = nullptr;
      errno = 0;
      const long long i = std::strtoll(s.c_str(), &end, 10);
      if (end == s.c_str() + s.size() && errno == 0) return Value(static_cast<int64_t>(i));
      const double d = std::strtod(s.c_str(), &end);
      if (end == s.c_str() + s.size() && !s.empty() && (std::isdigit(s[0]) || s[0] == '-' ||
                                                          s[0] == '+' || s[0] == '.')) {
        return Value(d);
      }
      return Value(s);
    }
    case YAML::NodeType::Sequence: {
      Value::Array a;
      for (const auto& item : node) {
        auto v = ToValue(item, source, depth + 1);
        if (!v.ok()) return v;
        a.push_back(std::move(*v));
      }
      return Value(std::move(a));
    }
    case YAML::NodeType::Map: {
      Value::Object o;
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          return Status::InvalidArgument(Where(source, kv.first.Mark()) + ": keys must be strings");
        }
        auto v = ToValue(kv.second, source, depth + 1);
        if (!v.ok()) return v;
        o.emplace_back(kv.first.Scalar(), std::move(*v));
      }
      return Value(std::move(o));
    }
  }
  return Value();
}

Status ParseSettings(const std::string& yaml, const std::string& source, CompiledBundle* b) {
  auto parsed = ParseYamlValue(yaml, source);
  if (!parsed.ok()) return parsed.status();
  const Value& root = *parsed;
  if (root.is_null()) return Status::OK();
  if (root.type() != Value::Type::kObject) {
    return Status::InvalidArgument(source + ": expected a mapping (fail_open, limits, data)");
  }
  for (const auto& [key, v] : root.as_object()) {
    if (key == "fail_open") {
      if (v.type() != Value::Type::kBool) {
        return Status::InvalidArgument(source + ": fail_open: expected true or false");
      }
      b->fail_open = v.as_bool();
    } else if (key == "limits") {
      if (v.type() != Value::Type::kObject) {
        return Status::InvalidArgument(source + ": limits: expected a mapping");
      }
      for (const auto& [lk, lv] : v.as_object()) {
        // 2^40 bounds every limit far above any real one, and keeps the
        // byte counts (kilobytes times 1024) within 64 bits.
        constexpr int64_t kMaxLimit = int64_t{1} << 40;
        if (lv.type() != Value::Type::kInt || lv.as_int() <= 0 || lv.as_int() > kMaxLimit) {
          return Status::InvalidArgument(fmt::format(
              "{}: limits.{}: expected a positive integer of at most {}", source, lk, kMaxLimit));
        }
        if (lk == "instructions") {
          b->limits.instructions = lv.as_int();
        } else if (lk == "memory_kb") {
          b->limits.memory_bytes = static_cast<size_t>(lv.as_int()) * 1024;
        } else if (lk == "counter_keys") {
          b->limits.counter_keys = static_cast<size_t>(lv.as_int());
        } else if (lk == "counter_key_bytes") {
          b->limits.counter_key_bytes = static_cast<size_t>(lv.as_int());
        } else if (lk == "counter_memory_kb") {
          b->limits.counter_memory_bytes = static_cast<size_t>(lv.as_int()) * 1024;
        } else {
          return Status::InvalidArgument(
              fmt::format("{}: limits.{}: unknown setting (expected instructions, memory_kb, "
                          "counter_keys, counter_key_bytes, counter_memory_kb)",
                          source, lk));
        }
      }
    } else if (key == "data") {
      b->data = v;
    } else {
      return Status::InvalidArgument(fmt::format(
          "{}: unknown setting '{}' (expected fail_open, limits, data)", source, key));
    }
  }
  return Status::OK();
}

Result<std::string> ReadFile(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return Status::IOError(fmt::format("{}: {}", path.string(), ec.message()));
  if (size > kMaxPolicyFileBytes) {
    return Status::InvalidArgument(
        fmt::format("{}: {} bytes, over the {}-byte limit for a bundle file", path.string(), size,
                    kMaxPolicyFileBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError(fmt::format("{}: cannot be read", path.string()));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool IsWordChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

int LineOf(std::string_view code, size_t offset) {
  return 1 + static_cast<int>(std::count(code.begin(), code.begin() + offset, '\n'));
}

}  // namespace

int ScopeLine(std::string_view code, std::string_view glob) {
  size_t scope = std::string_view::npos;
  for (size_t at = code.find("scope"); at != std::string_view::npos;
       at = code.find("scope", at + 1)) {
    if (at > 0 && (IsWordChar(code[at - 1]) || code[at - 1] == '.')) continue;
    size_t next = at + 5;
    while (next < code.size() && (code[next] == ' ' || code[next] == '\t')) ++next;
    if (next < code.size() && code[next] == '=' &&
        (next + 1 == code.size() || code[next + 1] != '=')) {
      scope = at;
      break;
    }
  }
  if (scope == std::string_view::npos) return 0;
  size_t at = scope;
  if (!glob.empty()) {
    const size_t double_quoted = code.find(fmt::format("\"{}\"", glob), scope);
    const size_t single_quoted = code.find(fmt::format("'{}'", glob), scope);
    if (std::min(double_quoted, single_quoted) != std::string_view::npos) {
      at = std::min(double_quoted, single_quoted);
    }
  }
  return LineOf(code, at);
}

}  // namespace bastion::policy

namespace bastion {

Result<Value> ParseYamlValue(const std::string& yaml, const std::string& source_name) {
  auto node = yaml::LoadDocument(yaml, source_name);
  if (!node.ok()) return node.status();
  try {
    return policy::ToValue(*node, source_name, 0);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(
        fmt::format("{}: {}", policy::Where(source_name, e.mark), e.msg));
  }
}

}  // namespace bastion

namespace bastion::policy {

Result<std::shared_ptr<CompiledBundle>> MakeBundle(
    std::string name, std::vector<std::pair<std::string, std::string>> sources,
    const std::string& bundle_yaml, const std::string& permissions_yaml) {
  auto b = std::make_shared<CompiledBundle>();
  b->name = name;
  std::sort(sources.begin(), sources.end());
  for (size_t i = 0; i < sources.size(); ++i) {
    const auto& [file, code] = sources[i];
    if (i > 0 && sources[i - 1].first == file) {
      return Status::InvalidArgument(fmt::format("{}: file '{}' appears twice", name, file));
    }
    if (!IsValidUtf8(code)) {
      return Status::InvalidArgument(fmt::format("{}/{}: not valid UTF-8 text", name, file));
    }
  }
  b->sources = std::move(sources);
  const std::string prefix = name.empty() ? "" : name + "/";
  BASTION_RETURN_IF_ERROR(ParseSettings(bundle_yaml, prefix + "bundle.yaml", b.get()));
  if (!permissions_yaml.empty()) {
    auto perms = Permissions::Parse(permissions_yaml, prefix + "permissions.yaml");
    if (!perms.ok()) return perms.status();
    b->permissions = std::move(*perms);
  }
  // The version commits to every file, by name, in order.
  Sha256 sha;
  auto add = [&](std::string_view file, std::string_view content) {
    std::string head;
    codec::PutVarint(&head, file.size());
    head.append(file);
    codec::PutVarint(&head, content.size());
    sha.Update(head);
    sha.Update(content);
  };
  add("bundle.yaml", bundle_yaml);
  add("permissions.yaml", permissions_yaml);
  for (const auto& [file, code] : b->sources) add(file, code);
  b->version = HashToHex(sha.Final());
  return b;
}

Result<std::shared_ptr<CompiledBundle>> ReadBundleDir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Status::NotFound(fmt::format("policy bundle '{}' is not a directory", dir));
  }
  std::vector<std::pair<std::string, std::string>> sources;
  std::string bundle_yaml, permissions_yaml;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    const std::string file = entry.path().filename().string();
    if (entry.path().extension() == ".lua") {
      auto code = ReadFile(entry.path());
      if (!code.ok()) return code.status();
      sources.emplace_back(file, std::move(*code));
    } else if (file == "bundle.yaml" || file == "permissions.yaml") {
      auto text = ReadFile(entry.path());
      if (!text.ok()) return text.status();
      (file == "bundle.yaml" ? bundle_yaml : permissions_yaml) = std::move(*text);
    }
  }
  if (ec) return Status::IOError(fmt::format("{}: {}", dir, ec.message()));
  std::string name = dir;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  return MakeBundle(name, std::move(sources), bundle_yaml, permissions_yaml);
}

}  // namespace bastion::policy
