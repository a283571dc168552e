#include "core/image_decoder.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <new>
#include <string>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/image_header.h"

namespace faceid {
namespace {

constexpr int kAlphaBackground = 128;  // neutral grey behind transparent pixels

// A TIFF tile may exceed the image it covers (a 100x100 image in one 256x256 tile is normal),
// but not by much: a tile larger than both kMaxTileToImageRatio times the image area and
// kTileAreaAlwaysAllowed pixels (1024x1024, so small images with usual tiles pass) is
// refused, even under max_pixels. OpenCV allocates a whole tile at once, so this keeps a tiny
// file from costing more memory than the image it declares.
constexpr std::int64_t kMaxTileToImageRatio = 4;
constexpr std::int64_t kTileAreaAlwaysAllowed = 1024 * 1024;

// a * b without overflow: header sizes are unsigned 32-bit values (PNG, TIFF), whose product
// does not fit an int64 (a TIFF declaring 2^32-1 squared would wrap negative and pass).
std::uint64_t Area(std::int64_t a, std::int64_t b) {
  return static_cast<std::uint64_t>(std::max<std::int64_t>(a, 0)) *
         static_cast<std::uint64_t>(std::max<std::int64_t>(b, 0));
}

// TIFF tiles and strips are decoded into one buffer each, allocated from the tags alone, so
// a 100x100 image declaring 12288x12288 tiles costs 590 MB before anything fails. OK when
// the declared tile or strip is within `limits` (see kMaxTileToImageRatio).
Status CheckTiffLayout(const ImageHeader& h, const DecodeLimits& limits) {
  const auto refuse = [&](const std::string& what, std::int64_t w, std::int64_t rows,
                          const std::string& limit) {
    return absl::ResourceExhaustedError("image too large: tiff declares " + what + " of " +
                                        std::to_string(w) + "x" + std::to_string(rows) +
                                        " pixels for a " + std::to_string(h.width) + "x" +
                                        std::to_string(h.height) + " image, the limit is " + limit);
  };
  const std::string pixel_limit = std::to_string(limits.max_pixels) + " pixels";
  if (h.tiff_tile_width > 0 || h.tiff_tile_length > 0) {
    const std::uint64_t tile = Area(h.tiff_tile_width, h.tiff_tile_length);
    if (tile > Area(limits.max_pixels, 1)) {
      return refuse("tiles", h.tiff_tile_width, h.tiff_tile_length, pixel_limit);
    }
    if (tile > Area(kTileAreaAlwaysAllowed, 1) &&
        tile > Area(kMaxTileToImageRatio, h.width * h.height)) {
      return refuse("tiles", h.tiff_tile_width, h.tiff_tile_length,
                    std::to_string(kMaxTileToImageRatio) + "x the image area");
    }
    return absl::OkStatus();
  }
  // RowsPerStrip counts as declared, not clamped to the image height: OpenCV 4.6 sizes its
  // strip buffer from it (100x100 pixels in strips of 2,000,000 rows ask for 800 MB).
  // 0xFFFFFFFF (libtiff's default) means one strip holding the whole image.
  if (h.tiff_rows_per_strip > 0 && h.tiff_rows_per_strip != 0xFFFFFFFF &&
      Area(h.width, h.tiff_rows_per_strip) > Area(limits.max_pixels, 1)) {
    return refuse("strips", h.width, h.tiff_rows_per_strip, pixel_limit);
  }
  return absl::OkStatus();
}

// EXIF orientation -> upright, the same transforms OpenCV's IMREAD_COLOR path applies.
cv::Mat ApplyOrientation(const cv::Mat& img, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2: cv::flip(img, out, 1); break;                                   // mirrored
    case 3: cv::flip(img, out, -1); break;                                  // 180
    case 4: cv::flip(img, out, 0); break;                                   // upside-down mirror
    case 5: cv::transpose(img, out); break;                                 // transpose
    case 6: cv::transpose(img, out); cv::flip(out, out, 1); break;          // 90 CW
    case 7: cv::transpose(img, out); cv::flip(out, out, -1); break;         // transverse
    case 8: cv::transpose(img, out); cv::flip(out, out, 0); break;          // 90 CCW
    default: out = img; break;
  }
  return out;
}

// Any 8-bit 1..4 channel image -> BGR, alpha composited on kAlphaBackground.
cv::Mat ToBgr(const cv::Mat& img8) {
  cv::Mat bgr;
  switch (img8.channels()) {
    case 1: cv::cvtColor(img8, bgr, cv::COLOR_GRAY2BGR); return bgr;
    case 3: return img8;
    default: break;
  }
  cv::Mat bgra;
  if (img8.channels() == 2) {  // grey + alpha
    cv::Mat planes[2];
    cv::split(img8, planes);
    cv::Mat merged[4] = {planes[0], planes[0], planes[0], planes[1]};
    cv::merge(merged, 4, bgra);
  } else {
    bgra = img8;
  }
  bgr.create(bgra.rows, bgra.cols, CV_8UC3);
  for (int y = 0; y < bgra.rows; ++y) {
    const cv::Vec4b* src = bgra.ptr<cv::Vec4b>(y);
    cv::Vec3b* dst = bgr.ptr<cv::Vec3b>(y);
    for (int x = 0; x < bgra.cols; ++x) {
      const int a = src[x][3];
      for (int c = 0; c < 3; ++c) {
        dst[x][c] = static_cast<uchar>((src[x][c] * a + kAlphaBackground * (255 - a) + 127) / 255);
      }
    }
  }
  return bgr;
}

// A JPEG cut short still decodes (libjpeg pads the missing rows with grey), so truncation is
// detected here: entropy-coded data cannot contain FF D9, so the end-of-image marker must
// follow the first scan.
bool JpegHasEndMarker(std::string_view bytes, std::size_t scan_offset) {
  return scan_offset > 0 && bytes.find("\xFF\xD9", scan_offset) != std::string_view::npos;
}

StatusOr<DecodedImage> DecodeChecked(std::string_view bytes, const DecodeLimits& limits) {
  // imdecode takes an int length, so 2 GiB is a hard limit whatever the configuration.
  if (bytes.size() > limits.max_image_bytes ||
      bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    return absl::ResourceExhaustedError("image too large: " + std::to_string(bytes.size()) +
                                        " bytes, the limit is " +
                                        std::to_string(limits.max_image_bytes) + " bytes");
  }
  FACEID_ASSIGN_OR_RETURN(const ImageHeader header, ReadImageHeader(bytes));
  const std::string dims = std::to_string(header.width) + "x" + std::to_string(header.height);
  if (Area(header.width, header.height) > Area(limits.max_pixels, 1)) {
    return absl::ResourceExhaustedError("image too large: " + header.format + " declares " +
                                        dims + " pixels, the limit is " +
                                        std::to_string(limits.max_pixels) + " pixels");
  }
  if (header.width < limits.min_side_px || header.height < limits.min_side_px) {
    return absl::InvalidArgumentError("image too small: " + dims + " pixels, each side must be " +
                                      "at least " + std::to_string(limits.min_side_px) + " px");
  }
  if (header.format == "tiff") FACEID_RETURN_IF_ERROR(CheckTiffLayout(header, limits));
  if (header.format == "jpeg" && header.jpeg_scan_count > limits.max_jpeg_scans) {
    return absl::InvalidArgumentError(
        "JPEG has " + std::to_string(header.jpeg_scan_count) + " scans (more than " +
        std::to_string(limits.max_jpeg_scans) +
        "): refused as a decoding bomb; re-save the photo as a baseline or ordinary "
        "progressive JPEG");
  }
  if (header.format == "jpeg" && !JpegHasEndMarker(bytes, header.jpeg_scan_offset)) {
    return absl::InvalidArgumentError("truncated or corrupt JPEG data: no end-of-image marker "
                                      "after the image data (incomplete upload?)");
  }

  // IMREAD_UNCHANGED keeps alpha and 16-bit samples and does not apply EXIF orientation for
  // JPEG, PNG or WebP, so the orientation read from the header is applied below, once.
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1,
                        const_cast<char*>(bytes.data()));
  cv::Mat raw = cv::imdecode(encoded, cv::IMREAD_UNCHANGED);
  if (raw.empty()) {
    return absl::InvalidArgumentError("truncated or corrupt " + header.format +
                                      " data: the decoder could not read the pixels");
  }
  if (static_cast<std::int64_t>(raw.total()) > limits.max_pixels) {
    return absl::ResourceExhaustedError("image too large after decoding: " +
                                        std::to_string(raw.cols) + "x" + std::to_string(raw.rows));
  }

  cv::Mat img8;
  if (raw.depth() == CV_8U) {
    img8 = raw;
  } else if (raw.depth() == CV_16U) {
    raw.convertTo(img8, CV_8U, 1.0 / 257.0);
  } else {
    return absl::InvalidArgumentError("unsupported " + header.format + " sample format (" +
                                      std::to_string(raw.elemSize1() * 8) +
                                      "-bit signed or floating point): use 8- or 16-bit images");
  }
  if (img8.channels() < 1 || img8.channels() > 4) {
    return absl::InvalidArgumentError("unsupported " + header.format + " with " +
                                      std::to_string(img8.channels()) + " channels");
  }

  DecodedImage out;
  out.format = header.format;
  out.exif_orientation = header.exif_orientation;
  // OpenCV's TIFF decoder already honours the TIFF Orientation tag, even with
  // IMREAD_UNCHANGED (tested for 8/16-bit, grey and colour), so TIFF is not turned again.
  const int to_apply = header.format == "tiff" ? 1 : header.exif_orientation;
  out.bgr = ApplyOrientation(ToBgr(img8), to_apply);
  if (!out.bgr.isContinuous()) out.bgr = out.bgr.clone();
  return out;
}

}  // namespace

StatusOr<DecodedImage> DecodeImage(std::string_view bytes, const DecodeLimits& limits) {
  try {
    return DecodeChecked(bytes, limits);
  } catch (const cv::Exception& e) {
    if (e.code == cv::Error::StsNoMem) {
      return absl::ResourceExhaustedError("out of memory while decoding the image");
    }
    return absl::InvalidArgumentError(std::string("corrupt image: OpenCV failed: ") + e.what());
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while decoding the image");
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("image decoding failed: ") + e.what());
  }
}

}  // namespace faceid
