#include "common/logging.h"

#include <gtest/gtest.h>

#include "common/grpc_status.h"

namespace dsv3 {
namespace {

TEST(LoggingTest, JsonEscaping) {
  std::string out;
  AppendJsonEscaped("a\"b\\c\nd\x01", &out);
  EXPECT_EQ(out, "a\\\"b\\\\c\\nd\\u0001");
}

TEST(LoggingTest, ParsesLevels) {
  LogLevel level;
  EXPECT_TRUE(ParseLogLevel("WARNING", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
  EXPECT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_FALSE(ParseLogLevel("loud", &level));
}

TEST(LoggingTest, LevelFilter) {
  LogConfig config;
  config.min_level = LogLevel::kWarning;
  ConfigureLogging(config);
  EXPECT_FALSE(LogLevelEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogLevelEnabled(LogLevel::kError));
  ConfigureLogging(LogConfig());
  EXPECT_TRUE(LogLevelEnabled(LogLevel::kInfo));
}

TEST(GrpcStatusTest, RoundTripsCodesAndMessages) {
  for (auto status : {absl::InvalidArgumentError("bad"), absl::UnavailableError("gone"),
                      absl::ResourceExhaustedError("full"), absl::OkStatus()}) {
    grpc::Status g = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(g.error_code()), static_cast<int>(status.code()));
    EXPECT_EQ(g.error_message(), std::string(status.message()));
    EXPECT_EQ(FromGrpcStatus(g), status);
  }
}

}  // namespace
}  // namespace dsv3
