#include "server/batching_embedder.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <utility>

#include "core/log.h"

namespace faceid {

BatchingEmbedder::BatchingEmbedder(std::unique_ptr<Embedder> inner, const BatchingOptions& options)
    : inner_(std::move(inner)),
      options_{std::max(options.max_wait, std::chrono::microseconds::zero()),
               std::max(options.max_batch, 1)} {
  if (options_.max_wait > std::chrono::microseconds::zero()) {
    worker_ = std::thread([this] { RunWorker(); });
  }
}

BatchingEmbedder::~BatchingEmbedder() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_one();
  worker_.join();
}

StatusOr<std::vector<std::vector<float>>> BatchingEmbedder::Embed(
    const std::vector<cv::Mat>& crops) const {
  if (crops.empty()) return std::vector<std::vector<float>>{};
  if (options_.max_wait == std::chrono::microseconds::zero()) return inner_->Embed(crops);

  std::future<Result> result;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return absl::UnavailableError("the batching embedder is shutting down");
    Request& request = queue_.emplace_back();
    request.crops = &crops;
    request.enqueued = Clock::now();
    result = request.result.get_future();
    queued_crops_ += crops.size();
    // The worker sleeps until a first request starts a batch, or until the batch is full.
    const auto max_batch = static_cast<std::size_t>(options_.max_batch);
    if (queue_.size() == 1 || queued_crops_ >= max_batch) work_cv_.notify_one();
  }
  return result.get();
}

std::size_t BatchingEmbedder::queued_requests() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void BatchingEmbedder::RunWorker() {
  const auto max_batch = static_cast<std::size_t>(options_.max_batch);
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;

    // Once stopping, queued requests run at once rather than wait out max_wait.
    const Clock::time_point deadline = queue_.front().enqueued + options_.max_wait;
    work_cv_.wait_until(lock, deadline, [&] { return stopping_ || queued_crops_ >= max_batch; });
    std::vector<Request> batch = TakeBatch();

    lock.unlock();
    RunBatch(batch);
    lock.lock();
  }
}

std::vector<BatchingEmbedder::Request> BatchingEmbedder::TakeBatch() {
  std::vector<Request> batch;
  std::size_t crops = 0;
  while (!queue_.empty()) {
    const std::size_t next = queue_.front().crops->size();
    if (!batch.empty() && crops + next > static_cast<std::size_t>(options_.max_batch)) break;
    crops += next;
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  queued_crops_ -= crops;
  return batch;
}

void BatchingEmbedder::RunBatch(std::vector<Request>& batch) {
  if (batch.size() == 1) {
    batch.front().result.set_value(inner_->Embed(*batch.front().crops));
    return;
  }

  std::vector<cv::Mat> merged;
  for (const Request& request : batch) {
    merged.insert(merged.end(), request.crops->begin(), request.crops->end());
  }
  Result embeddings = inner_->Embed(merged);

  // A merged call fails as a whole, whichever request was at fault: retry each alone so that
  // only the faulty one gets the error.
  if (!embeddings.ok() || embeddings->size() != merged.size()) {
    Logger("server")->debug(
        "a batch of {} requests ({} crops) failed ({}); retrying each alone", batch.size(),
        merged.size(),
        embeddings.ok() ? "wrong row count" : absl::StatusCodeToString(embeddings.status().code()));
    for (Request& request : batch) request.result.set_value(inner_->Embed(*request.crops));
    return;
  }

  auto rows = embeddings->begin();
  for (Request& request : batch) {
    const auto end = rows + static_cast<std::ptrdiff_t>(request.crops->size());
    request.result.set_value(std::vector<std::vector<float>>(std::make_move_iterator(rows),
                                                             std::make_move_iterator(end)));
    rows = end;
  }
}

}  // namespace faceid
