// FaceServer: a running gRPC server for a FaceService, with the standard health service and
// server reflection, listening on one address (loopback by default).
//
// Thread-safety: Shutdown() may be called from any thread, once; the object must outlive the
// requests it serves (Shutdown waits for them).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "server/service.h"

namespace faceid {

// Besides the image bytes a request may carry this much (ids, names, metadata, framing).
inline constexpr std::int64_t kRequestOverheadBytes = 1 << 20;

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";  // host:port; port 0 picks a free one
  // gRPC threads that run requests; the service's in-flight limit should not exceed it, so
  // the surplus threads can refuse work quickly.
  int threads = 8;
  // gRPC receive limit: one request carries at most this many image bytes plus
  // kRequestOverheadBytes; more is RESOURCE_EXHAUSTED before it is read.
  std::int64_t max_image_bytes = 16 << 20;
  std::string tls_cert_pem;  // both empty: plaintext
  std::string tls_key_pem;
};

class FaceServer {
 public:
  // Binds and starts serving `service` (which must outlive the server). INVALID_ARGUMENT for
  // a bad listen address or TLS pair; UNAVAILABLE when the address cannot be bound.
  static StatusOr<std::unique_ptr<FaceServer>> Start(const ServerOptions& options,
                                                     FaceService* service);
  ~FaceServer();

  // The bound port (the chosen one when options.listen asked for port 0).
  int port() const { return port_; }

  // What the standard health service (grpc.health.v1) answers, for the server as a whole
  // ("") and for faceid.v1.FaceId: NOT_SERVING from Start() until SetServing(true), i.e.
  // while the gallery is re-embedded and indexed.
  void SetServing(bool serving);

  // Stops accepting requests, lets in-flight ones finish for up to `grace`, then cancels the
  // rest. Returns when every request has ended.
  void Shutdown(std::chrono::milliseconds grace);

  // Blocks until Shutdown() has finished.
  void Wait();

 private:
  FaceServer(std::unique_ptr<grpc::Server> server, int port);

  std::unique_ptr<grpc::Server> server_;
  int port_;
};

}  // namespace faceid
