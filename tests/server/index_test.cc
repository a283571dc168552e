// GalleryIndex: nearest first, removed ids never returned, approximate checked against exact.
#include "server/index.h"

#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/index_io.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <vector>

#include "core/hash.h"

namespace faceid {
namespace {

constexpr int kDim = 32;

std::vector<float> RandomUnitVectors(int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(static_cast<std::size_t>(n) * kDim);
  for (int i = 0; i < n; ++i) {
    double norm = 0;
    for (int d = 0; d < kDim; ++d) {
      v[i * kDim + d] = normal(rng);
      norm += v[i * kDim + d] * v[i * kDim + d];
    }
    for (int d = 0; d < kDim; ++d) v[i * kDim + d] /= static_cast<float>(std::sqrt(norm));
  }
  return v;
}

std::vector<float> Row(const std::vector<float>& v, int i) {
  return std::vector<float>(v.begin() + i * kDim, v.begin() + (i + 1) * kDim);
}

std::vector<std::int64_t> Ids(int n, std::int64_t first = 100) {
  std::vector<std::int64_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = first + i;
  return ids;
}

IndexOptions Options(IndexType type) {
  IndexOptions options;
  options.type = type;
  options.ivf_min_train_vectors = 400;
  return options;
}

class GalleryIndexTypesTest : public ::testing::TestWithParam<IndexType> {};

TEST_P(GalleryIndexTypesTest, SearchReturnsTheQueriedVectorFirst) {
  GalleryIndex index(kDim, Options(GetParam()));
  const int n = 600;
  const auto vectors = RandomUnitVectors(n, 1);
  ASSERT_TRUE(index.Add(Ids(n), vectors).ok());
  EXPECT_EQ(index.size(), n);
  for (int i = 0; i < n; i += 37) {
    auto hits = index.Search(Row(vectors, i), 3);
    ASSERT_TRUE(hits.ok()) << hits.status();
    ASSERT_EQ(hits->size(), 3u);
    EXPECT_EQ((*hits)[0].face_id, 100 + i);
    EXPECT_NEAR((*hits)[0].similarity, 1.f, 1e-4);
    EXPECT_GE((*hits)[0].similarity, (*hits)[1].similarity);
  }
}

TEST_P(GalleryIndexTypesTest, RemovedFaceIsNeverReturned) {
  GalleryIndex index(kDim, Options(GetParam()));
  const int n = 500;
  const auto vectors = RandomUnitVectors(n, 2);
  ASSERT_TRUE(index.Add(Ids(n), vectors).ok());
  std::vector<std::int64_t> removed;
  for (int i = 0; i < n; i += 3) removed.push_back(100 + i);
  ASSERT_TRUE(index.Remove(removed).ok());
  const std::set<std::int64_t> gone(removed.begin(), removed.end());
  EXPECT_EQ(index.size(), n - static_cast<int>(removed.size()));
  for (int i = 0; i < n; i += 3) {
    auto hits = index.Search(Row(vectors, i), 10);
    ASSERT_TRUE(hits.ok());
    EXPECT_EQ(hits->size(), 10u);
    for (const IndexHit& hit : *hits) EXPECT_EQ(gone.count(hit.face_id), 0u) << hit.face_id;
  }
  // Every live vector is still found.
  auto hits = index.Search(Row(vectors, 1), 1);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].face_id, 101);
}

TEST_P(GalleryIndexTypesTest, RemovingEverythingLeavesAnEmptyIndex) {
  GalleryIndex index(kDim, Options(GetParam()));
  const auto vectors = RandomUnitVectors(20, 3);
  ASSERT_TRUE(index.Add(Ids(20), vectors).ok());
  ASSERT_TRUE(index.Remove(Ids(20)).ok());
  EXPECT_EQ(index.size(), 0);
  auto hits = index.Search(Row(vectors, 0), 5);
  ASSERT_TRUE(hits.ok());
  EXPECT_TRUE(hits->empty());
}

std::string SnapshotPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("faceid_index_test_" + std::to_string(::getpid()) + "_" + name + ".faiss"))
      .string();
}

// The store's view after the snapshot was saved: ids [from, to) with their vectors.
struct StoreRows {
  std::vector<std::int64_t> ids;
  std::vector<float> vectors;
};
StoreRows Rows(const std::vector<float>& all, int from, int to) {
  StoreRows rows;
  for (int i = from; i < to; ++i) {
    rows.ids.push_back(100 + i);
    const auto row = Row(all, i);
    rows.vectors.insert(rows.vectors.end(), row.begin(), row.end());
  }
  return rows;
}

TEST_P(GalleryIndexTypesTest, SnapshotLoadsInStepWithTheStore) {
  const IndexOptions options = Options(GetParam());
  const std::string path = SnapshotPath("step" + IndexTypeName(GetParam()));
  const int n = 600;
  const auto all = RandomUnitVectors(n + 50, 4);
  {
    GalleryIndex index(kDim, options);
    const StoreRows saved = Rows(all, 0, n);
    ASSERT_TRUE(index.Add(saved.ids, saved.vectors).ok());
    ASSERT_TRUE(index.Remove({100, 101}).ok());  // deleted before the save
    ASSERT_TRUE(index.Save(path).ok());
  }
  // Since the save: faces 100..109 deleted, 50 more enrolled.
  const StoreRows store = Rows(all, 10, n + 50);
  SnapshotLoad report;
  auto loaded = GalleryIndex::Load(path, kDim, options, store.ids, store.vectors, &report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(report.from_file, n - 10);
  EXPECT_EQ(report.added, 50);
  // 100 and 101 were removed before the save (HNSW keeps them zeroed): not removed again.
  EXPECT_EQ(report.removed, 8);
  EXPECT_EQ((*loaded)->size(), n + 40);
  for (int i = 0; i < n + 50; i += 7) {
    auto hits = (*loaded)->Search(Row(all, i), 5);
    ASSERT_TRUE(hits.ok()) << hits.status();
    for (const IndexHit& hit : *hits) EXPECT_GE(hit.face_id, 110) << "deleted face returned";
    if (i >= 10) {
      ASSERT_FALSE(hits->empty());
      EXPECT_EQ((*hits)[0].face_id, 100 + i);
    }
  }
  std::filesystem::remove(path);
}

TEST_P(GalleryIndexTypesTest, SnapshotThatDisagreesWithTheStoreIsRefused) {
  const IndexOptions options = Options(GetParam());
  const std::string path = SnapshotPath("differs" + IndexTypeName(GetParam()));
  const auto all = RandomUnitVectors(500, 5);
  StoreRows store = Rows(all, 0, 500);
  {
    GalleryIndex index(kDim, options);
    ASSERT_TRUE(index.Add(store.ids, store.vectors).ok());
    ASSERT_TRUE(index.Save(path).ok());
  }
  EXPECT_TRUE(GalleryIndex::Load(path, kDim, options, store.ids, store.vectors).ok());
  // Face 300 re-embedded by a new model: its vector in the file is stale.
  store.vectors[200 * kDim] += 0.25f;
  auto stale = GalleryIndex::Load(path, kDim, options, store.ids, store.vectors);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition) << stale.status();
  store.vectors[200 * kDim] -= 0.25f;
  // Another dimension, another type.
  EXPECT_EQ(GalleryIndex::Load(path, kDim * 2, options, {}, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const IndexType other = GetParam() == IndexType::kHnsw ? IndexType::kFlat : IndexType::kHnsw;
  EXPECT_EQ(
      GalleryIndex::Load(path, kDim, Options(other), store.ids, store.vectors).status().code(),
      absl::StatusCode::kFailedPrecondition);
  // A truncated file.
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 3));
  }
  EXPECT_EQ(GalleryIndex::Load(path, kDim, options, store.ids, store.vectors).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::filesystem::remove(path);
  EXPECT_EQ(GalleryIndex::Load(path, kDim, options, store.ids, store.vectors).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(GalleryIndexTypesTest, SnapshotHoldsNoRemovedVector) {
  const std::string path = SnapshotPath("erased" + IndexTypeName(GetParam()));
  const auto all = RandomUnitVectors(500, 6);
  GalleryIndex index(kDim, Options(GetParam()));
  ASSERT_TRUE(index.Add(Ids(500), all).ok());
  ASSERT_TRUE(index.Remove({123}).ok());
  ASSERT_TRUE(index.Save(path).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string removed(reinterpret_cast<const char*>(all.data() + 23 * kDim),
                            sizeof(float) * kDim);
  const std::string kept(reinterpret_cast<const char*>(all.data() + 24 * kDim),
                         sizeof(float) * kDim);
  EXPECT_NE(bytes.find(kept), std::string::npos) << "the search only works if vectors are there";
  EXPECT_EQ(bytes.find(removed), std::string::npos) << "a removed vector was written";
  std::filesystem::remove(path);
}

// Regression: a database restored from a backup hands out face ids again that a newer HNSW
// snapshot holds as removed nodes; the enroll was committed but its index add failed.
TEST(GalleryIndexTest, HnswTakesBackARemovedIdWithAnotherVector) {
  GalleryIndex index(kDim, Options(IndexType::kHnsw));
  const auto vectors = RandomUnitVectors(50, 8);
  ASSERT_TRUE(
      index.Add(Ids(40), std::vector<float>(vectors.begin(), vectors.begin() + 40 * kDim)).ok());
  ASSERT_TRUE(index.Remove({139}).ok());
  const std::vector<float> other = Row(vectors, 45);
  ASSERT_TRUE(index.Add({139}, other).ok());
  auto hits = index.Search(other, 1);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].face_id, 139);
  EXPECT_EQ(index.size(), 40);
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Regression: FAISS trusts its files, so a damaged HNSW graph crashed the first search. A file
// that fails its checksum is never parsed; one whose checksum was recomputed after tampering
// fails the structure check.
TEST(GalleryIndexTest, DamagedOrTamperedHnswSnapshotIsRefused) {
  const IndexOptions options = Options(IndexType::kHnsw);
  const std::string path = SnapshotPath("tampered");
  const auto vectors = RandomUnitVectors(300, 9);
  {
    GalleryIndex index(kDim, options);
    ASSERT_TRUE(index.Add(Ids(300), vectors).ok());
    ASSERT_TRUE(index.Save(path).ok());
  }
  ASSERT_TRUE(GalleryIndex::Load(path, kDim, options, Ids(300), vectors).ok());
  const std::string good = ReadBytes(path);
  auto write = [&](const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x40;
  write(flipped);
  auto damaged = GalleryIndex::Load(path, kDim, options, Ids(300), vectors);
  EXPECT_EQ(damaged.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(damaged.status().message().find("checksum"), std::string::npos) << damaged.status();

  // Tamper with the graph's entry point, then give the file a valid checksum again.
  const std::string faiss_only = path + ".faiss-only";
  write(good.substr(0, good.size() - 72));
  std::unique_ptr<faiss::Index> raw(faiss::read_index(path.c_str()));
  auto* map = dynamic_cast<faiss::IndexIDMap2*>(raw.get());
  ASSERT_NE(map, nullptr);
  dynamic_cast<faiss::IndexHNSWFlat*>(map->index)->hnsw.entry_point = 1 << 30;
  faiss::write_index(raw.get(), faiss_only.c_str());
  const std::string body = ReadBytes(faiss_only);
  write(body + "FACEIDIX" + Sha256Hex(body));
  auto tampered = GalleryIndex::Load(path, kDim, options, Ids(300), vectors);
  EXPECT_EQ(tampered.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(tampered.status().message().find("inconsistent"), std::string::npos)
      << tampered.status();

  // Not a regular file: refused without opening it (a FIFO would block the start).
  std::filesystem::remove(path);
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  EXPECT_EQ(GalleryIndex::Load(path, kDim, options, Ids(300), vectors).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::filesystem::remove(path);
  std::filesystem::remove(faiss_only);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GalleryIndexTypesTest,
                         ::testing::Values(IndexType::kFlat, IndexType::kHnsw, IndexType::kIvf),
                         [](const auto& info) { return IndexTypeName(info.param); });

TEST(GalleryIndexTest, EmptyIndexGivesNoHits) {
  GalleryIndex index(kDim, Options(IndexType::kFlat));
  auto hits = index.Search(std::vector<float>(kDim, 0.f), 5);
  ASSERT_TRUE(hits.ok());
  EXPECT_TRUE(hits->empty());
}

TEST(GalleryIndexTest, BadSizesAndDuplicateIdsAreInvalidArgument) {
  GalleryIndex index(kDim, Options(IndexType::kFlat));
  EXPECT_TRUE(absl::IsInvalidArgument(index.Add({1, 2}, std::vector<float>(kDim))));
  ASSERT_TRUE(index.Add({1}, RandomUnitVectors(1, 4)).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(index.Add({1}, RandomUnitVectors(1, 5))));
  EXPECT_TRUE(absl::IsInvalidArgument(index.Search(std::vector<float>(kDim + 1), 1).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(index.Search(std::vector<float>(kDim), 0).status()));
}

TEST(GalleryIndexTest, ParseIndexTypeKnowsTheThreeNames) {
  EXPECT_EQ(*ParseIndexType("hnsw"), IndexType::kHnsw);
  EXPECT_EQ(*ParseIndexType("ivf"), IndexType::kIvf);
  EXPECT_EQ(*ParseIndexType("flat"), IndexType::kFlat);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseIndexType("lsh").status()));
}

// Approximate search against exact ground truth on clustered data (like real embeddings:
// several photos per person), as faiss's own tests do.
TEST(GalleryIndexTest, HnswAndIvfRecallAgainstFlat) {
  const int people = 300;
  const int photos = 4;
  const auto centres = RandomUnitVectors(people, 6);
  const auto noise = RandomUnitVectors(people * photos, 7);
  std::vector<float> vectors(static_cast<std::size_t>(people) * photos * kDim);
  for (int p = 0; p < people; ++p) {
    for (int k = 0; k < photos; ++k) {
      const int row = p * photos + k;
      double norm = 0;
      for (int d = 0; d < kDim; ++d) {
        vectors[row * kDim + d] = centres[p * kDim + d] + 0.3f * noise[row * kDim + d];
        norm += vectors[row * kDim + d] * vectors[row * kDim + d];
      }
      for (int d = 0; d < kDim; ++d) vectors[row * kDim + d] /= static_cast<float>(std::sqrt(norm));
    }
  }
  const int n = people * photos;
  GalleryIndex flat(kDim, Options(IndexType::kFlat));
  GalleryIndex hnsw(kDim, Options(IndexType::kHnsw));
  GalleryIndex ivf(kDim, Options(IndexType::kIvf));
  for (GalleryIndex* index : {&flat, &hnsw, &ivf}) ASSERT_TRUE(index->Add(Ids(n), vectors).ok());
  const auto queries = RandomUnitVectors(200, 8);
  int hnsw_agree = 0;
  int ivf_agree = 0;
  for (int q = 0; q < 200; ++q) {
    std::vector<float> query = Row(centres, q % people);
    for (int d = 0; d < kDim; ++d) query[d] += 0.3f * queries[q * kDim + d];
    const auto exact = flat.Search(query, 1);
    ASSERT_TRUE(exact.ok());
    hnsw_agree += (*hnsw.Search(query, 1))[0].face_id == (*exact)[0].face_id;
    ivf_agree += (*ivf.Search(query, 1))[0].face_id == (*exact)[0].face_id;
  }
  EXPECT_GE(hnsw_agree, 190);
  EXPECT_GE(ivf_agree, 180);
}

}  // namespace
}  // namespace faceid
