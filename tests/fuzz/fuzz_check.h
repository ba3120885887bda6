// Invariant checks for the fuzz targets: a broken invariant aborts with a
// message, so libFuzzer saves the input as a crash like any sanitizer report.
#ifndef BASTION_TESTS_FUZZ_FUZZ_CHECK_H_
#define BASTION_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#define FUZZ_CHECK(cond, ...)                                                        \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                             \
      std::fprintf(stderr, "\n");                                                    \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

namespace bastion::fuzz {

// Splits `data` at every line that is exactly `marker` ("a\n%%\nb" -> {"a", "b"}),
// so one input can carry several files and a seed stays readable.
inline std::vector<std::string> SplitParts(std::string_view data, std::string_view marker) {
  const std::string sep = "\n" + std::string(marker) + "\n";
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t at = data.find(sep, start);
    if (at == std::string_view::npos) {
      parts.emplace_back(data.substr(start));
      return parts;
    }
    parts.emplace_back(data.substr(start, at - start));
    start = at + sep.size();
  }
}

}  // namespace bastion::fuzz

#endif  // BASTION_TESTS_FUZZ_FUZZ_CHECK_H_
