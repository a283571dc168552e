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
  // JPEG only: start-of-scan (SOS) markers before the end-of-image marker. Baseline JPEGs
  // have 1 (or one per component), progressive ones about 10; each scan costs a pass over
  // the whole coefficient buffer, so thousands of tiny scans are a CPU "scan bomb".
  int jpeg_scan_count = 0;
  // TIFF only, 0 when the tag is absent: TileWidth (322) and TileLength (323), or
  // RowsPerStrip (278; 0xFFFFFFFF means "one strip"). The decoder allocates a whole tile or
  // strip at once, so these are bounded as well as width x height.
  std::int64_t tiff_tile_width = 0;
  std::int64_t tiff_tile_length = 0;
  std::int64_t tiff_rows_per_strip = 0;
};

// Reads format, declared size and EXIF orientation from the first bytes of `bytes`.
// JPEG: SOFn marker and APP1 "Exif", then the marker segments after the first scan are
// walked (entropy-coded data skipped, no decoding) to count the scans; PNG: IHDR and eXIf;
// WebP: VP8/VP8L/VP8X and EXIF chunks; BMP: BITMAPINFOHEADER or OS/2 core header; PNM
// (P1..P6): header tokens, '#' comments skipped; TIFF: IFD0 tags 256, 257, 274, 278, 322, 323.
// Errors: INVALID_ARGUMENT "empty", "not a supported image format" (unknown magic bytes),
// "truncated or corrupt header" (the header ends early or declares a zero size).
StatusOr<ImageHeader> ReadImageHeader(std::string_view bytes);

// Orientation value (1..8) from a TIFF-structured EXIF block (starting at "II*\0" or
// "MM\0*", optionally preceded by "Exif\0\0"). 1 when the tag is missing or the block is
// malformed: a broken EXIF block never makes an image undecodable.
int ExifOrientationFromTiff(std::string_view tiff);

}  // namespace faceid
