#include "core/image_header.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace faceid {
namespace {

// Bounds-checked little/big-endian reads: nullopt when [pos, pos + n) is not inside `s`.
std::optional<std::uint32_t> ReadUint(std::string_view s, std::size_t pos, int n,
                                      bool big_endian) {
  if (pos > s.size() || s.size() - pos < static_cast<std::size_t>(n)) return std::nullopt;
  std::uint32_t v = 0;
  for (int i = 0; i < n; ++i) {
    const auto byte = static_cast<std::uint8_t>(s[pos + (big_endian ? i : n - 1 - i)]);
    v = (v << 8) | byte;
  }
  return v;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

Status Truncated(const char* format) {
  return absl::InvalidArgumentError(std::string("truncated or corrupt ") + format +
                                    " header: the file ends early or declares no pixels");
}

// TIFF IFD0 lookup of a SHORT or LONG tag; nullopt when absent or malformed.
std::optional<std::uint32_t> TiffTag(std::string_view tiff, std::uint16_t wanted) {
  bool big_endian;
  if (StartsWith(tiff, std::string_view("II*\0", 4))) {
    big_endian = false;
  } else if (StartsWith(tiff, std::string_view("MM\0*", 4))) {
    big_endian = true;
  } else {
    return std::nullopt;
  }
  const auto ifd = ReadUint(tiff, 4, 4, big_endian);
  if (!ifd) return std::nullopt;
  const auto count = ReadUint(tiff, *ifd, 2, big_endian);
  if (!count) return std::nullopt;
  for (std::uint32_t i = 0; i < *count; ++i) {
    const std::size_t entry = static_cast<std::size_t>(*ifd) + 2 + 12 * i;
    const auto tag = ReadUint(tiff, entry, 2, big_endian);
    const auto type = ReadUint(tiff, entry + 2, 2, big_endian);
    if (!tag || !type) return std::nullopt;
    if (*tag != wanted) continue;
    // Values of 4 bytes or fewer sit in the entry itself, left-justified.
    if (*type == 3) return ReadUint(tiff, entry + 8, 2, big_endian);  // SHORT
    if (*type == 4) return ReadUint(tiff, entry + 8, 4, big_endian);  // LONG
    return std::nullopt;
  }
  return std::nullopt;
}

// Number of SOS markers from the first one (at `sos`, pointing at its 0xFF) to the first EOI
// or the end of `s`. Between markers lie either marker segments (skipped by their length) or
// entropy-coded data, which cannot contain a marker: there 0xFF is followed by 0x00 (a
// stuffed byte), 0xD0..0xD7 (a restart marker, part of the scan) or more 0xFF fill bytes.
// Anything else after 0xFF is the next marker. Linear in the size of `s`, no allocation.
int CountJpegScans(std::string_view s, std::size_t sos) {
  int scans = 0;
  std::size_t pos = sos;  // always at a 0xFF that starts a marker
  while (pos + 1 < s.size()) {
    const auto marker = static_cast<std::uint8_t>(s[pos + 1]);
    if (marker == 0xD9) break;  // end of image
    if (marker == 0xDA) ++scans;
    std::size_t next = pos + 2;
    const bool standalone = marker == 0x01 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7);
    if (!standalone) {
      const auto length = ReadUint(s, next, 2, true);
      if (!length || *length < 2) break;
      next += *length;
    }
    // Find the next marker: 0xFF followed by a byte that is not 0x00, 0xFF or RST0..RST7.
    pos = std::string_view::npos;
    while (next < s.size()) {
      const std::size_t ff = s.find('\xFF', next);
      if (ff == std::string_view::npos || ff + 1 >= s.size()) break;
      const auto after = static_cast<std::uint8_t>(s[ff + 1]);
      if (after != 0x00 && after != 0xFF && !(after >= 0xD0 && after <= 0xD7)) {
        pos = ff;
        break;
      }
      next = ff + 1;
    }
    if (pos == std::string_view::npos) break;
  }
  return scans;
}

StatusOr<ImageHeader> ReadJpeg(std::string_view s) {
  ImageHeader h;
  h.format = "jpeg";
  std::size_t pos = 2;
  bool have_size = false;
  while (true) {
    // Markers may be preceded by any number of 0xFF fill bytes.
    while (pos < s.size() && static_cast<std::uint8_t>(s[pos]) == 0xFF) ++pos;
    if (pos >= s.size() || pos < 3 || static_cast<std::uint8_t>(s[pos - 1]) != 0xFF) break;
    const auto marker = static_cast<std::uint8_t>(s[pos]);
    ++pos;
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) continue;
    if (marker == 0xDA) h.jpeg_scan_offset = pos - 2;
    if (marker == 0xD9 || marker == 0xDA) break;  // end of image / start of scan
    const auto length = ReadUint(s, pos, 2, true);
    if (!length || *length < 2) break;
    const bool is_sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 &&
                        marker != 0xCC;
    if (is_sof && !have_size) {  // libjpeg refuses a second SOF, so the first one counts
      const auto height = ReadUint(s, pos + 3, 2, true);
      const auto width = ReadUint(s, pos + 5, 2, true);
      if (!height || !width) break;
      h.height = *height;
      h.width = *width;
      have_size = true;
    } else if (marker == 0xE1 && h.exif_orientation == 1 && pos + 2 <= s.size()) {
      const std::string_view body = s.substr(pos + 2, *length - 2);
      if (StartsWith(body, std::string_view("Exif\0\0", 6))) {
        h.exif_orientation = ExifOrientationFromTiff(body);
      }
    }
    pos += *length;
  }
  if (!have_size || h.width == 0 || h.height == 0) return Truncated("JPEG");
  if (h.jpeg_scan_offset > 0) h.jpeg_scan_count = CountJpegScans(s, h.jpeg_scan_offset);
  return h;
}

StatusOr<ImageHeader> ReadPng(std::string_view s) {
  ImageHeader h;
  h.format = "png";
  const auto ihdr_len = ReadUint(s, 8, 4, true);
  if (!ihdr_len || s.substr(12, 4) != "IHDR") return Truncated("PNG");
  const auto width = ReadUint(s, 16, 4, true);
  const auto height = ReadUint(s, 20, 4, true);
  if (!width || !height || *width == 0 || *height == 0) return Truncated("PNG");
  h.width = *width;
  h.height = *height;
  // Walk the chunks for eXIf; the walk stops at IEND or at the first malformed length.
  std::size_t pos = 8;
  while (true) {
    const auto len = ReadUint(s, pos, 4, true);
    if (!len || pos + 12 + static_cast<std::size_t>(*len) > s.size()) break;
    const std::string_view type = s.substr(pos + 4, 4);
    if (type == "eXIf") h.exif_orientation = ExifOrientationFromTiff(s.substr(pos + 8, *len));
    if (type == "IEND") break;
    pos += 12 + static_cast<std::size_t>(*len);
  }
  return h;
}

StatusOr<ImageHeader> ReadWebp(std::string_view s) {
  ImageHeader h;
  h.format = "webp";
  std::size_t pos = 12;
  bool have_size = false;
  while (true) {
    const auto len = ReadUint(s, pos + 4, 4, false);
    if (!len || pos + 8 > s.size()) break;
    const std::string_view type = s.substr(pos, 4);
    const std::size_t body = pos + 8;
    if (type == "VP8X") {
      const auto w = ReadUint(s, body + 4, 3, false);
      const auto hh = ReadUint(s, body + 7, 3, false);
      if (!w || !hh) break;
      h.width = static_cast<std::int64_t>(*w) + 1;
      h.height = static_cast<std::int64_t>(*hh) + 1;
      have_size = true;
    } else if (type == "VP8 " && !have_size) {
      // 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height.
      const auto w = ReadUint(s, body + 6, 2, false);
      const auto hh = ReadUint(s, body + 8, 2, false);
      if (!w || !hh || s.substr(body + 3, 3) != "\x9d\x01\x2a") break;
      h.width = *w & 0x3FFF;
      h.height = *hh & 0x3FFF;
      have_size = true;
    } else if (type == "VP8L" && !have_size) {
      const auto bits = ReadUint(s, body + 1, 4, false);
      if (!bits || static_cast<std::uint8_t>(s[body]) != 0x2F) break;
      h.width = static_cast<std::int64_t>(*bits & 0x3FFF) + 1;
      h.height = static_cast<std::int64_t>((*bits >> 14) & 0x3FFF) + 1;
      have_size = true;
    } else if (type == "EXIF" && body <= s.size()) {
      h.exif_orientation = ExifOrientationFromTiff(s.substr(body, *len));
    }
    pos = body + *len + (*len & 1);  // chunks are padded to an even size
    if (pos >= s.size()) break;
  }
  if (!have_size || h.width == 0 || h.height == 0) return Truncated("WebP");
  return h;
}

StatusOr<ImageHeader> ReadBmp(std::string_view s) {
  ImageHeader h;
  h.format = "bmp";
  const auto dib_size = ReadUint(s, 14, 4, false);
  if (!dib_size) return Truncated("BMP");
  if (*dib_size == 12) {  // OS/2 core header: unsigned 16-bit sizes
    const auto w = ReadUint(s, 18, 2, false);
    const auto hh = ReadUint(s, 20, 2, false);
    if (!w || !hh) return Truncated("BMP");
    h.width = *w;
    h.height = *hh;
  } else {  // signed 32-bit sizes; a negative height means rows stored top-down
    const auto w = ReadUint(s, 18, 4, false);
    const auto hh = ReadUint(s, 22, 4, false);
    if (!w || !hh) return Truncated("BMP");
    h.width = std::abs(static_cast<std::int64_t>(static_cast<std::int32_t>(*w)));
    h.height = std::abs(static_cast<std::int64_t>(static_cast<std::int32_t>(*hh)));
  }
  if (h.width == 0 || h.height == 0) return Truncated("BMP");
  return h;
}

StatusOr<ImageHeader> ReadPnm(std::string_view s) {
  ImageHeader h;
  h.format = "pnm";
  std::size_t pos = 2;
  std::int64_t values[2] = {0, 0};
  for (std::int64_t& value : values) {
    while (pos < s.size()) {
      if (s[pos] == '#') {
        while (pos < s.size() && s[pos] != '\n' && s[pos] != '\r') ++pos;
      } else if (std::isspace(static_cast<unsigned char>(s[pos]))) {
        ++pos;
      } else {
        break;
      }
    }
    const std::size_t start = pos;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos])) &&
           pos - start < 10) {
      value = value * 10 + (s[pos] - '0');
      ++pos;
    }
    if (pos == start || pos >= s.size()) return Truncated("PNM");
  }
  h.width = values[0];
  h.height = values[1];
  if (h.width == 0 || h.height == 0) return Truncated("PNM");
  return h;
}

StatusOr<ImageHeader> ReadTiff(std::string_view s) {
  ImageHeader h;
  h.format = "tiff";
  const auto w = TiffTag(s, 256);
  const auto hh = TiffTag(s, 257);
  if (!w || !hh || *w == 0 || *hh == 0) return Truncated("TIFF");
  h.width = *w;
  h.height = *hh;
  const auto orientation = TiffTag(s, 274);
  if (orientation && *orientation >= 1 && *orientation <= 8) {
    h.exif_orientation = static_cast<int>(*orientation);
  }
  h.tiff_tile_width = TiffTag(s, 322).value_or(0);
  h.tiff_tile_length = TiffTag(s, 323).value_or(0);
  h.tiff_rows_per_strip = TiffTag(s, 278).value_or(0);
  return h;
}

}  // namespace

int ExifOrientationFromTiff(std::string_view tiff) {
  if (StartsWith(tiff, std::string_view("Exif\0\0", 6))) tiff.remove_prefix(6);
  const auto value = TiffTag(tiff, 0x0112);
  if (!value || *value < 1 || *value > 8) return 1;
  return static_cast<int>(*value);
}

StatusOr<ImageHeader> ReadImageHeader(std::string_view s) {
  if (s.empty()) return absl::InvalidArgumentError("empty image: the upload has 0 bytes");
  if (StartsWith(s, "\xFF\xD8\xFF")) return ReadJpeg(s);
  if (StartsWith(s, "\x89PNG\r\n\x1A\n")) return ReadPng(s);
  if (StartsWith(s, "RIFF") && s.size() >= 12 && s.substr(8, 4) == "WEBP") return ReadWebp(s);
  if (StartsWith(s, "BM")) return ReadBmp(s);
  if (s.size() >= 2 && s[0] == 'P' && s[1] >= '1' && s[1] <= '6') return ReadPnm(s);
  if (StartsWith(s, std::string_view("II*\0", 4)) || StartsWith(s, std::string_view("MM\0*", 4))) {
    return ReadTiff(s);
  }
  return absl::InvalidArgumentError(
      "not a supported image format: expected JPEG, PNG, BMP, WebP, PGM/PPM or TIFF");
}

}  // namespace faceid
