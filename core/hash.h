// Content hashes (OpenSSL SHA-256), used to key the crop cache, spot duplicate enrollments
// and version model files.
#pragma once

#include <string>
#include <string_view>

namespace faceid {

// Lower-case hex SHA-256 of `bytes` (64 characters).
std::string Sha256Hex(std::string_view bytes);

}  // namespace faceid
