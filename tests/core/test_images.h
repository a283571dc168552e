// Helpers for the core suites: read files, encode images, and hand-craft the header bytes
// (EXIF blocks, PNG chunks, declared sizes) that OpenCV cannot write. Test-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace faceid::testing {

std::string ReadFileBytes(const std::string& path);

// cv::imencode to a string; `ext` like ".png". Empty when encoding fails.
std::string Encode(const cv::Mat& img, const std::string& ext, const std::vector<int>& params = {});

// A TIFF-structured EXIF block ("Exif\0\0" + big-endian IFD0) holding only the orientation.
std::string ExifBlock(int orientation);

// Inserts an APP1 EXIF segment right after the JPEG's SOI marker.
std::string JpegWithOrientation(const std::string& jpeg, int orientation);

// Inserts an eXIf chunk right after the PNG's IHDR chunk (with a correct CRC).
std::string PngWithOrientation(const std::string& png, int orientation);

// PNG chunk with length and CRC.
std::string PngChunk(const std::string& type, const std::string& data);

// The stored image whose EXIF `orientation` displays as `upright` (the inverse transform).
cv::Mat StoreForOrientation(const cv::Mat& upright, int orientation);

// A CMYK JPEG (Adobe inverted, as Photoshop writes them) showing `bgr`, via libjpeg.
std::string EncodeCmykJpeg(const cv::Mat& bgr, int quality);

// PNG written with libpng, for the colour types OpenCV does not write: colour_type
// PNG_COLOR_TYPE_PALETTE (from a CV_8UC3 image with at most 256 colours, alpha[i] for palette
// entry i via tRNS when `palette_alpha` is not empty) or PNG_COLOR_TYPE_GRAY_ALPHA (from a
// CV_8UC2 grey+alpha image). Empty on failure.
std::string EncodePalettePng(const cv::Mat& bgr, const std::vector<unsigned char>& palette_alpha);
std::string EncodeGreyAlphaPng(const cv::Mat& grey_alpha);

// Uncompressed TIFF written with libtiff (8- or 16-bit, grey or BGR), with the given
// Orientation tag (274).
std::string EncodeTiff(const cv::Mat& img, int orientation);

// TIFF written with libtiff in a chosen layout (8-bit, grey or BGR): tiled when
// `tile_width` > 0 (libtiff wants multiples of 16; tiles past the image edge are zero), else
// strips of `rows_per_strip` rows; deflate-compressed when `deflate`. With `write_pixels`
// false no pixel data is written, only the directory (tile/strip offsets of 0): enough for
// header-level checks on layouts whose pixel buffers would be huge. Empty on failure.
struct TiffLayout {
  int tile_width = 0;
  int tile_length = 0;
  std::uint32_t rows_per_strip = 0;  // strips only; 0: the whole image in one strip
  bool deflate = false;
  bool write_pixels = true;
};
std::string EncodeTiffLayout(const cv::Mat& img, const TiffLayout& layout);

// Wraps a simple (VP8 or VP8L) WebP in an extended one (VP8X) that carries an EXIF chunk.
std::string WebpWithOrientation(const std::string& webp, int width, int height,
                                int orientation);

}  // namespace faceid::testing
