// FaceFinder: image bytes -> aligned faces, the step of a request before embedding.
//
// The service depends on this interface rather than on FacePipeline itself, so its tests can
// run with a fake finder and without the dlib models. PipelineFaceFinder is the production
// implementation over core's FacePipeline. Implementations are thread-safe.
#pragma once

#include <string_view>

#include "core/face_pipeline.h"
#include "core/status.h"

namespace faceid {

class FaceFinder {
 public:
  virtual ~FaceFinder() = default;

  // As FacePipeline::Process: decodes `bytes`, returns its faces largest first (at most
  // `max_faces`, 0 = all); `for_enrollment` drops faces too small to enroll. No face is OK
  // with an empty list; decode errors (INVALID_ARGUMENT, RESOURCE_EXHAUSTED) pass through.
  virtual StatusOr<PipelineResult> Find(std::string_view bytes, FaceMode mode, int max_faces,
                                        bool for_enrollment) const = 0;
};

// FaceFinder over a FacePipeline, which must outlive it.
class PipelineFaceFinder final : public FaceFinder {
 public:
  explicit PipelineFaceFinder(const FacePipeline& pipeline) : pipeline_(pipeline) {}
  StatusOr<PipelineResult> Find(std::string_view bytes, FaceMode mode, int max_faces,
                                bool for_enrollment) const override;

 private:
  const FacePipeline& pipeline_;
};

}  // namespace faceid
