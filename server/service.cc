#include "server/service.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "core/hash.h"
#include "core/log.h"

namespace faceid {

namespace {

constexpr int kDefaultTopK = 5;
constexpr int kMaxTopK = 100;
constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr std::size_t kMaxGalleryName = 64;
constexpr std::size_t kMaxExternalId = 128;
constexpr std::size_t kMaxMetadataKeys = 64;
constexpr std::size_t kMaxMetadataValueBytes = 1024;
constexpr std::size_t kMaxMetadataKeyBytes = 128;
// Names travel in every Identify candidate, so they are capped well below gRPC's 4 MiB
// default client receive limit.
constexpr std::size_t kMaxDisplayNameBytes = 256;

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::string Prefixed(const std::string& prefix, const Status& status) {
  return prefix + std::string(status.message());
}

// A gallery name that Enroll may create: not dots only ("." and ".." read as paths). Checked
// at creation only, so a gallery stored by an older version stays reachable and deletable.
Status CheckNewGalleryName(const std::string& name) {
  if (!name.empty() && name.find_first_not_of('.') == std::string::npos) {
    return absl::InvalidArgumentError("gallery name '" + name + "' needs a letter, digit, _ or -");
  }
  return absl::OkStatus();
}

StatusOr<std::string> GalleryName(const std::string& name) {
  if (name.empty()) return std::string(kDefaultGallery);
  if (name.size() > kMaxGalleryName) {
    return absl::InvalidArgumentError("gallery name is longer than 64 characters");
  }
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError("gallery name '" + name +
                                        "' may only use the characters A-Z a-z 0-9 _ . -");
    }
  }
  return name;
}

// Code points that steer a terminal or the reading order rather than print: C0 and C1
// controls, DEL, the line/paragraph separators and the bidi embeddings, overrides and isolates
// (U+202E can make a stored name read as another). Checked where text is stored: a name or id
// shown by `faceid people` must not send escape sequences.
bool IsSteeringCodePoint(std::uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

// `text` is valid UTF-8 (proto3 parsing checks string fields).
Status CheckPrintable(const std::string& text, const std::string& field) {
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const int length = lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
    std::uint32_t cp = length == 1 ? lead : lead & (0x7f >> length);
    for (int k = 1; k < length && i + k < text.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3f);
    }
    if (IsSteeringCodePoint(cp)) {
      char hex[16];
      std::snprintf(hex, sizeof(hex), "U+%04X", cp);
      return absl::InvalidArgumentError(field + " contains the control or bidi character " + hex +
                                        " at byte " + std::to_string(i));
    }
    i += static_cast<std::size_t>(length);
  }
  return absl::OkStatus();
}

// 1..128 bytes without control characters. (proto3 parsing already refuses invalid UTF-8 in
// string fields; gRPC then answers INTERNAL before the service runs.)
Status CheckExternalId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("external_id is required");
  if (id.size() > kMaxExternalId) {
    return absl::InvalidArgumentError("external_id is longer than 128 bytes");
  }
  for (char c : id) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      return absl::InvalidArgumentError("external_id contains a control character");
    }
  }
  return absl::OkStatus();
}

Status CheckMetadata(const google::protobuf::Map<std::string, std::string>& metadata,
                     bool removing_allowed = false) {
  if (metadata.size() > kMaxMetadataKeys) {
    return absl::InvalidArgumentError("metadata has more than 64 keys");
  }
  for (const auto& [key, value] : metadata) {
    if (key.empty()) return absl::InvalidArgumentError("metadata keys must not be empty");
    // In UpdatePerson an empty value removes a key: allowed for any key, so one stored by an
    // older version can still be removed.
    if (!(removing_allowed && value.empty())) {
      FACEID_RETURN_IF_ERROR(CheckPrintable(key, "a metadata key"));
    }
    if (key.size() > kMaxMetadataKeyBytes) {
      return absl::InvalidArgumentError("a metadata key is over 128 bytes");
    }
    if (value.size() > kMaxMetadataValueBytes) {
      return absl::InvalidArgumentError("metadata value of '" + key + "' is over 1 KiB");
    }
  }
  return absl::OkStatus();
}

Status CheckDisplayName(const std::string& name) {
  if (name.size() > kMaxDisplayNameBytes) {
    return absl::InvalidArgumentError("display_name is " + std::to_string(name.size()) +
                                      " bytes; at most 256 are allowed");
  }
  return CheckPrintable(name, "display_name");
}

// Between images of a request: stop working for a client that has gone (cancelled, or past
// its deadline), so abandoned requests do not hold an in-flight slot for long.
Status CheckNotCancelled(grpc::ServerContext* context) {
  if (context != nullptr && context->IsCancelled()) {
    return absl::CancelledError("the client cancelled the request or its deadline passed");
  }
  return absl::OkStatus();
}

StatusOr<float> ThresholdOf(bool has_override, float override_value, float calibrated) {
  if (!has_override) return calibrated;
  if (!(override_value >= -1.f && override_value <= 1.f)) {
    return absl::InvalidArgumentError("threshold must be within [-1, 1]");
  }
  return override_value;
}

Status CheckImageSize(const std::string& image, std::int64_t max_bytes, const std::string& what) {
  if (image.empty()) return absl::InvalidArgumentError(what + " is empty");
  if (static_cast<std::int64_t>(image.size()) > max_bytes) {
    return absl::ResourceExhaustedError(what + " has " + std::to_string(image.size()) +
                                        " bytes, over the server's limit of " +
                                        std::to_string(max_bytes));
  }
  return absl::OkStatus();
}

void FillFace(const AlignedFace& face, v1::Face* out) {
  out->mutable_box()->set_x(face.box.x);
  out->mutable_box()->set_y(face.box.y);
  out->mutable_box()->set_width(face.box.width);
  out->mutable_box()->set_height(face.box.height);
  out->set_detection_score(face.score);
  const bool has_landmarks = std::any_of(face.landmarks.points.begin(), face.landmarks.points.end(),
                                         [](const cv::Point2f& p) { return p.x != 0 || p.y != 0; });
  if (!has_landmarks) return;
  for (const cv::Point2f& point : face.landmarks.points) {
    v1::Point* p = out->add_landmarks();
    p->set_x(point.x);
    p->set_y(point.y);
  }
}

void FillPerson(const PersonRow& row, bool with_faces, v1::Person* out) {
  out->set_gallery(row.gallery);
  out->set_external_id(row.external_id);
  out->set_display_name(row.display_name);
  for (const auto& [key, value] : row.metadata) (*out->mutable_metadata())[key] = value;
  out->set_face_count(row.face_count);
  out->set_created_unix_ms(row.created_unix_ms);
  out->set_updated_unix_ms(row.updated_unix_ms);
  if (!with_faces) return;
  for (const FaceRow& face : row.faces) {
    v1::FaceRecord* record = out->add_faces();
    record->set_face_id(face.face_id);
    record->mutable_box()->set_x(face.box.x);
    record->mutable_box()->set_y(face.box.y);
    record->mutable_box()->set_width(face.box.width);
    record->mutable_box()->set_height(face.box.height);
    record->set_source_sha256(face.source_sha256);
    record->set_model_version(face.model_version);
    record->set_created_unix_ms(face.created_unix_ms);
  }
}

void FillModelInfo(const ModelInfo& info, v1::ModelInfo* out) {
  out->set_name(info.name);
  out->set_version(info.version);
  out->set_architecture(info.network.architecture);
  out->set_input_size(info.network.input_size);
  out->set_embedding_dim(info.network.embedding_dim);
  out->set_pipeline_version(info.pipeline_version);
  out->set_threshold(info.threshold);
  for (const auto& [key, value] : info.metrics) (*out->mutable_metrics())[key] = value;
  out->set_trained_at(info.trained_at);
}

FaceMode ModeOf(bool input_is_face_crop) {
  return input_is_face_crop ? FaceMode::kWholeImage : FaceMode::kDetect;
}

int MaxFacesOf(v1::FaceSelection selection) { return selection == v1::FACE_SELECTION_ALL ? 0 : 1; }

// Open enums accept any number on the wire; an unknown one is a client bug, not LARGEST.
Status CheckFaceSelection(int selection) {
  if (v1::FaceSelection_IsValid(selection)) return absl::OkStatus();
  return absl::InvalidArgumentError("face_selection " + std::to_string(selection) +
                                    " is not one of UNSPECIFIED, LARGEST, ALL");
}

std::string HexEncode(const std::string& bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex.push_back(kHex[c >> 4]);
    hex.push_back(kHex[c & 0xf]);
  }
  return hex;
}

std::optional<std::string> HexDecode(const std::string& hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string bytes;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(hi * 16 + lo));
  }
  return bytes;
}

// Page token: "<hex gallery>.<hex last external id>", so a token is only valid for its gallery.
std::string MakePageToken(const std::string& gallery, const std::string& last_external_id) {
  return HexEncode(gallery) + "." + HexEncode(last_external_id);
}

StatusOr<std::string> ParsePageToken(const std::string& token, const std::string& gallery) {
  const std::size_t dot = token.find('.');
  if (dot == std::string::npos) return absl::InvalidArgumentError("malformed page_token");
  std::optional<std::string> token_gallery = HexDecode(token.substr(0, dot));
  std::optional<std::string> last = HexDecode(token.substr(dot + 1));
  if (!token_gallery || !last) return absl::InvalidArgumentError("malformed page_token");
  if (*token_gallery != gallery) {
    return absl::FailedPreconditionError("page_token belongs to gallery '" + *token_gallery +
                                         "', not '" + gallery + "'");
  }
  return *last;
}

// Cosine similarity of two unit vectors, clamped to [-1, 1] (rounding can pass 1 by an ulp).
float Dot(const std::vector<float>& a, const std::vector<float>& b) {
  float sum = 0.f;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) sum += a[i] * b[i];
  return std::clamp(sum, -1.f, 1.f);
}

// Constant-time comparison, so the key cannot be guessed byte by byte from timings.
bool SameKey(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

}  // namespace

FaceService::FaceService(GalleryManager* galleries, const FaceFinder* finder,
                         const Embedder* embedder, const ServiceOptions& options)
    : galleries_(galleries), finder_(finder), embedder_(embedder), options_(options) {}

Status FaceService::CheckApiKey(const grpc::ServerContext& context) const {
  if (options_.api_key.empty()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  std::string given;
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    const std::string value(it->second.data(), it->second.size());
    const std::string bearer = "Bearer ";
    if (value.compare(0, bearer.size(), bearer) == 0) given = value.substr(bearer.size());
  } else if (auto key = metadata.find("x-api-key"); key != metadata.end()) {
    given.assign(key->second.data(), key->second.size());
  }
  if (given.empty()) {
    return absl::UnauthenticatedError(
        "this server requires an API key: send 'authorization: Bearer <key>' or "
        "'x-api-key: <key>' metadata");
  }
  if (!SameKey(given, options_.api_key)) return absl::UnauthenticatedError("wrong API key");
  return absl::OkStatus();
}

template <typename Handler>
grpc::Status FaceService::Serve(const char* method, grpc::ServerContext* context, bool needs_ready,
                                Handler&& handler) {
  const auto started = std::chrono::steady_clock::now();
  const std::uint64_t request_id = ++request_counter_;
  Status status = CheckApiKey(*context);
  const int in_flight = ++in_flight_;
  if (status.ok() && in_flight > options_.max_in_flight) {
    status = absl::ResourceExhaustedError("server overloaded (" +
                                          std::to_string(options_.max_in_flight) +
                                          " requests in flight); retry with back-off");
  }
  if (status.ok() && needs_ready && !galleries_->ready()) {
    status = absl::UnavailableError("server is starting (re-embedding the gallery); retry later");
  }
  if (status.ok()) status = handler();
  --in_flight_;

  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  auto log = Logger("server");
  if (absl::IsInternal(status)) {
    log->error("{} #{} failed: {}", method, request_id, std::string(status.message()));
  } else {
    log->debug("{} #{} {:.1f} ms {}", method, request_id, ms,
               absl::StatusCodeToString(status.code()));
  }
  return ToGrpc(status);
}

grpc::Status FaceService::Enroll(grpc::ServerContext* context, const v1::EnrollRequest* request,
                                 v1::EnrollResponse* response) {
  return Serve("Enroll", context, true, [&]() -> Status {
    FACEID_ASSIGN_OR_RETURN(const std::string gallery, GalleryName(request->gallery()));
    FACEID_RETURN_IF_ERROR(CheckNewGalleryName(gallery));
    FACEID_RETURN_IF_ERROR(CheckExternalId(request->external_id()));
    FACEID_RETURN_IF_ERROR(CheckPrintable(request->external_id(), "external_id"));
    FACEID_RETURN_IF_ERROR(CheckDisplayName(request->display_name()));
    FACEID_RETURN_IF_ERROR(CheckMetadata(request->metadata()));
    const v1::EnrollOptions& options = request->options();
    FACEID_RETURN_IF_ERROR(CheckFaceSelection(options.face_selection()));
    if (options.face_selection() == v1::FACE_SELECTION_ALL) {
      return absl::InvalidArgumentError(
          "face_selection ALL is not allowed in Enroll: one image gives one face");
    }
    const int n = request->images_size();
    if (n < 1 || n > kMaxEnrollImages) {
      return absl::InvalidArgumentError("Enroll takes 1..32 images, got " + std::to_string(n));
    }

    // Find one face per image; a bad image fails the request unless skip_invalid_images.
    std::vector<NewFace> faces;
    std::vector<AlignedFace> found;
    std::vector<int> image_of_face;
    std::map<int, Status> image_errors;
    std::vector<cv::Mat> crops;
    for (int i = 0; i < n; ++i) {
      FACEID_RETURN_IF_ERROR(CheckNotCancelled(context));
      const std::string& image = request->images(i);
      const std::string what = "image " + std::to_string(i);
      auto find = [&]() -> StatusOr<AlignedFace> {
        FACEID_RETURN_IF_ERROR(CheckImageSize(image, options_.max_image_bytes, what));
        StatusOr<PipelineResult> result =
            finder_->Find(image, ModeOf(options.input_is_face_crop()), 0, true);
        if (!result.ok()) {
          return Status(result.status().code(),
                        what + ": " + std::string(result.status().message()));
        }
        if (result->faces.empty()) return absl::InvalidArgumentError(what + ": no face found");
        if (options.require_single_face() && !options.input_is_face_crop() &&
            result->faces.size() > 1) {
          return absl::InvalidArgumentError(what + " shows " +
                                            std::to_string(result->faces.size()) +
                                            " faces; require_single_face wants exactly one");
        }
        return std::move(result->faces.front());
      };
      StatusOr<AlignedFace> face = find();
      if (!face.ok()) {
        if (!options.skip_invalid_images()) return face.status();
        image_errors[i] = face.status();
        continue;
      }
      NewFace stored;
      stored.source_sha256 = Sha256Hex(image);
      stored.box = {face->box.x, face->box.y, face->box.width, face->box.height};
      std::vector<unsigned char> png;
      if (!cv::imencode(".png", face->crop, png)) {
        return absl::InternalError(what + ": the aligned crop could not be encoded");
      }
      stored.crop_png.assign(png.begin(), png.end());
      crops.push_back(face->crop);
      faces.push_back(std::move(stored));
      found.push_back(std::move(*face));
      image_of_face.push_back(i);
    }
    if (faces.empty()) {  // every image failed (skip_invalid_images): name each one's reason
      std::string reasons;
      for (const auto& [index, error] : image_errors) {
        reasons += (reasons.empty() ? "" : "; ") + std::string(error.message());
      }
      return Status(image_errors.begin()->second.code(), "no image could be enrolled: " + reasons);
    }

    FACEID_ASSIGN_OR_RETURN(std::vector<std::vector<float>> embeddings, embedder_->Embed(crops));
    for (std::size_t i = 0; i < faces.size(); ++i) faces[i].embedding = std::move(embeddings[i]);

    std::map<std::string, std::string> metadata(request->metadata().begin(),
                                                request->metadata().end());
    FACEID_ASSIGN_OR_RETURN(
        EnrollResult result,
        galleries_->Enroll(gallery, request->external_id(), request->display_name(), metadata,
                           faces, embedder_->info().version));

    FillPerson(result.person, true, response->mutable_person());
    response->set_person_created(result.person_created);
    std::size_t next = 0;
    for (int i = 0; i < n; ++i) {
      v1::EnrolledFace* out = response->add_faces();
      out->set_image_index(i);
      if (auto error = image_errors.find(i); error != image_errors.end()) {
        out->mutable_error()->set_code(static_cast<int>(error->second.code()));
        out->mutable_error()->set_message(std::string(error->second.message()));
        continue;
      }
      out->set_face_id(result.faces[next].face_id);
      out->set_duplicate(result.faces[next].duplicate);
      FillFace(found[next], out->mutable_face());
      ++next;
    }
    return absl::OkStatus();
  });
}

grpc::Status FaceService::Identify(grpc::ServerContext* context, const v1::IdentifyRequest* request,
                                   v1::IdentifyResponse* response) {
  return Serve("Identify", context, true, [&]() -> Status {
    FACEID_ASSIGN_OR_RETURN(const std::string gallery, GalleryName(request->gallery()));
    const int n = request->images_size();
    if (n < 1 || n > kMaxIdentifyImages) {
      return absl::InvalidArgumentError("Identify takes 1..16 images, got " + std::to_string(n));
    }
    const int top_k = request->top_k() == 0 ? kDefaultTopK : request->top_k();
    if (top_k < 1 || top_k > kMaxTopK) {
      return absl::InvalidArgumentError("top_k must be within 1..100 (0 means 5)");
    }
    FACEID_ASSIGN_OR_RETURN(const float threshold, ThresholdOf(request->has_threshold(),
                                                               request->threshold(), Threshold()));
    for (const std::string& image : request->images()) {
      FACEID_RETURN_IF_ERROR(CheckImageSize(image, options_.max_image_bytes, "an image"));
    }
    FACEID_RETURN_IF_ERROR(CheckFaceSelection(request->face_selection()));
    // Fail an unknown gallery before any detection work.
    FACEID_RETURN_IF_ERROR(galleries_->CheckGallery(gallery));

    // Detect in every image, then embed all faces in one batch.
    std::vector<cv::Mat> crops;
    std::vector<std::pair<int, AlignedFace>> faces;
    for (int i = 0; i < n; ++i) {
      FACEID_RETURN_IF_ERROR(CheckNotCancelled(context));
      v1::ImageResult* result = response->add_results();
      result->set_image_index(i);
      StatusOr<PipelineResult> found =
          finder_->Find(request->images(i), ModeOf(request->input_is_face_crop()),
                        MaxFacesOf(request->face_selection()), false);
      if (!found.ok()) {
        if (absl::IsInternal(found.status())) return found.status();
        result->mutable_error()->set_code(static_cast<int>(found.status().code()));
        result->mutable_error()->set_message(std::string(found.status().message()));
        continue;
      }
      for (AlignedFace& face : found->faces) {
        crops.push_back(face.crop);
        faces.emplace_back(i, std::move(face));
      }
    }
    FACEID_ASSIGN_OR_RETURN(std::vector<std::vector<float>> embeddings, embedder_->Embed(crops));

    for (std::size_t f = 0; f < faces.size(); ++f) {
      FACEID_ASSIGN_OR_RETURN(std::vector<PersonMatch> matches,
                              galleries_->Search(gallery, embeddings[f], top_k));
      v1::IdentifiedFace* out = response->mutable_results(faces[f].first)->add_faces();
      FillFace(faces[f].second, out->mutable_face());
      for (const PersonMatch& match : matches) {
        v1::Candidate* candidate = out->add_candidates();
        candidate->set_external_id(match.external_id);
        candidate->set_display_name(match.display_name);
        candidate->set_similarity(match.similarity);
        candidate->set_face_id(match.face_id);
      }
      const bool known = !matches.empty() && matches.front().similarity >= threshold;
      out->set_decision(known ? v1::DECISION_KNOWN : v1::DECISION_UNKNOWN);
    }
    response->set_threshold(threshold);
    response->set_model_version(embedder_->info().version);
    return absl::OkStatus();
  });
}

grpc::Status FaceService::Verify(grpc::ServerContext* context, const v1::VerifyRequest* request,
                                 v1::VerifyResponse* response) {
  return Serve("Verify", context, true, [&]() -> Status {
    FACEID_ASSIGN_OR_RETURN(const float threshold, ThresholdOf(request->has_threshold(),
                                                               request->threshold(), Threshold()));
    if (request->reference_case() == v1::VerifyRequest::REFERENCE_NOT_SET) {
      return absl::InvalidArgumentError("set other_image or external_id to compare against");
    }
    const FaceMode mode = ModeOf(request->input_is_face_crop());
    auto largest_face = [&](const std::string& image,
                            const std::string& what) -> StatusOr<AlignedFace> {
      FACEID_RETURN_IF_ERROR(CheckImageSize(image, options_.max_image_bytes, what));
      StatusOr<PipelineResult> found = finder_->Find(image, mode, 1, false);
      if (!found.ok()) return Status(found.status().code(), Prefixed(what + ": ", found.status()));
      if (found->faces.empty()) return absl::InvalidArgumentError(what + ": no face found");
      return std::move(found->faces.front());
    };
    FACEID_ASSIGN_OR_RETURN(AlignedFace probe, largest_face(request->image(), "image"));
    FillFace(probe, response->mutable_face());

    if (request->reference_case() == v1::VerifyRequest::kOtherImage) {
      FACEID_RETURN_IF_ERROR(CheckNotCancelled(context));
      FACEID_ASSIGN_OR_RETURN(AlignedFace other,
                              largest_face(request->other_image(), "other_image"));
      FACEID_ASSIGN_OR_RETURN(std::vector<std::vector<float>> embeddings,
                              embedder_->Embed({probe.crop, other.crop}));
      response->set_similarity(Dot(embeddings[0], embeddings[1]));
      FillFace(other, response->mutable_other_face());
    } else {
      FACEID_ASSIGN_OR_RETURN(const std::string gallery, GalleryName(request->gallery()));
      FACEID_RETURN_IF_ERROR(CheckExternalId(request->external_id()));
      std::vector<std::int64_t> face_ids;
      std::vector<std::vector<float>> enrolled;
      FACEID_RETURN_IF_ERROR(galleries_->store().PersonEmbeddings(gallery, request->external_id(),
                                                                  &face_ids, &enrolled));
      if (face_ids.empty()) {
        return absl::FailedPreconditionError("person '" + request->external_id() +
                                             "' has no faces to verify against");
      }
      FACEID_ASSIGN_OR_RETURN(std::vector<std::vector<float>> embeddings,
                              embedder_->Embed({probe.crop}));
      float best = -2.f;
      for (std::size_t i = 0; i < face_ids.size(); ++i) {
        const float similarity = Dot(embeddings[0], enrolled[i]);
        if (similarity > best) {
          best = similarity;
          response->set_matched_face_id(face_ids[i]);
        }
      }
      response->set_similarity(best);
    }
    response->set_same_person(response->similarity() >= threshold);
    response->set_threshold(threshold);
    return absl::OkStatus();
  });
}

grpc::Status FaceService::Detect(grpc::ServerContext* context, const v1::DetectRequest* request,
                                 v1::DetectResponse* response) {
  return Serve("Detect", context, false, [&]() -> Status {
    FACEID_RETURN_IF_ERROR(CheckImageSize(request->image(), options_.max_image_bytes, "image"));
    FACEID_ASSIGN_OR_RETURN(PipelineResult found,
                            finder_->Find(request->image(), FaceMode::kDetect, 0, false));
    for (const AlignedFace& face : found.faces) FillFace(face, response->add_faces());
    response->set_image_width(found.image_width);
    response->set_image_height(found.image_height);
    return absl::OkStatus();
  });
}

grpc::Status FaceService::Embed(grpc::ServerContext* context, const v1::EmbedRequest* request,
                                v1::EmbedResponse* response) {
  return Serve("Embed", context, false, [&]() -> Status {
    FACEID_RETURN_IF_ERROR(CheckFaceSelection(request->face_selection()));
    FACEID_RETURN_IF_ERROR(CheckImageSize(request->image(), options_.max_image_bytes, "image"));
    FACEID_ASSIGN_OR_RETURN(PipelineResult found,
                            finder_->Find(request->image(), ModeOf(request->input_is_face_crop()),
                                          MaxFacesOf(request->face_selection()), false));
    std::vector<cv::Mat> crops;
    for (const AlignedFace& face : found.faces) crops.push_back(face.crop);
    FACEID_ASSIGN_OR_RETURN(std::vector<std::vector<float>> embeddings, embedder_->Embed(crops));
    for (std::size_t i = 0; i < found.faces.size(); ++i) {
      v1::EmbeddedFace* out = response->add_faces();
      FillFace(found.faces[i], out->mutable_face());
      out->mutable_embedding()->Add(embeddings[i].begin(), embeddings[i].end());
    }
    response->set_model_version(embedder_->info().version);
    response->set_embedding_dim(embedder_->info().network.embedding_dim);
    return absl::OkStatus();
  });
}

grpc::Status FaceService::UpdatePerson(grpc::ServerContext* context,
                                       const v1::UpdatePersonRequest* request,
                                       v1::Person* response) {
  return Serve("UpdatePerson", context, true, [&]() -> Status {
    FACEID_ASSIGN_OR_RETURN(const std::string gallery, GalleryName(request->gallery()));
    FACEID_RETURN_IF_ERROR(CheckExternalId(request->external_id()));
    FACEID_RETURN_IF_ERROR(CheckMetadata(request->metadata(), /*removing_allowed=*/true));
    std::optional<std::string> display_name;
    if (request->display_name_update_case() == v1::UpdatePersonRequest::kDisplayName) {
      FACEID_RETURN_IF_ERROR(CheckDisplayName(request->display_name()));
      display_name = request->display_name();
    }
    std::map<std::string, std::string> metadata(request->metadata().begin(),
                                                request->metadata().end());
    FACEID_ASSIGN_OR_RETURN(
        PersonRow person,
        galleries_->store().UpdatePerson(gallery, request->external_id(), display_name, metadata,
                                         request->replace_metadata(), kMaxMetadataKeys));
    FillPerson(person, true, response);
    return absl::OkStatus();
  });
}

grpc::Status FaceService::DeletePerson(grpc::ServerContext* context,
                                       const v1::DeletePersonRequest* request,
                                       v1::DeletePersonResponse* response) {
  return Serve("DeletePerson", context, true, [&]() -> Status {
    FACEID_ASSIGN_OR_RETURN(const std::string gallery, GalleryName(request->gallery()));
    FACEID_RETURN_IF_ERROR(CheckExternalId(request->external_id()));
    FACEID_ASSIGN_OR_RETURN(DeletedFaces deleted,
                            galleries_->DeletePerson(gallery, request->external_id()));
    response->set_faces_deleted(static_cast<int>(deleted.face_ids.size()));
    return absl::OkStatus();
  });
}

grpc::Status FaceService::DeleteFace(grpc::ServerContext* context,
                                     const v1::DeleteFaceRequest* request,
                                     v1::DeleteFaceResponse* response) {
  return Serve("DeleteFace", context, true, [&]() -> Status {
    FACEID_ASSIGN_OR_RETURN(const std::string gallery, GalleryName(request->gallery()));
    if (request->face_id() <= 0) return absl::InvalidArgumentError("face_id must be positive");
    FACEID_ASSIGN_OR_RETURN(std::string external_id,
                            galleries_->DeleteFace(gallery, request->face_id()));
    response->set_external_id(external_id);
    return absl::OkStatus();
  });
}

grpc::Status FaceService::ListPeople(grpc::ServerContext* context,
                                     const v1::ListPeopleRequest* request,
                                     v1::ListPeopleResponse* response) {
  return Serve("ListPeople", context, true, [&]() -> Status {
    FACEID_ASSIGN_OR_RETURN(const std::string gallery, GalleryName(request->gallery()));
    const int page_size = request->page_size() == 0 ? kDefaultPageSize : request->page_size();
    if (page_size < 1 || page_size > kMaxPageSize) {
      return absl::InvalidArgumentError("page_size must be within 1..1000 (0 means 100)");
    }
    std::string after;
    if (!request->page_token().empty()) {
      FACEID_ASSIGN_OR_RETURN(after, ParsePageToken(request->page_token(), gallery));
    }
    // One extra row tells whether another page follows.
    std::int64_t total = 0;
    FACEID_ASSIGN_OR_RETURN(std::vector<PersonRow> people,
                            galleries_->store().ListPeople(gallery, after, page_size + 1, &total));
    const bool more = static_cast<int>(people.size()) > page_size;
    if (more) people.pop_back();
    for (const PersonRow& person : people) FillPerson(person, false, response->add_people());
    if (more) response->set_next_page_token(MakePageToken(gallery, people.back().external_id));
    response->set_total_people(total);
    return absl::OkStatus();
  });
}

grpc::Status FaceService::GetPerson(grpc::ServerContext* context,
                                    const v1::GetPersonRequest* request, v1::Person* response) {
  return Serve("GetPerson", context, true, [&]() -> Status {
    FACEID_ASSIGN_OR_RETURN(const std::string gallery, GalleryName(request->gallery()));
    FACEID_RETURN_IF_ERROR(CheckExternalId(request->external_id()));
    FACEID_ASSIGN_OR_RETURN(PersonRow person,
                            galleries_->store().GetPerson(gallery, request->external_id()));
    FillPerson(person, true, response);
    return absl::OkStatus();
  });
}

grpc::Status FaceService::ListGalleries(grpc::ServerContext* context,
                                        const v1::ListGalleriesRequest*,
                                        v1::ListGalleriesResponse* response) {
  return Serve("ListGalleries", context, true, [&]() -> Status {
    FACEID_ASSIGN_OR_RETURN(std::vector<GalleryCounts> galleries,
                            galleries_->store().ListGalleries());
    for (const GalleryCounts& counts : galleries) {
      v1::GalleryInfo* info = response->add_galleries();
      info->set_name(counts.name);
      info->set_people(counts.people);
      info->set_faces(counts.faces);
    }
    return absl::OkStatus();
  });
}

grpc::Status FaceService::DeleteGallery(grpc::ServerContext* context,
                                        const v1::DeleteGalleryRequest* request,
                                        v1::DeleteGalleryResponse* response) {
  return Serve("DeleteGallery", context, true, [&]() -> Status {
    if (request->gallery().empty()) {
      return absl::InvalidArgumentError("gallery is required (use \"default\" to empty it)");
    }
    FACEID_ASSIGN_OR_RETURN(const std::string gallery, GalleryName(request->gallery()));
    FACEID_ASSIGN_OR_RETURN(DeletedFaces deleted, galleries_->DeleteGallery(gallery));
    response->set_people_deleted(deleted.people);
    response->set_faces_deleted(static_cast<std::int64_t>(deleted.face_ids.size()));
    return absl::OkStatus();
  });
}

grpc::Status FaceService::Info(grpc::ServerContext* context, const v1::InfoRequest*,
                               v1::InfoResponse* response) {
  return Serve("Info", context, false, [&]() -> Status {
    response->set_server_version(FACEID_VERSION);
    FillModelInfo(embedder_->info(), response->mutable_model());
    response->set_index_type(IndexTypeName(galleries_->index_type()));
    FACEID_ASSIGN_OR_RETURN(std::vector<GalleryCounts> galleries,
                            galleries_->store().ListGalleries());
    std::int64_t total = 0;
    for (const GalleryCounts& counts : galleries) {
      v1::GalleryInfo* info = response->add_galleries();
      info->set_name(counts.name);
      info->set_people(counts.people);
      info->set_faces(counts.faces);
      total += counts.faces;
    }
    response->set_total_faces(total);
    response->set_max_image_bytes(options_.max_image_bytes);
    response->set_max_images_per_request(kMaxEnrollImages);
    response->set_device(embedder_->device());
    return absl::OkStatus();
  });
}

}  // namespace faceid
