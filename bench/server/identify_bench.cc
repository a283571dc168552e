// Identify over gRPC (loopback, in-process server) against the same work called in-process
// (pipeline -> embedder -> gallery search), with 1 and 8 concurrent clients: QPS, p50, p99.
// The gallery holds `--people` LFW people (2 photos each); probes are their other photos.
//
//   identify_bench --model FILE [--people N] [--seconds S] [--batch-wait-us N]
// --batch-wait-us (default 2000, as faceid-server; 0 = off) wraps the model in the server's
// BatchingEmbedder for both paths, so they do the same work.
//   e.g. OMP_WAIT_POLICY=PASSIVE build/bin/identify_bench --model build/fixture/model.faceid
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/face_pipeline.h"
#include "core/nn/embedder_factory.h"
#include "faceid/v1/faceid.grpc.pb.h"
#include "server/batching_embedder.h"
#include "server/face_finder.h"
#include "server/gallery.h"
#include "server/server.h"
#include "server/service.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct Figures {
  double qps = 0, p50_ms = 0, p99_ms = 0;
};

// Runs `call(probe)` from `clients` threads for `seconds`; latency percentiles over all calls.
template <typename Call>
Figures Measure(int clients, double seconds, const std::vector<std::string>& probes, Call call) {
  std::mutex mutex;
  std::vector<double> latencies;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const auto started = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::vector<double> mine;
      for (std::size_t i = c; !stop; ++i) {
        const auto t0 = Clock::now();
        call(probes[i % probes.size()]);
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      std::lock_guard<std::mutex> lock(mutex);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& thread : threads) thread.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  std::sort(latencies.begin(), latencies.end());
  Figures figures;
  figures.qps = latencies.size() / elapsed;
  figures.p50_ms = latencies[latencies.size() / 2];
  figures.p99_ms = latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
  return figures;
}

int Run(const std::string& model, int people, double seconds, int batch_wait_us) {
  auto embedder = LoadEmbedder(model, "cpu");
  if (!embedder.ok()) {
    std::fprintf(stderr, "%s\n", std::string(embedder.status().message()).c_str());
    return 1;
  }
  if (batch_wait_us > 0) {
    BatchingOptions batching;
    batching.max_wait = std::chrono::microseconds(batch_wait_us);
    *embedder = std::make_unique<BatchingEmbedder>(std::move(*embedder), batching);
  }
  std::printf("batching across requests: %s\n",
              batch_wait_us > 0 ? (std::to_string(batch_wait_us) + " us").c_str() : "off");
  PipelineOptions pipeline_options;
  pipeline_options.crop_size = (*embedder)->info().crop_size;
  auto pipeline = FacePipeline::Create(pipeline_options);
  if (!pipeline.ok()) {
    std::fprintf(stderr, "%s\n", std::string(pipeline.status().message()).c_str());
    return 1;
  }
  PipelineFaceFinder finder(**pipeline);
  const fs::path dir =
      fs::temp_directory_path() / ("faceid_identify_bench_" + std::to_string(getpid()));
  fs::create_directories(dir);
  auto store = GalleryStore::Open((dir / "g.db").string());
  GalleryManager galleries(std::move(*store), (*embedder)->info().network.embedding_dim, {});
  galleries.Prepare(**embedder).IgnoreError();
  ServiceOptions service_options;
  service_options.max_in_flight = 64;
  FaceService service(&galleries, &finder, embedder->get(), service_options);
  ServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  server_options.threads = 64;
  auto server = FaceServer::Start(server_options, &service);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::FaceId::NewStub(channel);

  // Enroll over gRPC: people with >= 4 photos, in name order.
  std::vector<fs::path> folders;
  for (const auto& entry : fs::directory_iterator(fs::path(FACEID_DATA_DIR) / "lfw_deepfunneled")) {
    folders.push_back(entry.path());
  }
  std::sort(folders.begin(), folders.end());
  std::vector<std::string> probes;
  int enrolled = 0;
  for (const fs::path& folder : folders) {
    if (enrolled == people) break;
    std::vector<fs::path> photos;
    for (const auto& photo : fs::directory_iterator(folder)) photos.push_back(photo.path());
    if (photos.size() < 4) continue;
    std::sort(photos.begin(), photos.end());
    v1::EnrollRequest request;
    request.set_external_id(folder.filename().string());
    request.add_images(ReadAll(photos[0]));
    request.add_images(ReadAll(photos[1]));
    request.mutable_options()->set_skip_invalid_images(true);
    grpc::ClientContext context;
    v1::EnrollResponse response;
    if (stub->Enroll(&context, request, &response).ok()) ++enrolled;
    probes.push_back(ReadAll(photos[2]));
  }
  std::printf("gallery: %d people; %zu probes (250x250 LFW JPEG, detection on)\n", enrolled,
              probes.size());

  auto in_process = [&](const std::string& probe) {
    auto found = finder.Find(probe, FaceMode::kDetect, 1, false);
    if (!found.ok() || found->faces.empty()) return;
    auto embeddings = (*embedder)->Embed({found->faces[0].crop});
    if (embeddings.ok()) galleries.Search("default", (*embeddings)[0], 5).IgnoreError();
  };
  auto over_grpc = [&](const std::string& probe) {
    grpc::ClientContext context;
    v1::IdentifyRequest request;
    request.add_images(probe);
    v1::IdentifyResponse response;
    stub->Identify(&context, request, &response);
  };
  for (int clients : {1, 8}) {
    const Figures local = Measure(clients, seconds, probes, in_process);
    const Figures remote = Measure(clients, seconds, probes, over_grpc);
    std::printf(
        "%d client(s): in-process %.1f q/s p50 %.1f ms p99 %.1f ms | gRPC %.1f q/s "
        "p50 %.1f ms p99 %.1f ms | ratio %.2f\n",
        clients, local.qps, local.p50_ms, local.p99_ms, remote.qps, remote.p50_ms, remote.p99_ms,
        remote.qps / local.qps);
  }
  (*server)->Shutdown(std::chrono::milliseconds(1000));
  fs::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace faceid

int main(int argc, char** argv) {
  std::string model;
  int people = 50;
  double seconds = 10;
  int batch_wait_us = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    if (!std::strcmp(argv[i], "--people")) people = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--batch-wait-us")) batch_wait_us = std::atoi(argv[i + 1]);
  }
  if (model.empty()) {
    std::fprintf(
        stderr,
        "usage: identify_bench --model FILE [--people N] [--seconds S] [--batch-wait-us N]\n");
    return 2;
  }
  return faceid::Run(model, people, seconds, batch_wait_us);
}
