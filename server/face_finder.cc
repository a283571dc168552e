#include "server/face_finder.h"

namespace faceid {

StatusOr<PipelineResult> PipelineFaceFinder::Find(std::string_view bytes, FaceMode mode,
                                                  int max_faces, bool for_enrollment) const {
  return pipeline_.Process(bytes, mode, max_faces, for_enrollment);
}

}  // namespace faceid
