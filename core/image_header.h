// ImageHeader: what an encoded image declares about itself, read without decoding pixels.
//
// DecodeImage() uses it to refuse oversized images (a "decompression bomb": a few hundred
// bytes that declare 50000 x 50000 pixels) before any pixel buffer exists, and to find the
// EXIF orientation itself, so that the orientation is applied exactly once whatever OpenCV
// does. Only the bytes of the header (and metadata segments) are read; every offset is
// bounds-checked, so hostile input gives an error, never a read past the end.
// Stateless and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace faceid {

struct ImageHeader {
  std::string format;        // "jpeg", "png", "bmp", "webp", "pnm", "tiff"
  std::int64_t width = 0;    // pixels, as stored (before EXIF orientation)
  std::int64_t height = 0;
  int exif_orientation = 1;  // 1..8; 1 when absent or out of range
  std::size_t jpeg_scan_offset = 0;  // JPEG only: byte offset of the first SOS marker
};

// Reads format, declared size and EXIF orientation from the first bytes of `bytes`.
// JPEG: SOFn marker and APP1 "Exif"; PNG: IHDR and eXIf; WebP: VP8/VP8L/VP8X and EXIF
// chunks; BMP: BITMAPINFOHEADER or OS/2 core header; PNM (P1..P6): header tokens, '#'
// comments skipped; TIFF: IFD0 tags 256, 257 and 274.
// Errors: INVALID_ARGUMENT "empty", "not a supported image format" (unknown magic bytes),
// "truncated or corrupt header" (the header ends early or declares a zero size).
StatusOr<ImageHeader> ReadImageHeader(std::string_view bytes);

// Orientation value (1..8) from a TIFF-structured EXIF block (starting at "II*\0" or
// "MM\0*", optionally preceded by "Exif\0\0"). 1 when the tag is missing or the block is
// malformed: a broken EXIF block never makes an image undecodable.
int ExifOrientationFromTiff(std::string_view tiff);

}  // namespace faceid
