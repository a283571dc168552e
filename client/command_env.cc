#include "client/command_env.h"

#include <google/protobuf/util/json_util.h>

#include "client/format.h"

namespace faceid {

nlohmann::json ErrorJson(int code, const std::string& message) {
  return {{"code", StatusCodeName(code)}, {"code_number", code}, {"message", message}};
}

int CommandEnv::Fail(const grpc::Status& status, bool emit_json) {
  const int code = static_cast<int>(status.error_code());
  const bool unreachable = code == grpc::StatusCode::UNAVAILABLE && connection_.Unreachable();
  std::string message = status.error_message();
  if (flags_.quiet) {
    err_ << "error: " << StatusCodeName(code) << ": " << message << "\n";
  } else {
    err_ << DescribeRpcFailure(code, message, flags_.connection.server, unreachable,
                               flags_.connection.timeout_s)
         << "\n";
  }
  if (flags_.json && emit_json) Emit({{"error", ErrorJson(code, message)}});
  return kExitRequestFailed;
}

int CommandEnv::FailLocal(const Status& status) {
  const int code = static_cast<int>(status.code());
  err_ << "error: " << status.message() << "\n";
  if (flags_.json) Emit({{"error", ErrorJson(code, std::string(status.message()))}});
  return kExitRequestFailed;
}

void CommandEnv::Emit(const nlohmann::json& doc) { out_ << doc.dump(2) << "\n"; }

nlohmann::json ProtoToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string text;
  // Printing a message we built ourselves cannot fail short of a protobuf bug; an empty object
  // then stands in rather than aborting the command.
  if (!google::protobuf::util::MessageToJsonString(message, &text, options).ok()) {
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(text);
}

}  // namespace faceid
