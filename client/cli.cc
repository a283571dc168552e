#include "client/cli.h"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "client/command_env.h"
#include "client/format.h"

namespace faceid {
namespace {

// CLI11's PositiveNumber answers "Value abc not in range 0.000000 to 1797...": these say what
// is wanted in words.
constexpr double kMaxNumber = 1e9;  // a second count of 31 years: longer is a typo

// A finite number in (0, kMaxNumber], or [0, kMaxNumber] when `zero_ok`.
CLI::Validator NumberAbove0(bool zero_ok = false) {
  return CLI::Validator(
      [zero_ok](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        const double value = std::strtod(text.c_str(), &end);
        const bool low_ok = zero_ok ? value >= 0 : value > 0;
        if (end == text.c_str() || *end != '\0' || errno == ERANGE || !std::isfinite(value) ||
            !low_ok || value > kMaxNumber) {
          return std::string("must be a number ") + (zero_ok ? "from 0" : "greater than 0") +
                 " up to 1e9, got '" + text + "'";
        }
        return "";
      },
      zero_ok ? "NUMBER >= 0" : "NUMBER > 0");
}

CLI::Validator PositiveNumber() { return NumberAbove0(); }

CLI::Validator PositiveId() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long value = std::strtoll(text.c_str(), &end, 10);
        if (end == text.c_str() || *end != '\0' || errno == ERANGE || value < 1) {
          return "must be a whole number from 1 to 9223372036854775807, got '" + text + "'";
        }
        return "";
      },
      "ID");
}

namespace v1 = ::faceid::v1;

// Largest batch the proto allows per request (EnrollRequest.images, IdentifyRequest.images).
constexpr size_t kMaxEnrollImages = 32;
constexpr size_t kMaxIdentifyImages = 16;

std::string Fixed(double value, int decimals = 3) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return buf;
}

std::string DescribeBox(const v1::BoundingBox& box) {
  return std::to_string(box.x()) + "," + std::to_string(box.y()) + " " +
         std::to_string(box.width()) + "x" + std::to_string(box.height());
}

// Names and ids are printed through Printable(): stored text may hold terminal escapes.
std::string PersonLabel(const std::string& external_id, const std::string& display_name) {
  if (display_name.empty() || display_name == external_id) return Printable(external_id);
  return Printable(display_name) + " (" + Printable(external_id) + ")";
}

// Reads every file; the first unreadable one is the error.
StatusOr<std::vector<std::string>> ReadAll(const std::vector<std::string>& files) {
  std::vector<std::string> images;
  images.reserve(files.size());
  for (const std::string& file : files) {
    FACEID_ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(file));
    images.push_back(std::move(bytes));
  }
  return images;
}

// ---- enroll ------------------------------------------------------------------------------

struct EnrollArgs {
  std::string name;
  std::string external_id;
  std::vector<std::string> files;
  bool input_is_face_crop = false;
  bool require_single_face = false;
};

int RunEnroll(CommandEnv& env, const EnrollArgs& args) {
  const std::string id = args.external_id.empty() ? args.name : args.external_id;
  nlohmann::json faces_json = nlohmann::json::array();
  v1::Person person;
  int stored = 0;
  int duplicates = 0;
  std::vector<std::string> refused;

  // The proto caps a request at 32 images; more files become consecutive requests.
  for (const auto& [begin, end] : ChunkRanges(args.files.size(), kMaxEnrollImages)) {
    const std::vector<std::string> chunk(args.files.begin() + begin, args.files.begin() + end);
    auto images = ReadAll(chunk);
    if (!images.ok()) return env.FailLocal(images.status());

    v1::EnrollRequest request;
    request.set_gallery(env.flags().gallery);
    request.set_external_id(id);
    request.set_display_name(args.name);
    for (std::string& image : *images) request.add_images(std::move(image));
    request.mutable_options()->set_skip_invalid_images(true);
    request.mutable_options()->set_input_is_face_crop(args.input_is_face_crop);
    request.mutable_options()->set_require_single_face(args.require_single_face);

    v1::EnrollResponse response;
    auto context = env.connection().NewContext();
    const grpc::Status status =
        env.connection().face_id().Enroll(context.get(), request, &response);
    if (!status.ok()) return env.Fail(status);

    person = response.person();
    for (const v1::EnrolledFace& face : response.faces()) {
      const std::string& file = chunk.at(static_cast<size_t>(face.image_index()));
      nlohmann::json record = ProtoToJson(face);
      record["file"] = file;
      faces_json.push_back(std::move(record));
      if (face.has_error() && face.error().code() != 0) {
        refused.push_back(file + ": " + StatusCodeName(face.error().code()) + ": " +
                          face.error().message());
      } else if (face.duplicate()) {
        ++duplicates;
      } else {
        ++stored;
      }
    }
  }

  if (env.flags().json) {
    nlohmann::json doc = {{"person", ProtoToJson(person)},
                          {"faces", faces_json},
                          {"stored", stored},
                          {"duplicates", duplicates},
                          {"refused", refused.size()}};
    env.Emit(doc);
  } else {
    env.out() << "enrolled " << PersonLabel(person.external_id(), person.display_name()) << ": "
              << stored << " new face(s), " << duplicates << " already stored, " << refused.size()
              << " refused; the person has " << person.face_count() << " face(s)\n";
  }
  for (const std::string& line : refused) env.err() << "  not enrolled: " << line << "\n";
  return refused.empty() ? kExitOk : kExitRequestFailed;
}

// ---- identify ----------------------------------------------------------------------------

struct IdentifyArgs {
  std::vector<std::string> files;
  int top_k = 5;
  double threshold = 0;
  bool has_threshold = false;
  bool all_faces = false;
  bool input_is_face_crop = false;
};

void PrintIdentifiedFace(std::ostream& out, size_t index, const v1::IdentifiedFace& face) {
  out << "  face " << index + 1 << " at " << DescribeBox(face.face().box()) << ": ";
  if (face.candidates().empty()) {
    out << "unknown (the gallery is empty)\n";
    return;
  }
  const v1::Candidate& best = face.candidates(0);
  if (face.decision() == v1::DECISION_KNOWN) {
    out << PersonLabel(best.external_id(), best.display_name());
  } else {
    out << "unknown (closest " << PersonLabel(best.external_id(), best.display_name()) << ")";
  }
  out << " similarity " << Fixed(best.similarity()) << "\n";
  if (face.candidates_size() > 1) {
    out << "    runners-up:";
    for (int i = 1; i < face.candidates_size(); ++i) {
      out << (i > 1 ? "," : "") << " " << Printable(face.candidates(i).external_id()) << " "
          << Fixed(face.candidates(i).similarity());
    }
    out << "\n";
  }
}

int RunIdentify(CommandEnv& env, const IdentifyArgs& args) {
  nlohmann::json results = nlohmann::json::array();
  nlohmann::json doc;
  int failed_images = 0;

  for (const auto& [begin, end] : ChunkRanges(args.files.size(), kMaxIdentifyImages)) {
    const std::vector<std::string> chunk(args.files.begin() + begin, args.files.begin() + end);
    auto images = ReadAll(chunk);
    if (!images.ok()) return env.FailLocal(images.status());

    v1::IdentifyRequest request;
    request.set_gallery(env.flags().gallery);
    for (std::string& image : *images) request.add_images(std::move(image));
    request.set_top_k(args.top_k);
    if (args.has_threshold) request.set_threshold(static_cast<float>(args.threshold));
    request.set_face_selection(args.all_faces ? v1::FACE_SELECTION_ALL
                                              : v1::FACE_SELECTION_LARGEST);
    request.set_input_is_face_crop(args.input_is_face_crop);

    v1::IdentifyResponse response;
    auto context = env.connection().NewContext();
    const grpc::Status status =
        env.connection().face_id().Identify(context.get(), request, &response);
    if (!status.ok()) return env.Fail(status);

    doc["threshold"] = response.threshold();
    doc["model_version"] = response.model_version();
    for (const v1::ImageResult& result : response.results()) {
      const std::string& file = chunk.at(static_cast<size_t>(result.image_index()));
      const bool failed = result.has_error() && result.error().code() != 0;
      failed_images += failed ? 1 : 0;
      if (env.flags().json) {
        nlohmann::json record = ProtoToJson(result);
        record["file"] = file;
        results.push_back(std::move(record));
        continue;
      }
      if (failed) {
        env.out() << file << ": error " << StatusCodeName(result.error().code()) << ": "
                  << result.error().message() << "\n";
        continue;
      }
      env.out() << file << ": " << result.faces_size() << " face(s)\n";
      for (int i = 0; i < result.faces_size(); ++i) {
        PrintIdentifiedFace(env.out(), static_cast<size_t>(i), result.faces(i));
      }
    }
  }

  if (env.flags().json) {
    doc["results"] = results;
    env.Emit(doc);
  }
  if (failed_images > 0) {
    env.err() << "error: " << failed_images << " image(s) could not be identified (see above)\n";
    return kExitRequestFailed;
  }
  return kExitOk;
}

// ---- verify ------------------------------------------------------------------------------

struct VerifyArgs {
  std::string image;
  std::string other_image;
  std::string external_id;
  double threshold = 0;
  bool has_threshold = false;
  bool input_is_face_crop = false;
};

int RunVerify(CommandEnv& env, const VerifyArgs& args) {
  v1::VerifyRequest request;
  request.set_gallery(env.flags().gallery);
  auto probe = ReadFileBytes(args.image);
  if (!probe.ok()) return env.FailLocal(probe.status());
  request.set_image(std::move(*probe));
  if (!args.external_id.empty()) {
    request.set_external_id(args.external_id);
  } else {
    auto other = ReadFileBytes(args.other_image);
    if (!other.ok()) return env.FailLocal(other.status());
    request.set_other_image(std::move(*other));
  }
  if (args.has_threshold) request.set_threshold(static_cast<float>(args.threshold));
  request.set_input_is_face_crop(args.input_is_face_crop);

  v1::VerifyResponse response;
  auto context = env.connection().NewContext();
  const grpc::Status status = env.connection().face_id().Verify(context.get(), request, &response);
  if (!status.ok()) return env.Fail(status);

  if (env.flags().json) {
    env.Emit(ProtoToJson(response));
    return kExitOk;
  }
  const std::string other = args.external_id.empty() ? args.other_image : args.external_id;
  env.out() << (response.same_person() ? "same person" : "different people") << ": " << args.image
            << " vs " << other << " similarity " << Fixed(response.similarity()) << " (threshold "
            << Fixed(response.threshold()) << ")\n";
  return kExitOk;
}

// ---- detect and embed --------------------------------------------------------------------

int RunDetect(CommandEnv& env, const std::vector<std::string>& files) {
  nlohmann::json records = nlohmann::json::array();
  for (const std::string& file : files) {
    auto bytes = ReadFileBytes(file);
    if (!bytes.ok()) return env.FailLocal(bytes.status());
    v1::DetectRequest request;
    request.set_image(std::move(*bytes));
    v1::DetectResponse response;
    auto context = env.connection().NewContext();
    const grpc::Status status =
        env.connection().face_id().Detect(context.get(), request, &response);
    if (!status.ok()) return env.Fail(status);

    if (env.flags().json) {
      nlohmann::json record = ProtoToJson(response);
      record["file"] = file;
      records.push_back(std::move(record));
      continue;
    }
    env.out() << file << ": " << response.image_width() << "x" << response.image_height() << ", "
              << response.faces_size() << " face(s)\n";
    for (int i = 0; i < response.faces_size(); ++i) {
      const v1::Face& face = response.faces(i);
      env.out() << "  face " << i + 1 << " at " << DescribeBox(face.box()) << " score "
                << Fixed(face.detection_score()) << " landmarks";
      for (const v1::Point& p : face.landmarks()) {
        env.out() << " " << Fixed(p.x(), 1) << "," << Fixed(p.y(), 1);
      }
      env.out() << "\n";
    }
  }
  if (env.flags().json) env.Emit({{"results", records}});
  return kExitOk;
}

int RunEmbed(CommandEnv& env, const std::vector<std::string>& files, bool all_faces,
             bool input_is_face_crop) {
  nlohmann::json records = nlohmann::json::array();
  nlohmann::json doc;
  for (const std::string& file : files) {
    auto bytes = ReadFileBytes(file);
    if (!bytes.ok()) return env.FailLocal(bytes.status());
    v1::EmbedRequest request;
    request.set_image(std::move(*bytes));
    request.set_face_selection(all_faces ? v1::FACE_SELECTION_ALL : v1::FACE_SELECTION_LARGEST);
    request.set_input_is_face_crop(input_is_face_crop);
    v1::EmbedResponse response;
    auto context = env.connection().NewContext();
    const grpc::Status status = env.connection().face_id().Embed(context.get(), request, &response);
    if (!status.ok()) return env.Fail(status);

    doc["model_version"] = response.model_version();
    doc["embedding_dim"] = response.embedding_dim();
    for (int i = 0; i < response.faces_size(); ++i) {
      const v1::EmbeddedFace& face = response.faces(i);
      if (env.flags().json) {
        records.push_back(
            {{"file", file},
             {"face_index", i},
             {"face", ProtoToJson(face.face())},
             {"embedding", std::vector<float>(face.embedding().begin(), face.embedding().end())}});
        continue;
      }
      env.out() << file << " face " << i + 1 << " at " << DescribeBox(face.face().box()) << ":";
      for (float v : face.embedding()) env.out() << " " << Fixed(v, 5);
      env.out() << "\n";
    }
    if (!env.flags().json && response.faces().empty()) env.out() << file << ": no face\n";
  }
  if (env.flags().json) {
    doc["faces"] = records;
    env.Emit(doc);
  }
  return kExitOk;
}

// ---- people and galleries ----------------------------------------------------------------

int RunPeople(CommandEnv& env, int page_size) {
  nlohmann::json people = nlohmann::json::array();
  v1::ListPeopleRequest request;
  request.set_gallery(env.flags().gallery);
  request.set_page_size(page_size);
  int64_t total = 0;
  int pages = 0;
  do {
    v1::ListPeopleResponse response;
    auto context = env.connection().NewContext();
    const grpc::Status status =
        env.connection().face_id().ListPeople(context.get(), request, &response);
    if (!status.ok()) return env.Fail(status);
    ++pages;
    total = response.total_people();
    for (const v1::Person& person : response.people()) {
      if (env.flags().json) {
        people.push_back(ProtoToJson(person));
      } else {
        env.out() << Printable(person.external_id()) << "\t" << Printable(person.display_name())
                  << "\t" << person.face_count() << " face(s)\n";
      }
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());

  if (env.flags().json) {
    env.Emit({{"total_people", total}, {"pages", pages}, {"people", people}});
  } else if (!env.flags().quiet) {
    env.out() << total << " people in gallery "
              << (env.flags().gallery.empty() ? "default" : env.flags().gallery) << "\n";
  }
  return kExitOk;
}

void PrintPerson(std::ostream& out, const v1::Person& person) {
  out << PersonLabel(person.external_id(), person.display_name()) << " in gallery "
      << (person.gallery().empty() ? "default" : person.gallery()) << ": " << person.face_count()
      << " face(s)\n";
  for (const auto& [key, value] : person.metadata()) {
    out << "  " << Printable(key) << " = " << Printable(value) << "\n";
  }
  for (const v1::FaceRecord& face : person.faces()) {
    out << "  face " << face.face_id() << " at " << DescribeBox(face.box()) << " source "
        << face.source_sha256().substr(0, 12) << " model " << face.model_version() << "\n";
  }
}

int RunPerson(CommandEnv& env, const std::string& external_id) {
  v1::GetPersonRequest request;
  request.set_gallery(env.flags().gallery);
  request.set_external_id(external_id);
  v1::Person person;
  auto context = env.connection().NewContext();
  const grpc::Status status = env.connection().face_id().GetPerson(context.get(), request, &person);
  if (!status.ok()) return env.Fail(status);
  if (env.flags().json) {
    env.Emit(ProtoToJson(person));
  } else {
    PrintPerson(env.out(), person);
  }
  return kExitOk;
}

int RunRename(CommandEnv& env, const std::string& external_id, const std::string& name) {
  v1::UpdatePersonRequest request;
  request.set_gallery(env.flags().gallery);
  request.set_external_id(external_id);
  request.set_display_name(name);
  v1::Person person;
  auto context = env.connection().NewContext();
  const grpc::Status status =
      env.connection().face_id().UpdatePerson(context.get(), request, &person);
  if (!status.ok()) return env.Fail(status);
  if (env.flags().json) {
    env.Emit(ProtoToJson(person));
  } else {
    env.out() << "renamed " << Printable(external_id) << " to \""
              << Printable(person.display_name()) << "\"\n";
  }
  return kExitOk;
}

int RunDeletePerson(CommandEnv& env, const std::string& external_id) {
  v1::DeletePersonRequest request;
  request.set_gallery(env.flags().gallery);
  request.set_external_id(external_id);
  v1::DeletePersonResponse response;
  auto context = env.connection().NewContext();
  const grpc::Status status =
      env.connection().face_id().DeletePerson(context.get(), request, &response);
  if (!status.ok()) return env.Fail(status);
  if (env.flags().json) {
    env.Emit({{"external_id", external_id}, {"faces_deleted", response.faces_deleted()}});
  } else {
    env.out() << "deleted " << external_id << " and " << response.faces_deleted() << " face(s)\n";
  }
  return kExitOk;
}

int RunDeleteFace(CommandEnv& env, int64_t face_id) {
  v1::DeleteFaceRequest request;
  request.set_gallery(env.flags().gallery);
  request.set_face_id(face_id);
  v1::DeleteFaceResponse response;
  auto context = env.connection().NewContext();
  const grpc::Status status =
      env.connection().face_id().DeleteFace(context.get(), request, &response);
  if (!status.ok()) return env.Fail(status);
  if (env.flags().json) {
    env.Emit({{"face_id", face_id}, {"external_id", response.external_id()}});
  } else {
    env.out() << "deleted face " << face_id << " of " << Printable(response.external_id()) << "\n";
  }
  return kExitOk;
}

int RunDeleteGallery(CommandEnv& env, const std::string& gallery) {
  v1::DeleteGalleryRequest request;
  request.set_gallery(gallery);
  v1::DeleteGalleryResponse response;
  auto context = env.connection().NewContext();
  const grpc::Status status =
      env.connection().face_id().DeleteGallery(context.get(), request, &response);
  if (!status.ok()) return env.Fail(status);
  if (env.flags().json) {
    env.Emit(ProtoToJson(response));
  } else {
    env.out() << "deleted gallery " << gallery << ": " << response.people_deleted() << " people, "
              << response.faces_deleted() << " face(s)\n";
  }
  return kExitOk;
}

int RunGalleries(CommandEnv& env) {
  v1::ListGalleriesResponse response;
  auto context = env.connection().NewContext();
  const grpc::Status status = env.connection().face_id().ListGalleries(
      context.get(), v1::ListGalleriesRequest(), &response);
  if (!status.ok()) return env.Fail(status);
  if (env.flags().json) {
    env.Emit(ProtoToJson(response));
    return kExitOk;
  }
  for (const v1::GalleryInfo& gallery : response.galleries()) {
    env.out() << gallery.name() << "\t" << gallery.people() << " people\t" << gallery.faces()
              << " faces\n";
  }
  return kExitOk;
}

int RunInfo(CommandEnv& env) {
  v1::InfoResponse info;
  auto context = env.connection().NewContext();
  const grpc::Status status =
      env.connection().face_id().Info(context.get(), v1::InfoRequest(), &info);
  if (!status.ok()) return env.Fail(status);
  if (env.flags().json) {
    env.Emit(ProtoToJson(info));
    return kExitOk;
  }
  const v1::ModelInfo& model = info.model();
  std::ostream& out = env.out();
  out << "server        " << info.server_version() << " on " << env.flags().connection.server
      << " (" << info.device() << ")\n";
  out << "model         " << model.name() << " " << model.architecture() << " version "
      << model.version() << ", trained " << model.trained_at() << "\n";
  out << "input         " << model.input_size() << " px, embedding " << model.embedding_dim()
      << " floats, pipeline " << model.pipeline_version() << "\n";
  out << "threshold     " << Fixed(model.threshold()) << "\n";
  out << "index         " << info.index_type() << ", " << info.total_faces() << " face(s)\n";
  out << "limits        " << info.max_image_bytes() << " bytes per image, "
      << info.max_images_per_request() << " images per request\n";
  for (const v1::GalleryInfo& gallery : info.galleries()) {
    out << "gallery       " << gallery.name() << ": " << gallery.people() << " people, "
        << gallery.faces() << " faces\n";
  }
  return kExitOk;
}

int RunHealth(CommandEnv& env, const std::string& service) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto context = env.connection().NewContext();
  const grpc::Status status = env.connection().health().Check(context.get(), request, &response);
  if (!status.ok()) return env.Fail(status);
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  const bool serving = response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  if (env.flags().json) {
    env.Emit({{"service", service}, {"status", name}, {"serving", serving}});
  } else {
    env.out() << (service.empty() ? "server" : service) << ": " << name << "\n";
  }
  if (!serving) {
    env.err() << "error: " << env.flags().connection.server << " answers but is " << name
              << "; it may still be loading, retry in a few seconds\n";
    return kExitRequestFailed;
  }
  return kExitOk;
}

// ---- parsing -----------------------------------------------------------------------------

// Text shown under --help.
constexpr const char* kDescription =
    "faceid: enroll, identify and verify faces with a faceid-server.\n"
    "Exit codes: 0 success, 1 a request failed, 2 usage error.";

}  // namespace

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app(kDescription, "faceid");
  app.set_version_flag("--version", FACEID_VERSION);
  app.require_subcommand(1);
  // Global flags are accepted after the sub-command too (`faceid people --json`).
  app.fallthrough();

  CliFlags flags;
  app.add_option("--server", flags.connection.server, "faceid-server address HOST:PORT")
      ->envname("FACEID_SERVER")
      ->capture_default_str();
  app.add_option("--api-key", flags.connection.api_key,
                 "API key, sent as \"authorization: Bearer KEY\"")
      ->envname("FACEID_API_KEY");
  app.add_option("--tls-ca", flags.connection.tls_ca_file,
                 "PEM file of CA roots; connects with TLS when given")
      ->check(CLI::ExistingFile);
  app.add_option("--timeout", flags.connection.timeout_s, "deadline per request, seconds")
      ->check(PositiveNumber())
      ->capture_default_str();
  app.add_flag("--json", flags.json, "machine-readable output: one JSON document per command");
  app.add_flag("--quiet,-q", flags.quiet, "no progress bar and no hints");
  app.add_option("--gallery,-g", flags.gallery, "gallery to use (default: the default gallery)");

  std::vector<std::pair<CLI::App*, std::function<int(CommandEnv&)>>> commands;

  EnrollArgs enroll;
  auto* enroll_cmd = app.add_subcommand(
      "enroll", "enroll the faces in FILE... as one person (exit 1 if any image is refused)");
  enroll_cmd->add_option("--name", enroll.name, "display name of the person")->required();
  enroll_cmd->add_option("--id", enroll.external_id, "external id (default: the name)");
  enroll_cmd->add_option("files", enroll.files, "image files")
      ->required()
      ->check(CLI::ExistingFile);
  enroll_cmd->add_flag("--crops", enroll.input_is_face_crop, "the images are face crops");
  enroll_cmd->add_flag("--single-face", enroll.require_single_face,
                       "refuse images with more than one face");
  commands.emplace_back(enroll_cmd, [&](CommandEnv& env) { return RunEnroll(env, enroll); });

  EnrollDirArgs enroll_dir;
  auto* enroll_dir_cmd = app.add_subcommand(
      "enroll-dir",
      "enroll ROOT/<person>/<image>: each sub-folder is a person named after it; bad files are "
      "skipped and listed (exit 1 only when a request fails on the server side)");
  enroll_dir_cmd->add_option("root", enroll_dir.root, "folder of person folders")
      ->required()
      ->check(CLI::ExistingDirectory);
  enroll_dir_cmd->add_option("--batch", enroll_dir.images_per_request, "images per request")
      ->check(CLI::Range(1, 32))
      ->capture_default_str();
  enroll_dir_cmd->add_option("--concurrency,-j", enroll_dir.concurrency, "requests in flight")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  enroll_dir_cmd->add_flag("--crops", enroll_dir.input_is_face_crop, "the images are face crops");
  enroll_dir_cmd->add_flag("--single-face", enroll_dir.require_single_face,
                           "refuse images with more than one face");
  commands.emplace_back(enroll_dir_cmd,
                        [&](CommandEnv& env) { return RunEnrollDir(env, enroll_dir); });

  IdentifyArgs identify;
  auto* identify_cmd = app.add_subcommand("identify", "who is in each image");
  identify_cmd->add_option("files", identify.files, "probe images")
      ->required()
      ->check(CLI::ExistingFile);
  identify_cmd->add_option("--top-k,-k", identify.top_k, "candidates per face")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  auto* identify_threshold =
      identify_cmd
          ->add_option("--threshold", identify.threshold,
                       "decision threshold in [-1, 1] (default: the model's)")
          ->check(CLI::Range(-1.0, 1.0));
  identify_cmd->add_flag("--all-faces", identify.all_faces, "every face, not only the largest");
  identify_cmd->add_flag("--crops", identify.input_is_face_crop, "the images are face crops");
  commands.emplace_back(identify_cmd, [&](CommandEnv& env) {
    identify.has_threshold = identify_threshold->count() > 0;
    return RunIdentify(env, identify);
  });

  VerifyArgs verify;
  auto* verify_cmd =
      app.add_subcommand("verify", "same person? compare A with image B or with --person ID");
  verify_cmd->add_option("a", verify.image, "probe image")->required()->check(CLI::ExistingFile);
  auto* verify_b =
      verify_cmd->add_option("b", verify.other_image, "reference image")->check(CLI::ExistingFile);
  auto* verify_person =
      verify_cmd->add_option("--person", verify.external_id, "compare with this enrolled person");
  verify_b->excludes(verify_person);
  auto* verify_threshold =
      verify_cmd->add_option("--threshold", verify.threshold, "decision threshold in [-1, 1]")
          ->check(CLI::Range(-1.0, 1.0));
  verify_cmd->add_flag("--crops", verify.input_is_face_crop, "the images are face crops");
  commands.emplace_back(verify_cmd, [&](CommandEnv& env) {
    verify.has_threshold = verify_threshold->count() > 0;
    return RunVerify(env, verify);
  });

  std::vector<std::string> detect_files;
  auto* detect_cmd = app.add_subcommand("detect", "face boxes, landmarks and scores");
  detect_cmd->add_option("files", detect_files, "images")->required()->check(CLI::ExistingFile);
  commands.emplace_back(detect_cmd, [&](CommandEnv& env) { return RunDetect(env, detect_files); });

  std::vector<std::string> embed_files;
  bool embed_all = false;
  bool embed_crops = false;
  auto* embed_cmd = app.add_subcommand("embed", "embedding vectors per face");
  embed_cmd->add_option("files", embed_files, "images")->required()->check(CLI::ExistingFile);
  embed_cmd->add_flag("--all-faces", embed_all, "every face, not only the largest");
  embed_cmd->add_flag("--crops", embed_crops, "the images are face crops");
  commands.emplace_back(embed_cmd, [&](CommandEnv& env) {
    return RunEmbed(env, embed_files, embed_all, embed_crops);
  });

  int page_size = 100;
  auto* people_cmd = app.add_subcommand("people", "every person of the gallery");
  people_cmd->add_option("--page-size", page_size, "people per request")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  commands.emplace_back(people_cmd, [&](CommandEnv& env) { return RunPeople(env, page_size); });

  std::string person_id;
  auto* person_cmd = app.add_subcommand("person", "one person and its faces");
  person_cmd->add_option("id", person_id, "external id")->required();
  commands.emplace_back(person_cmd, [&](CommandEnv& env) { return RunPerson(env, person_id); });

  std::string rename_id;
  std::string rename_name;
  auto* rename_cmd = app.add_subcommand("rename", "change a person's display name");
  rename_cmd->add_option("id", rename_id, "external id")->required();
  rename_cmd->add_option("name", rename_name, "new display name")->required();
  commands.emplace_back(rename_cmd,
                        [&](CommandEnv& env) { return RunRename(env, rename_id, rename_name); });

  auto* delete_cmd = app.add_subcommand("delete", "delete a person, a face or a gallery");
  delete_cmd->require_subcommand(1);
  std::string delete_person_id;
  auto* delete_person_cmd = delete_cmd->add_subcommand("person", "a person with all its faces");
  delete_person_cmd->add_option("id", delete_person_id, "external id")->required();
  commands.emplace_back(delete_person_cmd,
                        [&](CommandEnv& env) { return RunDeletePerson(env, delete_person_id); });
  int64_t delete_face_id = 0;
  auto* delete_face_cmd = delete_cmd->add_subcommand("face", "one face; the person stays");
  delete_face_cmd->add_option("id", delete_face_id, "face id")->required()->check(PositiveId());
  commands.emplace_back(delete_face_cmd,
                        [&](CommandEnv& env) { return RunDeleteFace(env, delete_face_id); });
  std::string delete_gallery_name;
  auto* delete_gallery_cmd = delete_cmd->add_subcommand("gallery", "a gallery with everyone in it");
  delete_gallery_cmd->add_option("name", delete_gallery_name, "gallery name")->required();
  commands.emplace_back(delete_gallery_cmd, [&](CommandEnv& env) {
    return RunDeleteGallery(env, delete_gallery_name);
  });

  auto* galleries_cmd = app.add_subcommand("galleries", "every gallery with its counts");
  commands.emplace_back(galleries_cmd, [](CommandEnv& env) { return RunGalleries(env); });
  auto* info_cmd = app.add_subcommand("info", "server version, model, index and limits");
  commands.emplace_back(info_cmd, [](CommandEnv& env) { return RunInfo(env); });

  std::string health_service;
  auto* health_cmd = app.add_subcommand("health", "the standard gRPC health check");
  health_cmd->add_option("--service", health_service, "service name (default: the whole server)");
  commands.emplace_back(health_cmd,
                        [&](CommandEnv& env) { return RunHealth(env, health_service); });

  BenchArgs bench;
  auto* bench_cmd = app.add_subcommand("bench", "load test: QPS and latency percentiles");
  bench_cmd->add_option("--image", bench.image, "probe image")
      ->required()
      ->check(CLI::ExistingFile);
  bench_cmd->add_option("--method", bench.method, "call to repeat")
      ->check(CLI::IsMember({"identify", "detect", "embed"}))
      ->capture_default_str();
  bench_cmd->add_option("--concurrency,-c", bench.concurrency, "requests in flight")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  auto* bench_requests =
      bench_cmd->add_option("--requests,-n", bench.requests, "number of requests (default 100)")
          ->check(PositiveId());
  auto* bench_duration = bench_cmd->add_option("--duration", bench.duration_s, "seconds to run")
                             ->check(PositiveNumber());
  bench_requests->excludes(bench_duration);
  bench_cmd
      ->add_option("--backoff-ms", bench.backoff_ms,
                   "after RESOURCE_EXHAUSTED wait this long before the next call, doubling up "
                   "to 1 s while the server stays overloaded (0: no backoff)")
      ->check(NumberAbove0(/*zero_ok=*/true))
      ->capture_default_str();
  commands.emplace_back(bench_cmd, [&](CommandEnv& env) {
    if (bench.requests == 0 && bench.duration_s == 0) bench.requests = 100;
    return RunBench(env, bench);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (*verify_cmd && verify.external_id.empty() && verify.other_image.empty()) {
    err << "error: verify needs a second image B or --person ID\n"
        << "Run with --help for more information.\n";
    return kExitUsage;
  }

  auto connection = Connection::Open(flags.connection);
  if (!connection.ok()) {
    err << "error: " << connection.status().message() << "\n";
    return kExitUsage;
  }
  CommandEnv env(flags, **connection, out, err);
  for (auto& [command, run] : commands) {
    if (command->parsed()) return run(env);
  }
  err << "error: no command given; run faceid --help\n";
  return kExitUsage;
}

}  // namespace faceid
