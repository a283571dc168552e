#include "server/store.h"

#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

namespace faceid {

namespace {

constexpr int kBusyTimeoutMs = 10'000;
constexpr int kSchemaVersion = 1;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS galleries (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_unix_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS people (
  id INTEGER PRIMARY KEY,
  gallery_id INTEGER NOT NULL REFERENCES galleries(id) ON DELETE CASCADE,
  external_id TEXT NOT NULL,
  display_name TEXT NOT NULL DEFAULT '',
  metadata TEXT NOT NULL DEFAULT '{}',
  created_unix_ms INTEGER NOT NULL,
  updated_unix_ms INTEGER NOT NULL,
  UNIQUE (gallery_id, external_id)
);
CREATE TABLE IF NOT EXISTS faces (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
  embedding BLOB NOT NULL,
  model_version TEXT NOT NULL,
  crop BLOB NOT NULL,
  source_sha256 TEXT NOT NULL,
  box_x INTEGER NOT NULL,
  box_y INTEGER NOT NULL,
  box_width INTEGER NOT NULL,
  box_height INTEGER NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  UNIQUE (person_id, source_sha256)
);
CREATE INDEX IF NOT EXISTS faces_by_model ON faces (model_version);
)sql";

std::int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status SqliteError(sqlite3* db, const std::string& what) {
  return absl::InternalError("SQLite " + what + ": " + sqlite3_errmsg(db));
}

// A prepared statement; finalised on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Status prepared() const {
    return rc_ == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, "prepare");
  }
  Statement& Bind(int index, std::int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  Statement& Bind(int index, const std::string& value) {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindBlob(int index, const void* data, std::size_t bytes) {
    sqlite3_bind_blob(stmt_, index, data, static_cast<int>(bytes), SQLITE_TRANSIENT);
    return *this;
  }
  // True while a row is available; errors end the loop and show in status().
  bool Step() {
    rc_ = sqlite3_step(stmt_);
    return rc_ == SQLITE_ROW;
  }
  // After the last Step(): OK when the statement ran to completion.
  Status status() const {
    return (rc_ == SQLITE_DONE || rc_ == SQLITE_ROW) ? absl::OkStatus() : SqliteError(db_, "step");
  }
  Status Run() {
    Step();
    return status();
  }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return text ? std::string(text, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  std::string Blob(int col) const {
    const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return data ? std::string(data, sqlite3_column_bytes(stmt_, col)) : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

// Resets statements still positioned on a row: SQLite refuses COMMIT while they are.
void ResetBusyStatements(sqlite3* db) {
  for (sqlite3_stmt* stmt = sqlite3_next_stmt(db, nullptr); stmt != nullptr;
       stmt = sqlite3_next_stmt(db, stmt)) {
    if (sqlite3_stmt_busy(stmt)) sqlite3_reset(stmt);
  }
}

Status Exec(sqlite3* db, const char* sql) {
  if (std::strncmp(sql, "COMMIT", 6) == 0) ResetBusyStatements(db);
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : sqlite3_errmsg(db);
    sqlite3_free(message);
    return absl::InternalError(std::string("SQLite '") + sql + "': " + text);
  }
  return absl::OkStatus();
}

// BEGIN IMMEDIATE ... COMMIT; rolls back unless Commit() succeeded.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { begin_ = Exec(db, "BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (begin_.ok() && !committed_) Exec(db_, "ROLLBACK").IgnoreError();
  }
  Status begun() const { return begin_; }
  Status Commit() {
    FACEID_RETURN_IF_ERROR(Exec(db_, "COMMIT"));
    committed_ = true;
    return absl::OkStatus();
  }

 private:
  sqlite3* db_;
  Status begin_;
  bool committed_ = false;
};

std::string EncodeMetadata(const std::map<std::string, std::string>& metadata) {
  return nlohmann::json(metadata).dump();
}

std::map<std::string, std::string> DecodeMetadata(const std::string& text) {
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  std::map<std::string, std::string> metadata;
  if (!json.is_object()) return metadata;
  for (const auto& [key, value] : json.items()) {
    if (value.is_string()) metadata[key] = value.get<std::string>();
  }
  return metadata;
}

std::vector<float> DecodeEmbedding(const std::string& blob) {
  std::vector<float> embedding(blob.size() / sizeof(float));
  std::memcpy(embedding.data(), blob.data(), embedding.size() * sizeof(float));
  return embedding;
}

}  // namespace

StatusOr<std::unique_ptr<GalleryStore>> GalleryStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::InvalidArgumentError("cannot open database '" + path + "': " + message);
  }
  std::unique_ptr<GalleryStore> store(new GalleryStore(db));
  sqlite3_busy_timeout(db, kBusyTimeoutMs);

  // journal_mode answers a row; a file that is not SQLite fails here.
  Statement wal(db, "PRAGMA journal_mode=WAL");
  if (!wal.prepared().ok() || !wal.Step() || wal.Text(0) != "wal") {
    return absl::InvalidArgumentError("'" + path +
                                      "' is not a usable SQLite database: " + sqlite3_errmsg(db));
  }
  FACEID_RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous=FULL"));
  FACEID_RETURN_IF_ERROR(Exec(db, "PRAGMA secure_delete=ON"));
  FACEID_RETURN_IF_ERROR(Exec(db, "PRAGMA foreign_keys=ON"));
  FACEID_RETURN_IF_ERROR(Exec(db, kSchema));

  Transaction txn(db);
  FACEID_RETURN_IF_ERROR(txn.begun());
  Statement version(db, "SELECT value FROM meta WHERE key = 'schema_version'");
  FACEID_RETURN_IF_ERROR(version.prepared());
  if (version.Step()) {
    if (version.Text(0) != std::to_string(kSchemaVersion)) {
      return absl::FailedPreconditionError("database '" + path + "' has schema version " +
                                           version.Text(0) + ", this server reads " +
                                           std::to_string(kSchemaVersion));
    }
  } else {
    Statement set(db, "INSERT INTO meta (key, value) VALUES ('schema_version', ?)");
    FACEID_RETURN_IF_ERROR(set.Bind(1, std::to_string(kSchemaVersion)).Run());
  }
  Statement gallery(db, "INSERT OR IGNORE INTO galleries (name, created_unix_ms) VALUES (?, ?)");
  FACEID_RETURN_IF_ERROR(gallery.Bind(1, std::string(kDefaultGallery)).Bind(2, NowUnixMs()).Run());
  FACEID_RETURN_IF_ERROR(txn.Commit());
  return store;
}

GalleryStore::GalleryStore(sqlite3* db) : db_(db) {}

GalleryStore::~GalleryStore() { sqlite3_close_v2(db_); }

StatusOr<std::int64_t> GalleryStore::GalleryId(const std::string& gallery) {
  Statement select(db_, "SELECT id FROM galleries WHERE name = ?");
  FACEID_RETURN_IF_ERROR(select.prepared());
  if (select.Bind(1, gallery).Step()) return select.Int(0);
  FACEID_RETURN_IF_ERROR(select.status());
  return absl::NotFoundError("gallery '" + gallery + "' does not exist");
}

StatusOr<std::int64_t> GalleryStore::PersonId(std::int64_t gallery_id,
                                              const std::string& external_id) {
  Statement select(db_, "SELECT id FROM people WHERE gallery_id = ? AND external_id = ?");
  FACEID_RETURN_IF_ERROR(select.prepared());
  if (select.Bind(1, gallery_id).Bind(2, external_id).Step()) return select.Int(0);
  FACEID_RETURN_IF_ERROR(select.status());
  return absl::NotFoundError("person '" + external_id + "' is not enrolled in this gallery");
}

StatusOr<PersonRow> GalleryStore::ReadPerson(std::int64_t person_id, bool with_faces) {
  Statement select(db_,
                   "SELECT g.name, p.external_id, p.display_name, p.metadata, "
                   "p.created_unix_ms, p.updated_unix_ms, "
                   "(SELECT COUNT(*) FROM faces f WHERE f.person_id = p.id) "
                   "FROM people p JOIN galleries g ON g.id = p.gallery_id WHERE p.id = ?");
  FACEID_RETURN_IF_ERROR(select.prepared());
  if (!select.Bind(1, person_id).Step()) {
    FACEID_RETURN_IF_ERROR(select.status());
    return absl::NotFoundError("person row " + std::to_string(person_id) + " is gone");
  }
  PersonRow person;
  person.gallery = select.Text(0);
  person.external_id = select.Text(1);
  person.display_name = select.Text(2);
  person.metadata = DecodeMetadata(select.Text(3));
  person.created_unix_ms = select.Int(4);
  person.updated_unix_ms = select.Int(5);
  person.face_count = static_cast<int>(select.Int(6));
  if (!with_faces) return person;

  Statement faces(db_,
                  "SELECT id, box_x, box_y, box_width, box_height, source_sha256, model_version, "
                  "created_unix_ms FROM faces WHERE person_id = ? ORDER BY id");
  FACEID_RETURN_IF_ERROR(faces.prepared());
  faces.Bind(1, person_id);
  while (faces.Step()) {
    FaceRow face;
    face.face_id = faces.Int(0);
    face.box = {static_cast<int>(faces.Int(1)), static_cast<int>(faces.Int(2)),
                static_cast<int>(faces.Int(3)), static_cast<int>(faces.Int(4))};
    face.source_sha256 = faces.Text(5);
    face.model_version = faces.Text(6);
    face.created_unix_ms = faces.Int(7);
    person.faces.push_back(std::move(face));
  }
  FACEID_RETURN_IF_ERROR(faces.status());
  return person;
}

StatusOr<EnrollResult> GalleryStore::Enroll(const std::string& gallery,
                                            const std::string& external_id,
                                            const std::string& display_name,
                                            const std::map<std::string, std::string>& metadata,
                                            const std::vector<NewFace>& faces,
                                            const std::string& model_version) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction txn(db_);
  FACEID_RETURN_IF_ERROR(txn.begun());
  const std::int64_t now = NowUnixMs();

  Statement add_gallery(db_,
                        "INSERT OR IGNORE INTO galleries (name, created_unix_ms) VALUES (?, ?)");
  FACEID_RETURN_IF_ERROR(add_gallery.Bind(1, gallery).Bind(2, now).Run());
  FACEID_ASSIGN_OR_RETURN(const std::int64_t gallery_id, GalleryId(gallery));

  EnrollResult result;
  std::int64_t person_id = 0;
  StatusOr<std::int64_t> existing = PersonId(gallery_id, external_id);
  if (existing.ok()) {
    person_id = *existing;
    if (!display_name.empty()) {
      Statement rename(db_,
                       "UPDATE people SET display_name = ?, updated_unix_ms = ? "
                       "WHERE id = ? AND display_name <> ?");
      FACEID_RETURN_IF_ERROR(
          rename.Bind(1, display_name).Bind(2, now).Bind(3, person_id).Bind(4, display_name).Run());
    }
  } else if (absl::IsNotFound(existing.status())) {
    Statement add_person(db_,
                         "INSERT INTO people (gallery_id, external_id, display_name, metadata, "
                         "created_unix_ms, updated_unix_ms) VALUES (?, ?, ?, ?, ?, ?)");
    FACEID_RETURN_IF_ERROR(add_person.Bind(1, gallery_id)
                               .Bind(2, external_id)
                               .Bind(3, display_name)
                               .Bind(4, EncodeMetadata(metadata))
                               .Bind(5, now)
                               .Bind(6, now)
                               .Run());
    person_id = sqlite3_last_insert_rowid(db_);
    result.person_created = true;
  } else {
    return existing.status();
  }

  Statement find_face(db_, "SELECT id FROM faces WHERE person_id = ? AND source_sha256 = ?");
  Statement add_face(db_,
                     "INSERT INTO faces (person_id, embedding, model_version, crop, "
                     "source_sha256, box_x, box_y, box_width, box_height, created_unix_ms) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  FACEID_RETURN_IF_ERROR(find_face.prepared());
  FACEID_RETURN_IF_ERROR(add_face.prepared());
  for (const NewFace& face : faces) {
    find_face.Reset();
    if (find_face.Bind(1, person_id).Bind(2, face.source_sha256).Step()) {
      result.faces.push_back({find_face.Int(0), /*duplicate=*/true});
      continue;
    }
    FACEID_RETURN_IF_ERROR(find_face.status());
    add_face.Reset();
    add_face.Bind(1, person_id)
        .BindBlob(2, face.embedding.data(), face.embedding.size() * sizeof(float))
        .Bind(3, model_version)
        .BindBlob(4, face.crop_png.data(), face.crop_png.size())
        .Bind(5, face.source_sha256)
        .Bind(6, std::int64_t{face.box.x})
        .Bind(7, std::int64_t{face.box.y})
        .Bind(8, std::int64_t{face.box.width})
        .Bind(9, std::int64_t{face.box.height})
        .Bind(10, now);
    FACEID_RETURN_IF_ERROR(add_face.Run());
    result.faces.push_back({sqlite3_last_insert_rowid(db_), /*duplicate=*/false});
  }
  if (!faces.empty() && !result.person_created) {
    Statement touch(db_, "UPDATE people SET updated_unix_ms = ? WHERE id = ?");
    FACEID_RETURN_IF_ERROR(touch.Bind(1, now).Bind(2, person_id).Run());
  }

  FACEID_ASSIGN_OR_RETURN(result.person, ReadPerson(person_id, /*with_faces=*/true));
  FACEID_RETURN_IF_ERROR(txn.Commit());
  return result;
}

StatusOr<PersonRow> GalleryStore::GetPerson(const std::string& gallery,
                                            const std::string& external_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  FACEID_ASSIGN_OR_RETURN(const std::int64_t gallery_id, GalleryId(gallery));
  FACEID_ASSIGN_OR_RETURN(const std::int64_t person_id, PersonId(gallery_id, external_id));
  return ReadPerson(person_id, /*with_faces=*/true);
}

StatusOr<PersonRow> GalleryStore::UpdatePerson(const std::string& gallery,
                                               const std::string& external_id,
                                               const std::optional<std::string>& display_name,
                                               const std::map<std::string, std::string>& metadata,
                                               bool replace_metadata,
                                               std::size_t max_metadata_keys) {
  std::lock_guard<std::mutex> lock(mutex_);
  Transaction txn(db_);
  FACEID_RETURN_IF_ERROR(txn.begun());
  FACEID_ASSIGN_OR_RETURN(const std::int64_t gallery_id, GalleryId(gallery));
  FACEID_ASSIGN_OR_RETURN(const std::int64_t person_id, PersonId(gallery_id, external_id));
  FACEID_ASSIGN_OR_RETURN(PersonRow person, ReadPerson(person_id, /*with_faces=*/false));

  std::map<std::string, std::string> merged =
      replace_metadata ? std::map<std::string, std::string>() : person.metadata;
  for (const auto& [key, value] : metadata) {
    if (value.empty()) {
      merged.erase(key);
    } else {
      merged[key] = value;
    }
  }
  // Checked before writing so a refused update changes nothing (the transaction rolls back).
  if (merged.size() > max_metadata_keys) {
    return absl::InvalidArgumentError("metadata would have " + std::to_string(merged.size()) +
                                      " keys, more than " + std::to_string(max_metadata_keys) +
                                      "; remove keys (empty value) or use replace_metadata");
  }
  Statement update(db_,
                   "UPDATE people SET display_name = ?, metadata = ?, updated_unix_ms = ? "
                   "WHERE id = ?");
  FACEID_RETURN_IF_ERROR(update.Bind(1, display_name.value_or(person.display_name))
                             .Bind(2, EncodeMetadata(merged))
                             .Bind(3, NowUnixMs())
                             .Bind(4, person_id)
                             .Run());
  FACEID_ASSIGN_OR_RETURN(person, ReadPerson(person_id, /*with_faces=*/true));
  FACEID_RETURN_IF_ERROR(txn.Commit());
  return person;
}

StatusOr<DeletedFaces> GalleryStore::DeletePerson(const std::string& gallery,
                                                  const std::string& external_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  DeletedFaces deleted;
  {
    Transaction txn(db_);
    FACEID_RETURN_IF_ERROR(txn.begun());
    FACEID_ASSIGN_OR_RETURN(const std::int64_t gallery_id, GalleryId(gallery));
    FACEID_ASSIGN_OR_RETURN(const std::int64_t person_id, PersonId(gallery_id, external_id));
    Statement ids(db_, "SELECT id FROM faces WHERE person_id = ? ORDER BY id");
    FACEID_RETURN_IF_ERROR(ids.prepared());
    ids.Bind(1, person_id);
    while (ids.Step()) deleted.face_ids.push_back(ids.Int(0));
    FACEID_RETURN_IF_ERROR(ids.status());
    Statement erase_faces(db_, "DELETE FROM faces WHERE person_id = ?");
    FACEID_RETURN_IF_ERROR(erase_faces.Bind(1, person_id).Run());
    Statement erase_person(db_, "DELETE FROM people WHERE id = ?");
    FACEID_RETURN_IF_ERROR(erase_person.Bind(1, person_id).Run());
    FACEID_RETURN_IF_ERROR(txn.Commit());
  }
  deleted.people = 1;
  CheckpointAfterDelete();
  return deleted;
}

StatusOr<std::string> GalleryStore::DeleteFace(const std::string& gallery, std::int64_t face_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string external_id;
  {
    Transaction txn(db_);
    FACEID_RETURN_IF_ERROR(txn.begun());
    FACEID_ASSIGN_OR_RETURN(const std::int64_t gallery_id, GalleryId(gallery));
    Statement owner(db_,
                    "SELECT p.external_id FROM faces f JOIN people p ON p.id = f.person_id "
                    "WHERE f.id = ? AND p.gallery_id = ?");
    FACEID_RETURN_IF_ERROR(owner.prepared());
    if (!owner.Bind(1, face_id).Bind(2, gallery_id).Step()) {
      FACEID_RETURN_IF_ERROR(owner.status());
      return absl::NotFoundError("face " + std::to_string(face_id) + " is not in gallery '" +
                                 gallery + "'");
    }
    external_id = owner.Text(0);
    Statement erase(db_, "DELETE FROM faces WHERE id = ?");
    FACEID_RETURN_IF_ERROR(erase.Bind(1, face_id).Run());
    FACEID_RETURN_IF_ERROR(txn.Commit());
  }
  CheckpointAfterDelete();
  return external_id;
}

StatusOr<DeletedFaces> GalleryStore::DeleteGallery(const std::string& gallery) {
  std::lock_guard<std::mutex> lock(mutex_);
  DeletedFaces deleted;
  {
    Transaction txn(db_);
    FACEID_RETURN_IF_ERROR(txn.begun());
    FACEID_ASSIGN_OR_RETURN(const std::int64_t gallery_id, GalleryId(gallery));
    Statement ids(db_,
                  "SELECT f.id FROM faces f JOIN people p ON p.id = f.person_id "
                  "WHERE p.gallery_id = ? ORDER BY f.id");
    FACEID_RETURN_IF_ERROR(ids.prepared());
    ids.Bind(1, gallery_id);
    while (ids.Step()) deleted.face_ids.push_back(ids.Int(0));
    FACEID_RETURN_IF_ERROR(ids.status());
    Statement erase_faces(
        db_, "DELETE FROM faces WHERE person_id IN (SELECT id FROM people WHERE gallery_id = ?)");
    FACEID_RETURN_IF_ERROR(erase_faces.Bind(1, gallery_id).Run());
    Statement erase_people(db_, "DELETE FROM people WHERE gallery_id = ?");
    FACEID_RETURN_IF_ERROR(erase_people.Bind(1, gallery_id).Run());
    deleted.people = sqlite3_changes(db_);
    if (gallery != kDefaultGallery) {
      Statement erase_gallery(db_, "DELETE FROM galleries WHERE id = ?");
      FACEID_RETURN_IF_ERROR(erase_gallery.Bind(1, gallery_id).Run());
    }
    FACEID_RETURN_IF_ERROR(txn.Commit());
  }
  CheckpointAfterDelete();
  return deleted;
}

StatusOr<std::vector<PersonRow>> GalleryStore::ListPeople(const std::string& gallery,
                                                          const std::string& after_external_id,
                                                          int limit, std::int64_t* total) {
  std::lock_guard<std::mutex> lock(mutex_);
  // One read transaction, so the page and the total come from the same snapshot.
  FACEID_RETURN_IF_ERROR(Exec(db_, "BEGIN"));
  auto list = [&]() -> StatusOr<std::vector<PersonRow>> {
    FACEID_ASSIGN_OR_RETURN(const std::int64_t gallery_id, GalleryId(gallery));
    Statement count(db_, "SELECT COUNT(*) FROM people WHERE gallery_id = ?");
    FACEID_RETURN_IF_ERROR(count.prepared());
    count.Bind(1, gallery_id).Step();
    FACEID_RETURN_IF_ERROR(count.status());
    *total = count.Int(0);
    Statement page(db_,
                   "SELECT id FROM people WHERE gallery_id = ? AND external_id > ? "
                   "ORDER BY external_id LIMIT ?");
    FACEID_RETURN_IF_ERROR(page.prepared());
    page.Bind(1, gallery_id).Bind(2, after_external_id).Bind(3, std::int64_t{limit});
    std::vector<std::int64_t> ids;
    while (page.Step()) ids.push_back(page.Int(0));
    FACEID_RETURN_IF_ERROR(page.status());
    std::vector<PersonRow> people;
    for (std::int64_t id : ids) {
      FACEID_ASSIGN_OR_RETURN(PersonRow person, ReadPerson(id, /*with_faces=*/false));
      people.push_back(std::move(person));
    }
    return people;
  };
  StatusOr<std::vector<PersonRow>> people = list();
  Exec(db_, "COMMIT").IgnoreError();
  return people;
}

StatusOr<std::vector<GalleryCounts>> GalleryStore::ListGalleries() {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement select(db_,
                   "SELECT g.name, "
                   "(SELECT COUNT(*) FROM people p WHERE p.gallery_id = g.id), "
                   "(SELECT COUNT(*) FROM faces f JOIN people p ON p.id = f.person_id "
                   " WHERE p.gallery_id = g.id) "
                   "FROM galleries g ORDER BY g.name");
  FACEID_RETURN_IF_ERROR(select.prepared());
  std::vector<GalleryCounts> galleries;
  while (select.Step()) galleries.push_back({select.Text(0), select.Int(1), select.Int(2)});
  FACEID_RETURN_IF_ERROR(select.status());
  return galleries;
}

StatusOr<std::vector<FaceOwner>> GalleryStore::ResolveFaces(
    const std::string& gallery, const std::vector<std::int64_t>& face_ids) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement select(db_,
                   "SELECT p.external_id, p.display_name FROM faces f "
                   "JOIN people p ON p.id = f.person_id JOIN galleries g ON g.id = p.gallery_id "
                   "WHERE f.id = ? AND g.name = ?");
  FACEID_RETURN_IF_ERROR(select.prepared());
  std::vector<FaceOwner> owners;
  FACEID_RETURN_IF_ERROR(Exec(db_, "BEGIN"));
  for (std::int64_t face_id : face_ids) {
    select.Reset();
    if (select.Bind(1, face_id).Bind(2, gallery).Step()) {
      owners.push_back({face_id, select.Text(0), select.Text(1)});
    } else if (!select.status().ok()) {
      Exec(db_, "COMMIT").IgnoreError();
      return select.status();
    }
  }
  Exec(db_, "COMMIT").IgnoreError();
  return owners;
}

Status GalleryStore::ForEachEmbedding(
    const std::function<Status(const std::string&, std::int64_t, const std::vector<float>&)>&
        visit) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement select(db_,
                   "SELECT g.name, f.id, f.embedding FROM faces f "
                   "JOIN people p ON p.id = f.person_id JOIN galleries g ON g.id = p.gallery_id "
                   "ORDER BY g.name, f.id");
  FACEID_RETURN_IF_ERROR(select.prepared());
  while (select.Step()) {
    FACEID_RETURN_IF_ERROR(visit(select.Text(0), select.Int(1), DecodeEmbedding(select.Blob(2))));
  }
  return select.status();
}

Status GalleryStore::PersonEmbeddings(const std::string& gallery, const std::string& external_id,
                                      std::vector<std::int64_t>* face_ids,
                                      std::vector<std::vector<float>>* embeddings) {
  std::lock_guard<std::mutex> lock(mutex_);
  FACEID_ASSIGN_OR_RETURN(const std::int64_t gallery_id, GalleryId(gallery));
  FACEID_ASSIGN_OR_RETURN(const std::int64_t person_id, PersonId(gallery_id, external_id));
  Statement select(db_, "SELECT id, embedding FROM faces WHERE person_id = ? ORDER BY id");
  FACEID_RETURN_IF_ERROR(select.prepared());
  select.Bind(1, person_id);
  while (select.Step()) {
    face_ids->push_back(select.Int(0));
    embeddings->push_back(DecodeEmbedding(select.Blob(1)));
  }
  return select.status();
}

StatusOr<std::vector<std::int64_t>> GalleryStore::FacesWithOtherModel(
    const std::string& model_version) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement select(db_, "SELECT id FROM faces WHERE model_version <> ? ORDER BY id");
  FACEID_RETURN_IF_ERROR(select.prepared());
  select.Bind(1, model_version);
  std::vector<std::int64_t> ids;
  while (select.Step()) ids.push_back(select.Int(0));
  FACEID_RETURN_IF_ERROR(select.status());
  return ids;
}

StatusOr<std::string> GalleryStore::GetCrop(std::int64_t face_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement select(db_, "SELECT crop FROM faces WHERE id = ?");
  FACEID_RETURN_IF_ERROR(select.prepared());
  if (select.Bind(1, face_id).Step()) return select.Blob(0);
  FACEID_RETURN_IF_ERROR(select.status());
  return absl::NotFoundError("face " + std::to_string(face_id) + " does not exist");
}

Status GalleryStore::UpdateEmbedding(std::int64_t face_id, const std::vector<float>& embedding,
                                     const std::string& model_version) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement update(db_, "UPDATE faces SET embedding = ?, model_version = ? WHERE id = ?");
  FACEID_RETURN_IF_ERROR(update.prepared());
  FACEID_RETURN_IF_ERROR(update.BindBlob(1, embedding.data(), embedding.size() * sizeof(float))
                             .Bind(2, model_version)
                             .Bind(3, face_id)
                             .Run());
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError("face " + std::to_string(face_id) + " does not exist");
  }
  return absl::OkStatus();
}

void GalleryStore::CheckpointAfterDelete() {
  // Best effort: a concurrent reader in another process can hold the WAL; the zeroed pages
  // are then copied at the next checkpoint.
  sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
}

Status GalleryStore::Backup(const std::string& out_path) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3* out = nullptr;
  if (sqlite3_open(out_path.c_str(), &out) != SQLITE_OK) {
    Status status = absl::InvalidArgumentError("cannot create backup '" + out_path +
                                               "': " + sqlite3_errmsg(out));
    sqlite3_close(out);
    return status;
  }
  sqlite3_backup* backup = sqlite3_backup_init(out, "main", db_, "main");
  if (backup == nullptr) {
    Status status = SqliteError(out, "backup to '" + out_path + "'");
    sqlite3_close(out);
    return status;
  }
  const int rc = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  Status status =
      rc == SQLITE_DONE ? absl::OkStatus() : SqliteError(out, "backup to '" + out_path + "'");
  sqlite3_close(out);
  return status;
}

Status BackupDatabase(const std::string& db_path, const std::string& out_path) {
  if (!std::filesystem::exists(db_path)) {
    return absl::NotFoundError("database '" + db_path + "' does not exist");
  }
  std::error_code same_error;
  if (std::filesystem::equivalent(db_path, out_path, same_error)) {
    return absl::InvalidArgumentError("backup --out '" + out_path +
                                      "' is the database itself: " + "give another file");
  }
  // A backup never overwrites: the file could be another server's live database.
  std::error_code exists_error;
  if (std::filesystem::exists(std::filesystem::symlink_status(out_path, exists_error))) {
    return absl::AlreadyExistsError("backup --out '" + out_path +
                                    "' already exists; a backup never overwrites a file (it "
                                    "could be another database): remove it or pick a new name");
  }
  FACEID_ASSIGN_OR_RETURN(std::unique_ptr<GalleryStore> store, GalleryStore::Open(db_path));
  return store->Backup(out_path);
}

}  // namespace faceid
