#include "core/image_decoder.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/image_header.h"
#include "tests/core/test_images.h"

namespace faceid {
namespace {

using ::faceid::testing::Encode;
using ::faceid::testing::ReadFileBytes;

const std::string kLfwFace =
    std::string(FACEID_DATA_DIR) + "/lfw_deepfunneled/Aaron_Peirsol/Aaron_Peirsol_0001.jpg";

// A smooth colour test card with asymmetric content so every flip/rotation is distinct.
cv::Mat TestCard(int w, int h) {
  cv::Mat img(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      img.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>(x * 255 / w),
                                          static_cast<uchar>(y * 255 / h),
                                          static_cast<uchar>((x + 2 * y) % 256));
    }
  }
  cv::rectangle(img, cv::Rect(w / 8, h / 8, w / 4, h / 6), cv::Scalar(255, 255, 255), -1);
  return img;
}

double MeanAbsDiff(const cv::Mat& a, const cv::Mat& b) {
  if (a.size() != b.size() || a.type() != b.type()) return 1e9;
  return cv::norm(a, b, cv::NORM_L1) / static_cast<double>(a.total() * a.channels());
}

bool Identical(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

TEST(ImageDecoderTest, EmptyInputIsInvalidArgument) {
  const auto r = DecodeImage("");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("empty"), std::string::npos);
}

TEST(ImageDecoderTest, RandomBytesAreNotAnImage) {
  std::mt19937 rng(7);
  std::string bytes(4096, '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xFF);
  bytes[0] = 'x';  // make sure no magic number matches by chance
  const auto r = DecodeImage(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("not a supported image format"), std::string::npos);
}

TEST(ImageDecoderTest, TextFileIsNotAnImage) {
  const auto r = DecodeImage("name,photo\nalice,me.jpg\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("not a supported image format"), std::string::npos);
}

TEST(ImageDecoderTest, RandomBytesAfterEveryMagicNeverCrash) {
  const std::string magics[] = {"\xFF\xD8\xFF", "\x89PNG\r\n\x1A\n", "BM", "P5",
                                std::string("II*\0", 4), std::string("RIFF\0\0\0\0WEBP", 12)};
  std::mt19937 rng(11);
  for (const std::string& magic : magics) {
    for (int len : {0, 3, 20, 300}) {
      std::string bytes = magic;
      for (int i = 0; i < len; ++i) bytes.push_back(static_cast<char>(rng() & 0xFF));
      const auto r = DecodeImage(bytes);
      EXPECT_FALSE(r.ok()) << "magic " << magic.size() << " bytes + " << len;
      // Random bytes may also declare a huge size: refused as too large.
      if (!r.ok()) {
        EXPECT_TRUE(r.status().code() == absl::StatusCode::kInvalidArgument ||
                    r.status().code() == absl::StatusCode::kResourceExhausted)
            << r.status();
      }
    }
  }
}

// Hostile uploads: flipped bytes and cut-offs in every format give a status or a valid BGR
// image, never a crash or an exception (run under ASan too, see the report).
TEST(ImageDecoderTest, MutatedFilesNeverCrash) {
  const cv::Mat card = TestCard(40, 32);
  const std::vector<std::string> seeds = {
      Encode(card, ".jpg"), Encode(card, ".png"), Encode(card, ".bmp"), Encode(card, ".ppm"),
      Encode(card, ".tiff"), Encode(card, ".webp"),
      ::faceid::testing::JpegWithOrientation(Encode(card, ".jpg"), 6)};
  std::mt19937 rng(3);
  int ok = 0, refused = 0;
  for (const std::string& seed : seeds) {
    for (int i = 0; i < 150; ++i) {
      std::string bytes = seed;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<char>(rng());
      if (i % 3 == 0) bytes.resize(rng() % bytes.size());
      const auto r = DecodeImage(bytes);
      if (r.ok()) {
        ++ok;
        EXPECT_EQ(r->bgr.type(), CV_8UC3);
        EXPECT_FALSE(r->bgr.empty());
      } else {
        ++refused;
        EXPECT_NE(r.status().code(), absl::StatusCode::kInternal) << r.status();
      }
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(ok, 0);
}

TEST(ImageDecoderTest, TruncatedJpegIsRefused) {
  const std::string jpeg = ReadFileBytes(kLfwFace);
  ASSERT_GT(jpeg.size(), 1000u);
  for (const std::size_t keep : {jpeg.size() / 2, jpeg.size() - 2, std::size_t{200}}) {
    const auto r = DecodeImage(std::string_view(jpeg).substr(0, keep));
    ASSERT_FALSE(r.ok()) << keep;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("truncated or corrupt"), std::string::npos)
        << r.status();
  }
}

TEST(ImageDecoderTest, TruncatedPngIsRefused) {
  const std::string png = Encode(TestCard(64, 64), ".png");
  const auto r = DecodeImage(std::string_view(png).substr(0, png.size() / 2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ImageDecoderTest, RealLfwJpegDecodesToBgr) {
  const auto r = DecodeImage(ReadFileBytes(kLfwFace));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->format, "jpeg");
  EXPECT_EQ(r->bgr.type(), CV_8UC3);
  EXPECT_EQ(r->bgr.cols, 250);
  EXPECT_EQ(r->bgr.rows, 250);
  EXPECT_EQ(r->exif_orientation, 1);
}

TEST(ImageDecoderTest, AttPgmWithCommentDecodesAsGreyBgr) {
  // s1 files carry a "# Generated by OpenCV" comment line in the header.
  for (const char* file : {"/att_orl/s1/1.pgm", "/att_orl/s3/1.pgm"}) {
    const auto r = DecodeImage(ReadFileBytes(std::string(FACEID_DATA_DIR) + file));
    ASSERT_TRUE(r.ok()) << file << ": " << r.status();
    EXPECT_EQ(r->format, "pnm");
    EXPECT_EQ(r->bgr.type(), CV_8UC3);
    EXPECT_EQ(r->bgr.cols, 92);
    EXPECT_EQ(r->bgr.rows, 112);
    cv::Mat planes[3];
    cv::split(r->bgr, planes);
    EXPECT_EQ(cv::norm(planes[0], planes[2], cv::NORM_INF), 0);
  }
}

TEST(ImageDecoderTest, LosslessFormatsRoundTripExactly) {
  const cv::Mat card = TestCard(64, 48);
  const std::pair<const char*, const char*> formats[] = {
      {".png", "png"}, {".bmp", "bmp"}, {".ppm", "pnm"}, {".tiff", "tiff"}, {".webp", "webp"}};
  for (const auto& [ext, name] : formats) {
    std::vector<int> params;
    if (std::string(ext) == ".webp") params = {cv::IMWRITE_WEBP_QUALITY, 101};  // lossless
    const std::string bytes = Encode(card, ext, params);
    ASSERT_FALSE(bytes.empty()) << ext;
    const auto r = DecodeImage(bytes);
    ASSERT_TRUE(r.ok()) << ext << ": " << r.status();
    EXPECT_EQ(r->format, name);
    EXPECT_TRUE(Identical(r->bgr, card)) << ext;
  }
}

TEST(ImageDecoderTest, LossyWebpDecodes) {
  const cv::Mat card = TestCard(64, 48);
  const auto r = DecodeImage(Encode(card, ".webp", {cv::IMWRITE_WEBP_QUALITY, 90}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->format, "webp");
  EXPECT_LT(MeanAbsDiff(r->bgr, card), 6.0);
}

TEST(ImageDecoderTest, ProgressiveAndGreyJpegDecode) {
  const cv::Mat face = cv::imread(kLfwFace, cv::IMREAD_COLOR);
  const std::string progressive =
      Encode(face, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1, cv::IMWRITE_JPEG_QUALITY, 95});
  const auto p = DecodeImage(progressive);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_LT(MeanAbsDiff(p->bgr, face), 3.0);

  cv::Mat grey;
  cv::cvtColor(face, grey, cv::COLOR_BGR2GRAY);
  const auto g = DecodeImage(Encode(grey, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 95}));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->bgr.type(), CV_8UC3);
  cv::Mat grey_back;
  cv::cvtColor(g->bgr, grey_back, cv::COLOR_BGR2GRAY);
  EXPECT_LT(MeanAbsDiff(grey_back, grey), 3.0);
}

TEST(ImageDecoderTest, CmykJpegDecodesToTheRightColours) {
  const cv::Mat face = cv::imread(kLfwFace, cv::IMREAD_COLOR);
  const std::string cmyk = ::faceid::testing::EncodeCmykJpeg(face, 95);
  const auto r = DecodeImage(cmyk);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->bgr.type(), CV_8UC3);
  EXPECT_LT(MeanAbsDiff(r->bgr, face), 4.0);
}

TEST(ImageDecoderTest, SixteenBitPngScalesToEightBit) {
  const cv::Mat card = TestCard(40, 30);
  cv::Mat card16;
  card.convertTo(card16, CV_16UC3, 257.0);
  const auto r = DecodeImage(Encode(card16, ".png"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(Identical(r->bgr, card));

  cv::Mat grey16(30, 40, CV_16UC1, cv::Scalar(65535));
  const auto g = DecodeImage(Encode(grey16, ".png"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->bgr.at<cv::Vec3b>(5, 5), cv::Vec3b(255, 255, 255));
}

TEST(ImageDecoderTest, RgbaPngIsCompositedOnNeutralGrey) {
  cv::Mat rgba(32, 32, CV_8UC4, cv::Scalar(0, 0, 255, 255));  // opaque red (BGRA)
  rgba(cv::Rect(0, 0, 16, 32)).setTo(cv::Scalar(0, 0, 255, 0));  // left half transparent
  rgba(cv::Rect(0, 0, 16, 8)).setTo(cv::Scalar(255, 255, 255, 128));  // half-transparent white
  const auto r = DecodeImage(Encode(rgba, ".png"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->bgr.type(), CV_8UC3);
  EXPECT_EQ(r->bgr.at<cv::Vec3b>(20, 24), cv::Vec3b(0, 0, 255));
  EXPECT_EQ(r->bgr.at<cv::Vec3b>(20, 4), cv::Vec3b(128, 128, 128));
  // (255 * 128 + 128 * 127 + 127) / 255 = 192
  EXPECT_EQ(r->bgr.at<cv::Vec3b>(4, 4), cv::Vec3b(192, 192, 192));
}

TEST(ImageDecoderTest, PalettePngDecodesWithTransparency) {
  cv::Mat img(24, 24, CV_8UC3, cv::Scalar(10, 200, 30));
  img(cv::Rect(0, 0, 12, 24)).setTo(cv::Scalar(250, 5, 5));
  const auto opaque = DecodeImage(::faceid::testing::EncodePalettePng(img, {}));
  ASSERT_TRUE(opaque.ok()) << opaque.status();
  EXPECT_TRUE(Identical(opaque->bgr, img));
  // Palette entry 1 (the second colour seen, the right half) fully transparent.
  const auto clear = DecodeImage(::faceid::testing::EncodePalettePng(img, {255, 0}));
  ASSERT_TRUE(clear.ok()) << clear.status();
  EXPECT_EQ(clear->bgr.at<cv::Vec3b>(5, 2), cv::Vec3b(250, 5, 5));
  EXPECT_EQ(clear->bgr.at<cv::Vec3b>(5, 20), cv::Vec3b(128, 128, 128));
}

TEST(ImageDecoderTest, GreyAlphaPngIsCompositedOnNeutralGrey) {
  cv::Mat ga(20, 20, CV_8UC2, cv::Scalar(200, 255));
  ga(cv::Rect(0, 0, 10, 20)).setTo(cv::Scalar(200, 0));
  const auto r = DecodeImage(::faceid::testing::EncodeGreyAlphaPng(ga));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->bgr.type(), CV_8UC3);
  EXPECT_EQ(r->bgr.at<cv::Vec3b>(5, 15), cv::Vec3b(200, 200, 200));
  EXPECT_EQ(r->bgr.at<cv::Vec3b>(5, 5), cv::Vec3b(128, 128, 128));
}

// Regression: OpenCV turns TIFFs by their Orientation tag even with IMREAD_UNCHANGED; the
// first decoder turned them a second time.
TEST(ImageDecoderTest, EveryTiffOrientationIsAppliedExactlyOnce) {
  const cv::Mat upright = TestCard(30, 20);
  cv::Mat grey16;
  cv::cvtColor(upright, grey16, cv::COLOR_BGR2GRAY);
  grey16.convertTo(grey16, CV_16UC1, 257.0);
  cv::Mat grey_upright;
  cv::cvtColor(upright, grey_upright, cv::COLOR_BGR2GRAY);
  cv::cvtColor(grey_upright, grey_upright, cv::COLOR_GRAY2BGR);
  for (int o = 1; o <= 8; ++o) {
    const cv::Mat stored = ::faceid::testing::StoreForOrientation(upright, o);
    const auto r = DecodeImage(::faceid::testing::EncodeTiff(stored, o));
    ASSERT_TRUE(r.ok()) << o << ": " << r.status();
    EXPECT_EQ(r->format, "tiff");
    EXPECT_EQ(r->exif_orientation, o);
    EXPECT_TRUE(Identical(r->bgr, upright)) << "TIFF orientation " << o;

    const auto g = DecodeImage(
        ::faceid::testing::EncodeTiff(::faceid::testing::StoreForOrientation(grey16, o), o));
    ASSERT_TRUE(g.ok()) << o << ": " << g.status();
    EXPECT_TRUE(Identical(g->bgr, grey_upright)) << "16-bit grey TIFF orientation " << o;
  }
}

TEST(ImageDecoderTest, EveryWebpExifOrientationIsAppliedExactlyOnce) {
  const cv::Mat upright = TestCard(30, 20);
  for (int o = 1; o <= 8; ++o) {
    const cv::Mat stored = ::faceid::testing::StoreForOrientation(upright, o);
    const std::string webp = ::faceid::testing::WebpWithOrientation(
        Encode(stored, ".webp", {cv::IMWRITE_WEBP_QUALITY, 101}), stored.cols, stored.rows, o);
    const auto r = DecodeImage(webp);
    ASSERT_TRUE(r.ok()) << o << ": " << r.status();
    EXPECT_EQ(r->exif_orientation, o);
    EXPECT_TRUE(Identical(r->bgr, upright)) << "WebP orientation " << o;
  }
}

TEST(ImageDecoderTest, OneByOneImageIsTooSmall) {
  for (const char* ext : {".png", ".jpg", ".bmp"}) {
    const auto r = DecodeImage(Encode(cv::Mat(1, 1, CV_8UC3, cv::Scalar(1, 2, 3)), ext));
    ASSERT_FALSE(r.ok()) << ext;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("too small"), std::string::npos) << r.status();
  }
}

TEST(ImageDecoderTest, TooManyBytesIsResourceExhausted) {
  DecodeLimits limits;
  limits.max_image_bytes = 1000;
  const auto r = DecodeImage(ReadFileBytes(kLfwFace), limits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(ImageDecoderTest, TooManyPixelsIsResourceExhausted) {
  DecodeLimits limits;
  limits.max_pixels = 250 * 250 - 1;
  const auto r = DecodeImage(ReadFileBytes(kLfwFace), limits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("250x250"), std::string::npos) << r.status();
}

// Every orientation on the lossless PNG path (eXIf chunk) gives exactly the upright image,
// and on the JPEG path (APP1) exactly the stored image oriented once.
TEST(ImageDecoderTest, EveryExifOrientationIsAppliedExactlyOnce) {
  const cv::Mat upright = TestCard(60, 40);
  for (int o = 1; o <= 8; ++o) {
    const cv::Mat stored = ::faceid::testing::StoreForOrientation(upright, o);
    const auto png = DecodeImage(::faceid::testing::PngWithOrientation(Encode(stored, ".png"), o));
    ASSERT_TRUE(png.ok()) << o << ": " << png.status();
    EXPECT_EQ(png->exif_orientation, o);
    EXPECT_TRUE(Identical(png->bgr, upright)) << "PNG orientation " << o;

    const std::string jpeg = Encode(stored, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 95});
    const auto j = DecodeImage(::faceid::testing::JpegWithOrientation(jpeg, o));
    ASSERT_TRUE(j.ok()) << o << ": " << j.status();
    EXPECT_EQ(j->exif_orientation, o);
    // OpenCV's own IMREAD_COLOR path applies the tag too: both must agree.
    const std::string tagged = ::faceid::testing::JpegWithOrientation(jpeg, o);
    const cv::Mat opencv = cv::imdecode(std::vector<uchar>(tagged.begin(), tagged.end()),
                                        cv::IMREAD_COLOR);
    EXPECT_TRUE(Identical(j->bgr, opencv)) << "JPEG orientation " << o;
    EXPECT_LT(MeanAbsDiff(j->bgr, upright), 4.0) << "JPEG orientation " << o;
  }
}

TEST(ImageDecoderTest, OutOfRangeOrientationIsIgnored) {
  const cv::Mat card = TestCard(40, 30);
  const auto r = DecodeImage(::faceid::testing::PngWithOrientation(Encode(card, ".png"), 9));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exif_orientation, 1);
  EXPECT_TRUE(Identical(r->bgr, card));
}

// Hand-made headers that declare 50000 x 50000 pixels (7.5 GB as BGR) in a few bytes.
std::string JpegBomb() {
  std::string s = "\xFF\xD8";
  s += std::string("\xFF\xC0\x00\x11\x08", 5) + "\xC3\x50\xC3\x50" +
       std::string("\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01", 10);
  s += std::string("\xFF\xDA\x00\x0C\x03\x01\x00\x02\x11\x03\x11\x00\x3F\x00", 14);
  s += std::string(64, '\0') + "\xFF\xD9";
  return s;
}

std::string PngBomb() {
  std::string ihdr = std::string("\x00\x00\xC3\x50\x00\x00\xC3\x50\x08\x02\x00\x00\x00", 13);
  std::string idat = std::string("\x78\x9C\x63\x00\x00\x00\x01\x00\x01", 9);
  return std::string("\x89PNG\r\n\x1A\n") + ::faceid::testing::PngChunk("IHDR", ihdr) +
         ::faceid::testing::PngChunk("IDAT", idat) + ::faceid::testing::PngChunk("IEND", "");
}

std::vector<std::pair<std::string, std::string>> Bombs() {
  std::string bmp = "BM" + std::string(12, '\0') + std::string("\x28\0\0\0", 4) +
                    std::string("\x50\xC3\0\0\x50\xC3\0\0\x01\0\x18\0", 12) + std::string(24, '\0');
  std::string tiff = std::string("II*\0\x08\0\0\0\x02\0", 10) +
                     std::string("\x00\x01\x04\x00\x01\0\0\0\x50\xC3\0\0", 12) +
                     std::string("\x01\x01\x04\x00\x01\0\0\0\x50\xC3\0\0", 12) +
                     std::string(4, '\0');
  std::string webp = std::string("RIFF\x1A\0\0\0WEBPVP8X\x0A\0\0\0", 20) +
                     std::string("\0\0\0\0\x4F\xC3\0\x4F\xC3\0", 10);
  return {{"jpeg", JpegBomb()},     {"png", PngBomb()}, {"bmp", bmp},
          {"pnm", "P6\n50000 50000\n255\n" + std::string(16, '\0')},
          {"tiff", tiff},           {"webp", webp}};
}

TEST(ImageDecoderTest, DecompressionBombsAreRefusedFromTheHeader) {
  for (const auto& [format, bytes] : Bombs()) {
    ASSERT_LT(bytes.size(), 200u);
    const auto header = ReadImageHeader(bytes);
    ASSERT_TRUE(header.ok()) << format << ": " << header.status();
    EXPECT_EQ(header->format, format);
    EXPECT_EQ(header->width, 50000) << format;
    EXPECT_EQ(header->height, 50000) << format;
    const auto r = DecodeImage(bytes);
    ASSERT_FALSE(r.ok()) << format;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << format;
    EXPECT_NE(r.status().message().find("declares 50000x50000"), std::string::npos)
        << r.status();
  }
}

// A valid progressive JPEG followed, before its EOI, by a Huffman table and `extra` tiny
// scans of 12 bytes each (AC band 1..63 of component 1, one EOBRUN code): each one costs
// libjpeg a pass over the whole image, and libjpeg accepts them all.
std::string JpegScanBomb(const std::string& progressive, int extra) {
  const std::size_t eoi = progressive.rfind("\xFF\xD9");
  std::string bomb = progressive.substr(0, eoi);
  // DHT: AC table 1 with one 1-bit code for symbol 0xE0 (EOBRUN of 2^14 blocks).
  bomb += std::string("\xFF\xC4\x00\x14\x11\x01", 6) + std::string(15, '\0') + "\xE0";
  const std::string scan("\xFF\xDA\x00\x08\x01\x01\x11\x01\x3F\x00\x00\x00", 12);
  for (int i = 0; i < extra; ++i) bomb += scan;
  return bomb + "\xFF\xD9";
}

TEST(ImageDecoderTest, NormalJpegScanCountsAreCountedAndAccepted) {
  const cv::Mat face = cv::imread(kLfwFace, cv::IMREAD_COLOR);
  cv::Mat grey;
  cv::cvtColor(face, grey, cv::COLOR_BGR2GRAY);
  const std::vector<int> progressive = {cv::IMWRITE_JPEG_PROGRESSIVE, 1};
  const std::vector<int> with_restarts = {cv::IMWRITE_JPEG_PROGRESSIVE, 1,
                                          cv::IMWRITE_JPEG_RST_INTERVAL, 4};
  // libjpeg's progressive script: 10 scans for colour, 6 for grey. Restart markers (FF D0..D7)
  // inside the entropy-coded data must not be counted as markers.
  const std::pair<std::string, int> cases[] = {{ReadFileBytes(kLfwFace), 1},
                                               {Encode(face, ".jpg", progressive), 10},
                                               {Encode(grey, ".jpg", progressive), 6},
                                               {Encode(face, ".jpg", with_restarts), 10},
                                               {::faceid::testing::EncodeCmykJpeg(face, 90), 1}};
  for (const auto& [bytes, scans] : cases) {
    const auto header = ReadImageHeader(bytes);
    ASSERT_TRUE(header.ok()) << header.status();
    EXPECT_EQ(header->jpeg_scan_count, scans);
    const auto r = DecodeImage(bytes);
    ASSERT_TRUE(r.ok()) << scans << " scans: " << r.status();
    EXPECT_EQ(r->bgr.cols, 250);
    EXPECT_EQ(r->bgr.rows, 250);
  }
}

// Regression (security report): 6000x6000 progressive JPEG + 10,000 scans = 43 s of CPU.
TEST(ImageDecoderTest, JpegScanBombIsRefusedBeforeDecoding) {
  const cv::Mat face = cv::imread(kLfwFace, cv::IMREAD_COLOR);
  const std::string progressive = Encode(face, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  const std::string bomb = JpegScanBomb(progressive, 300);
  ASSERT_LT(bomb.size(), progressive.size() + 4000);
  // The bomb is a JPEG libjpeg (via OpenCV) decodes without complaint.
  const cv::Mat opencv =
      cv::imdecode(std::vector<uchar>(bomb.begin(), bomb.end()), cv::IMREAD_COLOR);
  ASSERT_EQ(opencv.cols, 250);

  const auto header = ReadImageHeader(bomb);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->jpeg_scan_count, 310);
  const auto start = std::chrono::steady_clock::now();
  const auto r = DecodeImage(bomb);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("JPEG has 310 scans (more than 100)"), std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("decoding bomb"), std::string::npos);
  EXPECT_LT(ms, 50.0);  // a header walk over 10 KB; no decoding

  // Exactly at the cap still decodes; the cap is configurable.
  const auto at_cap = DecodeImage(JpegScanBomb(progressive, 90));
  ASSERT_TRUE(at_cap.ok()) << at_cap.status();
  EXPECT_EQ(at_cap->bgr.cols, 250);
  DecodeLimits strict;
  strict.max_jpeg_scans = 9;
  const auto refused = DecodeImage(progressive, strict);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("JPEG has 10 scans (more than 9)"), std::string::npos)
      << refused.status();
}

// Regression (security report): a 100x100 deflate TIFF in 12288x12288 tiles (440 KB) made
// OpenCV allocate ~590 MB; only ImageWidth/ImageLength were checked.
TEST(ImageDecoderTest, TiffTileBombIsRefusedFromTheHeader) {
  const cv::Mat card = TestCard(100, 100);
  ::faceid::testing::TiffLayout layout;
  layout.tile_width = 12288;
  layout.tile_length = 12288;
  layout.deflate = true;
  layout.write_pixels = false;  // the header alone is refused
  const std::string bomb = ::faceid::testing::EncodeTiffLayout(card, layout);
  ASSERT_FALSE(bomb.empty());
  const auto header = ReadImageHeader(bomb);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->width, 100);
  EXPECT_EQ(header->tiff_tile_width, 12288);
  EXPECT_EQ(header->tiff_tile_length, 12288);
  const auto r = DecodeImage(bomb);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("declares tiles of 12288x12288 pixels for a 100x100 "
                                      "image, the limit is 40000000 pixels"),
            std::string::npos)
      << r.status();

  // A real, fully written file: 2048x2048 tiles for 100x100 pixels are within max_pixels but
  // out of proportion (over 4x the image and over 1024x1024).
  layout.tile_width = 2048;
  layout.tile_length = 2048;
  layout.write_pixels = true;
  const auto big_tiles = DecodeImage(::faceid::testing::EncodeTiffLayout(card, layout));
  ASSERT_FALSE(big_tiles.ok());
  EXPECT_EQ(big_tiles.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(big_tiles.status().message().find("4x the image area"), std::string::npos)
      << big_tiles.status();

  // And against a lowered pixel limit that the image itself meets.
  layout.tile_width = 256;
  layout.tile_length = 256;
  DecodeLimits limits;
  limits.max_pixels = 50'000;
  const auto limited = DecodeImage(::faceid::testing::EncodeTiffLayout(card, layout), limits);
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(limited.status().message().find("tiles of 256x256"), std::string::npos)
      << limited.status();
}

// A 100x100 deflate TIFF in strips of 2,000,000 rows (300 bytes): OpenCV sizes its strip
// buffer from RowsPerStrip as declared, not clamped to the image height, so it asks for
// 100 x 2e6 x 4 bytes (800 MB) before reading the 100 real rows.
std::string TiffStripBomb() {
  ::faceid::testing::TiffLayout layout;
  layout.rows_per_strip = 2'000'000;
  layout.deflate = true;
  return ::faceid::testing::EncodeTiffLayout(cv::Mat(100, 100, CV_8UC3, cv::Scalar(1, 2, 3)),
                                             layout);
}

TEST(ImageDecoderTest, TiffStripBombIsRefusedFromTheHeader) {
  const std::string bomb = TiffStripBomb();
  ASSERT_FALSE(bomb.empty());
  ASSERT_LT(bomb.size(), 1000u);
  const auto header = ReadImageHeader(bomb);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->tiff_rows_per_strip, 2'000'000);
  const auto r = DecodeImage(bomb);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("declares strips of 100x2000000 pixels for a 100x100 "
                                      "image, the limit is 40000000 pixels"),
            std::string::npos)
      << r.status();
}

// Little-endian TIFF whose IFD0 holds the given LONG tags (tag, value), in tag order.
std::string HandMadeTiff(const std::vector<std::pair<std::uint16_t, std::uint32_t>>& tags) {
  const auto le = [](std::uint32_t v, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
    return out;
  };
  std::string s = std::string("II*\0", 4) + le(8, 4) + le(tags.size(), 2);
  for (const auto& [tag, value] : tags) s += le(tag, 2) + le(4, 2) + le(1, 4) + le(value, 4);
  return s + le(0, 4) + std::string(16, '\0');
}

// Sizes are 32-bit in TIFF: their products must not overflow into a small or negative area.
TEST(ImageDecoderTest, TiffSizeProductsDoNotOverflow) {
  const auto huge = DecodeImage(HandMadeTiff({{256, 0xFFFFFFFF}, {257, 0xFFFFFFFF}}));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(huge.status().message().find("declares 4294967295x4294967295"), std::string::npos)
      << huge.status();
  const auto tiles =
      DecodeImage(HandMadeTiff({{256, 100}, {257, 100}, {322, 0xFFFFFFF0}, {323, 0xFFFFFFF0}}));
  ASSERT_FALSE(tiles.ok());
  EXPECT_EQ(tiles.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(tiles.status().message().find("tiles of 4294967280x4294967280"), std::string::npos)
      << tiles.status();
}

TEST(ImageDecoderTest, OrdinaryTiledAndStripedTiffsDecodeExactly) {
  const cv::Mat card = TestCard(100, 70);
  cv::Mat grey;
  cv::cvtColor(card, grey, cv::COLOR_BGR2GRAY);
  cv::Mat grey_bgr;
  cv::cvtColor(grey, grey_bgr, cv::COLOR_GRAY2BGR);
  struct Case {
    int tile_width, tile_length;
    std::uint32_t rows_per_strip;
    bool deflate;
  };
  // OpenCV 4.6's imdecode fails on this colour image in 16x16 tiles whatever the limits
  // (imread of the same file works), so the smallest tile here is 32x32. A strip taller than
  // the image (140 rows) is fine when small.
  for (const Case& c : {Case{32, 32, 0, false}, Case{64, 32, 0, true}, Case{256, 256, 0, true},
                        Case{1024, 1024, 0, true}, Case{0, 0, 8, true}, Case{0, 0, 140, true},
                        Case{0, 0, 0xFFFFFFFF, false}}) {
    ::faceid::testing::TiffLayout layout;
    layout.tile_width = c.tile_width;
    layout.tile_length = c.tile_length;
    layout.rows_per_strip = c.rows_per_strip;
    layout.deflate = c.deflate;
    const std::string what = std::to_string(c.tile_width) + "x" + std::to_string(c.tile_length) +
                             " tiles, " + std::to_string(c.rows_per_strip) + " rows per strip";
    const auto r = DecodeImage(::faceid::testing::EncodeTiffLayout(card, layout));
    ASSERT_TRUE(r.ok()) << what << ": " << r.status();
    EXPECT_EQ(r->format, "tiff");
    EXPECT_TRUE(Identical(r->bgr, card)) << what;
    const auto g = DecodeImage(::faceid::testing::EncodeTiffLayout(grey, layout));
    ASSERT_TRUE(g.ok()) << what << ": " << g.status();
    EXPECT_TRUE(Identical(g->bgr, grey_bgr)) << what;
  }
}

// Caps this process's address space at 512 MiB above its current size; false on failure.
bool CapAddressSpace() {
  long pages = 0;
  std::ifstream("/proc/self/statm") >> pages;
  const rlim_t cap = static_cast<rlim_t>(pages) * sysconf(_SC_PAGESIZE) + (512ul << 20);
  const rlimit limit{cap, cap};
  return setrlimit(RLIMIT_AS, &limit) == 0;
}

// Child body: 0 when every bomb gets the header verdict under the cap.
int DecodeBombsUnderCap() {
  if (!CapAddressSpace()) return 2;
  int verdicts = 0;
  for (const auto& bomb : Bombs()) {
    const auto r = DecodeImage(bomb.second);
    if (!r.ok() && r.status().code() == absl::StatusCode::kResourceExhausted &&
        r.status().message().find("declares") != std::string_view::npos) {
      ++verdicts;
    }
  }
  return verdicts == static_cast<int>(Bombs().size()) ? 0 : 1;
}

// Child body: 0 when OpenCV decodes the TIFF strip bomb without a cap but fails under it (so
// it does ask for the 800 MB), and DecodeImage gives the header verdict instead.
int DecodeTiffStripBombUnderCap() {
  const std::string bomb = TiffStripBomb();
  const std::vector<uchar> buf(bomb.begin(), bomb.end());
  if (bomb.empty() || cv::imdecode(buf, cv::IMREAD_UNCHANGED).cols != 100) return 5;  // no cap
  if (!CapAddressSpace()) return 2;
  if (!cv::imdecode(buf, cv::IMREAD_UNCHANGED).empty()) return 3;
  const auto r = DecodeImage(bomb);
  if (r.ok() || r.status().code() != absl::StatusCode::kResourceExhausted ||
      r.status().message().find("declares strips") == std::string_view::npos) {
    return 4;
  }
  return 0;
}

// Child body: 0 when a PNG of 30000 x 30000 (0.9 Gpx, under OpenCV's own 1 Gpx guard;
// 2.7 GB as BGR), let through by a lifted pixel limit, fails for lack of memory.
int DecodeAllowedGiantUnderCap() {
  if (!CapAddressSpace()) return 2;
  const std::string ihdr = std::string("\x00\x00\x75\x30\x00\x00\x75\x30\x08\x02\x00\x00\x00", 13);
  const std::string idat = std::string("\x78\x9C\x63\x00\x00\x00\x01\x00\x01", 9);
  const std::string png = std::string("\x89PNG\r\n\x1A\n") +
                          ::faceid::testing::PngChunk("IHDR", ihdr) +
                          ::faceid::testing::PngChunk("IDAT", idat) +
                          ::faceid::testing::PngChunk("IEND", "");
  DecodeLimits limits;
  limits.max_pixels = 1'000'000'000;
  const auto r = DecodeImage(png, limits);
  if (r.ok()) return 3;
  if (r.status().code() == absl::StatusCode::kResourceExhausted) return 0;
  fprintf(stderr, "%s\n", r.status().ToString().c_str());
  return 4;
}

// Proof that no pixel buffer is allocated: in a child process whose address space is capped
// at 512 MiB above its current size, each bomb still gets the header verdict. A decoder that
// allocated first would fail its 7.5 GB allocation and report a different error.
TEST(ImageDecoderDeathTest, BombsAllocateNothingUnderAnAddressSpaceCap) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(DecodeBombsUnderCap()), ::testing::ExitedWithCode(0), "");
}

TEST(ImageDecoderDeathTest, TiffStripBombAllocatesNothingUnderAnAddressSpaceCap) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(DecodeTiffStripBombUnderCap()), ::testing::ExitedWithCode(0), "");
}

// Control for the test above: with the pixel limit lifted, the same cap does stop the
// decode (out of memory), so the cap is tight enough to catch a decoder that allocates first.
TEST(ImageDecoderDeathTest, AddressSpaceCapStopsAnAllocatingDecode) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(DecodeAllowedGiantUnderCap()), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace faceid
