// What every `faceid` sub-command shares: the parsed global flags, the server connection and
// the output streams, plus the one way to report a failure and to print a JSON document.
//
// Not thread-safe: the commands that run requests in parallel (enroll-dir, bench) write to the
// streams from their calling thread only.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "client/connection.h"
#include "core/status.h"

namespace faceid {

// Global flags, valid for every sub-command.
struct CliFlags {
  ConnectionOptions connection;
  bool json = false;    // one JSON document per command on stdout
  bool quiet = false;   // no progress, no hints; errors still go to stderr
  std::string gallery;  // "" = the server's default gallery
};

class CommandEnv {
 public:
  CommandEnv(const CliFlags& flags, Connection& connection, std::ostream& out, std::ostream& err)
      : flags_(flags), connection_(connection), out_(out), err_(err) {}

  // Reports a failed RPC on stderr ("error: CODE: message" and advice); with --json also prints
  // {"error": {"code", "code_number", "message"}} on stdout unless `emit_json` is false (for a
  // command that puts the error into its own document). Returns kExitRequestFailed.
  int Fail(const grpc::Status& status, bool emit_json = true);

  // The same for a failure on this side (unreadable file ...); the code is the status' code.
  int FailLocal(const Status& status);

  // Prints `doc` on stdout, indented, followed by a newline.
  void Emit(const nlohmann::json& doc);

  const CliFlags& flags() const { return flags_; }
  Connection& connection() { return connection_; }
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }

 private:
  const CliFlags& flags_;
  Connection& connection_;
  std::ostream& out_;
  std::ostream& err_;
};

// The protobuf JSON mapping of `message` with proto field names and default values printed
// (int64 fields are strings, enums are their names), as a nlohmann::json value.
nlohmann::json ProtoToJson(const google::protobuf::Message& message);

// JSON of a gRPC failure: {"code": "NOT_FOUND", "code_number": 5, "message": "..."}.
nlohmann::json ErrorJson(int code, const std::string& message);

// `faceid enroll-dir ROOT`: each sub-folder of ROOT is a person named after it.
struct EnrollDirArgs {
  std::string root;
  int images_per_request = 8;  // capped by the server's max_images_per_request
  int concurrency = 4;         // requests in flight
  bool input_is_face_crop = false;
  bool require_single_face = false;
};
int RunEnrollDir(CommandEnv& env, const EnrollDirArgs& args);

// `faceid bench --image F`: repeated Identify (or Detect / Embed) calls.
struct BenchArgs {
  std::string image;
  std::string method = "identify";  // identify, detect or embed
  int concurrency = 4;
  int64_t requests = 0;   // stop after this many calls (0: no count limit)
  double duration_s = 0;  // stop after this many seconds (0: no time limit)
  // After a RESOURCE_EXHAUSTED answer (the server is overloaded) a worker waits before its next
  // call: backoff_ms, doubled on each further one up to 1 s, reset by a success. 0 turns it off.
  double backoff_ms = 10;
};
int RunBench(CommandEnv& env, const BenchArgs& args);

}  // namespace faceid
