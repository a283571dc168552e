// Pure helpers of the faceid CLI: exit codes, gRPC status names and advice, progress and
// latency arithmetic, file-name checks. No I/O and no network, so the CLI's rules are unit-tested
// directly. Thread-safe: every function is free of shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace faceid {

// Process exit codes of `faceid`.
constexpr int kExitOk = 0;             // every request succeeded
constexpr int kExitRequestFailed = 1;  // a request failed; the message shows the gRPC code
constexpr int kExitUsage = 2;          // bad command line; nothing was sent

// Canonical upper-case name of a gRPC status code number, e.g. 5 -> "NOT_FOUND";
// "CODE_<n>" for a number outside 0..16.
std::string StatusCodeName(int code);

// What the person should do about a failed request, one sentence, or "" when the server's own
// message says it all. `server` is the HOST:PORT dialled; `unreachable` is true when the channel
// could not connect at all (then the advice names the address).
std::string AdviceFor(int code, const std::string& server, bool unreachable, double timeout_s);

// "error: CODE: message" plus, on a second line, the advice when there is one.
std::string DescribeRpcFailure(int code, const std::string& message, const std::string& server,
                               bool unreachable, double timeout_s);

// `text` (UTF-8) made safe to print on a terminal: control characters (C0, DEL, C1), the
// line/paragraph separators and the bidi embeddings, overrides and isolates become visible
// escapes like "<U+202E>", so a stored name cannot move the cursor or reverse the line.
// Everything else, and malformed bytes, is kept as it is.
std::string Printable(const std::string& text);

// Items per second; 0 when no time has passed yet.
double RatePerSecond(int64_t done, double elapsed_s);

// Seconds left at the current rate; negative when unknown (nothing done yet).
double EtaSeconds(int64_t done, int64_t total, double elapsed_s);

// "42s", "3m07s", "1h02m"; "--" for a negative duration.
std::string FormatDuration(double seconds);

// One progress line without a newline, e.g. "[#####     ] 50/100 12.5/s ETA 4s".
// `bar_width` characters inside the brackets (at least 1). `done` is clamped to 0..total.
std::string FormatProgressLine(int64_t done, int64_t total, double elapsed_s, int bar_width);

// Latency figures of a load test, in milliseconds.
struct LatencySummary {
  int64_t count = 0;
  double qps = 0;  // count / wall_s
  double mean_ms = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
};

// Nearest-rank percentile (`p` in 0..100) of ascending `sorted_ms`; 0 for an empty list.
double PercentileMs(const std::vector<double>& sorted_ms, double p);

// Summary of `latencies_ms` (any order) measured over `wall_s` seconds of wall time.
LatencySummary SummarizeLatencies(std::vector<double> latencies_ms, double wall_s);

// True when the file name ends in an image extension the server decodes (case-insensitive):
// jpg, jpeg, png, bmp, webp, pgm, ppm, pbm, tif, tiff.
bool HasImageExtension(const std::string& path);

// Splits 0..count into consecutive [begin, end) ranges of at most `chunk` items (chunk >= 1).
std::vector<std::pair<size_t, size_t>> ChunkRanges(size_t count, size_t chunk);

}  // namespace faceid
