// Logging set-up shared by every faceid program: spdlog to stderr with time, level and
// component. Never log image bytes, embeddings, API keys or other secrets; log ids and counts.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "core/status.h"

namespace faceid {

// Sets the global level from a name: trace, debug, info, warn, error, critical, off.
// INVALID_ARGUMENT for any other name. Safe to call more than once.
Status InitLogging(const std::string& level_name);

// A named logger ("server", "trainer", "core", ...) writing to stderr. Thread-safe; the same
// name returns the same logger.
std::shared_ptr<spdlog::logger> Logger(const std::string& component);

}  // namespace faceid
