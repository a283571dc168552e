#include "client/format.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace faceid {
namespace {

constexpr std::array<const char*, 17> kCodeNames = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

constexpr int kUnavailable = 14;
constexpr int kUnauthenticated = 16;
constexpr int kDeadlineExceeded = 4;
constexpr int kResourceExhausted = 8;
constexpr int kUnimplemented = 12;
constexpr int kInternal = 13;
constexpr int kFailedPrecondition = 9;

}  // namespace

std::string StatusCodeName(int code) {
  if (code < 0 || code >= static_cast<int>(kCodeNames.size())) {
    return "CODE_" + std::to_string(code);
  }
  return kCodeNames[code];
}

std::string AdviceFor(int code, const std::string& server, bool unreachable, double timeout_s) {
  switch (code) {
    case kUnavailable:
      if (unreachable) {
        return "server not reachable at " + server +
               " — is faceid-server running? (choose another with --server or FACEID_SERVER; a TLS "
               "server also needs --tls-ca)";
      }
      return "the server is starting or shutting down; retry in a few seconds";
    case kUnauthenticated:
      return "the server needs an API key: pass --api-key KEY or set FACEID_API_KEY";
    case kDeadlineExceeded: {
      char buf[160];
      std::snprintf(buf, sizeof(buf),
                    "no answer within %.3gs: raise --timeout or check the server's load",
                    timeout_s);
      return buf;
    }
    case kResourceExhausted:
      return "over the server's limits or overloaded: send smaller or fewer images, or retry later";
    case kUnimplemented:
      return "the server at " + server + " does not offer this call: is it a faceid-server?";
    case kFailedPrecondition:
      return "the server's state does not allow this request now; the message above says why";
    case kInternal:
      return "this is a bug in faceid; please report it with the command you ran";
    default:
      return "";
  }
}

std::string Printable(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const std::size_t length = lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
    std::uint32_t cp = length == 1 ? lead : lead & (0x7fu >> length);
    for (std::size_t k = 1; k < length && i + k < text.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3fu);
    }
    const bool steering = cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
                          (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
    if (steering) {
      char escape[16];
      std::snprintf(escape, sizeof(escape), "<U+%04X>", static_cast<unsigned>(cp));
      out += escape;
    } else {
      out.append(text, i, length);
    }
    i += length;
  }
  return out;
}

std::string DescribeRpcFailure(int code, const std::string& message, const std::string& server,
                               bool unreachable, double timeout_s) {
  std::string text = "error: " + StatusCodeName(code);
  if (!message.empty()) text += ": " + message;
  const std::string advice = AdviceFor(code, server, unreachable, timeout_s);
  if (!advice.empty()) text += "\n  " + advice;
  return text;
}

double RatePerSecond(int64_t done, double elapsed_s) {
  if (elapsed_s <= 0) return 0;
  return static_cast<double>(done) / elapsed_s;
}

double EtaSeconds(int64_t done, int64_t total, double elapsed_s) {
  const double rate = RatePerSecond(done, elapsed_s);
  if (done <= 0 || rate <= 0) return -1;
  return static_cast<double>(std::max<int64_t>(total - done, 0)) / rate;
}

std::string FormatDuration(double seconds) {
  if (seconds < 0 || !std::isfinite(seconds)) return "--";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof(buf), "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>((s % 3600) / 60));
  }
  return buf;
}

std::string FormatProgressLine(int64_t done, int64_t total, double elapsed_s, int bar_width) {
  bar_width = std::max(bar_width, 1);
  total = std::max<int64_t>(total, 0);
  done = std::clamp<int64_t>(done, 0, total);
  const int filled =
      total == 0 ? bar_width : static_cast<int>(done * bar_width / std::max<int64_t>(total, 1));
  char figures[96];
  std::snprintf(figures, sizeof(figures), "] %lld/%lld %.1f/s ETA %s", static_cast<long long>(done),
                static_cast<long long>(total), RatePerSecond(done, elapsed_s),
                FormatDuration(EtaSeconds(done, total, elapsed_s)).c_str());
  return "[" + std::string(filled, '#') + std::string(bar_width - filled, ' ') + figures;
}

double PercentileMs(const std::vector<double>& sorted_ms, double p) {
  if (sorted_ms.empty()) return 0;
  p = std::clamp(p, 0.0, 100.0);
  // Nearest rank: the smallest value with at least p% of the samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted_ms.size())));
  rank = std::clamp<size_t>(rank, 1, sorted_ms.size());
  return sorted_ms[rank - 1];
}

LatencySummary SummarizeLatencies(std::vector<double> latencies_ms, double wall_s) {
  LatencySummary summary;
  summary.count = static_cast<int64_t>(latencies_ms.size());
  if (latencies_ms.empty()) return summary;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  double sum = 0;
  for (double v : latencies_ms) sum += v;
  summary.qps = RatePerSecond(summary.count, wall_s);
  summary.mean_ms = sum / static_cast<double>(latencies_ms.size());
  summary.p50_ms = PercentileMs(latencies_ms, 50);
  summary.p90_ms = PercentileMs(latencies_ms, 90);
  summary.p99_ms = PercentileMs(latencies_ms, 99);
  summary.max_ms = latencies_ms.back();
  return summary;
}

bool HasImageExtension(const std::string& path) {
  const size_t dot = path.find_last_of('.');
  const size_t slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return false;
  std::string ext = path.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::array<const char*, 10> kExtensions = {"jpg", "jpeg", "png", "bmp", "webp",
                                                          "pgm", "ppm",  "pbm", "tif", "tiff"};
  return std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end();
}

std::vector<std::pair<size_t, size_t>> ChunkRanges(size_t count, size_t chunk) {
  chunk = std::max<size_t>(chunk, 1);
  std::vector<std::pair<size_t, size_t>> ranges;
  for (size_t begin = 0; begin < count; begin += chunk) {
    ranges.emplace_back(begin, std::min(count, begin + chunk));
  }
  return ranges;
}

}  // namespace faceid
