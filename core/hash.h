// Content hashes (OpenSSL SHA-256), used to key the crop cache, spot duplicate enrollments
// and version model files.
#pragma once

#include <string>
#include <string_view>

namespace faceid {

// Lower-case hex SHA-256 of `bytes` (64 characters).
std::string Sha256Hex(std::string_view bytes);

// Lower-case hex SHA-256 of the first `length` bytes of the file at `path`, read in chunks;
// "" when the file cannot be opened or is shorter.
std::string Sha256HexOfFile(const std::string& path, long long length);

}  // namespace faceid
