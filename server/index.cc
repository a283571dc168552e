#include "server/index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <mutex>

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

std::int64_t GalleryIndex::size() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return static_cast<std::int64_t>(live_ids_.size());
}

}  // namespace faceid
