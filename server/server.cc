#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/server_interceptor.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace faceid {

namespace {

// Threads beyond `threads` so an overloaded server can still answer RESOURCE_EXHAUSTED.
constexpr int kSpareThreads = 4;

namespace hooks = grpc::experimental;

// gRPC answers a unary request whose bytes do not parse with INTERNAL, the code this project
// keeps for its own bugs. Such a request is the caller's error: most often a proto3 string
// field (external_id, display_name, gallery, a metadata key) holding bytes that are not UTF-8,
// which protobuf refuses before the service runs. This rewrites that one case, recognised by
// the request never reaching the service, to INVALID_ARGUMENT with a message a person can act
// on. Every other status passes unchanged.
class ParseErrorInterceptor : public hooks::Interceptor {
 public:
  explicit ParseErrorInterceptor(const char* method) : method_(method ? method : "") {}

  void Intercept(hooks::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(hooks::InterceptionHookPoints::POST_RECV_MESSAGE)) {
      unparsed_ = methods->GetRecvMessage() == nullptr;
    }
    if (unparsed_ &&
        methods->QueryInterceptionHookPoint(hooks::InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::INTERNAL) {
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          "the request to " + method_ +
              " does not parse as its protobuf message: is every string field (ids, names, "
              "gallery, metadata) valid UTF-8, and was the request built from proto/?"));
    }
    methods->Proceed();
  }

 private:
  std::string method_;
  bool unparsed_ = false;
};

class ParseErrorInterceptorFactory : public hooks::ServerInterceptorFactoryInterface {
 public:
  hooks::Interceptor* CreateServerInterceptor(hooks::ServerRpcInfo* info) override {
    // Only faceid.v1's own (synchronous) methods. gRPC's health service runs on the callback
    // API, which moves the interceptor between threads inside libgrpc++ (not instrumented for
    // ThreadSanitizer) and keeps gRPC's own codes.
    const std::string method = info->method() ? info->method() : "";
    if (info->type() != hooks::ServerRpcInfo::Type::UNARY || method.rfind("/faceid.v1.", 0) != 0) {
      return nullptr;
    }
    return new ParseErrorInterceptor(info->method());
  }
};

}  // namespace

StatusOr<std::unique_ptr<FaceServer>> FaceServer::Start(const ServerOptions& options,
                                                        FaceService* service) {
  if (options.threads < 1) return absl::InvalidArgumentError("--threads must be at least 1");
  if (options.max_image_bytes < 1) {
    return absl::InvalidArgumentError("--max-image-bytes must be positive");
  }
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and a key");
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert_pem.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::ServerBuilder builder;
  int port = 0;
  // gRPC sets SO_REUSEPORT by default, which lets a second server silently share the port
  // (clients would then reach either database at random): refuse a port in use instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.listen, credentials, &port);
  builder.RegisterService(service);
  std::vector<std::unique_ptr<hooks::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<ParseErrorInterceptorFactory>());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  const std::int64_t receive_limit = std::min<std::int64_t>(
      options.max_image_bytes + kRequestOverheadBytes, std::numeric_limits<int>::max());
  builder.SetMaxReceiveMessageSize(static_cast<int>(receive_limit));
  grpc::ResourceQuota quota("faceid-server");
  quota.SetMaxThreads(options.threads + kSpareThreads);
  builder.SetResourceQuota(quota);

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return absl::UnavailableError("cannot listen on '" + options.listen +
                                  "' (address in use, or not host:port?)");
  }
  auto running = std::unique_ptr<FaceServer>(new FaceServer(std::move(server), port));
  running->SetServing(false);
  return running;
}

void FaceServer::SetServing(bool serving) {
  if (auto* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(serving);
    health->SetServingStatus(faceid::v1::FaceId::service_full_name(), serving);
  }
}

FaceServer::FaceServer(std::unique_ptr<grpc::Server> server, int port)
    : server_(std::move(server)), port_(port) {}

FaceServer::~FaceServer() {
  Shutdown(std::chrono::milliseconds(0));
  server_->Wait();
}

void FaceServer::Shutdown(std::chrono::milliseconds grace) {
  if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + grace);
}

void FaceServer::Wait() { server_->Wait(); }

}  // namespace faceid
