// GalleryStore: the durable gallery in SQLite, the source of truth of faceid-server.
//
// Tables: galleries, people (gallery, external id, display name, metadata JSON, times) and
// faces (person, embedding, model version, aligned crop PNG, source image SHA-256, box, time).
// The database runs in WAL mode with synchronous=FULL (a call that returned OK has committed
// and survives a crash or power loss) and secure_delete=ON (deleted rows are overwritten with
// zeros; deletions finish with a WAL checkpoint so no copy stays in the -wal file).
// Face ids come from AUTOINCREMENT: unique across galleries and never reused.
//
// Thread-safety: thread-safe. One SQLite connection guarded by a mutex; every call is one
// transaction, so callers see either all of a write or none of it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

struct sqlite3;

namespace faceid {

inline constexpr char kDefaultGallery[] = "default";

struct FaceBox {
  int x = 0;
  int y = 0;
  int width = 0;
  int height = 0;
};

// A face to store: the embedding (embedding_dim floats, unit norm), the aligned crop encoded
// as PNG, the hex SHA-256 of the source image bytes and the box in that image.
struct NewFace {
  std::vector<float> embedding;
  std::string crop_png;
  std::string source_sha256;
  FaceBox box;
};

struct FaceRow {
  std::int64_t face_id = 0;
  FaceBox box;
  std::string source_sha256;
  std::string model_version;
  std::int64_t created_unix_ms = 0;
};

struct PersonRow {
  std::string gallery;
  std::string external_id;
  std::string display_name;
  std::map<std::string, std::string> metadata;
  int face_count = 0;
  std::int64_t created_unix_ms = 0;
  std::int64_t updated_unix_ms = 0;
  std::vector<FaceRow> faces;  // filled only where a function says so
};

// Per NewFace of an enrollment: the stored face id, and whether that image (same source hash)
// was already stored for this person, in which case face_id is the existing face.
struct EnrollOutcome {
  std::int64_t face_id = 0;
  bool duplicate = false;
};

struct EnrollResult {
  PersonRow person;  // after the enrollment, with faces
  bool person_created = false;
  std::vector<EnrollOutcome> faces;  // one per NewFace, in order
};

struct GalleryCounts {
  std::string name;
  std::int64_t people = 0;
  std::int64_t faces = 0;
};

// What a search hit resolves to; absent when the face was deleted meanwhile.
struct FaceOwner {
  std::int64_t face_id = 0;
  std::string external_id;
  std::string display_name;
};

// The ids removed by a deletion, so the caller can drop them from its index.
struct DeletedFaces {
  std::int64_t people = 0;
  std::vector<std::int64_t> face_ids;
};

class GalleryStore {
 public:
  // Opens or creates the database at `path` and its schema; the default gallery always
  // exists. INVALID_ARGUMENT naming the file when it is not a faceid database or cannot be
  // opened; INTERNAL for other SQLite failures.
  static StatusOr<std::unique_ptr<GalleryStore>> Open(const std::string& path);
  ~GalleryStore();

  GalleryStore(const GalleryStore&) = delete;
  GalleryStore& operator=(const GalleryStore&) = delete;

  // Create-or-append in one transaction: creates the gallery and the person when absent
  // (with display_name and metadata), updates the display name when `display_name` is
  // non-empty and differs, then stores each face unless the person already has a face with
  // the same source hash (then that face id comes back with duplicate = true). Safe under
  // parallel and retried calls for the same person. `model_version` is recorded per face.
  StatusOr<EnrollResult> Enroll(const std::string& gallery, const std::string& external_id,
                                const std::string& display_name,
                                const std::map<std::string, std::string>& metadata,
                                const std::vector<NewFace>& faces,
                                const std::string& model_version);

  // The person with its faces (ordered by face id). NOT_FOUND for an unknown gallery or person.
  StatusOr<PersonRow> GetPerson(const std::string& gallery, const std::string& external_id);

  // Sets the display name when given; sets the metadata keys (an empty value removes a key),
  // or replaces all of them when `replace_metadata`. Returns the person with faces.
  // NOT_FOUND for an unknown gallery or person; INVALID_ARGUMENT, with nothing changed, when
  // the merged metadata would hold more than `max_metadata_keys` keys.
  StatusOr<PersonRow> UpdatePerson(const std::string& gallery, const std::string& external_id,
                                   const std::optional<std::string>& display_name,
                                   const std::map<std::string, std::string>& metadata,
                                   bool replace_metadata, std::size_t max_metadata_keys);

  // Deletes the person and all its faces, erasing the bytes. NOT_FOUND when unknown.
  StatusOr<DeletedFaces> DeletePerson(const std::string& gallery, const std::string& external_id);

  // Deletes one face of the gallery; returns its person's external id. NOT_FOUND for an
  // unknown gallery or a face id that is not in that gallery.
  StatusOr<std::string> DeleteFace(const std::string& gallery, std::int64_t face_id);

  // Deletes every person and face of the gallery; the gallery row goes too except for
  // "default", which stays empty. NOT_FOUND for an unknown gallery.
  StatusOr<DeletedFaces> DeleteGallery(const std::string& gallery);

  // People with external_id > `after_external_id` (bytewise), ascending, at most `limit`,
  // without faces; `total` receives the gallery's person count. NOT_FOUND for an unknown
  // gallery.
  StatusOr<std::vector<PersonRow>> ListPeople(const std::string& gallery,
                                              const std::string& after_external_id, int limit,
                                              std::int64_t* total);

  // Every gallery with its counts, by name.
  StatusOr<std::vector<GalleryCounts>> ListGalleries();

  // Resolves face ids of `gallery` to their owners, in input order; deleted faces are left
  // out.
  StatusOr<std::vector<FaceOwner>> ResolveFaces(const std::string& gallery,
                                                const std::vector<std::int64_t>& face_ids);

  // Calls `visit(gallery, face_id, embedding)` for every face, by gallery then face id, from
  // one consistent snapshot. A non-OK status from `visit` stops the scan and is returned.
  Status ForEachEmbedding(
      const std::function<Status(const std::string& gallery, std::int64_t face_id,
                                 const std::vector<float>& embedding)>& visit);

  // The face ids and embeddings of one person, by face id. NOT_FOUND for an unknown gallery
  // or person.
  Status PersonEmbeddings(const std::string& gallery, const std::string& external_id,
                          std::vector<std::int64_t>* face_ids,
                          std::vector<std::vector<float>>* embeddings);

  // Face ids whose stored embedding was made by a model other than `model_version`.
  StatusOr<std::vector<std::int64_t>> FacesWithOtherModel(const std::string& model_version);

  // The stored crop PNG of a face. NOT_FOUND when the face does not exist.
  StatusOr<std::string> GetCrop(std::int64_t face_id);

  // Replaces the embedding and model version of a face (after re-embedding its crop).
  // NOT_FOUND when the face no longer exists.
  Status UpdateEmbedding(std::int64_t face_id, const std::vector<float>& embedding,
                         const std::string& model_version);

  // Writes a consistent copy of the database to `out_path` with SQLite's online backup API
  // while the store stays usable. INTERNAL with the SQLite message on failure.
  Status Backup(const std::string& out_path);

 private:
  explicit GalleryStore(sqlite3* db);

  // Returns the gallery's row id, or NOT_FOUND. Caller holds mutex_.
  StatusOr<std::int64_t> GalleryId(const std::string& gallery);
  StatusOr<std::int64_t> PersonId(std::int64_t gallery_id, const std::string& external_id);
  StatusOr<PersonRow> ReadPerson(std::int64_t person_id, bool with_faces);
  // Copies the erased pages out of the WAL into the main file and truncates the WAL.
  void CheckpointAfterDelete();

  std::mutex mutex_;
  sqlite3* db_;  // guarded by mutex_
};

// Backs up the database file `db_path` into `out_path` (online backup API; the source may be
// in use by a running server). NOT_FOUND when `db_path` does not exist; INVALID_ARGUMENT
// when `out_path` is the database itself; ALREADY_EXISTS when `out_path` exists (a backup
// never overwrites a file, which could be another server's live database).
Status BackupDatabase(const std::string& db_path, const std::string& out_path);

}  // namespace faceid
