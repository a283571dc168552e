// Pure CLI rules: status names, advice, progress and rate arithmetic, percentiles, chunking.
#include "client/format.h"

#include <gtest/gtest.h>

namespace faceid {
namespace {

TEST(StatusCodeNameTest, NamesEveryCanonicalCode) {
  EXPECT_EQ(StatusCodeName(0), "OK");
  EXPECT_EQ(StatusCodeName(3), "INVALID_ARGUMENT");
  EXPECT_EQ(StatusCodeName(5), "NOT_FOUND");
  EXPECT_EQ(StatusCodeName(8), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(StatusCodeName(14), "UNAVAILABLE");
  EXPECT_EQ(StatusCodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(17), "CODE_17");
  EXPECT_EQ(StatusCodeName(-1), "CODE_-1");
}

// Regression (hostile review): names stored before the server refused steering characters
// were printed raw, so `faceid people` sent an 8-bit CSI and a right-to-left override to the
// terminal.
TEST(PrintableTest, SteeringCharactersBecomeVisibleEscapes) {
  EXPECT_EQ(Printable("csi\u009b2J"), "csi<U+009B>2J");
  EXPECT_EQ(Printable("rlo\u202Eevil"), "rlo<U+202E>evil");
  EXPECT_EQ(Printable("esc\x1b[31mred\nline\x7f"), "esc<U+001B>[31mred<U+000A>line<U+007F>");
  EXPECT_EQ(Printable("iso\u2066x\u2028"), "iso<U+2066>x<U+2028>");
  const std::string ordinary = "Zoë Ærø 李小龍 עברית 😀";
  EXPECT_EQ(Printable(ordinary), ordinary);
  EXPECT_EQ(Printable(""), "");
}

TEST(AdviceTest, UnreachableServerNamesTheAddress) {
  const std::string text = DescribeRpcFailure(14, "failed to connect", "127.0.0.1:9", true, 30);
  EXPECT_EQ(text.rfind("error: UNAVAILABLE: failed to connect\n", 0), 0u) << text;
  EXPECT_NE(text.find("server not reachable at 127.0.0.1:9"), std::string::npos) << text;
  EXPECT_NE(text.find("is faceid-server running?"), std::string::npos) << text;
}

TEST(AdviceTest, ReachableButUnavailableServerSaysRetry) {
  const std::string advice = AdviceFor(14, "h:1", false, 30);
  EXPECT_EQ(advice.find("not reachable"), std::string::npos);
  EXPECT_NE(advice.find("retry"), std::string::npos);
}

TEST(AdviceTest, MissingKeyPointsAtTheFlagAndVariable) {
  const std::string advice = AdviceFor(16, "h:1", false, 30);
  EXPECT_NE(advice.find("--api-key"), std::string::npos);
  EXPECT_NE(advice.find("FACEID_API_KEY"), std::string::npos);
}

TEST(AdviceTest, DeadlineNamesTheTimeout) {
  EXPECT_NE(AdviceFor(4, "h:1", false, 2.5).find("2.5s"), std::string::npos);
}

TEST(AdviceTest, NotFoundHasNoAdviceBeyondTheServerMessage) {
  EXPECT_EQ(AdviceFor(5, "h:1", false, 30), "");
  EXPECT_EQ(DescribeRpcFailure(5, "no person 'x'", "h:1", false, 30),
            "error: NOT_FOUND: no person 'x'");
}

TEST(ProgressTest, RateAndEta) {
  EXPECT_DOUBLE_EQ(RatePerSecond(50, 10), 5);
  EXPECT_DOUBLE_EQ(RatePerSecond(50, 0), 0);
  EXPECT_DOUBLE_EQ(EtaSeconds(50, 100, 10), 10);
  EXPECT_DOUBLE_EQ(EtaSeconds(100, 100, 10), 0);
  EXPECT_LT(EtaSeconds(0, 100, 10), 0);
  EXPECT_LT(EtaSeconds(5, 100, 0), 0);
}

TEST(ProgressTest, DurationFormats) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(42.4), "42s");
  EXPECT_EQ(FormatDuration(187), "3m07s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "--");
}

TEST(ProgressTest, LineShowsBarCountRateAndEta) {
  EXPECT_EQ(FormatProgressLine(50, 100, 4, 10), "[#####     ] 50/100 12.5/s ETA 4s");
  EXPECT_EQ(FormatProgressLine(0, 100, 0, 4), "[    ] 0/100 0.0/s ETA --");
  EXPECT_EQ(FormatProgressLine(100, 100, 10, 4), "[####] 100/100 10.0/s ETA 0s");
}

TEST(ProgressTest, LineClampsDoneAndSurvivesEmptyTotal) {
  EXPECT_EQ(FormatProgressLine(7, 5, 1, 5), "[#####] 5/5 5.0/s ETA 0s");
  EXPECT_EQ(FormatProgressLine(0, 0, 0, 2), "[##] 0/0 0.0/s ETA --");
}

TEST(LatencyTest, NearestRankPercentiles) {
  std::vector<double> ms;
  for (int i = 100; i >= 1; --i) ms.push_back(i);  // unsorted on purpose
  const LatencySummary s = SummarizeLatencies(ms, 2.0);
  EXPECT_EQ(s.count, 100);
  EXPECT_DOUBLE_EQ(s.qps, 50);
  EXPECT_DOUBLE_EQ(s.p50_ms, 50);
  EXPECT_DOUBLE_EQ(s.p90_ms, 90);
  EXPECT_DOUBLE_EQ(s.p99_ms, 99);
  EXPECT_DOUBLE_EQ(s.max_ms, 100);
  EXPECT_DOUBLE_EQ(s.mean_ms, 50.5);
}

TEST(LatencyTest, SmallAndEmptySamples) {
  EXPECT_DOUBLE_EQ(PercentileMs({}, 50), 0);
  EXPECT_DOUBLE_EQ(PercentileMs({7}, 99), 7);
  EXPECT_DOUBLE_EQ(PercentileMs({1, 2, 3}, 0), 1);
  EXPECT_DOUBLE_EQ(PercentileMs({1, 2, 3}, 50), 2);
  const LatencySummary s = SummarizeLatencies({}, 1);
  EXPECT_EQ(s.count, 0);
  EXPECT_DOUBLE_EQ(s.qps, 0);
}

TEST(FileNameTest, ImageExtensionsCaseInsensitive) {
  EXPECT_TRUE(HasImageExtension("a/b/Photo.JPG"));
  EXPECT_TRUE(HasImageExtension("x.jpeg"));
  EXPECT_TRUE(HasImageExtension("s1/1.pgm"));
  EXPECT_TRUE(HasImageExtension("x.webp"));
  EXPECT_FALSE(HasImageExtension("notes.txt"));
  EXPECT_FALSE(HasImageExtension("dir.jpg/README"));
  EXPECT_FALSE(HasImageExtension("noext"));
  EXPECT_FALSE(HasImageExtension(".jpgx"));
}

TEST(ChunkTest, SplitsIntoBoundedRanges) {
  using Ranges = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(ChunkRanges(0, 8), Ranges{});
  EXPECT_EQ(ChunkRanges(5, 8), (Ranges{{0, 5}}));
  EXPECT_EQ(ChunkRanges(17, 8), (Ranges{{0, 8}, {8, 16}, {16, 17}}));
  EXPECT_EQ(ChunkRanges(2, 0), (Ranges{{0, 1}, {1, 2}}));
}

}  // namespace
}  // namespace faceid
