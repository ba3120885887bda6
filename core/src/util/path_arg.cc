#include "util/path_arg.h"

#include <fmt/format.h>

namespace bastion {

Status CheckPathArgument(std::string_view path, std::string_view argument, bool allow_empty) {
  if (path.empty() && !allow_empty) {
    return Status::InvalidArgument(fmt::format("{} is empty; it must name a path", argument));
  }
  const size_t nul = path.find('\0');
  if (nul != std::string_view::npos) {
    std::string shown(path.substr(0, nul));
    return Status::InvalidArgument(fmt::format(
        "{} holds a NUL byte at offset {} (after '{}'); a path cannot contain one", argument, nul,
        shown));
  }
  return Status::OK();
}

}  // namespace bastion
