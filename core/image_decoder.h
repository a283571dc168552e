// ImageDecoder: encoded image bytes -> upright 8-bit BGR image, or a clear error.
//
// Accepts JPEG (baseline, progressive, grey, CMYK), PNG (8/16-bit, grey, grey+alpha, RGBA,
// palette), BMP, WebP, PGM/PPM and TIFF. Applies the EXIF orientation exactly once, composites
// alpha on a neutral grey, scales 16-bit to 8-bit and expands grey to BGR. Limits are checked
// from the header before any pixel buffer is allocated. Stateless and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <opencv2/core.hpp>

#include "core/status.h"

namespace faceid {

struct DecodeLimits {
  std::size_t max_image_bytes = 16u << 20;  // encoded input size
  std::int64_t max_pixels = 40'000'000;     // width * height declared by the header
  int min_side_px = 16;                     // smaller images are refused as too small
};

struct DecodedImage {
  cv::Mat bgr;                 // CV_8UC3, upright
  std::string format;          // "jpeg", "png", "bmp", "webp", "pnm", "tiff"
  int exif_orientation = 1;    // 1..8 as found in the file (1 when absent)
};

// Errors (all INVALID_ARGUMENT unless said): empty input; not an image / unsupported format
// (magic bytes, or 32-bit / float samples); truncated or corrupt data (including a JPEG
// without its end-of-image marker, which libjpeg would silently pad with grey);
// RESOURCE_EXHAUSTED when bytes or header-declared pixels exceed `limits` (checked before
// any pixel buffer exists) or when memory runs out; image smaller than min_side_px on
// either side. The EXIF orientation comes from JPEG APP1, PNG eXIf, WebP EXIF or the TIFF
// Orientation tag. No exception escapes.
StatusOr<DecodedImage> DecodeImage(std::string_view bytes, const DecodeLimits& limits = {});

}  // namespace faceid
