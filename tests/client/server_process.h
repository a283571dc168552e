// Test helper: a child faceid-server on a free 127.0.0.1 port, and the `faceid` binary run as
// a child process with its exit code, stdout and stderr captured.
//
// Not thread-safe; one test process drives one server.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace faceid {

struct ProcessResult {
  int exit_code = -1;  // the child's exit status; 128 + signal when killed
  std::string out;
  std::string err;
};

// Runs `program args...` with stdin from /dev/null; waits for it to end.
ProcessResult RunProcess(const std::string& program, const std::vector<std::string>& args,
                         const std::string& scratch_dir);

// A loopback TCP port that was free a moment ago (bound to port 0, then released).
int FreeLoopbackPort();

class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  // Sends SIGTERM and waits (SIGKILL after 15 s).
  ~ServerProcess();

  // Starts `server_binary --model M --db DIR/gallery.db --listen 127.0.0.1:PORT extra...` with
  // its log in DIR/server.log, then polls `faceid health` until SERVING. Returns "" when
  // serving, else what went wrong with the tail of the log.
  std::string Start(const std::string& server_binary, const std::string& client_binary,
                    const std::string& model, const std::string& dir,
                    const std::vector<std::string>& extra_args, double ready_timeout_s);

  const std::string& address() const { return address_; }

 private:
  pid_t pid_ = -1;
  std::string address_;
  std::string log_path_;
};

}  // namespace faceid
