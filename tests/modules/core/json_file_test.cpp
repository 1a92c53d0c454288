// Bounded JSON reading: the size and depth limits refuse before parsing, with messages naming the
// file; brackets inside strings do not count; what fits parses as nlohmann does.
#include "modules/core/json_file.h"

#include <gmock/gmock.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(JsonFile, DepthIsCountedOutsideStringsOnly) {
  EXPECT_EQ(json_too_deep_at(R"({"a": [[1], {"b": 2}]})", 3), -1);
  EXPECT_EQ(json_too_deep_at(R"({"a": [[1]]})", 2), 7);  // the third bracket
  EXPECT_EQ(json_too_deep_at(R"({"a": "[[[[[[", "b": "\"[[[["})", 1), -1);
  EXPECT_EQ(json_too_deep_at(std::string(1000000, '['), 64), 64);
}

TEST(JsonFile, LimitsAreCheckedBeforeParsing) {
  EXPECT_EQ(parse_json(R"({"a": [1, 2]})", "c.json")["a"][1], 2);
  EXPECT_EQ(error_of<std::runtime_error>([] { parse_json(std::string(65, '[') + std::string(65, ']'), "c.json"); }),
            "c.json: byte 64: JSON nested deeper than 64 levels");
  EXPECT_EQ(error_of<std::runtime_error>([] { parse_json("[1, 2, 3]", "c.json", {/*max_bytes=*/8}); }),
            "c.json: 9 bytes, more than the 8 accepted for this file");
  EXPECT_THAT(error_of<std::runtime_error>([] { parse_json(R"({"a": )", "c.json"); }),
              HasSubstr("c.json: not valid JSON: [json.exception.parse_error"));

  const fs::path dir = scratch_dir("JsonFileLimits");
  const fs::path big = write_file(dir / "big.json", "[" + std::string(2000, ' ') + "]");
  EXPECT_EQ(error_of<std::runtime_error>([&] { read_json_file(big, {/*max_bytes=*/1000}); }),
            big.string() + ": 2002 bytes, more than the 1000 accepted for this file");
  EXPECT_TRUE(read_json_file(big).is_array());
  EXPECT_EQ(error_of<std::runtime_error>([&] { read_json_file(dir / "absent.json"); }),
            (dir / "absent.json").string() + ": missing or unreadable");
}

}  // namespace
}  // namespace nurture
