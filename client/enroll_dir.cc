// `faceid enroll-dir ROOT`: walks ROOT/<person>/<image>, sends batches of images per person
// from several threads, draws a progress bar on a terminal and ends with a summary.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "client/command_env.h"
#include "client/format.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::faceid::v1;

constexpr auto kRedrawEvery = std::chrono::milliseconds(200);
constexpr int kBarWidth = 30;

struct Skipped {
  std::string file;
  int code = 0;  // gRPC code number of the reason (3 INVALID_ARGUMENT ...)
  std::string reason;
};

// One request: up to images_per_request files of one person.
struct Batch {
  std::string person;
  std::vector<std::string> files;
};

// Everything the workers report, guarded by `mutex`.
struct Tally {
  std::mutex mutex;
  std::condition_variable changed;
  int64_t files_done = 0;
  int64_t faces = 0;
  int64_t duplicates = 0;
  int64_t failed_requests = 0;
  int workers_running = 0;
  std::map<std::string, int64_t> faces_per_person;
  std::vector<Skipped> skipped;
  grpc::Status fatal;  // stops the run: server gone or key refused
};

bool IsFatal(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         status.error_code() == grpc::StatusCode::PERMISSION_DENIED;
}

// Lists person folders and their image files, sorted; odd files go straight to `skipped`.
std::vector<std::pair<std::string, std::vector<std::string>>> ScanRoot(
    const std::string& root, int64_t max_image_bytes, std::vector<Skipped>* skipped,
    int64_t* files_seen) {
  std::vector<std::pair<std::string, std::vector<std::string>>> people;
  std::vector<fs::path> entries;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) entries.push_back(entry.path());
  std::sort(entries.begin(), entries.end());
  for (const fs::path& path : entries) {
    if (!fs::is_directory(path, ec)) {
      ++*files_seen;
      skipped->push_back({path.string(), 3, "not inside a person folder"});
      continue;
    }
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (entry.is_directory(ec)) continue;
      ++*files_seen;
      const std::string file = entry.path().string();
      if (!HasImageExtension(file)) {
        skipped->push_back({file, 3, "not an image file (unknown extension)"});
      } else if (max_image_bytes > 0 &&
                 static_cast<int64_t>(entry.file_size(ec)) > max_image_bytes) {
        skipped->push_back({file, 8,
                            std::to_string(entry.file_size(ec)) + " bytes, over the server's " +
                                std::to_string(max_image_bytes) + "-byte limit"});
      } else {
        files.push_back(file);
      }
    }
    std::sort(files.begin(), files.end());
    if (!files.empty()) people.emplace_back(path.filename().string(), std::move(files));
  }
  return people;
}

void SendBatch(CommandEnv& env, const EnrollDirArgs& args, const Batch& batch, Tally* tally) {
  v1::EnrollRequest request;
  request.set_gallery(env.flags().gallery);
  request.set_external_id(batch.person);
  request.set_display_name(batch.person);
  request.mutable_options()->set_skip_invalid_images(true);
  request.mutable_options()->set_input_is_face_crop(args.input_is_face_crop);
  request.mutable_options()->set_require_single_face(args.require_single_face);
  std::vector<std::string> sent;
  std::vector<Skipped> skipped;
  for (const std::string& file : batch.files) {
    auto bytes = ReadFileBytes(file);
    if (!bytes.ok()) {
      skipped.push_back(
          {file, static_cast<int>(bytes.status().code()), std::string(bytes.status().message())});
      continue;
    }
    request.add_images(std::move(*bytes));
    sent.push_back(file);
  }

  v1::EnrollResponse response;
  grpc::Status status;
  if (!sent.empty()) {
    auto context = env.connection().NewContext();
    status = env.connection().face_id().Enroll(context.get(), request, &response);
  }

  // A refused batch (no image in it was usable) carries one status for all of its files: send
  // them one by one, so each file is reported with its own reason.
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT && sent.size() > 1) {
    for (const std::string& file : sent) SendBatch(env, args, {batch.person, {file}}, tally);
    std::lock_guard<std::mutex> lock(tally->mutex);
    tally->files_done += static_cast<int64_t>(batch.files.size() - sent.size());
    tally->skipped.insert(tally->skipped.end(), skipped.begin(), skipped.end());
    tally->changed.notify_all();
    return;
  }

  std::lock_guard<std::mutex> lock(tally->mutex);
  tally->files_done += static_cast<int64_t>(batch.files.size());
  if (!status.ok()) {
    // INVALID_ARGUMENT here means no image of the batch was usable: a data problem, not a
    // failed run. Anything else is the server's or the network's.
    if (status.error_code() != grpc::StatusCode::INVALID_ARGUMENT) ++tally->failed_requests;
    if (IsFatal(status) && tally->fatal.ok()) tally->fatal = status;
    for (const std::string& file : sent) {
      skipped.push_back({file, static_cast<int>(status.error_code()), status.error_message()});
    }
  } else {
    for (const v1::EnrolledFace& face : response.faces()) {
      const std::string& file = sent.at(static_cast<size_t>(face.image_index()));
      if (face.has_error() && face.error().code() != 0) {
        skipped.push_back({file, face.error().code(), face.error().message()});
      } else {
        ++tally->faces_per_person[batch.person];
        ++(face.duplicate() ? tally->duplicates : tally->faces);
      }
    }
  }
  tally->skipped.insert(tally->skipped.end(), skipped.begin(), skipped.end());
  tally->changed.notify_all();
}

}  // namespace

int RunEnrollDir(CommandEnv& env, const EnrollDirArgs& args) {
  // The server's limits decide the batch size and which files need not be sent at all.
  v1::InfoResponse info;
  {
    auto context = env.connection().NewContext();
    const grpc::Status status =
        env.connection().face_id().Info(context.get(), v1::InfoRequest(), &info);
    if (!status.ok()) return env.Fail(status);
  }
  int per_request = args.images_per_request;
  if (info.max_images_per_request() > 0) {
    per_request = std::min(per_request, info.max_images_per_request());
  }

  Tally tally;
  int64_t files_seen = 0;
  const auto people = ScanRoot(args.root, info.max_image_bytes(), &tally.skipped, &files_seen);
  tally.files_done = static_cast<int64_t>(tally.skipped.size());
  std::vector<Batch> batches;
  for (const auto& [person, files] : people) {
    for (const auto& [begin, end] : ChunkRanges(files.size(), static_cast<size_t>(per_request))) {
      batches.push_back({person, {files.begin() + begin, files.begin() + end}});
    }
  }

  const auto start = std::chrono::steady_clock::now();
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  const int thread_count =
      std::max(1, std::min<int>(args.concurrency, static_cast<int>(batches.size())));
  tally.workers_running = batches.empty() ? 0 : thread_count;
  for (int t = 0; t < tally.workers_running; ++t) {
    workers.emplace_back([&] {
      for (size_t i = next++; i < batches.size(); i = next++) {
        {
          std::lock_guard<std::mutex> lock(tally.mutex);
          if (!tally.fatal.ok()) break;
        }
        SendBatch(env, args, batches[i], &tally);
      }
      std::lock_guard<std::mutex> lock(tally.mutex);
      --tally.workers_running;
      tally.changed.notify_all();
    });
  }

  // The progress bar is drawn from this thread only, and only on a terminal.
  const bool draw = !env.flags().quiet && isatty(STDERR_FILENO) == 1;
  auto elapsed_s = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  {
    std::unique_lock<std::mutex> lock(tally.mutex);
    while (tally.workers_running > 0) {
      tally.changed.wait_for(lock, kRedrawEvery);
      if (draw) {
        env.err() << "\r"
                  << FormatProgressLine(tally.files_done, files_seen, elapsed_s(), kBarWidth)
                  << std::flush;
      }
    }
  }
  for (std::thread& worker : workers) worker.join();
  if (draw) env.err() << "\n";
  const double seconds = elapsed_s();

  std::sort(tally.skipped.begin(), tally.skipped.end(),
            [](const Skipped& a, const Skipped& b) { return a.file < b.file; });
  if (env.flags().json) {
    nlohmann::json skipped = nlohmann::json::array();
    for (const Skipped& s : tally.skipped) {
      skipped.push_back({{"file", s.file}, {"code", StatusCodeName(s.code)}, {"reason", s.reason}});
    }
    nlohmann::json persons = nlohmann::json::object();
    for (const auto& [person, faces] : tally.faces_per_person) persons[person] = faces;
    nlohmann::json doc = {{"people", tally.faces_per_person.size()},
                          {"faces", tally.faces},
                          {"duplicates", tally.duplicates},
                          {"files", files_seen},
                          {"skipped", skipped},
                          {"failed_requests", tally.failed_requests},
                          {"elapsed_s", seconds},
                          {"files_per_s", RatePerSecond(files_seen, seconds)},
                          {"faces_per_person", persons}};
    if (!tally.fatal.ok()) {
      doc["error"] =
          ErrorJson(static_cast<int>(tally.fatal.error_code()), tally.fatal.error_message());
    }
    env.Emit(doc);
  } else {
    char rate[32];
    std::snprintf(rate, sizeof(rate), "%.1f", RatePerSecond(files_seen, seconds));
    env.out() << "enrolled " << tally.faces_per_person.size() << " people, " << tally.faces
              << " new face(s), " << tally.duplicates << " already stored, from " << files_seen
              << " file(s) in " << FormatDuration(seconds) << " (" << rate << " files/s)\n";
    if (!tally.skipped.empty()) {
      env.out() << "skipped " << tally.skipped.size() << " file(s):\n";
      for (const Skipped& s : tally.skipped) {
        env.out() << "  " << Printable(s.file) << ": " << StatusCodeName(s.code) << ": "
                  << Printable(s.reason) << "\n";
      }
    }
  }
  if (!tally.fatal.ok()) return env.Fail(tally.fatal, /*emit_json=*/false);
  if (tally.failed_requests > 0) {
    env.err() << "error: " << tally.failed_requests
              << " request(s) failed on the server side; run enroll-dir again to retry them "
                 "(stored images are recognised as duplicates)\n";
    return kExitRequestFailed;
  }
  return kExitOk;
}

}  // namespace faceid
