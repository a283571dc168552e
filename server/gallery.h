// GalleryManager: the galleries of a server: the SQLite store plus one GalleryIndex per
// gallery, kept in step with it.
//
// The store is the source of truth: a write commits to SQLite first, then updates the index;
// every search hit is resolved against the store, so a face deleted meanwhile is never
// returned. Indexes are rebuilt from the store by Prepare(), which first re-embeds the stored
// crops whose embedding came from another model version.
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

class GalleryManager {
 public:
  // `embedding_dim`: the serving model's dimension. The manager is not ready until
  // Prepare() succeeds.
  GalleryManager(std::unique_ptr<GalleryStore> store, int embedding_dim,
                 const IndexOptions& index_options);

  // Re-embeds every stored crop whose model version differs from embedder.info().version
  // (progress in the log), then builds every gallery's index from the store and marks the
  // manager ready. INTERNAL / FAILED_PRECONDITION when a crop cannot be re-embedded or a
  // stored vector has the wrong dimension.
  Status Prepare(const Embedder& embedder);
  bool ready() const { return ready_.load(); }

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

  std::unique_ptr<GalleryStore> store_;
  const int embedding_dim_;
  const IndexOptions index_options_;
  std::atomic<bool> ready_{false};
  std::mutex writer_mutex_;  // one writer at a time across store and indexes
  mutable std::shared_mutex indexes_mutex_;
  std::map<std::string, std::shared_ptr<GalleryIndex>> indexes_;  // guarded by indexes_mutex_
};

}  // namespace faceid
