#include "tests/core/test_images.h"

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include <jpeglib.h>
#include <png.h>
#include <tiffio.h>
#include <unistd.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace faceid::testing {
namespace {

std::uint32_t Crc32(const std::string& s) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : s) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xFFFFFFFFu;
}

std::string LittleEndian(std::uint32_t v, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return out;
}

void AppendToString(png_structp png, png_bytep data, png_size_t length) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<char*>(data), length);
}

// Writes `rows` (already in PNG sample layout) with libpng; `setup` sets IHDR/PLTE/tRNS.
template <typename Setup>
std::string WritePng(int height, const std::vector<std::vector<unsigned char>>& rows,
                     Setup&& setup) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return "";
  }
  png_set_write_fn(png, &out, AppendToString, nullptr);
  setup(png, info);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, rows[y].data());
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return out;
}

std::string BigEndian(std::uint32_t v, int n) {
  std::string out;
  for (int i = n - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return out;
}

}  // namespace

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Encode(const cv::Mat& img, const std::string& ext, const std::vector<int>& params) {
  std::vector<uchar> buf;
  if (!cv::imencode(ext, img, buf, params)) return "";
  return std::string(buf.begin(), buf.end());
}

std::string ExifBlock(int orientation) {
  std::string tiff = std::string("MM\0*", 4) + BigEndian(8, 4);
  tiff += BigEndian(1, 2);                                         // one IFD entry
  tiff += BigEndian(0x0112, 2) + BigEndian(3, 2) + BigEndian(1, 4);  // orientation, SHORT, 1
  tiff += BigEndian(orientation, 2) + BigEndian(0, 2);
  tiff += BigEndian(0, 4);  // no next IFD
  return std::string("Exif\0\0", 6) + tiff;
}

std::string JpegWithOrientation(const std::string& jpeg, int orientation) {
  const std::string exif = ExifBlock(orientation);
  const std::string app1 = "\xFF\xE1" + BigEndian(exif.size() + 2, 2) + exif;
  return jpeg.substr(0, 2) + app1 + jpeg.substr(2);
}

std::string PngChunk(const std::string& type, const std::string& data) {
  return BigEndian(data.size(), 4) + type + data + BigEndian(Crc32(type + data), 4);
}

std::string PngWithOrientation(const std::string& png, int orientation) {
  const std::size_t after_ihdr = 8 + 12 + 13;
  return png.substr(0, after_ihdr) + PngChunk("eXIf", ExifBlock(orientation).substr(6)) +
         png.substr(after_ihdr);
}

cv::Mat StoreForOrientation(const cv::Mat& upright, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2: cv::flip(upright, out, 1); break;
    case 3: cv::flip(upright, out, -1); break;
    case 4: cv::flip(upright, out, 0); break;
    case 5: cv::transpose(upright, out); break;
    case 6: cv::rotate(upright, out, cv::ROTATE_90_COUNTERCLOCKWISE); break;
    case 7: cv::flip(upright, out, -1); cv::transpose(out, out); break;
    case 8: cv::rotate(upright, out, cv::ROTATE_90_CLOCKWISE); break;
    default: out = upright.clone(); break;
  }
  return out;
}

std::string EncodeCmykJpeg(const cv::Mat& bgr, int quality) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* mem = nullptr;
  unsigned long mem_size = 0;
  jpeg_mem_dest(&cinfo, &mem, &mem_size);
  cinfo.image_width = bgr.cols;
  cinfo.image_height = bgr.rows;
  cinfo.input_components = 4;
  cinfo.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  std::vector<unsigned char> row(bgr.cols * 4);
  while (cinfo.next_scanline < cinfo.image_height) {
    const cv::Vec3b* src = bgr.ptr<cv::Vec3b>(cinfo.next_scanline);
    for (int x = 0; x < bgr.cols; ++x) {
      // Inverted CMYK with no black ink: stored C, M, Y = R, G, B; K = 255.
      row[4 * x + 0] = src[x][2];
      row[4 * x + 1] = src[x][1];
      row[4 * x + 2] = src[x][0];
      row[4 * x + 3] = 255;
    }
    JSAMPROW ptr = row.data();
    jpeg_write_scanlines(&cinfo, &ptr, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::string out(reinterpret_cast<char*>(mem), mem_size);
  jpeg_destroy_compress(&cinfo);
  std::free(mem);
  return out;
}

std::string EncodePalettePng(const cv::Mat& bgr, const std::vector<unsigned char>& palette_alpha) {
  std::vector<png_color> palette;
  std::vector<std::vector<unsigned char>> rows(bgr.rows, std::vector<unsigned char>(bgr.cols));
  for (int y = 0; y < bgr.rows; ++y) {
    for (int x = 0; x < bgr.cols; ++x) {
      const cv::Vec3b c = bgr.at<cv::Vec3b>(y, x);
      const png_color pc{c[2], c[1], c[0]};
      std::size_t i = 0;
      while (i < palette.size() && (palette[i].red != pc.red || palette[i].green != pc.green ||
                                    palette[i].blue != pc.blue)) {
        ++i;
      }
      if (i == palette.size()) {
        if (palette.size() == 256) return "";
        palette.push_back(pc);
      }
      rows[y][x] = static_cast<unsigned char>(i);
    }
  }
  return WritePng(bgr.rows, rows, [&](png_structp png, png_infop info) {
    png_set_IHDR(png, info, bgr.cols, bgr.rows, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_PLTE(png, info, palette.data(), static_cast<int>(palette.size()));
    if (!palette_alpha.empty()) {
      png_set_tRNS(png, info, palette_alpha.data(),
                   static_cast<int>(std::min(palette_alpha.size(), palette.size())), nullptr);
    }
  });
}

std::string EncodeGreyAlphaPng(const cv::Mat& grey_alpha) {
  std::vector<std::vector<unsigned char>> rows(grey_alpha.rows);
  for (int y = 0; y < grey_alpha.rows; ++y) {
    const unsigned char* p = grey_alpha.ptr<unsigned char>(y);
    rows[y].assign(p, p + grey_alpha.cols * 2);
  }
  return WritePng(grey_alpha.rows, rows, [&](png_structp png, png_infop info) {
    png_set_IHDR(png, info, grey_alpha.cols, grey_alpha.rows, 8, PNG_COLOR_TYPE_GRAY_ALPHA,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  });
}

std::string EncodeTiff(const cv::Mat& img, int orientation) {
  char path[] = "/tmp/faceid_core_test_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "";
  close(fd);
  TIFF* tif = TIFFOpen(path, "w");
  if (tif == nullptr) return "";
  const int channels = img.channels();
  TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, img.cols);
  TIFFSetField(tif, TIFFTAG_IMAGELENGTH, img.rows);
  TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, channels);
  TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, static_cast<int>(img.elemSize1() * 8));
  TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, channels == 1 ? PHOTOMETRIC_MINISBLACK : PHOTOMETRIC_RGB);
  TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_NONE);
  TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, img.rows);
  TIFFSetField(tif, TIFFTAG_ORIENTATION, orientation);
  cv::Mat rgb;  // not `rgb = img`: cvtColor would then convert the caller's image in place
  if (channels == 3) {
    cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
  } else {
    rgb = img;
  }
  for (int y = 0; y < rgb.rows; ++y) TIFFWriteScanline(tif, rgb.ptr(y), y, 0);
  TIFFClose(tif);
  std::string out = ReadFileBytes(path);
  unlink(path);
  return out;
}

std::string EncodeTiffLayout(const cv::Mat& img, const TiffLayout& layout) {
  char path[] = "/tmp/faceid_core_test_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "";
  close(fd);
  TIFF* tif = TIFFOpen(path, "w");
  if (tif == nullptr) return "";
  const int channels = img.channels();
  TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, img.cols);
  TIFFSetField(tif, TIFFTAG_IMAGELENGTH, img.rows);
  TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, channels);
  TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8);
  TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, channels == 1 ? PHOTOMETRIC_MINISBLACK : PHOTOMETRIC_RGB);
  TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(tif, TIFFTAG_COMPRESSION,
               layout.deflate ? COMPRESSION_ADOBE_DEFLATE : COMPRESSION_NONE);
  cv::Mat rgb;  // not `rgb = img`: cvtColor would then convert the caller's image in place
  if (channels == 3) {
    cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
  } else {
    rgb = img;
  }
  bool ok = true;
  if (layout.tile_width > 0) {
    TIFFSetField(tif, TIFFTAG_TILEWIDTH, layout.tile_width);
    TIFFSetField(tif, TIFFTAG_TILELENGTH, layout.tile_length);
    if (layout.write_pixels) {
      std::vector<unsigned char> tile(static_cast<std::size_t>(layout.tile_width) *
                                      layout.tile_length * channels);
      for (int ty = 0; ty < rgb.rows && ok; ty += layout.tile_length) {
        for (int tx = 0; tx < rgb.cols && ok; tx += layout.tile_width) {
          std::fill(tile.begin(), tile.end(), 0);
          for (int y = ty; y < std::min(rgb.rows, ty + layout.tile_length); ++y) {
            const int n = std::min(rgb.cols - tx, layout.tile_width) * channels;
            std::copy_n(
                rgb.ptr(y) + tx * channels, n,
                tile.data() + static_cast<std::size_t>(y - ty) * layout.tile_width * channels);
          }
          ok = TIFFWriteTile(tif, tile.data(), tx, ty, 0, 0) >= 0;
        }
      }
    }
  } else {
    TIFFSetField(
        tif, TIFFTAG_ROWSPERSTRIP,
        layout.rows_per_strip > 0 ? layout.rows_per_strip : static_cast<std::uint32_t>(img.rows));
    if (layout.write_pixels) {
      for (int y = 0; y < rgb.rows && ok; ++y) ok = TIFFWriteScanline(tif, rgb.ptr(y), y, 0) >= 0;
    }
  }
  if (!layout.write_pixels) ok = TIFFWriteDirectory(tif) == 1;
  TIFFClose(tif);
  std::string out = ok ? ReadFileBytes(path) : "";
  unlink(path);
  return out;
}

std::string WebpWithOrientation(const std::string& webp, int width, int height,
                                int orientation) {
  const std::string image_chunk = webp.substr(12);  // the VP8 / VP8L chunk, padded
  std::string exif = ExifBlock(orientation).substr(6);
  std::string exif_chunk = "EXIF" + LittleEndian(exif.size(), 4) + exif;
  if (exif.size() % 2) exif_chunk.push_back('\0');
  const std::string vp8x = "VP8X" + LittleEndian(10, 4) + LittleEndian(0x08, 4) +
                           LittleEndian(width - 1, 3) + LittleEndian(height - 1, 3);
  const std::string body = "WEBP" + vp8x + image_chunk + exif_chunk;
  return "RIFF" + LittleEndian(body.size(), 4) + body;
}

}  // namespace faceid::testing
