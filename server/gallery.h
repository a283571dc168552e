// GalleryManager: the galleries of a server: the SQLite store plus one GalleryIndex per
// gallery, kept in step with it.
//
// The store is the source of truth: a write commits to SQLite first, then updates the index;
// every search hit is resolved against the store, so a face deleted meanwhile is never
// returned. Prepare() first re-embeds the stored crops whose embedding came from another model
// version, then builds each gallery's index from the store, or, with a snapshot folder, loads
// the index saved there by SaveSnapshots() after checking it against the store (every vector
// it shares with the store bit-identical; faces enrolled or deleted since are applied).
// A delete removes the gallery's snapshot file, so no deleted embedding stays on disk there.
//
// Thread-safety: thread-safe. Searches run in parallel; writes (enroll, delete) are
// serialised by one writer mutex so the store and the indexes change in the same order.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "core/embedder.h"
#include "core/status.h"
#include "server/index.h"
#include "server/store.h"

namespace faceid {

// One person among the search results: its best matching face.
struct PersonMatch {
  std::string external_id;
  std::string display_name;
  std::int64_t face_id = 0;
  float similarity = 0.f;
};

// Removes the index snapshot files (and save temporaries) a GalleryManager wrote in `dir`,
// nothing else; returns how many. For a server started without snapshots, or with another
// folder, so that no snapshot of an older run keeps embeddings deleted since.
int RemoveIndexSnapshots(const std::string& dir);

// How Prepare() obtained the indexes.
struct PrepareReport {
  int galleries_loaded = 0;  // from a snapshot
  int galleries_built = 0;   // from the store's vectors
  std::int64_t faces_from_snapshot = 0;
  std::int64_t faces_added = 0;    // to loaded snapshots: enrolled after they were saved
  std::int64_t faces_removed = 0;  // from loaded snapshots: deleted since
};

class GalleryManager {
 public:
  // `embedding_dim`: the serving model's dimension. `snapshot_dir`: folder of index snapshots
  // (created when missing; one folder per database), or "" for none. A folder that cannot be
  // created is logged by Prepare(), which then goes on without snapshots. The manager is not ready
  // until Prepare() succeeds.
  GalleryManager(std::unique_ptr<GalleryStore> store, int embedding_dim,
                 const IndexOptions& index_options, std::string snapshot_dir = "");

  // Re-embeds every stored crop whose model version differs from embedder.info().version
  // (progress in the log), then builds every gallery's index from the store and marks the
  // manager ready. INTERNAL / FAILED_PRECONDITION when a crop cannot be re-embedded or a
  // stored vector has the wrong dimension.
  // A snapshot that cannot be used is logged and rebuilt, never an error. When any gallery
  // was built or brought in step, the snapshots are saved again (as SaveSnapshots()).
  Status Prepare(const Embedder& embedder);
  bool ready() const { return ready_.load(); }
  const PrepareReport& prepare_report() const { return prepare_report_; }

  // Writes every gallery's index to the snapshot folder (one file per gallery, replaced
  // atomically) and removes the files of galleries that no longer exist; a no-op without a
  // snapshot folder. Writers wait meanwhile. INTERNAL on an I/O or FAISS error.
  Status SaveSnapshots();
  const std::string& snapshot_dir() const { return snapshot_dir_; }
  // Snapshot file of `gallery` (its name hex-encoded, so any name is a safe file name).
  std::string SnapshotPath(const std::string& gallery) const;

  // GalleryStore::Enroll, then the new faces go into the gallery's index. `faces` must have
  // embeddings of embedding_dim floats (INVALID_ARGUMENT otherwise).
  StatusOr<EnrollResult> Enroll(const std::string& gallery, const std::string& external_id,
                                const std::string& display_name,
                                const std::map<std::string, std::string>& metadata,
                                const std::vector<NewFace>& faces,
                                const std::string& model_version);

  // The top_k (>= 1) people of `gallery` nearest to `query` (embedding_dim floats, unit norm),
  // best first, each once with its best face. An empty gallery gives none. NOT_FOUND for an
  // unknown gallery.
  StatusOr<std::vector<PersonMatch>> Search(const std::string& gallery,
                                            const std::vector<float>& query, int top_k) const;

  // OK when the gallery exists; NOT_FOUND otherwise.
  Status CheckGallery(const std::string& gallery) const;

  // As in GalleryStore, plus the index entries go.
  StatusOr<DeletedFaces> DeletePerson(const std::string& gallery, const std::string& external_id);
  StatusOr<std::string> DeleteFace(const std::string& gallery, std::int64_t face_id);
  StatusOr<DeletedFaces> DeleteGallery(const std::string& gallery);

  // Reads go straight to the store (thread-safe).
  GalleryStore& store() { return *store_; }
  int embedding_dim() const { return embedding_dim_; }
  IndexType index_type() const { return index_options_.type; }

 private:
  // The gallery's index, or nullptr when the gallery has none yet.
  std::shared_ptr<GalleryIndex> IndexOf(const std::string& gallery) const;
  std::shared_ptr<GalleryIndex> IndexOrCreate(const std::string& gallery);
  // Caller holds writer_mutex_. Removes the gallery's snapshot file, if any.
  void DropSnapshot(const std::string& gallery);
  // Caller holds writer_mutex_.
  Status SaveSnapshotsLocked();

  std::unique_ptr<GalleryStore> store_;
  const int embedding_dim_;
  const IndexOptions index_options_;
  std::string snapshot_dir_;  // cleared by Prepare when unusable; then guarded by writer_mutex_
  std::atomic<bool> ready_{false};
  PrepareReport prepare_report_;  // written by Prepare before ready_
  std::mutex writer_mutex_;       // one writer at a time across store and indexes
  mutable std::shared_mutex indexes_mutex_;
  std::map<std::string, std::shared_ptr<GalleryIndex>> indexes_;  // guarded by indexes_mutex_
};

}  // namespace faceid
