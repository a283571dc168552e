// `faceid bench`: the same request over and over from several threads, bounded by a request
// count or a duration; prints QPS, latency percentiles and errors by status code.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "client/command_env.h"
#include "client/format.h"

namespace faceid {
namespace {

namespace v1 = ::faceid::v1;
using Clock = std::chrono::steady_clock;

constexpr double kMaxBackoffMs = 1000;

// One call of the chosen method; returns its status.
grpc::Status CallOnce(CommandEnv& env, const BenchArgs& args, const std::string& image) {
  auto context = env.connection().NewContext();
  auto& stub = env.connection().face_id();
  if (args.method == "detect") {
    v1::DetectRequest request;
    request.set_image(image);
    v1::DetectResponse response;
    return stub.Detect(context.get(), request, &response);
  }
  if (args.method == "embed") {
    v1::EmbedRequest request;
    request.set_image(image);
    v1::EmbedResponse response;
    return stub.Embed(context.get(), request, &response);
  }
  v1::IdentifyRequest request;
  request.set_gallery(env.flags().gallery);
  request.add_images(image);
  v1::IdentifyResponse response;
  return stub.Identify(context.get(), request, &response);
}

}  // namespace

int RunBench(CommandEnv& env, const BenchArgs& args) {
  auto image = ReadFileBytes(args.image);
  if (!image.ok()) return env.FailLocal(image.status());

  std::mutex mutex;
  std::vector<double> latencies_ms;       // successful calls only; guarded by mutex
  std::map<int, int64_t> errors_by_code;  // guarded by mutex
  std::atomic<int64_t> issued{0};
  std::atomic<int64_t> backoffs{0};
  const auto start = Clock::now();
  const auto stop_at = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(args.duration_s));

  std::vector<std::thread> workers;
  for (int t = 0; t < args.concurrency; ++t) {
    workers.emplace_back([&] {
      std::vector<double> mine;
      std::map<int, int64_t> my_errors;
      double backoff_ms = 0;  // the wait after the last RESOURCE_EXHAUSTED; 0 after a success
      while (true) {
        if (args.requests > 0 && issued.fetch_add(1) >= args.requests) break;
        if (args.duration_s > 0 && Clock::now() >= stop_at) break;
        const auto begin = Clock::now();
        const grpc::Status status = CallOnce(env, args, *image);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
        if (status.ok()) {
          mine.push_back(ms);
          backoff_ms = 0;
        } else {
          ++my_errors[static_cast<int>(status.error_code())];
        }
        if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && args.backoff_ms > 0) {
          backoff_ms = backoff_ms == 0 ? args.backoff_ms : std::min(2 * backoff_ms, kMaxBackoffMs);
          ++backoffs;
          auto wake = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double, std::milli>(backoff_ms));
          if (args.duration_s > 0) wake = std::min(wake, stop_at);
          std::this_thread::sleep_until(wake);
        }
      }
      std::lock_guard<std::mutex> lock(mutex);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
      for (const auto& [code, count] : my_errors) errors_by_code[code] += count;
    });
  }
  for (std::thread& worker : workers) worker.join();
  const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();

  const LatencySummary summary = SummarizeLatencies(latencies_ms, wall_s);
  int64_t errors = 0;
  for (const auto& [code, count] : errors_by_code) errors += count;
  if (env.flags().json) {
    nlohmann::json by_code = nlohmann::json::object();
    for (const auto& [code, count] : errors_by_code) by_code[StatusCodeName(code)] = count;
    env.Emit({{"method", args.method},
              {"concurrency", args.concurrency},
              {"requests", summary.count + errors},
              {"ok", summary.count},
              {"errors", errors},
              {"errors_by_code", by_code},
              {"backoffs", backoffs.load()},
              {"wall_s", wall_s},
              {"qps", summary.qps},
              {"latency_ms",
               {{"mean", summary.mean_ms},
                {"p50", summary.p50_ms},
                {"p90", summary.p90_ms},
                {"p99", summary.p99_ms},
                {"max", summary.max_ms}}}});
  } else {
    char line[256];
    std::snprintf(line, sizeof(line),
                  "%s x%lld, concurrency %d, %.2fs: %.1f QPS (successful calls)\n"
                  "latency ms: mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
                  args.method.c_str(), static_cast<long long>(summary.count + errors),
                  args.concurrency, wall_s, summary.qps, summary.mean_ms, summary.p50_ms,
                  summary.p90_ms, summary.p99_ms, summary.max_ms);
    env.out() << line;
    env.out() << "errors: " << errors;
    for (const auto& [code, count] : errors_by_code) {
      env.out() << "  " << StatusCodeName(code) << " " << count;
    }
    if (backoffs > 0) env.out() << "  (backed off " << backoffs << " times on overload)";
    env.out() << "\n";
  }
  if (summary.count == 0 && errors > 0) {
    env.err() << "error: every request failed; the first code was "
              << StatusCodeName(errors_by_code.begin()->first) << "; try `faceid health`\n";
    return kExitRequestFailed;
  }
  return kExitOk;
}

}  // namespace faceid
