#include "tests/client/server_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace faceid {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

pid_t Spawn(const std::string& program, const std::vector<std::string>& args,
            const std::string& out_path, const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

}  // namespace

ProcessResult RunProcess(const std::string& program, const std::vector<std::string>& args,
                         const std::string& scratch_dir) {
  const std::string out_path = scratch_dir + "/cmd.out";
  const std::string err_path = scratch_dir + "/cmd.err";
  ProcessResult result;
  const pid_t pid = Spawn(program, args, out_path, err_path);
  if (pid < 0) {
    result.err = "cannot start " + program;
    return result;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = ExitCodeOf(status);
  result.out = Slurp(out_path);
  result.err = Slurp(err_path);
  return result;
}

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string ServerProcess::Start(const std::string& server_binary, const std::string& client_binary,
                                 const std::string& model, const std::string& dir,
                                 const std::vector<std::string>& extra_args,
                                 double ready_timeout_s) {
  const int port = FreeLoopbackPort();
  if (port <= 0) return "no free loopback port";
  address_ = "127.0.0.1:" + std::to_string(port);
  log_path_ = dir + "/server.log";
  std::vector<std::string> args = {"--model",           model,      "--db",
                                   dir + "/gallery.db", "--listen", address_};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  pid_ = Spawn(server_binary, args, log_path_, log_path_ + ".err");
  if (pid_ < 0) return "cannot start " + server_binary;

  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(ready_timeout_s));
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return "faceid-server exited with " + std::to_string(ExitCodeOf(status)) + ":\n" +
             Slurp(log_path_) + Slurp(log_path_ + ".err");
    }
    const ProcessResult health =
        RunProcess(client_binary, {"--server", address_, "--timeout", "2", "health"}, dir);
    if (health.exit_code == 0) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return "faceid-server not SERVING at " + address_ + " after " + std::to_string(ready_timeout_s) +
         " s:\n" + Slurp(log_path_ + ".err");
}

ServerProcess::~ServerProcess() {
  if (pid_ < 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 150; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

}  // namespace faceid
