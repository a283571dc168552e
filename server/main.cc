// faceid-server: serves the faceid.v1 API over gRPC.
//
//   faceid-server --model FILE --db FILE [--listen 127.0.0.1:50051] [--index flat|hnsw|ivf]
//                 [--threads N] [--api-key-file F] [--tls-cert F --tls-key F]
//                 [--max-image-bytes N] [--batch-wait-us N] [--max-batch N]
//                 [--index-snapshot auto|none|DIR] [--log-level L]
//   faceid-server backup --db FILE --out FILE
//
// Restore a backup by starting the server with --db on the copy.
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "core/face_pipeline.h"
#include "core/log.h"
#include "core/nn/embedder_factory.h"
#include "server/batching_embedder.h"
#include "server/face_finder.h"
#include "server/gallery.h"
#include "server/index.h"
#include "server/server.h"
#include "server/service.h"
#include "server/store.h"

namespace faceid {
namespace {

int g_signal_pipe[2] = {-1, -1};

void OnSignal(int signal_number) {
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  // Nothing else is async-signal-safe to do here; a full pipe means a stop is pending anyway.
  [[maybe_unused]] const ssize_t written = write(g_signal_pipe[1], &byte, 1);
}

struct Flags {
  std::string model;
  std::string db;
  std::string listen = "127.0.0.1:50051";
  std::string index = "flat";
  std::string index_snapshot = "auto";
  int threads = 8;
  std::string api_key_file;
  std::string tls_cert;
  std::string tls_key;
  std::int64_t max_image_bytes = 16 << 20;
  int batch_wait_us = 2000;
  int max_batch = 64;
  std::string log_level = "info";
  int shutdown_grace_s = 30;  // in-flight requests get this long after SIGTERM/SIGINT
};

// Held for the server's lifetime: a second server on the same database would keep its own
// index, miss the first one's enrollments and write snapshots that resurrect its deletes.
// The flock is taken on the database file itself (created empty when absent, which SQLite
// reads as an empty database), so every path to it (symlinks, hard links, other spellings)
// meets the same lock; flock and SQLite's fcntl locks do not interact on Linux. The fd is never
// closed (closing any fd of the file would drop SQLite's POSIX locks); the lock goes with the
// process, also on SIGKILL. `faceid-server backup` does not take it.
StatusOr<int> LockDatabase(const std::string& db) {
  const int fd = ::open(db.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError("cannot open the database " + db + ": " +
                                         std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        "database " + db +
        " is in use by another faceid-server (it holds the file's lock); "
        "stop it first, or serve a copy (faceid-server backup)");
  }
  return fd;
}

// "host:port" with a port of 0 (any free port) to 65535. gRPC would take 99999 as 34463.
Status CheckListenAddress(const std::string& listen) {
  const std::size_t colon = listen.rfind(':');
  const std::string port = colon == std::string::npos ? "" : listen.substr(colon + 1);
  const bool digits =
      !port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  const std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (host.find(':') != std::string::npos && !bracketed) {
    return absl::InvalidArgumentError("--listen '" + listen +
                                      "': put an IPv6 address in brackets, like [::1]:50051");
  }
  if (colon == 0 || !digits || std::stoi(port) > 65535) {
    return absl::InvalidArgumentError("--listen '" + listen +
                                      "' must be HOST:PORT with a port from 0 to 65535, like "
                                      "127.0.0.1:50051 or [::1]:50051");
  }
  return absl::OkStatus();
}

StatusOr<std::string> ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + what + " '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Trim(std::string text) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  text.erase(text.begin(), std::find_if(text.begin(), text.end(), not_space));
  text.erase(std::find_if(text.rbegin(), text.rend(), not_space).base(), text.end());
  return text;
}

// Requests run in parallel on the gRPC threads, so OpenBLAS's own thread pool (when the BLAS
// alternative is OpenBLAS) only oversubscribes the cores: measured 11.9 -> 16.6 Identify/s
// with 8 clients on 2 cores. Looked up at run time because the reference BLAS lacks the call.
// Returns whether OpenBLAS was found.
bool UseSingleThreadedBlas() {
  using SetThreads = void (*)(int);
  auto set_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_threads == nullptr) return false;
  set_threads(1);
  return true;
}

Status Serve(const Flags& flags) {
  // SIGTERM/SIGINT: the handler only writes the signal number to a pipe (libraries may have
  // started threads before main, so masking signals cannot route them to one thread).
  if (pipe(g_signal_pipe) != 0) return absl::InternalError("cannot create the signal pipe");
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  FACEID_RETURN_IF_ERROR(InitLogging(flags.log_level));
  auto log = Logger("server");
  if (UseSingleThreadedBlas()) log->info("OpenBLAS limited to 1 thread per request");
  if (flags.model.empty() || flags.db.empty()) {
    return absl::InvalidArgumentError("--model and --db are required");
  }
  FACEID_ASSIGN_OR_RETURN(const IndexType index_type, ParseIndexType(flags.index));
  FACEID_RETURN_IF_ERROR(CheckListenAddress(flags.listen));
  // gRPC's receive limit is an int, and a whole request is the image plus 1 MiB.
  constexpr std::int64_t kMaxImageBytesLimit = std::int64_t{1} << 30;
  if (flags.max_image_bytes < 1 || flags.max_image_bytes > kMaxImageBytesLimit) {
    return absl::InvalidArgumentError("--max-image-bytes must be within 1..1073741824 (1 GiB)");
  }
  if (flags.shutdown_grace_s < 0) {
    return absl::InvalidArgumentError("--shutdown-grace-s must be >= 0");
  }
  std::string api_key;
  if (!flags.api_key_file.empty()) {
    FACEID_ASSIGN_OR_RETURN(std::string key, ReadFile(flags.api_key_file, "API key file"));
    api_key = Trim(key);
    if (api_key.empty()) {
      return absl::InvalidArgumentError("API key file '" + flags.api_key_file + "' is empty");
    }
  }
  // The wait bounds how long a lone request and a graceful stop may be delayed.
  if (flags.batch_wait_us < 0 || flags.batch_wait_us > 100000 || flags.max_batch < 1 ||
      flags.max_batch > 4096) {
    return absl::InvalidArgumentError(
        "--batch-wait-us must be within 0..100000 and --max-batch within 1..4096");
  }
  BatchingOptions batching;
  batching.max_wait = std::chrono::microseconds(flags.batch_wait_us);
  batching.max_batch = flags.max_batch;
  const std::string batching_text = flags.batch_wait_us == 0
                                        ? std::string("off")
                                        : std::to_string(flags.batch_wait_us) + " us, up to " +
                                              std::to_string(flags.max_batch) + " crops";
  // auto: HNSW and IVF galleries keep a snapshot next to the database (their rebuild takes
  // minutes at a million faces); a flat index is rebuilt from SQLite as fast as it would load.
  std::string snapshot_dir = flags.index_snapshot;
  if (snapshot_dir == "auto")
    snapshot_dir = index_type == IndexType::kFlat ? "none" : flags.db + ".index";
  if (snapshot_dir == "none") snapshot_dir.clear();
  ServerOptions server_options;
  server_options.listen = flags.listen;
  server_options.threads = flags.threads;
  server_options.max_image_bytes = flags.max_image_bytes;
  if (!flags.tls_cert.empty() || !flags.tls_key.empty()) {
    FACEID_ASSIGN_OR_RETURN(server_options.tls_cert_pem, ReadFile(flags.tls_cert, "TLS cert"));
    FACEID_ASSIGN_OR_RETURN(server_options.tls_key_pem, ReadFile(flags.tls_key, "TLS key"));
  }
  log->info(
      "faceid-server {}: listen {}, db {}, index {}, threads {}, max image {} bytes, "
      "API key {}, TLS {}, batching {}, index snapshot {}",
      FACEID_VERSION, flags.listen, flags.db, flags.index, flags.threads, flags.max_image_bytes,
      api_key.empty() ? "off" : "required", server_options.tls_cert_pem.empty() ? "off" : "on",
      batching_text, snapshot_dir.empty() ? std::string("off") : snapshot_dir);

  // Model and pipeline: the model must have been trained on this pipeline's crops.
  FACEID_ASSIGN_OR_RETURN(std::unique_ptr<Embedder> embedder, LoadEmbedder(flags.model));
  // Concurrent requests' faces share one forward pass (see server/batching_embedder.h).
  if (flags.batch_wait_us > 0) {
    embedder = std::make_unique<BatchingEmbedder>(std::move(embedder), batching);
  }
  const ModelInfo& info = embedder->info();
  log->info(
      "model {}: name {}, version {}, {} input {} px, {}-d, pipeline {}, threshold {:.3f}, "
      "device {}",
      flags.model, info.name, info.version, info.network.architecture, info.network.input_size,
      info.network.embedding_dim, info.pipeline_version, info.threshold, embedder->device());
  if (info.pipeline_version != kPipelineVersion) {
    return absl::FailedPreconditionError("model '" + flags.model + "' was trained with pipeline " +
                                         info.pipeline_version + ", this server runs " +
                                         kPipelineVersion);
  }
  PipelineOptions pipeline_options;
  pipeline_options.limits.max_image_bytes = static_cast<std::size_t>(flags.max_image_bytes);
  pipeline_options.crop_size = info.crop_size;
  FACEID_ASSIGN_OR_RETURN(std::unique_ptr<FacePipeline> pipeline,
                          FacePipeline::Create(pipeline_options));
  PipelineFaceFinder finder(*pipeline);

  FACEID_ASSIGN_OR_RETURN(const int lock_fd, LockDatabase(flags.db));
  (void)lock_fd;  // released when the process exits
  FACEID_ASSIGN_OR_RETURN(std::unique_ptr<GalleryStore> store, GalleryStore::Open(flags.db));
  // Snapshots left in the default folder by an earlier hnsw/ivf run would keep embeddings
  // that this run deletes: drop them when this run does not keep its snapshots there.
  const std::string default_snapshots = flags.db + ".index";
  std::error_code exists_error;
  if (snapshot_dir != default_snapshots &&
      std::filesystem::is_directory(default_snapshots, exists_error)) {
    const int removed = RemoveIndexSnapshots(default_snapshots);
    if (removed > 0) {
      log->info("removed {} stale index snapshots from {}", removed, default_snapshots);
    }
  }
  IndexOptions index_options;
  index_options.type = index_type;
  GalleryManager galleries(std::move(store), info.network.embedding_dim, index_options,
                           snapshot_dir);
  ServiceOptions service_options;
  service_options.max_image_bytes = flags.max_image_bytes;
  service_options.max_in_flight = flags.threads;
  service_options.api_key = api_key;
  FaceService service(&galleries, &finder, embedder.get(), service_options);

  FACEID_ASSIGN_OR_RETURN(std::unique_ptr<FaceServer> server,
                          FaceServer::Start(server_options, &service));
  const std::string host = flags.listen.substr(0, flags.listen.rfind(':'));
  log->info("listening on {}:{}", host, server->port());
  std::thread waiter([&] {
    unsigned char signal_number = 0;
    while (read(g_signal_pipe[0], &signal_number, 1) < 0 && errno == EINTR) {
    }
    if (signal_number != 0) {
      log->info("signal {}: finishing in-flight requests, then stopping", signal_number);
    }
    server->Shutdown(std::chrono::seconds(flags.shutdown_grace_s));
  });

  // Requests are answered UNAVAILABLE until the gallery is re-embedded and indexed.
  const auto started = std::chrono::steady_clock::now();
  Status prepared = galleries.Prepare(*embedder);
  if (!prepared.ok()) {
    log->error("cannot prepare the gallery: {}", std::string(prepared.message()));
    const unsigned char stop = 0;
    if (write(g_signal_pipe[1], &stop, 1) != 1) std::abort();
    waiter.join();
    return prepared;
  }
  FACEID_ASSIGN_OR_RETURN(std::vector<GalleryCounts> counts, galleries.store().ListGalleries());
  std::int64_t faces = 0;
  for (const GalleryCounts& gallery : counts) faces += gallery.faces;
  server->SetServing(true);
  log->info("gallery ready in {:.2f} s: {} galleries, {} faces; serving",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
            counts.size(), faces);

  server->Wait();
  waiter.join();
  // Every request has ended: the next start loads this instead of rebuilding.
  Status saved = galleries.SaveSnapshots();
  if (!saved.ok()) log->warn("index snapshots not saved: {}", std::string(saved.message()));
  log->info("stopped");
  return absl::OkStatus();
}

}  // namespace
}  // namespace faceid

int main(int argc, char** argv) {
  faceid::Flags flags;
  CLI::App app{"faceid-server: face enrollment and identification over gRPC"};
  app.add_option("--model", flags.model, "model file written by faceid-train");
  app.add_option("--db", flags.db, "SQLite gallery database (created when absent)");
  app.add_option("--listen", flags.listen, "host:port to listen on")->capture_default_str();
  app.add_option("--index", flags.index, "flat (exact), hnsw or ivf")->capture_default_str();
  app.add_option("--index-snapshot", flags.index_snapshot,
                 "folder where the index is saved at shutdown and loaded (checked against the "
                 "database) at start; auto: DB.index for hnsw/ivf, none for flat")
      ->capture_default_str();
  app.add_option("--threads", flags.threads, "requests worked on at once; more are refused")
      ->capture_default_str();
  app.add_option("--api-key-file", flags.api_key_file, "file holding the required API key");
  app.add_option("--tls-cert", flags.tls_cert, "PEM certificate (with --tls-key)");
  app.add_option("--tls-key", flags.tls_key, "PEM private key (with --tls-cert)");
  app.add_option("--max-image-bytes", flags.max_image_bytes,
                 "largest accepted image; also sets the gRPC receive limit")
      ->capture_default_str();
  app.add_option("--batch-wait-us", flags.batch_wait_us,
                 "how long a face waits for other requests' faces to share its forward pass; "
                 "0 disables batching")
      ->capture_default_str();
  app.add_option("--max-batch", flags.max_batch,
                 "a batch runs at once when it holds this many faces")
      ->capture_default_str();
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  app.add_option("--shutdown-grace-s", flags.shutdown_grace_s,
                 "after SIGTERM/SIGINT, seconds in-flight requests get to finish before they "
                 "are cancelled")
      ->capture_default_str();

  std::string backup_db;
  std::string backup_out;
  CLI::App* backup = app.add_subcommand("backup", "copy a database while a server may use it");
  backup->add_option("--db", backup_db, "database to copy")->required();
  backup->add_option("--out", backup_out, "file to write")->required();
  CLI11_PARSE(app, argc, argv);

  faceid::Status status;
  if (*backup) {
    status = faceid::BackupDatabase(backup_db, backup_out);
    if (status.ok()) std::cout << "backed up " << backup_db << " to " << backup_out << "\n";
  } else {
    status = faceid::Serve(flags);
  }
  if (!status.ok()) {
    std::cerr << "faceid-server: " << status.message() << "\n";
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
