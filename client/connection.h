// The CLI's link to one faceid-server: a gRPC channel (plain or TLS), the FaceId and Health
// stubs, and per-call contexts carrying the deadline and the API key.
//
// Thread-safe after Open: the stubs and NewContext may be used from several threads at once
// (enroll-dir and bench do), each call with its own context.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "core/status.h"
#include "faceid/v1/faceid.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace faceid {

struct ConnectionOptions {
  std::string server = "127.0.0.1:50051";  // HOST:PORT
  std::string api_key;                     // sent as "authorization: Bearer <key>" when set
  std::string tls_ca_file;                 // PEM roots; empty means a plaintext channel
  double timeout_s = 30;                   // deadline of each call, seconds (> 0)
};

class Connection {
 public:
  // Creates the channel; does not dial yet (the first call does). INVALID_ARGUMENT for an empty
  // server address or a timeout <= 0; NOT_FOUND when the TLS CA file cannot be read.
  static StatusOr<std::unique_ptr<Connection>> Open(const ConnectionOptions& options);

  // A fresh context with the deadline now + timeout_s and the authorization metadata.
  std::unique_ptr<grpc::ClientContext> NewContext() const;

  // True when the channel has failed to connect (used to tell "server down" from "server busy").
  bool Unreachable() const;

  faceid::v1::FaceId::Stub& face_id() { return *face_id_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }
  const ConnectionOptions& options() const { return options_; }

 private:
  explicit Connection(const ConnectionOptions& options) : options_(options) {}

  ConnectionOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<faceid::v1::FaceId::Stub> face_id_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// The whole file as bytes. NOT_FOUND when it cannot be opened, DATA_LOSS on a read error.
StatusOr<std::string> ReadFileBytes(const std::string& path);

}  // namespace faceid
