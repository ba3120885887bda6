// A small tmpfs mounted for one test, to run a store out of space on purpose.
#ifndef BASTION_TESTS_SMALL_FS_H_
#define BASTION_TESTS_SMALL_FS_H_

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace bastion::testing {

class SmallFs {
 public:
  // Mounts a tmpfs of `kib` KiB at `dir` (created). error() says why not
  // (not root, no permission to mount in this container).
  SmallFs(const std::string& dir, int kib) : dir_(dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (geteuid() != 0) {
      error_ = "mounting a tmpfs needs root";
      return;
    }
    const std::string data = fmt::format("size={}k", kib);
    if (mount("tmpfs", dir.c_str(), "tmpfs", 0, data.c_str()) != 0) {
      error_ = fmt::format("cannot mount a tmpfs at '{}': {}", dir, strerror(errno));
      return;
    }
    mounted_ = true;
  }
  ~SmallFs() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
  }
  SmallFs(const SmallFs&) = delete;
  SmallFs& operator=(const SmallFs&) = delete;

  const std::string& error() const { return error_; }
  bool mounted() const { return mounted_; }

  // Fills every free byte with a file; Free() removes it.
  void Fill() {
    const std::string path = dir_ + "/filler";
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    std::vector<char> chunk(64 << 10, 'x');
    for (size_t n = chunk.size(); n > 0; n /= 2) {
      while (write(fd, chunk.data(), n) == static_cast<ssize_t>(n)) {
      }
    }
    close(fd);
  }
  void Free() { unlink((dir_ + "/filler").c_str()); }

 private:
  std::string dir_;
  std::string error_;
  bool mounted_ = false;
};

}  // namespace bastion::testing

#endif  // BASTION_TESTS_SMALL_FS_H_
