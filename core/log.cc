#include "core/log.h"

#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace faceid {

namespace {

std::mutex& RegistryMutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

Status InitLogging(const std::string& level_name) {
  const spdlog::level::level_enum level = spdlog::level::from_str(level_name);
  // from_str answers "off" for any name it does not know.
  if (level == spdlog::level::off && level_name != "off") {
    return absl::InvalidArgumentError("unknown log level '" + level_name +
                                      "' (use trace, debug, info, warn, error, critical, off)");
  }
  spdlog::set_level(level);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ [%n] %v");
  return absl::OkStatus();
}

std::shared_ptr<spdlog::logger> Logger(const std::string& component) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = spdlog::stderr_color_mt(component);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ [%n] %v");
  logger->set_level(spdlog::get_level());
  return logger;
}

}  // namespace faceid
