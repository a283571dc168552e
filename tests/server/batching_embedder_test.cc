// BatchingEmbedder over a recording fake: every caller gets its own rows in order, concurrent
// callers share inner calls, a bad crop fails only its request, oversize requests, shutdown
// with requests queued or in flight, and the max_wait 0 pass-through. No LibTorch.
//
// Merging is forced rather than timed: with a max_wait of an hour a batch runs only once
// max_batch crops are queued (or at destruction), so the tests that count inner calls do not
// depend on the machine's speed.
#include "server/batching_embedder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

namespace faceid {
namespace {

using Rows = std::vector<std::vector<float>>;

constexpr std::chrono::microseconds kForever = std::chrono::hours(1);

// What the fake saw, shared with the test so it outlives the embedder that owns the fake.
struct InnerLog {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<int> batch_sizes;             // crops per inner call, in call order
  std::vector<std::thread::id> caller_ids;  // thread of each inner call
  bool hold = false;                        // inner calls block while set

  std::vector<int> BatchSizes() {
    std::lock_guard<std::mutex> lock(mutex);
    return batch_sizes;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mutex);
    hold = false;
    changed.notify_all();
  }
  // Blocks until `calls` inner calls have started.
  void AwaitCalls(std::size_t calls) {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return batch_sizes.size() >= calls; });
  }
};

// Embeds a crop as its top-left pixel's (B, G, R) values, not normalised: the decorator passes
// rows through untouched, so the test can tell which crop each row came from.
// INVALID_ARGUMENT for an empty or non-8UC3 crop, as the real embedder.
class RecordingEmbedder final : public Embedder {
 public:
  explicit RecordingEmbedder(std::shared_ptr<InnerLog> log,
                             std::chrono::milliseconds delay = std::chrono::milliseconds(0))
      : log_(std::move(log)), delay_(delay) {
    info_.version = "recording-v1";
    info_.network.embedding_dim = 3;
  }

  StatusOr<Rows> Embed(const std::vector<cv::Mat>& crops) const override {
    {
      std::unique_lock<std::mutex> lock(log_->mutex);
      log_->batch_sizes.push_back(static_cast<int>(crops.size()));
      log_->caller_ids.push_back(std::this_thread::get_id());
      log_->changed.notify_all();
      log_->changed.wait(lock, [&] { return !log_->hold; });
    }
    std::this_thread::sleep_for(delay_);
    Rows rows;
    for (std::size_t i = 0; i < crops.size(); ++i) {
      if (crops[i].empty() || crops[i].type() != CV_8UC3) {
        return absl::InvalidArgumentError("crop " + std::to_string(i) + " is empty or not 8UC3");
      }
      const cv::Vec3b pixel = crops[i].at<cv::Vec3b>(0, 0);
      rows.push_back({static_cast<float>(pixel[0]), static_cast<float>(pixel[1]),
                      static_cast<float>(pixel[2])});
    }
    return rows;
  }
  const ModelInfo& info() const override { return info_; }
  std::string device() const override { return "fake"; }

 private:
  std::shared_ptr<InnerLog> log_;
  std::chrono::milliseconds delay_;
  ModelInfo info_;
};

// Crop `index` of request `request` (< 65536): its pixels encode both numbers.
cv::Mat CropOf(int request, int index) {
  return cv::Mat(4, 4, CV_8UC3, cv::Scalar(request % 256, request / 256, index));
}

std::vector<cv::Mat> CropsOf(int request, int count) {
  std::vector<cv::Mat> crops;
  for (int i = 0; i < count; ++i) crops.push_back(CropOf(request, i));
  return crops;
}

Rows ExpectedRows(int request, int count) {
  Rows rows;
  for (int i = 0; i < count; ++i) {
    rows.push_back({static_cast<float>(request % 256), static_cast<float>(request / 256),
                    static_cast<float>(i)});
  }
  return rows;
}

std::unique_ptr<BatchingEmbedder> MakeBatching(std::shared_ptr<InnerLog> log,
                                               std::chrono::microseconds max_wait, int max_batch,
                                               std::chrono::milliseconds delay = {}) {
  BatchingOptions options;
  options.max_wait = max_wait;
  options.max_batch = max_batch;
  return std::make_unique<BatchingEmbedder>(std::make_unique<RecordingEmbedder>(log, delay),
                                            options);
}

// Polls until `embedder` holds `requests` queued requests; false after a minute.
bool AwaitQueued(const BatchingEmbedder& embedder, std::size_t requests) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (embedder.queued_requests() < requests) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(BatchingEmbedderTest, ConcurrentCallersGetTheirOwnRowsInOrder) {
  constexpr int kThreads = 8;
  constexpr int kRequestsPerThread = 40;
  auto log = std::make_shared<InnerLog>();
  // The inner call takes a millisecond, so requests pile up behind it and get merged.
  auto embedder =
      MakeBatching(log, std::chrono::microseconds(2000), 64, std::chrono::milliseconds(1));
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRequestsPerThread; ++i) {
        const int request = t * 1000 + i;
        const int count = 1 + i % 4;
        StatusOr<Rows> rows = embedder->Embed(CropsOf(request, count));
        if (!rows.ok() || *rows != ExpectedRows(request, count)) ++wrong;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(wrong.load(), 0);
  const std::vector<int> sizes = log->BatchSizes();
  const int crops = std::accumulate(sizes.begin(), sizes.end(), 0);
  EXPECT_EQ(crops, kThreads * (kRequestsPerThread / 4) * (1 + 2 + 3 + 4));
  EXPECT_LT(sizes.size(), std::size_t{kThreads * kRequestsPerThread});
  EXPECT_GT(*std::max_element(sizes.begin(), sizes.end()), 4);
  EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()), 64);
}

TEST(BatchingEmbedderTest, CallersQueuedTogetherShareOneInnerCall) {
  constexpr int kCallers = 8;
  auto log = std::make_shared<InnerLog>();
  // The batch runs exactly when the eighth crop is queued.
  auto embedder = MakeBatching(log, kForever, kCallers);
  std::vector<StatusOr<Rows>> results(kCallers);
  std::vector<std::thread> threads;
  for (int c = 0; c < kCallers; ++c) {
    threads.emplace_back([&, c] { results[c] = embedder->Embed(CropsOf(c, 1)); });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(log->BatchSizes(), std::vector<int>{kCallers});
  for (int c = 0; c < kCallers; ++c) {
    ASSERT_TRUE(results[c].ok()) << results[c].status();
    EXPECT_EQ(*results[c], ExpectedRows(c, 1));
  }
}

TEST(BatchingEmbedderTest, BadCropFailsOnlyItsOwnRequest) {
  auto log = std::make_shared<InnerLog>();
  // Three requests of 1 + 2 + 1 crops: the batch runs when all four are queued.
  auto embedder = MakeBatching(log, kForever, 4);
  StatusOr<Rows> first, bad, last;
  std::thread t1([&] { first = embedder->Embed(CropsOf(1, 1)); });
  std::thread t2([&] { bad = embedder->Embed({CropOf(2, 0), cv::Mat()}); });
  std::thread t3([&] { last = embedder->Embed(CropsOf(3, 1)); });
  t1.join();
  t2.join();
  t3.join();

  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, ExpectedRows(1, 1));
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(*last, ExpectedRows(3, 1));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  // The merged call, then each request alone.
  std::vector<int> sizes = log->BatchSizes();
  ASSERT_EQ(sizes.size(), 4u);
  EXPECT_EQ(sizes[0], 4);
  std::sort(sizes.begin() + 1, sizes.end());
  EXPECT_EQ(sizes, (std::vector<int>{4, 1, 1, 2}));
}

TEST(BatchingEmbedderTest, RequestLargerThanMaxBatchIsServedWholeAndInOrder) {
  auto log = std::make_shared<InnerLog>();
  auto embedder = MakeBatching(log, kForever, 4);
  StatusOr<Rows> rows = embedder->Embed(CropsOf(7, 10));

  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(*rows, ExpectedRows(7, 10));
  EXPECT_EQ(log->BatchSizes(), std::vector<int>{10});
}

TEST(BatchingEmbedderTest, FullBatchLeavesTheNextRequestsQueuedInOrder) {
  auto log = std::make_shared<InnerLog>();
  log->hold = true;
  auto embedder = MakeBatching(log, kForever, 2);
  // The first request fills a batch and blocks in the inner call; three more queue behind it.
  StatusOr<Rows> results[4];
  std::vector<std::thread> threads;
  threads.emplace_back([&] { results[0] = embedder->Embed(CropsOf(0, 2)); });
  log->AwaitCalls(1);
  threads.emplace_back([&] { results[1] = embedder->Embed(CropsOf(1, 1)); });
  ASSERT_TRUE(AwaitQueued(*embedder, 1));
  threads.emplace_back([&] { results[2] = embedder->Embed(CropsOf(2, 3)); });
  ASSERT_TRUE(AwaitQueued(*embedder, 2));
  threads.emplace_back([&] { results[3] = embedder->Embed(CropsOf(3, 1)); });
  ASSERT_TRUE(AwaitQueued(*embedder, 3));
  log->Release();
  // Then request 1 runs alone (adding request 2 would overflow the batch), request 2 alone
  // (it is larger than a batch), and request 3, which never fills a batch, at destruction.
  log->AwaitCalls(3);
  embedder.reset();
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(log->BatchSizes(), (std::vector<int>{2, 1, 3, 1}));
  const int counts[4] = {2, 1, 3, 1};
  for (int r = 0; r < 4; ++r) {
    ASSERT_TRUE(results[r].ok()) << results[r].status();
    EXPECT_EQ(*results[r], ExpectedRows(r, counts[r]));
  }
}

TEST(BatchingEmbedderTest, LoneRequestIsAnsweredAfterMaxWait) {
  auto log = std::make_shared<InnerLog>();
  auto embedder = MakeBatching(log, std::chrono::milliseconds(50), 64);
  const auto started = std::chrono::steady_clock::now();
  for (int r = 0; r < 3; ++r) {
    StatusOr<Rows> rows = embedder->Embed(CropsOf(r, 2));
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_EQ(*rows, ExpectedRows(r, 2));
  }

  // Three waits of 50 ms; the bound only catches a request left waiting for the next one.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
  EXPECT_EQ(log->BatchSizes(), (std::vector<int>{2, 2, 2}));
}

TEST(BatchingEmbedderTest, DestructionAnswersQueuedAndRunningRequests) {
  auto log = std::make_shared<InnerLog>();
  log->hold = true;
  auto embedder = MakeBatching(log, kForever, 1);
  StatusOr<Rows> results[3];
  std::vector<std::thread> threads;
  threads.emplace_back([&] { results[0] = embedder->Embed(CropsOf(0, 1)); });
  log->AwaitCalls(1);
  threads.emplace_back([&] { results[1] = embedder->Embed(CropsOf(1, 1)); });
  threads.emplace_back([&] { results[2] = embedder->Embed(CropsOf(2, 1)); });
  ASSERT_TRUE(AwaitQueued(*embedder, 2));

  // Destroy while request 0 is inside the inner call and requests 1 and 2 are queued.
  std::thread destroyer([&] { embedder.reset(); });
  log->Release();
  destroyer.join();
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(log->BatchSizes().size(), 3u);
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(results[r].ok()) << results[r].status();
    EXPECT_EQ(*results[r], ExpectedRows(r, 1));
  }
}

TEST(BatchingEmbedderTest, DestructionRunsRequestsWaitingForABatch) {
  auto log = std::make_shared<InnerLog>();
  auto embedder = MakeBatching(log, kForever, 64);
  StatusOr<Rows> results[4];
  std::vector<std::thread> threads;
  for (int r = 0; r < 4; ++r) {
    threads.emplace_back([&, r] { results[r] = embedder->Embed(CropsOf(r, 1)); });
  }
  ASSERT_TRUE(AwaitQueued(*embedder, 4));
  embedder.reset();
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(log->BatchSizes(), std::vector<int>{4});
  for (int r = 0; r < 4; ++r) {
    ASSERT_TRUE(results[r].ok()) << results[r].status();
    EXPECT_EQ(*results[r], ExpectedRows(r, 1));
  }
}

TEST(BatchingEmbedderTest, ZeroMaxWaitCallsTheInnerEmbedderOnTheCallersThread) {
  auto log = std::make_shared<InnerLog>();
  auto embedder = MakeBatching(log, std::chrono::microseconds(0), 64);
  StatusOr<Rows> rows = embedder->Embed(CropsOf(5, 3));
  StatusOr<Rows> bad = embedder->Embed({cv::Mat()});

  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(*rows, ExpectedRows(5, 3));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->BatchSizes(), (std::vector<int>{3, 1}));
  std::lock_guard<std::mutex> lock(log->mutex);
  EXPECT_EQ(log->caller_ids,
            (std::vector<std::thread::id>{std::this_thread::get_id(), std::this_thread::get_id()}));
}

TEST(BatchingEmbedderTest, EmptyInputIsAnsweredWithoutAnInnerCall) {
  auto log = std::make_shared<InnerLog>();
  auto embedder = MakeBatching(log, kForever, 64);
  StatusOr<Rows> rows = embedder->Embed({});

  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_TRUE(rows->empty());
  EXPECT_TRUE(log->BatchSizes().empty());
}

TEST(BatchingEmbedderTest, InfoAndDeviceAreTheInnerEmbeddersOwn) {
  auto embedder = MakeBatching(std::make_shared<InnerLog>(), std::chrono::microseconds(2000), 64);

  EXPECT_EQ(embedder->info().version, "recording-v1");
  EXPECT_EQ(embedder->info().network.embedding_dim, 3);
  EXPECT_EQ(embedder->device(), "fake");
}

}  // namespace
}  // namespace faceid
