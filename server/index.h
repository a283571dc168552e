// GalleryIndex: the FAISS nearest-neighbour index of one gallery's face embeddings.
//
// Vectors are L2-normalised embeddings; the score is the inner product (= cosine similarity).
// Ids are the store's face ids. Types:
//   flat  IndexIDMap2 over IndexFlatIP: exact.
//   hnsw  IndexIDMap2 over IndexHNSWFlat (inner product). HNSW cannot remove vectors, so a
//         removed id is remembered and filtered from every result, and its stored vector is
//         overwritten with zeros (no deleted embedding stays in memory or in a snapshot); the
//         graph is rebuilt from the live vectors once removed ids outnumber a quarter of it.
//   ivf   IndexIVFFlat (inner product) with its own ids (IndexIDMap2's compaction on removal
//         would scramble IVF's labels). Until the gallery holds enough vectors to train the
//         coarse quantiser, an exact IndexIDMap2 over IndexFlatIP stands in; it is trained once.
// A removed id is never returned, whatever the type. This is the one class that calls FAISS:
// its exceptions become INTERNAL statuses with context.
//
// Thread-safety: thread-safe. Searches share a reader lock and run in parallel; Add and
// Remove take the writer lock.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/status.h"

namespace faiss {
struct Index;
}  // namespace faiss

namespace faceid {

enum class IndexType { kFlat, kHnsw, kIvf };

// "flat", "hnsw" or "ivf" -> IndexType; INVALID_ARGUMENT for anything else.
StatusOr<IndexType> ParseIndexType(const std::string& name);
std::string IndexTypeName(IndexType type);

struct IndexOptions {
  IndexType type = IndexType::kFlat;
  int hnsw_m = 32;  // graph degree
  int hnsw_ef_construction = 40;
  int hnsw_ef_search = 64;           // raised to k when a search asks for more
  int ivf_min_train_vectors = 1024;  // vectors needed before the IVF quantiser is trained
  int ivf_nprobe = 16;               // lists visited per query
};

// What GalleryIndex::Load did to bring a snapshot in step with the store.
struct SnapshotLoad {
  std::int64_t from_file = 0;  // live vectors found in the file and in the store
  std::int64_t added = 0;      // in the store, not in the file (enrolled after it was saved)
  std::int64_t removed = 0;    // in the file, no longer in the store (deleted since)
};

struct IndexHit {
  std::int64_t face_id = 0;
  float similarity = 0.f;
};

class GalleryIndex {
 public:
  // `dim`: embedding dimension (> 0).
  GalleryIndex(int dim, const IndexOptions& options);
  ~GalleryIndex();

  GalleryIndex(const GalleryIndex&) = delete;
  GalleryIndex& operator=(const GalleryIndex&) = delete;

  // Adds `ids.size()` vectors from `vectors` (ids.size() * dim floats, row-major).
  // INVALID_ARGUMENT for a size mismatch or an id already present; INTERNAL on a FAISS error.
  Status Add(const std::vector<std::int64_t>& ids, const std::vector<float>& vectors);

  // Removes the ids that are present; absent ids are ignored. INTERNAL on a FAISS error.
  Status Remove(const std::vector<std::int64_t>& ids);

  // The `k` (>= 1) nearest vectors to `query` (dim floats), best first; fewer when the index
  // holds fewer. An empty index gives no hits. INVALID_ARGUMENT for a wrong query size.
  StatusOr<std::vector<IndexHit>> Search(const std::vector<float>& query, int k) const;

  // Writes the index to `path` (a temporary file next to it, fsync, rename), so a restart can
  // load it instead of rebuilding (minutes for a large HNSW graph). INTERNAL on an I/O or
  // FAISS error; the previous file, if any, is then left as it was.
  Status Save(const std::string& path) const;

  // Loads an index written by Save and brings it in step with `ids` / `vectors` (the store,
  // which is the source of truth; ids.size() * dim floats): ids missing from the file are
  // added, ids no longer in the store are removed, and every vector found in both must be
  // bit-identical. NOT_FOUND when there is no file; FAILED_PRECONDITION when the file cannot
  // be used (unreadable, another type, dimension or HNSW degree, a vector that differs from
  // the store, e.g. after re-embedding): the caller then rebuilds from the store.
  static StatusOr<std::unique_ptr<GalleryIndex>> Load(const std::string& path, int dim,
                                                      const IndexOptions& options,
                                                      const std::vector<std::int64_t>& ids,
                                                      const std::vector<float>& vectors,
                                                      SnapshotLoad* report = nullptr);

  // Live (not removed) vectors.
  std::int64_t size() const;
  int dim() const { return dim_; }
  IndexType type() const { return options_.type; }

 private:
  // Caller holds the writer lock. Builds an empty index of the configured type.
  Status Reset();
  // Caller holds the writer lock. Rebuilds the HNSW graph / trains IVF from the live vectors.
  Status Rebuild(bool train_ivf);
  // Caller holds the writer lock. All live ids and their vectors.
  void LiveVectors(std::vector<std::int64_t>* ids, std::vector<float>* vectors) const;

  const int dim_;
  const IndexOptions options_;
  mutable std::shared_mutex mutex_;
  std::unique_ptr<faiss::Index> index_;          // guarded by mutex_
  std::unordered_set<std::int64_t> live_ids_;    // guarded by mutex_
  std::unordered_set<std::int64_t> tombstones_;  // guarded by mutex_ (hnsw only)
  bool ivf_trained_ = false;                     // guarded by mutex_
};

}  // namespace faceid
