// A real redis-server for the fleet tests and benchmarks: started on a free
// loopback port in a temporary directory, stopped (SIGKILL) and restarted on
// the same port at will, killed when the object goes away. Persistence is
// off. A server that cannot start throws std::runtime_error (a test fails
// with it; a benchmark stops).
#ifndef BASTION_TESTS_REDIS_SERVER_H_
#define BASTION_TESTS_REDIS_SERVER_H_

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>


namespace bastion::testing {

class RedisServer {
 public:
  RedisServer() : dir_(MakeDir()), port_(FreePort()) { Start(); }
  ~RedisServer() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  bool running() const { return pid_ > 0; }

  // Starts the server (on the same port as before) and waits until it accepts.
  void Start() {
    if (pid_ > 0) return;
    std::string port = std::to_string(port_);
    pid_t pid = fork();
    if (pid == 0) {
      execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", dir_.c_str(), "--loglevel", "warning",
             "--logfile", (dir_ + "/redis.log").c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    if (pid < 0) throw std::runtime_error("fork failed");
    pid_ = pid;
    for (int i = 0; i < 500; ++i) {
      if (Accepts()) return;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error(
            "redis-server exited (is it installed? scripts/install_deps.sh installs it)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("redis-server did not accept connections on port " +
                             std::to_string(port_));
  }

  // Kills the server at once (SIGKILL): clients see the connection drop.
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  static std::string MakeDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "bastion-redis-XXXXXX").string();
    char* made = mkdtemp(templ.data());
    return made != nullptr ? std::string(made) : std::string("/tmp");
  }
  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
  }
  bool Accepts() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
  }

  std::string dir_;
  int port_;
  pid_t pid_ = -1;
};

}  // namespace bastion::testing

#endif  // BASTION_TESTS_REDIS_SERVER_H_
