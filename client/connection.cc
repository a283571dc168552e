#include "client/connection.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

namespace faceid {

StatusOr<std::unique_ptr<Connection>> Connection::Open(const ConnectionOptions& options) {
  if (options.server.empty()) {
    return absl::InvalidArgumentError("--server is empty; give HOST:PORT, e.g. 127.0.0.1:50051");
  }
  if (!(options.timeout_s > 0)) {
    return absl::InvalidArgumentError("--timeout must be > 0 seconds");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    auto pem = ReadFileBytes(options.tls_ca_file);
    if (!pem.ok()) {
      return absl::NotFoundError("cannot read --tls-ca " + options.tls_ca_file + ": " +
                                 std::string(pem.status().message()));
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *pem;
    credentials = grpc::SslCredentials(ssl);
  }
  std::unique_ptr<Connection> connection(new Connection(options));
  connection->channel_ = grpc::CreateChannel(options.server, credentials);
  connection->face_id_ = faceid::v1::FaceId::NewStub(connection->channel_);
  connection->health_ = grpc::health::v1::Health::NewStub(connection->channel_);
  return connection;
}

std::unique_ptr<grpc::ClientContext> Connection::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  const auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::duration<double>(options_.timeout_s));
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  if (!options_.api_key.empty()) {
    context->AddMetadata("authorization", "Bearer " + options_.api_key);
  }
  return context;
}

bool Connection::Unreachable() const {
  return channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_TRANSIENT_FAILURE;
}

StatusOr<std::string> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError("cannot open " + path + ": " + std::strerror(errno));
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return absl::DataLossError("read error on " + path);
  return bytes.str();
}

}  // namespace faceid
