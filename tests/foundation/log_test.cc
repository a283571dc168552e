#include "core/log.h"

#include <gtest/gtest.h>

namespace faceid {
namespace {

TEST(InitLoggingTest, AcceptsKnownLevels) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    EXPECT_TRUE(InitLogging(level).ok()) << level;
  }
  EXPECT_EQ(spdlog::get_level(), spdlog::level::off);
  ASSERT_TRUE(InitLogging("info").ok());
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);
}

TEST(InitLoggingTest, RejectsUnknownLevelWithInvalidArgument) {
  const Status status = InitLogging("verbose");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("verbose"), std::string_view::npos);
}

TEST(LoggerTest, SameComponentGivesSameLogger) {
  EXPECT_EQ(Logger("foundation-test").get(), Logger("foundation-test").get());
  EXPECT_NE(Logger("foundation-test").get(), Logger("other").get());
}

}  // namespace
}  // namespace faceid
