// report.png from synthetic run folders: the picture, the "no data" panels and the errors.
#include "trainer/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

namespace faceid {
namespace {

namespace fs = std::filesystem;

constexpr int kWidthPx = 1600, kHeightPx = 1000;

// The ten person colours of the projection panel (RGB; the eighth is grey), and the inside
// of its plot box in pixels, as trainer/report.cc draws them.
constexpr int kPersonColours[10][3] = {
    {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
const cv::Rect kProjectionPx(int(0.690 * kWidthPx) + 3, int((1 - 0.860) * kHeightPx) + 3,
                             int((0.965 - 0.690) * kWidthPx) - 6,
                             int((0.860 - 0.345) * kHeightPx) - 6);

class ReportTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("faceid_report_test_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  void WriteFile(const std::string& name, const std::string& text) const {
    std::ofstream(Path(name)) << text;
  }

  // `epochs` epoch lines of a centre-loss run, each after two step lines.
  void WriteMetrics(int epochs) const {
    std::ofstream out(Path("metrics.jsonl"));
    for (int e = 1; e <= epochs; ++e) {
      for (int step = 0; step < 2; ++step) {
        out << nlohmann::json{{"type", "step"}, {"epoch", e}, {"ce", 7.0}, {"total", 7.5}}.dump()
            << "\n";
      }
      const double ce = 6.0 * std::exp(-0.15 * e);
      out << nlohmann::json{{"type", "epoch"},           {"epoch", e},
                            {"complete", true},          {"ce", ce},
                            {"center", 40.0 - e},        {"triplet", 0.0},
                            {"total", ce + 0.4},         {"acc", 1.0 - std::exp(-0.1 * e)},
                            {"val_auc", 0.7 + 0.01 * e}, {"val_rank1", 0.1 + 0.02 * e}}
                 .dump()
          << "\n";
    }
  }

  // ROC, histograms and a projection of ten well separated people, four images each.
  void WriteEval() const {
    nlohmann::json j;
    nlohmann::json roc = nlohmann::json::array();
    for (int k = 0; k <= 100; ++k) {
      const double far = k == 0 ? 0.0 : std::pow(10.0, -4.0 + 4.0 * k / 100.0);
      roc.push_back({far, std::min(1.0, std::pow(far, 0.2))});
    }
    j["roc"] = roc;
    std::vector<int> genuine(50, 0), impostor(50, 0);
    for (int b = 0; b < 50; ++b) {
      genuine[b] = b > 25 ? 100 - std::abs(b - 40) * 6 : 0;
      impostor[b] = b > 10 && b < 40 ? 100 - std::abs(b - 25) * 6 : 0;
    }
    j["hist_genuine"] = genuine;
    j["hist_impostor"] = impostor;
    j["threshold"] = 0.62;
    j["test"] = {{"auc", 0.95}, {"tar_far_1e-3", 0.25}, {"tar_far_1e-2", 0.4}};
    nlohmann::json names = nlohmann::json::array(), points = nlohmann::json::array();
    for (int p = 0; p < 10; ++p) {
      names.push_back("lfw/Person_Number_" + std::to_string(p) + "_With_A_Long_Name");
      const double angle = 2 * M_PI * p / 10;
      for (int i = 0; i < 4; ++i) {
        points.push_back({std::cos(angle) + 0.03 * i, std::sin(angle) - 0.02 * i, p});
      }
    }
    j["projection"] = {{"names", names}, {"points", points}};
    WriteFile("eval.json", j.dump());
  }

  fs::path dir_;
};

double NonWhiteShare(const cv::Mat& bgr) {
  int non_white = 0;
  for (int y = 0; y < bgr.rows; ++y) {
    for (int x = 0; x < bgr.cols; ++x) {
      const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
      if (p[0] < 245 || p[1] < 245 || p[2] < 245) ++non_white;
    }
  }
  return double(non_white) / double(bgr.total());
}

// How many of the person colours have at least `min_pixels` pixels in `area`; the grey
// one only if `with_grey` (anti-aliased black text has that grey too).
int PersonColoursIn(const cv::Mat& bgr, const cv::Rect& area, bool with_grey, int min_pixels = 20) {
  int found = 0;
  for (const auto& rgb : kPersonColours) {
    if (!with_grey && rgb[0] == rgb[1] && rgb[1] == rgb[2]) continue;
    int pixels = 0;
    for (int y = area.y; y < area.y + area.height; ++y) {
      for (int x = area.x; x < area.x + area.width; ++x) {
        const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
        if (std::abs(p[2] - rgb[0]) <= 6 && std::abs(p[1] - rgb[1]) <= 6 &&
            std::abs(p[0] - rgb[2]) <= 6) {
          ++pixels;
        }
      }
    }
    if (pixels >= min_pixels) ++found;
  }
  return found;
}

TEST_F(ReportTest, WritesAReadablePictureWithEveryPanelAndPrintsNothing) {
  WriteMetrics(12);
  WriteEval();
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const Status s = WriteReport(dir_.string(), Path("report.png"));
  const std::string out = testing::internal::GetCapturedStdout();
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(out, "");
  EXPECT_EQ(err, "");

  const cv::Mat png = cv::imread(Path("report.png"), cv::IMREAD_COLOR);
  ASSERT_FALSE(png.empty());
  EXPECT_EQ(png.cols, kWidthPx);
  EXPECT_EQ(png.rows, kHeightPx);
  const double ink = NonWhiteShare(png);
  EXPECT_GT(ink, 0.04) << "mostly blank";
  EXPECT_LT(ink, 0.5) << "background is not white";
  EXPECT_EQ(PersonColoursIn(png, kProjectionPx, true), 10) << "one colour per person";
}

TEST_F(ReportTest, WithoutEvalJsonTheEvalPanelsSayNoData) {
  WriteMetrics(5);
  testing::internal::CaptureStderr();
  const Status s = WriteReport(dir_.string(), Path("report.png"));
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  ASSERT_TRUE(s.ok()) << s;
  const cv::Mat png = cv::imread(Path("report.png"), cv::IMREAD_COLOR);
  ASSERT_EQ(png.size(), cv::Size(kWidthPx, kHeightPx));
  EXPECT_EQ(PersonColoursIn(png, kProjectionPx, false), 0);
  EXPECT_GT(NonWhiteShare(png(kProjectionPx)), 0.003) << "the panel shows its \"no data\" text";
  EXPECT_GT(NonWhiteShare(png), 0.02) << "the epoch panels are still drawn";
}

TEST_F(ReportTest, SingleEpochAndBrokenEvalJsonStillDraw) {
  WriteMetrics(1);
  WriteFile("eval.json", "{\"roc\": \"not points\", \"projection\": {\"names\": 3}");
  const Status s = WriteReport(dir_.string(), Path("report.png"));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(cv::imread(Path("report.png")).empty());
}

TEST_F(ReportTest, MissingMetricsIsNotFound) {
  const Status s = WriteReport(dir_.string(), Path("report.png"));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("metrics.jsonl"), std::string::npos) << s;
  EXPECT_FALSE(fs::exists(Path("report.png")));
}

TEST_F(ReportTest, MalformedLineIsInvalidArgumentWithItsNumber) {
  WriteFile("metrics.jsonl", "{\"type\":\"epoch\",\"epoch\":1,\"ce\":1}\nnot json\n");
  const Status s = WriteReport(dir_.string(), Path("report.png"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("line 2"), std::string::npos) << s;
}

// Regression: a run killed while writing metrics.jsonl leaves a last line cut short (no
// newline); report refused the whole file. That line is now skipped.
TEST_F(ReportTest, LastLineCutShortIsSkipped) {
  WriteFile("metrics.jsonl",
            "{\"type\":\"epoch\",\"epoch\":1,\"ce\":1}\n{\"type\":\"epoch\",\"epoch\":2,\"c");
  const Status s = WriteReport(dir_.string(), Path("report.png"));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(fs::exists(Path("report.png")));
}

TEST_F(ReportTest, NoEpochLineIsInvalidArgument) {
  WriteFile("metrics.jsonl", "{\"type\":\"step\",\"epoch\":1,\"ce\":7}\n");
  const Status s = WriteReport(dir_.string(), Path("report.png"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no epoch line"), std::string::npos) << s;
}

TEST_F(ReportTest, UnwritableOutputIsInternal) {
  WriteMetrics(3);
  const std::string png = Path("missing-folder/report.png");
  const Status s = WriteReport(dir_.string(), png);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find(png), std::string::npos) << s;
}

// PLplot reads its driver list once per process, so these run in a fresh child process
// ("threadsafe" death tests re-execute the test binary) with PLPLOT_DRV_DIR pointing at a
// folder without the Cairo driver. The child prints the status and exits 0 if it is INTERNAL.
void ExpectInternalWithDriverDir(const fs::path& run, const fs::path& driver_dir,
                                 const std::string& message) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::setenv("PLPLOT_DRV_DIR", driver_dir.c_str(), 1);
        const Status s = WriteReport(run.string(), (run / "report.png").string());
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        std::fflush(stderr);
        const bool internal = s.code() == absl::StatusCode::kInternal;
        const bool written = fs::exists(run / "report.png");
        fs::remove_all(run);  // the child's own folder: its TearDown does not run
        std::_Exit(internal && !written ? 0 : 1);
      },
      testing::ExitedWithCode(0), message);
}

TEST_F(ReportTest, MissingCairoDriverIsInternalWithTheFix) {
  WriteMetrics(3);
  fs::create_directories(dir_ / "drivers");
  WriteFile("drivers/null.driver_info", "null:Null device:-1:null:42:null\n");
  ExpectInternalWithDriverDir(dir_, dir_ / "drivers",
                              "no memcairo device .*drivers \\(PLPLOT_DRV_DIR\\): install the "
                              "Debian package plplot-driver-cairo");
}

TEST_F(ReportTest, NoPlplotDriversAtAllIsInternalNotAnExit) {
  WriteMetrics(3);
  fs::create_directories(dir_ / "empty");
  ExpectInternalWithDriverDir(dir_, dir_ / "empty", "INTERNAL: PLplot failed .*No device drivers");
}

}  // namespace
}  // namespace faceid
