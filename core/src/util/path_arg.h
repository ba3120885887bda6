#ifndef BASTION_UTIL_PATH_ARG_H_
#define BASTION_UTIL_PATH_ARG_H_

#include <string_view>

#include "bastion/status.h"

namespace bastion {

// InvalidArgument naming `argument` if `path` cannot name a file: it is empty
// (when `allow_empty` is false) or holds a NUL byte, which the operating
// system would read as the end of the path and so open another file.
Status CheckPathArgument(std::string_view path, std::string_view argument,
                         bool allow_empty = false);

}  // namespace bastion

#endif  // BASTION_UTIL_PATH_ARG_H_
