#include "server/index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_io.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <unordered_map>

namespace faceid {

namespace {

using idx_t = faiss::Index::idx_t;

// IVF wants about 39 training vectors per list; more lists than 4 * sqrt(n) buy nothing.
constexpr int kIvfTrainPointsPerList = 39;

Status FaissError(const std::string& what, const std::exception& error) {
  return absl::InternalError("FAISS " + what + " failed: " + error.what());
}

faiss::IndexIDMap2* MakeIdMap(faiss::Index* sub) {
  auto* map = new faiss::IndexIDMap2(sub);
  map->own_fields = true;
  return map;
}

// Calls fn(id, vector) for every vector held by `index` (an IndexIDMap2 over a flat or HNSW
// index, or an IndexIVFFlat), removed-but-kept HNSW vectors included. Throws what FAISS throws.
template <class Fn>
void ForEachStored(const faiss::Index& index, int dim, Fn&& fn) {
  if (const auto* map = dynamic_cast<const faiss::IndexIDMap2*>(&index)) {
    std::vector<float> vector(dim);
    for (idx_t i = 0; i < map->ntotal; ++i) {
      map->index->reconstruct(i, vector.data());
      fn(map->id_map[i], vector.data());
    }
    return;
  }
  const auto& ivf = dynamic_cast<const faiss::IndexIVFFlat&>(index);
  for (std::size_t list = 0; list < ivf.nlist; ++list) {
    const std::size_t n = ivf.invlists->list_size(list);
    if (n == 0) continue;
    faiss::InvertedLists::ScopedIds ids(ivf.invlists, list);
    faiss::InvertedLists::ScopedCodes codes(ivf.invlists, list);
    for (std::size_t i = 0; i < n; ++i) {
      fn(ids[i], reinterpret_cast<const float*>(codes.get() + i * ivf.code_size));
    }
  }
}

// Why a snapshot of `index` cannot serve as an index of `type` / `options`; "" when it can.
std::string SnapshotMismatch(const faiss::Index& index, int dim, const IndexOptions& options) {
  if (index.d != dim) {
    return "it has " + std::to_string(index.d) + " dimensions, the model " + std::to_string(dim);
  }
  if (index.metric_type != faiss::METRIC_INNER_PRODUCT) return "its metric is not inner product";
  const auto* map = dynamic_cast<const faiss::IndexIDMap2*>(&index);
  const faiss::Index* sub = map ? map->index : nullptr;
  const bool flat = sub && dynamic_cast<const faiss::IndexFlatIP*>(sub);
  const auto* hnsw = sub ? dynamic_cast<const faiss::IndexHNSWFlat*>(sub) : nullptr;
  const bool ivf = dynamic_cast<const faiss::IndexIVFFlat*>(&index) != nullptr;
  switch (options.type) {
    case IndexType::kFlat:
      if (!flat) return "it is not a flat index";
      break;
    case IndexType::kHnsw:
      if (!hnsw) return "it is not an HNSW index";
      if (hnsw->hnsw.nb_neighbors(1) != options.hnsw_m) {
        return "its HNSW degree is " + std::to_string(hnsw->hnsw.nb_neighbors(1)) + ", not " +
               std::to_string(options.hnsw_m);
      }
      break;
    case IndexType::kIvf:
      if (!ivf && !flat) return "it is not an IVF index";
      break;
  }
  return "";
}

Status SyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string error = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return absl::InternalError("cannot fsync " + path + ": " + error);
  }
  ::close(fd);
  return absl::OkStatus();
}

}  // namespace

StatusOr<IndexType> ParseIndexType(const std::string& name) {
  if (name == "flat") return IndexType::kFlat;
  if (name == "hnsw") return IndexType::kHnsw;
  if (name == "ivf") return IndexType::kIvf;
  return absl::InvalidArgumentError("unknown index type '" + name + "' (use flat, hnsw or ivf)");
}

std::string IndexTypeName(IndexType type) {
  switch (type) {
    case IndexType::kFlat:
      return "flat";
    case IndexType::kHnsw:
      return "hnsw";
    case IndexType::kIvf:
      return "ivf";
  }
  return "flat";
}

GalleryIndex::GalleryIndex(int dim, const IndexOptions& options) : dim_(dim), options_(options) {
  std::unique_lock<std::shared_mutex> lock(mutex_);
  Reset().IgnoreError();
}

GalleryIndex::~GalleryIndex() = default;

Status GalleryIndex::Reset() {
  try {
    if (options_.type == IndexType::kHnsw) {
      auto* hnsw = new faiss::IndexHNSWFlat(dim_, options_.hnsw_m, faiss::METRIC_INNER_PRODUCT);
      hnsw->hnsw.efConstruction = options_.hnsw_ef_construction;
      hnsw->hnsw.efSearch = options_.hnsw_ef_search;
      index_.reset(MakeIdMap(hnsw));
    } else {
      index_.reset(MakeIdMap(new faiss::IndexFlatIP(dim_)));
    }
  } catch (const std::exception& error) {
    return FaissError("creating the index", error);
  }
  tombstones_.clear();
  ivf_trained_ = false;
  return absl::OkStatus();
}

void GalleryIndex::LiveVectors(std::vector<std::int64_t>* ids, std::vector<float>* vectors) const {
  ids->assign(live_ids_.begin(), live_ids_.end());
  std::sort(ids->begin(), ids->end());
  vectors->resize(ids->size() * dim_);
  for (std::size_t i = 0; i < ids->size(); ++i) {
    index_->reconstruct((*ids)[i], vectors->data() + i * dim_);
  }
}

Status GalleryIndex::Rebuild(bool train_ivf) {
  try {
    std::vector<std::int64_t> ids;
    std::vector<float> vectors;
    LiveVectors(&ids, &vectors);
    const idx_t n = static_cast<idx_t>(ids.size());
    if (train_ivf) {
      const int nlist =
          std::max(1, std::min(static_cast<int>(n / kIvfTrainPointsPerList),
                               static_cast<int>(4 * std::sqrt(static_cast<double>(n)))));
      auto quantizer = std::make_unique<faiss::IndexFlatIP>(dim_);
      auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), dim_, nlist,
                                                       faiss::METRIC_INNER_PRODUCT);
      ivf->own_fields = true;
      quantizer.release();
      ivf->nprobe = std::min(options_.ivf_nprobe, nlist);
      ivf->train(n, vectors.data());
      ivf->add_with_ids(n, vectors.data(), ids.data());
      index_ = std::move(ivf);
      ivf_trained_ = true;
      return absl::OkStatus();
    }
    FACEID_RETURN_IF_ERROR(Reset());
    if (n > 0) index_->add_with_ids(n, vectors.data(), ids.data());
  } catch (const std::exception& error) {
    return FaissError("rebuilding the index", error);
  }
  return absl::OkStatus();
}

Status GalleryIndex::Add(const std::vector<std::int64_t>& ids, const std::vector<float>& vectors) {
  if (vectors.size() != ids.size() * dim_) {
    return absl::InvalidArgumentError("index add: " + std::to_string(ids.size()) + " ids but " +
                                      std::to_string(vectors.size()) + " floats (dim " +
                                      std::to_string(dim_) + ")");
  }
  if (ids.empty()) return absl::OkStatus();
  std::unique_lock<std::shared_mutex> lock(mutex_);
  for (std::int64_t id : ids) {
    if (live_ids_.count(id) || tombstones_.count(id)) {
      return absl::InvalidArgumentError("index add: face id " + std::to_string(id) +
                                        " is already in the index");
    }
  }
  try {
    index_->add_with_ids(static_cast<idx_t>(ids.size()), vectors.data(), ids.data());
  } catch (const std::exception& error) {
    return FaissError("adding " + std::to_string(ids.size()) + " vectors", error);
  }
  live_ids_.insert(ids.begin(), ids.end());
  if (options_.type == IndexType::kIvf && !ivf_trained_ &&
      static_cast<int>(live_ids_.size()) >= options_.ivf_min_train_vectors) {
    return Rebuild(/*train_ivf=*/true);
  }
  return absl::OkStatus();
}

Status GalleryIndex::Remove(const std::vector<std::int64_t>& ids) {
  std::unique_lock<std::shared_mutex> lock(mutex_);
  std::vector<idx_t> present;
  for (std::int64_t id : ids) {
    if (live_ids_.count(id)) present.push_back(id);
  }
  if (present.empty()) return absl::OkStatus();
  for (idx_t id : present) live_ids_.erase(id);
  if (options_.type == IndexType::kHnsw) {
    // The graph keeps the node; its vector goes, so a deleted embedding is not kept in memory
    // or written to a snapshot. A zero vector scores 0 against every query and is filtered.
    auto* map = static_cast<faiss::IndexIDMap2*>(index_.get());
    auto* storage = dynamic_cast<faiss::IndexFlatCodes*>(
        static_cast<faiss::IndexHNSWFlat*>(map->index)->storage);
    for (idx_t id : present) {
      auto at = map->rev_map.find(id);
      if (storage && at != map->rev_map.end()) {
        std::memset(storage->codes.data() + at->second * storage->code_size, 0, storage->code_size);
      }
    }
    tombstones_.insert(present.begin(), present.end());
    if (tombstones_.size() * 4 > live_ids_.size() + tombstones_.size()) {
      return Rebuild(/*train_ivf=*/false);
    }
    return absl::OkStatus();
  }
  try {
    faiss::IDSelectorBatch selector(present.size(), present.data());
    index_->remove_ids(selector);
  } catch (const std::exception& error) {
    return FaissError("removing " + std::to_string(present.size()) + " vectors", error);
  }
  return absl::OkStatus();
}

StatusOr<std::vector<IndexHit>> GalleryIndex::Search(const std::vector<float>& query, int k) const {
  if (static_cast<int>(query.size()) != dim_) {
    return absl::InvalidArgumentError("query has " + std::to_string(query.size()) +
                                      " floats, the index holds " + std::to_string(dim_));
  }
  if (k < 1) return absl::InvalidArgumentError("k must be at least 1");
  std::shared_lock<std::shared_mutex> lock(mutex_);
  const idx_t total = index_->ntotal;
  // Removed HNSW vectors are still in the graph: ask for enough to fill k live hits.
  const idx_t wanted =
      std::min<idx_t>(total, static_cast<idx_t>(k) + static_cast<idx_t>(tombstones_.size()));
  std::vector<IndexHit> hits;
  if (wanted <= 0) return hits;
  std::vector<float> scores(wanted);
  std::vector<idx_t> labels(wanted);
  try {
    index_->search(1, query.data(), wanted, scores.data(), labels.data());
  } catch (const std::exception& error) {
    return FaissError("search", error);
  }
  for (idx_t i = 0; i < wanted && static_cast<int>(hits.size()) < k; ++i) {
    if (labels[i] < 0 || tombstones_.count(labels[i])) continue;
    hits.push_back({labels[i], scores[i]});
  }
  return hits;
}

Status GalleryIndex::Save(const std::string& path) const {
  const std::string temp = path + ".tmp";
  {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    try {
      faiss::write_index(index_.get(), temp.c_str());
    } catch (const std::exception& error) {
      std::remove(temp.c_str());
      return FaissError("writing the snapshot " + temp, error);
    }
  }
  Status synced = SyncPath(temp, O_RDONLY);
  if (!synced.ok()) {
    std::remove(temp.c_str());
    return synced;
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string error = std::strerror(errno);
    std::remove(temp.c_str());
    return absl::InternalError("cannot rename " + temp + " to " + path + ": " + error);
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return SyncPath(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
}

StatusOr<std::unique_ptr<GalleryIndex>> GalleryIndex::Load(const std::string& path, int dim,
                                                           const IndexOptions& options,
                                                           const std::vector<std::int64_t>& ids,
                                                           const std::vector<float>& vectors,
                                                           SnapshotLoad* report) {
  if (vectors.size() != ids.size() * static_cast<std::size_t>(dim)) {
    return absl::InvalidArgumentError("snapshot load: " + std::to_string(ids.size()) + " ids but " +
                                      std::to_string(vectors.size()) + " floats");
  }
  std::error_code exists_error;
  if (!std::filesystem::exists(path, exists_error)) {
    return absl::NotFoundError("no index snapshot at " + path);
  }
  std::unique_ptr<faiss::Index> loaded;
  try {
    loaded.reset(faiss::read_index(path.c_str()));
  } catch (const std::exception& error) {
    return absl::FailedPreconditionError("index snapshot " + path +
                                         " cannot be read: " + error.what());
  }
  if (const std::string why = SnapshotMismatch(*loaded, dim, options); !why.empty()) {
    return absl::FailedPreconditionError("index snapshot " + path + " does not fit: " + why);
  }
  std::unordered_map<std::int64_t, std::size_t> in_store;
  in_store.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) in_store.emplace(ids[i], i);
  std::vector<std::int64_t> in_file, gone;
  std::unordered_set<std::int64_t> seen;
  std::int64_t differing = -1;
  try {
    ForEachStored(*loaded, dim, [&](idx_t id, const float* vector) {
      in_file.push_back(id);
      seen.insert(id);
      auto it = in_store.find(id);
      if (it == in_store.end()) {
        gone.push_back(id);
      } else if (differing < 0 &&
                 std::memcmp(vector, vectors.data() + it->second * dim, sizeof(float) * dim) != 0) {
        differing = id;
      }
    });
  } catch (const std::exception& error) {
    return absl::FailedPreconditionError("index snapshot " + path +
                                         " cannot be read: " + error.what());
  }
  if (differing >= 0) {
    return absl::FailedPreconditionError("index snapshot " + path +
                                         " holds another vector for face " +
                                         std::to_string(differing) + " than the store");
  }
  std::vector<std::int64_t> added_ids;
  std::vector<float> added_vectors;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (seen.count(ids[i])) continue;
    added_ids.push_back(ids[i]);
    added_vectors.insert(added_vectors.end(), vectors.begin() + i * dim,
                         vectors.begin() + (i + 1) * dim);
  }

  auto index = std::make_unique<GalleryIndex>(dim, options);
  {
    std::unique_lock<std::shared_mutex> lock(index->mutex_);
    index->ivf_trained_ = dynamic_cast<faiss::IndexIVFFlat*>(loaded.get()) != nullptr;
    if (options.type == IndexType::kHnsw) {
      auto* map = static_cast<faiss::IndexIDMap2*>(loaded.get());
      static_cast<faiss::IndexHNSWFlat*>(map->index)->hnsw.efSearch = options.hnsw_ef_search;
    }
    index->index_ = std::move(loaded);
    index->live_ids_.insert(in_file.begin(), in_file.end());
  }
  FACEID_RETURN_IF_ERROR(index->Remove(gone));
  FACEID_RETURN_IF_ERROR(index->Add(added_ids, added_vectors));
  if (report) {
    report->from_file = static_cast<std::int64_t>(in_file.size() - gone.size());
    report->added = static_cast<std::int64_t>(added_ids.size());
    report->removed = static_cast<std::int64_t>(gone.size());
  }
  return index;
}

std::int64_t GalleryIndex::size() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return static_cast<std::int64_t>(live_ids_.size());
}

}  // namespace faceid
