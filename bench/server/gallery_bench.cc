// Synthetic gallery benchmark: N random unit vectors (128-d) written through the store API,
// then the database size, resident memory against the raw vectors, rebuild time (what a
// restart costs), search QPS flat vs HNSW, HNSW recall@1 against flat, and search through the
// gallery manager (index + store lookup, as the server does) against raw FAISS.
//
//   gallery_bench [--faces N] [--queries Q] [--dir DIR]
//   e.g. OMP_WAIT_POLICY=PASSIVE build/bin/gallery_bench --faces 100000
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/embedder.h"
#include "server/gallery.h"
#include "server/index.h"
#include "server/store.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kDim = 128;
constexpr int kFacesPerPerson = 32;  // one Enroll transaction per person
constexpr char kVersion[] = "bench-model";

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double RssMb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

std::vector<float> RandomUnit(std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(kDim);
  double norm = 0;
  for (float& x : v) {
    x = normal(rng);
    norm += x * x;
  }
  for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
  return v;
}

// Only its version matters here: it matches the stored faces, so Prepare() re-embeds nothing.
class VersionOnlyEmbedder final : public Embedder {
 public:
  VersionOnlyEmbedder() {
    info_.version = kVersion;
    info_.network.embedding_dim = kDim;
  }
  StatusOr<std::vector<std::vector<float>>> Embed(const std::vector<cv::Mat>&) const override {
    return absl::UnimplementedError("bench embedder does not embed");
  }
  const ModelInfo& info() const override { return info_; }
  std::string device() const override { return "cpu"; }

 private:
  ModelInfo info_;
};

int Run(int faces, int queries, const fs::path& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string db = (dir / "bench.db").string();
  std::mt19937_64 rng(42);

  // Write through the store API.
  {
    auto store = GalleryStore::Open(db);
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
      return 1;
    }
    const auto started = Clock::now();
    for (int person = 0; person * kFacesPerPerson < faces; ++person) {
      std::vector<NewFace> batch;
      for (int k = 0; k < kFacesPerPerson && person * kFacesPerPerson + k < faces; ++k) {
        NewFace face;
        face.embedding = RandomUnit(rng);
        face.crop_png = "crop";
        face.source_sha256 = std::to_string(person) + "/" + std::to_string(k);
        batch.push_back(std::move(face));
      }
      auto enrolled =
          (*store)->Enroll("default", "p" + std::to_string(person), "", {}, batch, kVersion);
      if (!enrolled.ok()) {
        std::fprintf(stderr, "%s\n", std::string(enrolled.status().message()).c_str());
        return 1;
      }
    }
    std::printf("write  %d faces through the store: %.1f s (%.0f faces/s)\n", faces,
                Seconds(started), faces / Seconds(started));
  }
  std::printf("db     %.1f MB on disk; raw vectors %.1f MB\n", fs::file_size(db) / 1048576.0,
              faces * kDim * 4 / 1048576.0);

  VersionOnlyEmbedder embedder;
  std::vector<std::vector<float>> probes;
  for (int q = 0; q < queries; ++q) probes.push_back(RandomUnit(rng));
  std::vector<std::int64_t> exact_top1;
  for (IndexType type : {IndexType::kFlat, IndexType::kHnsw}) {
    const std::string name = IndexTypeName(type);
    const std::string snapshots = (dir / (name + ".index")).string();
    IndexOptions options;
    options.type = type;
    std::string snapshot_file;
    {
      const double rss_before = RssMb();
      auto store = GalleryStore::Open(db);
      GalleryManager galleries(std::move(*store), kDim, options, snapshots);
      const auto started = Clock::now();
      const Status prepared = galleries.Prepare(embedder);  // builds, then saves a snapshot
      if (!prepared.ok()) {
        std::fprintf(stderr, "%s\n", std::string(prepared.message()).c_str());
        return 1;
      }
      const double prepare_s = Seconds(started);
      const double rss = RssMb() - rss_before;
      const auto save_started = Clock::now();
      galleries.SaveSnapshots().IgnoreError();
      const double save_s = Seconds(save_started);
      snapshot_file = galleries.SnapshotPath("default");
      std::printf(
          "%-5s  start without snapshot (read SQLite + build): %.1f s; snapshot save %.1f s "
          "(%.0f MB); RSS +%.0f MB\n",
          name.c_str(), prepare_s - save_s, save_s, fs::file_size(snapshot_file) / 1048576.0, rss);
    }
    // A restart on the same database and snapshot folder, then queries through it.
    auto store = GalleryStore::Open(db);
    GalleryManager galleries(std::move(*store), kDim, options, snapshots);
    const auto restart_started = Clock::now();
    if (!galleries.Prepare(embedder).ok() || galleries.prepare_report().galleries_loaded != 1) {
      std::fprintf(stderr, "restart did not load the snapshot\n");
      return 1;
    }
    std::printf("%-5s  restart with snapshot (read SQLite + load + check): %.1f s\n", name.c_str(),
                Seconds(restart_started));

    // Raw index search, single thread, one query at a time (as a request does), on the same
    // vectors (the snapshot); HNSW at several efSearch values.
    std::vector<std::int64_t> ids;
    std::vector<float> vectors;
    galleries.store()
        .ForEachEmbedding([&](const std::string&, std::int64_t id, const std::vector<float>& v) {
          ids.push_back(id);
          vectors.insert(vectors.end(), v.begin(), v.end());
          return absl::OkStatus();
        })
        .IgnoreError();
    const std::vector<int> efs =
        type == IndexType::kHnsw ? std::vector<int>{64, 128, 256} : std::vector<int>{0};
    for (int ef : efs) {
      IndexOptions search_options = options;
      if (ef > 0) search_options.hnsw_ef_search = ef;
      auto index = GalleryIndex::Load(snapshot_file, kDim, search_options, ids, vectors);
      if (!index.ok()) {
        std::fprintf(stderr, "%s\n", std::string(index.status().message()).c_str());
        return 1;
      }
      int agree = 0;
      auto raw_started = Clock::now();
      for (int q = 0; q < queries; ++q) {
        auto hits = (*index)->Search(probes[q], 1);
        if (type == IndexType::kFlat) {
          exact_top1.push_back((*hits)[0].face_id);
        } else {
          agree += (*hits)[0].face_id == exact_top1[q];
        }
      }
      const double raw_qps = queries / Seconds(raw_started);
      if (type == IndexType::kHnsw) {
        std::printf("hnsw   efSearch %d: raw FAISS k=1 %.0f q/s, recall@1 against flat %.3f\n", ef,
                    raw_qps, static_cast<double>(agree) / queries);
      } else {
        std::printf("flat   raw FAISS k=1: %.0f q/s\n", raw_qps);
      }
      if (ef == efs.front()) {
        auto managed_started = Clock::now();
        for (int q = 0; q < queries; ++q) galleries.Search("default", probes[q], 5).IgnoreError();
        const double managed_qps = queries / Seconds(managed_started);
        std::printf(
            "%-5s  gallery search top-5 people (index + store, server default efSearch): %.0f q/s "
            "(ratio to raw %.2f)\n",
            name.c_str(), managed_qps, managed_qps / raw_qps);
      }
    }
  }
  fs::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace faceid

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // figures appear as they are measured
  int faces = 100000;
  int queries = 500;
  std::string dir = (std::filesystem::temp_directory_path() / "faceid_gallery_bench").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--faces")) faces = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--queries")) queries = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
  }
  return faceid::Run(faces, queries, dir);
}
