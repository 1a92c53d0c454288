// Tests of the metrics file: on resume, records past the checkpoint and a half-written last line go
// and the rest stays byte for byte; a log that cannot be written is an error.
#include "pipelines/runtime/log.h"

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

using testing::read_file;
using testing::write_file;

TEST(MetricsLog, ResumeDropsRecordsPastTheCheckpointAndAHalfWrittenLine) {
  const auto dir = testing::scratch_dir("log_drop");
  const std::string kept = "{\"step\":1,\"loss\":4.5}\n{\"step\":2,\"loss\":4.25}\n{\"step\":3,\"loss\":4}\n";
  const auto file = write_file(dir / "metrics.jsonl", kept + "{\"step\":4,\"loss\":3.75}\n{\"step\":5,\"lo");
  drop_metrics_after(file, "step", 3);
  EXPECT_EQ(read_file(file), kept);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()), 1);

  MetricsLog log(file);  // appends after what was kept
  log.write({{"step", 4}, {"loss", 3.5}});
  EXPECT_EQ(read_file(file), kept + "{\"loss\":3.5,\"step\":4}\n");
}

TEST(MetricsLog, ALogThatCannotBeWrittenIsAnErrorNamingIt) {
  const auto missing = testing::scratch_dir("log_missing") / "absent" / "metrics.jsonl";
  EXPECT_EQ(testing::error_of<std::runtime_error>([&] { MetricsLog log(missing); }),
            missing.string() + ": cannot open the metrics log for appending");
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full here";
  MetricsLog full("/dev/full");  // every write fails with ENOSPC
  EXPECT_EQ(testing::error_of<std::runtime_error>([&] { full.write({{"step", 1}}); }),
            "/dev/full: cannot write the metrics log (is the disk full?)");
}

}  // namespace
}  // namespace nurture
