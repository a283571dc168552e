// BatchingEmbedder: an Embedder that merges the crops of concurrent Embed() calls into one call
// of the embedder it wraps, so requests that arrive together share one forward pass.
//
// Each Embed() queues its crops and blocks. One worker thread takes the queue when the first
// request of a batch has waited `max_wait`, or as soon as `max_batch` crops are queued,
// whichever comes first; it calls the inner embedder once with the merged crops and hands each
// caller its own rows, in its input order. A lone request is thus delayed by at most
// `max_wait`; with `max_wait` zero there is no queue and no worker: Embed() calls the inner
// embedder directly. The decorator knows nothing of LibTorch: it wraps any Embedder.
//
//   auto batching = std::make_unique<BatchingEmbedder>(std::move(embedder), BatchingOptions{});
//   FaceService service(&galleries, &finder, batching.get(), service_options);
//
// Thread-safety: thread-safe; that is its purpose. The inner embedder sees one call at a time
// (from the worker), except with `max_wait` zero, where it sees the callers' threads.
//
// Errors: a caller gets exactly what the inner embedder returns for its own crops. When a
// merged call fails (say one caller passed an empty crop: INVALID_ARGUMENT), every request of
// that batch is retried alone, so only the request at fault gets the error. UNAVAILABLE for a
// call that arrives once destruction has begun.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <opencv2/core.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/embedder.h"
#include "core/model_info.h"
#include "core/status.h"

namespace faceid {

struct BatchingOptions {
  // How long the first request of a batch waits for others to join it. Zero (or less): no
  // batching.
  std::chrono::microseconds max_wait{2000};
  // A batch is run as soon as it holds this many crops (values below 1 count as 1). A request
  // with more crops than this is run alone, whole; the inner embedder does its own chunking.
  int max_batch = 64;
};

class BatchingEmbedder final : public Embedder {
 public:
  // `inner` must not be null. Starts the worker thread unless options.max_wait is zero.
  BatchingEmbedder(std::unique_ptr<Embedder> inner, const BatchingOptions& options);

  // Stops the worker. Requests already queued are still run (at once, without waiting out
  // max_wait) and answered before it returns. No call may start once destruction has begun.
  ~BatchingEmbedder() override;

  BatchingEmbedder(const BatchingEmbedder&) = delete;
  BatchingEmbedder& operator=(const BatchingEmbedder&) = delete;

  // As Embedder::Embed. An empty input returns at once; it is never queued.
  StatusOr<std::vector<std::vector<float>>> Embed(const std::vector<cv::Mat>& crops) const override;

  // The inner embedder's.
  const ModelInfo& info() const override { return inner_->info(); }
  std::string device() const override { return inner_->device(); }

  const BatchingOptions& options() const { return options_; }

  // Requests queued and not yet taken by the worker (for tests and monitoring).
  std::size_t queued_requests() const;

 private:
  using Clock = std::chrono::steady_clock;
  using Result = StatusOr<std::vector<std::vector<float>>>;

  struct Request {
    const std::vector<cv::Mat>* crops;  // the caller's; it blocks until `result` is set
    Clock::time_point enqueued;
    std::promise<Result> result;
  };

  void RunWorker();
  // Removes from the front of queue_ the requests of one batch: the first, then those that
  // keep the total within max_batch crops. Caller holds mutex_.
  std::vector<Request> TakeBatch();
  void RunBatch(std::vector<Request>& batch);

  const std::unique_ptr<Embedder> inner_;
  const BatchingOptions options_;
  mutable std::mutex mutex_;
  mutable std::condition_variable work_cv_;  // queue grew, or stopping_ was set
  mutable std::deque<Request> queue_;        // guarded by mutex_
  mutable std::size_t queued_crops_ = 0;     // guarded by mutex_; crops in queue_
  bool stopping_ = false;                    // guarded by mutex_
  std::thread worker_;
};

}  // namespace faceid
