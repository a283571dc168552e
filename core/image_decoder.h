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
  // width * height declared by the header; also bounds a TIFF's declared tile
  // (TileWidth * TileLength) and strip (ImageWidth * RowsPerStrip), which the decoder
  // allocates whole, whatever the image size.
  std::int64_t max_pixels = 40'000'000;
  int min_side_px = 16;  // smaller images are refused as too small
  // JPEG scans (SOS markers). Baseline files have 1 to 3, progressive ones about 10 (libjpeg
  // writes 10 for colour, 6 for grey); every scan of a progressive JPEG is a pass over the
  // whole image, so a large JPEG with thousands of tiny appended scans burns seconds of CPU
  // per upload (a "scan bomb"). Counted from the markers before anything is decoded.
  int max_jpeg_scans = 100;
};

struct DecodedImage {
  cv::Mat bgr;                 // CV_8UC3, upright
  std::string format;          // "jpeg", "png", "bmp", "webp", "pnm", "tiff"
  int exif_orientation = 1;    // 1..8 as found in the file (1 when absent)
};

// Errors (all INVALID_ARGUMENT unless said): empty input; not an image / unsupported format
// (magic bytes, or 32-bit / float samples); truncated or corrupt data (including a JPEG
// without its end-of-image marker, which libjpeg would silently pad with grey);
// a JPEG with more than max_jpeg_scans scans; RESOURCE_EXHAUSTED when bytes or
// header-declared pixels exceed `limits` (checked before any pixel buffer exists; for TIFF
// also a tile or strip larger than max_pixels, or a tile out of proportion to the image, see
// image_decoder.cc) or when memory runs out; image smaller than min_side_px on
// either side. The EXIF orientation comes from JPEG APP1, PNG eXIf, WebP EXIF or the TIFF
// Orientation tag. No exception escapes.
StatusOr<DecodedImage> DecodeImage(std::string_view bytes, const DecodeLimits& limits = {});

}  // namespace faceid
