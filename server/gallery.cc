#include "server/gallery.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <unordered_set>
#include <utility>

#include "core/log.h"

namespace faceid {

namespace {

constexpr int kReembedBatch = 32;
// Hits fetched per wanted person at first; several faces of one person can fill the list.
constexpr int kHitsPerPerson = 4;
constexpr int kMinHits = 16;
// Snapshot files are named kSnapshotPrefix + hex(gallery) + kSnapshotSuffix; nothing else in
// the folder is ever touched.
constexpr char kSnapshotPrefix[] = "faceid-gallery-";
constexpr char kSnapshotSuffix[] = ".faiss";

// True for our snapshot files and the temporaries of an interrupted save.
bool IsSnapshotFile(const std::string& name) {
  std::string rest = name;
  if (rest.rfind(kSnapshotPrefix, 0) != 0) return false;
  rest = rest.substr(sizeof(kSnapshotPrefix) - 1);
  for (const std::string& tail :
       {std::string(kSnapshotSuffix), std::string(kSnapshotSuffix) + ".tmp"}) {
    if (rest.size() > tail.size() &&
        rest.compare(rest.size() - tail.size(), tail.size(), tail) == 0) {
      const std::string hex = rest.substr(0, rest.size() - tail.size());
      return hex.size() % 2 == 0 && hex.find_first_not_of("0123456789abcdef") == std::string::npos;
    }
  }
  return false;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string Hex(const std::string& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex += kDigits[c >> 4];
    hex += kDigits[c & 15];
  }
  return hex;
}

}  // namespace

GalleryManager::GalleryManager(std::unique_ptr<GalleryStore> store, int embedding_dim,
                               const IndexOptions& index_options, std::string snapshot_dir)
    : store_(std::move(store)),
      embedding_dim_(embedding_dim),
      index_options_(index_options),
      snapshot_dir_(std::move(snapshot_dir)) {}

std::string GalleryManager::SnapshotPath(const std::string& gallery) const {
  return (std::filesystem::path(snapshot_dir_) / (kSnapshotPrefix + Hex(gallery) + kSnapshotSuffix))
      .string();
}

void GalleryManager::DropSnapshot(const std::string& gallery) {
  if (snapshot_dir_.empty()) return;
  std::error_code error;
  std::filesystem::remove(SnapshotPath(gallery), error);
  if (error) {
    Logger("server")->warn("cannot remove index snapshot {}: {}", SnapshotPath(gallery),
                           error.message());
  }
}

Status GalleryManager::SaveSnapshots() {
  std::lock_guard<std::mutex> writer(writer_mutex_);
  return SaveSnapshotsLocked();
}

Status GalleryManager::SaveSnapshotsLocked() {
  if (snapshot_dir_.empty()) return absl::OkStatus();
  const auto started = std::chrono::steady_clock::now();
  std::map<std::string, std::shared_ptr<GalleryIndex>> indexes;
  {
    std::shared_lock<std::shared_mutex> lock(indexes_mutex_);
    indexes = indexes_;
  }
  std::int64_t faces = 0;
  for (const auto& [gallery, index] : indexes) {
    FACEID_RETURN_IF_ERROR(index->Save(SnapshotPath(gallery)));
    faces += index->size();
  }
  // Files of galleries deleted meanwhile, and temporaries of an interrupted save.
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(snapshot_dir_, error)) {
    bool live = false;
    for (const auto& pair : indexes) live = live || SnapshotPath(pair.first) == entry.path();
    if (!live && IsSnapshotFile(entry.path().filename().string())) {
      std::filesystem::remove(entry.path(), error);
    }
  }
  Logger("server")->info("index snapshots saved to {}: {} galleries, {} faces in {:.2f} s",
                         snapshot_dir_, indexes.size(), faces, SecondsSince(started));
  return absl::OkStatus();
}

Status GalleryManager::Prepare(const Embedder& embedder) {
  auto log = Logger("server");
  std::lock_guard<std::mutex> writer(writer_mutex_);
  const std::string& version = embedder.info().version;

  FACEID_ASSIGN_OR_RETURN(std::vector<std::int64_t> stale, store_->FacesWithOtherModel(version));
  if (!stale.empty()) {
    log->info("re-embedding {} stored faces with model {}", stale.size(), version);
  }
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t begin = 0; begin < stale.size(); begin += kReembedBatch) {
    const std::size_t end = std::min(stale.size(), begin + kReembedBatch);
    std::vector<cv::Mat> crops;
    for (std::size_t i = begin; i < end; ++i) {
      FACEID_ASSIGN_OR_RETURN(std::string png, store_->GetCrop(stale[i]));
      cv::Mat crop = cv::imdecode(cv::Mat(1, static_cast<int>(png.size()), CV_8U, png.data()),
                                  cv::IMREAD_COLOR);
      if (crop.empty()) {
        return absl::InternalError("stored crop of face " + std::to_string(stale[i]) +
                                   " cannot be decoded");
      }
      crops.push_back(std::move(crop));
    }
    FACEID_ASSIGN_OR_RETURN(std::vector<std::vector<float>> embeddings, embedder.Embed(crops));
    for (std::size_t i = begin; i < end; ++i) {
      FACEID_RETURN_IF_ERROR(store_->UpdateEmbedding(stale[i], embeddings[i - begin], version));
    }
    log->info("re-embedded {}/{} faces", end, stale.size());
  }
  if (!stale.empty()) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    log->info("re-embedding done in {:.1f} s", seconds);
  }

  // Gather per gallery first, then add in one call per gallery (one FAISS add, one train).
  std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>> rows;
  FACEID_ASSIGN_OR_RETURN(std::vector<GalleryCounts> galleries, store_->ListGalleries());
  for (const GalleryCounts& gallery : galleries) rows[gallery.name];
  FACEID_RETURN_IF_ERROR(store_->ForEachEmbedding(
      [&](const std::string& gallery, std::int64_t face_id, const std::vector<float>& vector) {
        if (static_cast<int>(vector.size()) != embedding_dim_) {
          return absl::FailedPreconditionError(
              "stored face " + std::to_string(face_id) + " has " + std::to_string(vector.size()) +
              " dimensions, the model " + std::to_string(embedding_dim_));
        }
        auto& [ids, vectors] = rows[gallery];
        ids.push_back(face_id);
        vectors.insert(vectors.end(), vector.begin(), vector.end());
        return absl::OkStatus();
      }));
  if (!snapshot_dir_.empty()) {
    std::error_code error;
    std::filesystem::create_directories(snapshot_dir_, error);
    if (error || !std::filesystem::is_directory(snapshot_dir_, error)) {
      log->warn("index snapshot folder {} cannot be used ({}): serving without snapshots",
                snapshot_dir_, error ? error.message() : "not a folder");
      snapshot_dir_.clear();
    }
  }
  PrepareReport report;
  bool changed = false;
  std::map<std::string, std::shared_ptr<GalleryIndex>> indexes;
  for (auto& [name, data] : rows) {
    const auto index_started = std::chrono::steady_clock::now();
    if (!snapshot_dir_.empty()) {
      SnapshotLoad load;
      StatusOr<std::unique_ptr<GalleryIndex>> loaded = GalleryIndex::Load(
          SnapshotPath(name), embedding_dim_, index_options_, data.first, data.second, &load);
      if (loaded.ok()) {
        log->info(
            "gallery '{}': index snapshot loaded in {:.2f} s ({} faces, {} added, {} removed)",
            name, SecondsSince(index_started), load.from_file, load.added, load.removed);
        ++report.galleries_loaded;
        report.faces_from_snapshot += load.from_file;
        report.faces_added += load.added;
        report.faces_removed += load.removed;
        changed = changed || load.added > 0 || load.removed > 0;
        indexes[name] = std::move(*loaded);
        continue;
      }
      if (!absl::IsNotFound(loaded.status())) {
        log->warn("gallery '{}': {}; rebuilding from the store", name,
                  std::string(loaded.status().message()));
      }
    }
    auto index = std::make_shared<GalleryIndex>(embedding_dim_, index_options_);
    FACEID_RETURN_IF_ERROR(index->Add(data.first, data.second));
    log->info("gallery '{}': index built from the store in {:.2f} s ({} faces)", name,
              SecondsSince(index_started), data.first.size());
    ++report.galleries_built;
    changed = true;
    indexes[name] = std::move(index);
  }
  {
    std::unique_lock<std::shared_mutex> lock(indexes_mutex_);
    indexes_ = std::move(indexes);
  }
  if (changed) {
    // A failed save costs the next start a rebuild, nothing more: serve anyway.
    Status saved = SaveSnapshotsLocked();
    if (!saved.ok()) log->warn("index snapshots not saved: {}", std::string(saved.message()));
  }
  prepare_report_ = report;
  ready_ = true;
  return absl::OkStatus();
}

std::shared_ptr<GalleryIndex> GalleryManager::IndexOf(const std::string& gallery) const {
  std::shared_lock<std::shared_mutex> lock(indexes_mutex_);
  auto it = indexes_.find(gallery);
  return it == indexes_.end() ? nullptr : it->second;
}

std::shared_ptr<GalleryIndex> GalleryManager::IndexOrCreate(const std::string& gallery) {
  std::unique_lock<std::shared_mutex> lock(indexes_mutex_);
  auto& index = indexes_[gallery];
  if (!index) index = std::make_shared<GalleryIndex>(embedding_dim_, index_options_);
  return index;
}

StatusOr<EnrollResult> GalleryManager::Enroll(const std::string& gallery,
                                              const std::string& external_id,
                                              const std::string& display_name,
                                              const std::map<std::string, std::string>& metadata,
                                              const std::vector<NewFace>& faces,
                                              const std::string& model_version) {
  for (const NewFace& face : faces) {
    if (static_cast<int>(face.embedding.size()) != embedding_dim_) {
      return absl::InvalidArgumentError("embedding has " + std::to_string(face.embedding.size()) +
                                        " floats, expected " + std::to_string(embedding_dim_));
    }
  }
  std::lock_guard<std::mutex> writer(writer_mutex_);
  FACEID_ASSIGN_OR_RETURN(EnrollResult result, store_->Enroll(gallery, external_id, display_name,
                                                              metadata, faces, model_version));

  std::vector<std::int64_t> ids;
  std::vector<float> vectors;
  std::unordered_set<std::int64_t> seen;
  for (std::size_t i = 0; i < faces.size(); ++i) {
    const EnrollOutcome& outcome = result.faces[i];
    if (outcome.duplicate || !seen.insert(outcome.face_id).second) continue;
    ids.push_back(outcome.face_id);
    vectors.insert(vectors.end(), faces[i].embedding.begin(), faces[i].embedding.end());
  }
  // The faces are committed: an index failure here is a bug, and a restart rebuilds the index.
  FACEID_RETURN_IF_ERROR(IndexOrCreate(gallery)->Add(ids, vectors));
  return result;
}

StatusOr<std::vector<PersonMatch>> GalleryManager::Search(const std::string& gallery,
                                                          const std::vector<float>& query,
                                                          int top_k) const {
  std::shared_ptr<GalleryIndex> index = IndexOf(gallery);
  if (!index) return absl::NotFoundError("gallery '" + gallery + "' does not exist");
  std::vector<PersonMatch> people;
  const std::int64_t total = index->size();
  if (total == 0) return people;

  int k = std::max(kMinHits, top_k * kHitsPerPerson);
  while (true) {
    k = static_cast<int>(std::min<std::int64_t>(k, total));
    FACEID_ASSIGN_OR_RETURN(std::vector<IndexHit> hits, index->Search(query, k));
    std::vector<std::int64_t> ids;
    std::map<std::int64_t, float> similarity;
    for (const IndexHit& hit : hits) {
      ids.push_back(hit.face_id);
      // Unit vectors in float: a face against itself can come out a few ulps above 1.
      similarity[hit.face_id] = std::clamp(hit.similarity, -1.f, 1.f);
    }
    FACEID_ASSIGN_OR_RETURN(std::vector<FaceOwner> owners, store_->ResolveFaces(gallery, ids));
    people.clear();
    std::unordered_set<std::string> seen;
    for (const FaceOwner& owner : owners) {
      if (!seen.insert(owner.external_id).second) continue;
      people.push_back(
          {owner.external_id, owner.display_name, owner.face_id, similarity[owner.face_id]});
      if (static_cast<int>(people.size()) == top_k) break;
    }
    if (static_cast<int>(people.size()) >= top_k || k >= total) break;
    k *= kHitsPerPerson;
  }
  return people;
}

Status GalleryManager::CheckGallery(const std::string& gallery) const {
  if (IndexOf(gallery)) return absl::OkStatus();
  return absl::NotFoundError("gallery '" + gallery + "' does not exist");
}

StatusOr<DeletedFaces> GalleryManager::DeletePerson(const std::string& gallery,
                                                    const std::string& external_id) {
  std::lock_guard<std::mutex> writer(writer_mutex_);
  FACEID_ASSIGN_OR_RETURN(DeletedFaces deleted, store_->DeletePerson(gallery, external_id));
  DropSnapshot(gallery);
  if (auto index = IndexOf(gallery)) FACEID_RETURN_IF_ERROR(index->Remove(deleted.face_ids));
  return deleted;
}

StatusOr<std::string> GalleryManager::DeleteFace(const std::string& gallery, std::int64_t face_id) {
  std::lock_guard<std::mutex> writer(writer_mutex_);
  FACEID_ASSIGN_OR_RETURN(std::string external_id, store_->DeleteFace(gallery, face_id));
  DropSnapshot(gallery);
  if (auto index = IndexOf(gallery)) FACEID_RETURN_IF_ERROR(index->Remove({face_id}));
  return external_id;
}

StatusOr<DeletedFaces> GalleryManager::DeleteGallery(const std::string& gallery) {
  std::lock_guard<std::mutex> writer(writer_mutex_);
  FACEID_ASSIGN_OR_RETURN(DeletedFaces deleted, store_->DeleteGallery(gallery));
  DropSnapshot(gallery);
  std::unique_lock<std::shared_mutex> lock(indexes_mutex_);
  if (gallery == kDefaultGallery) {
    indexes_[gallery] = std::make_shared<GalleryIndex>(embedding_dim_, index_options_);
  } else {
    indexes_.erase(gallery);
  }
  return deleted;
}

int RemoveIndexSnapshots(const std::string& dir) {
  int removed = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (IsSnapshotFile(entry.path().filename().string()) &&
        std::filesystem::remove(entry.path(), error)) {
      ++removed;
    }
  }
  return removed;
}

}  // namespace faceid
