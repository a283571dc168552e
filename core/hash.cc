#include "core/hash.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <vector>

namespace faceid {

namespace {

std::string ToHex(const unsigned char* digest, unsigned int digest_len) {
  static const char kHex[] = "0123456789abcdef";
  std::string hex(2 * digest_len, '0');
  for (unsigned int i = 0; i < digest_len; ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return hex;
}

}  // namespace

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &digest_len, EVP_sha256(), nullptr);
  return ToHex(digest, digest_len);
}

std::string Sha256HexOfFile(const std::string& path, long long length) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!file || length < 0) return "";
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) return "";
  std::vector<unsigned char> chunk(1 << 20);
  long long left = length;
  while (left > 0) {
    const std::size_t want = static_cast<std::size_t>(std::min<long long>(left, chunk.size()));
    const std::size_t got = std::fread(chunk.data(), 1, want, file.get());
    if (got != want) return "";
    EVP_DigestUpdate(context.get(), chunk.data(), got);
    left -= static_cast<long long>(got);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_DigestFinal_ex(context.get(), digest, &digest_len);
  return ToHex(digest, digest_len);
}

}  // namespace faceid
