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

#include "core/hash.h"

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

// A snapshot is FAISS's own file followed by this trailer: magic, then the lower-case hex
// SHA-256 of everything before the trailer. FAISS trusts its files (a damaged HNSW graph
// crashes the first search), so a file whose digest does not match is never parsed.
constexpr char kTrailerMagic[] = "FACEIDIX";  // 8 bytes
constexpr std::size_t kTrailerSize = 8 + 64;

// Why the loaded structure is inconsistent (sizes, graph links and levels out of range), ""
// when it is sound. Run before the first search: FAISS does not check these itself.
std::string BrokenStructure(const faiss::Index& index) {
  const idx_t n = index.ntotal;
  if (n < 0) return "negative vector count";
  if (const auto* map = dynamic_cast<const faiss::IndexIDMap2*>(&index)) {
    if (!map->index || static_cast<idx_t>(map->id_map.size()) != n || map->index->ntotal != n) {
      return "id map and index sizes differ";
    }
    if (static_cast<idx_t>(map->rev_map.size()) != n) return "repeated ids";
    if (const auto* flat = dynamic_cast<const faiss::IndexFlatCodes*>(map->index)) {
      if (flat->codes.size() != static_cast<std::size_t>(n) * flat->code_size) {
        return "flat storage size is wrong";
      }
      return "";
    }
    const auto* hnsw_index = dynamic_cast<const faiss::IndexHNSWFlat*>(map->index);
    if (!hnsw_index) return "unexpected sub-index";
    const auto* storage = dynamic_cast<const faiss::IndexFlatCodes*>(hnsw_index->storage);
    if (!storage || storage->ntotal != n ||
        storage->codes.size() != static_cast<std::size_t>(n) * storage->code_size) {
      return "HNSW storage size is wrong";
    }
    const faiss::HNSW& g = hnsw_index->hnsw;
    const int levels_known = static_cast<int>(g.cum_nneighbor_per_level.size()) - 1;
    if (static_cast<idx_t>(g.levels.size()) != n || static_cast<idx_t>(g.offsets.size()) != n + 1 ||
        g.offsets[0] != 0 || g.offsets[n] != g.neighbors.size()) {
      return "HNSW graph tables have the wrong size";
    }
    if (g.max_level < -1 || g.max_level >= levels_known) return "HNSW level out of range";
    if (n == 0 ? g.entry_point != -1
               : (g.entry_point < 0 || g.entry_point >= n ||
                  g.levels[g.entry_point] - 1 != g.max_level)) {
      return "HNSW entry point out of range";
    }
    for (idx_t i = 0; i < n; ++i) {
      const int level = g.levels[i];
      if (level < 1 || level - 1 > g.max_level ||
          g.offsets[i + 1] - g.offsets[i] !=
              static_cast<std::size_t>(g.cum_nneighbor_per_level[level])) {
        return "HNSW node " + std::to_string(i) + " is inconsistent";
      }
    }
    for (faiss::HNSW::storage_idx_t neighbor : g.neighbors) {
      if (neighbor < -1 || neighbor >= n) return "HNSW link out of range";
    }
    return "";
  }
  const auto* ivf = dynamic_cast<const faiss::IndexIVFFlat*>(&index);
  if (!ivf || !ivf->invlists || !ivf->quantizer) return "unexpected index";
  if (ivf->code_size != sizeof(float) * static_cast<std::size_t>(ivf->d) ||
      ivf->invlists->nlist != ivf->nlist ||
      ivf->quantizer->ntotal != static_cast<idx_t>(ivf->nlist) || ivf->quantizer->d != ivf->d) {
    return "IVF lists do not fit the quantiser";
  }
  idx_t listed = 0;
  for (std::size_t list = 0; list < ivf->nlist; ++list) listed += ivf->invlists->list_size(list);
  return listed == n ? "" : "IVF lists hold another number of vectors";
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
  bool reuses_removed = false;
  for (std::int64_t id : ids) {
    if (live_ids_.count(id)) {
      return absl::InvalidArgumentError("index add: face id " + std::to_string(id) +
                                        " is already in the index");
    }
    reuses_removed = reuses_removed || tombstones_.count(id);
  }
  // An id removed from HNSW is still a node of the graph. It comes back when the store hands
  // it out again (e.g. a database restored from a backup, under a newer snapshot): drop the
  // removed nodes first.
  if (reuses_removed) FACEID_RETURN_IF_ERROR(Rebuild(/*train_ivf=*/false));
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
  std::error_code size_error;
  const auto size = std::filesystem::file_size(temp, size_error);
  const std::string digest = size_error ? "" : Sha256HexOfFile(temp, static_cast<long long>(size));
  {
    std::FILE* out = digest.size() == 64 ? std::fopen(temp.c_str(), "ab") : nullptr;
    const bool written = out && std::fwrite(kTrailerMagic, 1, 8, out) == 8 &&
                         std::fwrite(digest.data(), 1, 64, out) == 64;
    if (out && std::fclose(out) != 0) out = nullptr;
    if (!written || !out) {
      std::remove(temp.c_str());
      return absl::InternalError("cannot write the snapshot checksum to " + temp);
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
  std::error_code fs_error;
  const auto kind = std::filesystem::status(path, fs_error).type();
  if (kind == std::filesystem::file_type::not_found) {
    return absl::NotFoundError("no index snapshot at " + path);
  }
  if (kind != std::filesystem::file_type::regular) {
    return absl::FailedPreconditionError("index snapshot " + path + " is not a regular file");
  }
  const auto size = std::filesystem::file_size(path, fs_error);
  std::string trailer(kTrailerSize, '\0');
  {
    std::FILE* in = fs_error || size < kTrailerSize ? nullptr : std::fopen(path.c_str(), "rb");
    const bool read = in && std::fseek(in, static_cast<long>(size - kTrailerSize), SEEK_SET) == 0 &&
                      std::fread(trailer.data(), 1, kTrailerSize, in) == kTrailerSize;
    if (in) std::fclose(in);
    if (!read || trailer.compare(0, 8, kTrailerMagic) != 0) {
      return absl::FailedPreconditionError("index snapshot " + path +
                                           " has no faceid checksum (damaged or not ours)");
    }
  }
  if (Sha256HexOfFile(path, static_cast<long long>(size - kTrailerSize)) != trailer.substr(8)) {
    return absl::FailedPreconditionError("index snapshot " + path +
                                         " fails its checksum (damaged)");
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
  if (const std::string why = BrokenStructure(*loaded); !why.empty()) {
    return absl::FailedPreconditionError("index snapshot " + path + " is inconsistent: " + why);
  }
  std::unordered_map<std::int64_t, std::size_t> in_store;
  in_store.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) in_store.emplace(ids[i], i);
  std::vector<std::int64_t> in_file, gone;
  std::unordered_set<std::int64_t> seen;
  std::int64_t differing = -1, already_removed = 0;
  try {
    ForEachStored(*loaded, dim, [&](idx_t id, const float* vector) {
      in_file.push_back(id);
      seen.insert(id);
      auto it = in_store.find(id);
      if (it == in_store.end()) {
        gone.push_back(id);
        // A zeroed vector: an HNSW entry removed before the save (see Remove).
        already_removed += std::all_of(vector, vector + dim, [](float x) { return x == 0.f; });
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
    report->removed = static_cast<std::int64_t>(gone.size()) - already_removed;
  }
  return index;
}

std::int64_t GalleryIndex::size() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return static_cast<std::int64_t>(live_ids_.size());
}

}  // namespace faceid
