// The JSONL readers against what people and scripts really hand them: invalid UTF-8, binary
// junk, a line far too long, wrong types, empty files. Each is `file:line: what`, or skipped and
// counted with skip_bad_lines — never a crash.
#include <gmock/gmock.h>

#include "pipelines/data/jsonl.h"
#include "pipelines/runtime/log.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(Jsonl, EveryKindOfBadLineNamesFileAndLine) {
  const fs::path dir = scratch_dir("jsonl_bad");
  const std::string good = R"({"prompt": "q", "chosen": "a", "rejected": "b"})";
  struct Case {
    std::string line, message;
  };
  const std::vector<Case> cases = {
      {"{\"prompt\": \"caf\xe9\", \"chosen\": \"a\", \"rejected\": \"b\"}", "not valid JSON ("},  // Latin-1
      {std::string("\x00\x01\x02\xff\xfe", 5), "not valid JSON ("},
      {"[1, 2]", "expected a JSON object, got array"},
      {R"({"prompt": 5, "chosen": "a", "rejected": "b"})", "\"prompt\": expected a non-empty list of {role, content}"},
      {R"({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"})",
       "chat message 0: unknown role \"robot\"; expected system, user or assistant"},
      {R"({"prompt": "q", "chosen": ["a"], "rejected": "b"})", "\"chosen\": expected a string, got array"},
      {R"({"prompt": "q", "chosen": "a"})", "missing key \"rejected\""},
      {R"({"prompt": "q", "chosen": "a", "rejected": "b")", "not valid JSON ("},
      {R"({"prompt": "q", "chosen": "a", "rejected": "b", "x": )" + std::string(40, '[') + std::string(40, ']') + "}",
       "nested deeper than 32 levels (at byte 84)"},
  };
  for (const auto& c : cases) {
    const fs::path file = write_file(dir / "prefs.jsonl", good + "\n\n" + c.line + "\n" + good + "\n");
    const std::string error = error_of<std::runtime_error>([&] { load_preferences(file, false); });
    EXPECT_THAT(error, HasSubstr(file.string() + ":3: " + c.message)) << c.line;
    EXPECT_THAT(error, HasSubstr("(skip_bad_lines: true skips such lines)"));
    // The message quotes bad bytes escaped, so it prints and goes into stage.json as it is.
    EXPECT_EQ(escape_invalid_utf8(error), error);
    EXPECT_NO_THROW(nlohmann::json(error).dump()) << error;
    ReadStats stats;
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(load_preferences(file, true, &stats).size(), 2u) << c.line;
    EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("[data] warning: " + file.string() + ":3: skipped"));
    EXPECT_EQ(stats.skipped, 1);
    EXPECT_EQ(stats.lines, 3);
  }
}

// A pair whose chosen and rejected are the same reply teaches nothing: one warning names the first
// and counts them all; the pairs are still read (a file of them is the user's to fix).
TEST(Jsonl, IdenticalPreferencePairsAreCountedInOneWarning) {
  const fs::path dir = scratch_dir("jsonl_identical");
  const std::string same = R"({"prompt": "q", "chosen": "a", "rejected": "a"})";
  const std::string good = R"({"prompt": "q", "chosen": "a", "rejected": "b"})";
  const fs::path file = write_file(dir / "prefs.jsonl", good + "\n" + same + "\n" + good + "\n" + same + "\n");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(load_preferences(file, false).size(), 4u);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(err, HasSubstr(file.string() + ":2: chosen and rejected are the same reply, which teaches nothing "
                                             "(2 such pairs in the file)"));
  EXPECT_EQ(err.find("teaches nothing"), err.rfind("teaches nothing"));  // once
  ::testing::internal::CaptureStderr();
  load_preferences(write_file(dir / "ok.jsonl", good + "\n"), false);
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find("teaches nothing"), std::string::npos);
}

TEST(Jsonl, InvalidUtf8IsEscapedByteByByte) {
  EXPECT_EQ(escape_invalid_utf8("caf\xe9!"), "caf\\xE9!");
  EXPECT_EQ(escape_invalid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(escape_invalid_utf8("\xc0\xaf"), "\\xC0\\xAF");        // overlong '/'
  EXPECT_EQ(escape_invalid_utf8("\xed\xa0\x80"), "\\xED\\xA0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(escape_invalid_utf8("\xe2\x82"), "\\xE2\\x82");        // cut short
  EXPECT_EQ(escape_invalid_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(Jsonl, ALineTooLongIsReadPastNotStored) {
  const fs::path dir = scratch_dir("jsonl_long");
  const std::string good = R"({"prompt": "q", "reference": "r"})";
  const fs::path file = write_file(dir / "prompts.jsonl", good + "\n{\"prompt\": \"" +
                                                              std::string(kMaxJsonlLineBytes + 10, 'x') + "\"}\n" +
                                                              good + "\n");
  EXPECT_EQ(error_of<std::runtime_error>([&] { load_prompts(file, false); }),
            file.string() + ":2: line longer than 64 MiB (one record per line; is this a JSONL file?) "
                            "(skip_bad_lines: true skips such lines)");
  ::testing::internal::CaptureStderr();
  const auto prompts = load_prompts(file, true);
  ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(prompts.size(), 2u);  // the line after it is read whole
  EXPECT_EQ(prompts[1].reference, "r");
}

TEST(Jsonl, EmptyAndMissingFilesAreErrors) {
  const fs::path dir = scratch_dir("jsonl_empty");
  for (const std::string& text : {std::string(), std::string("\n \n\t\n")}) {
    const fs::path file = write_file(dir / "icl.jsonl", text);
    EXPECT_EQ(error_of<std::runtime_error>([&] { load_icl_tasks(file, false); }), file.string() + ": no usable example (the data set is empty)");
  }
  // Every line bad and skipped: nothing left is an error too, not a zero-step run.
  const fs::path junk = write_file(dir / "junk.jsonl", "junk\nmore junk\n");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(error_of<std::runtime_error>([&] { load_icl_tasks(junk, true); }), junk.string() + ": no usable example (the data set is empty)");
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(error_of<std::runtime_error>([&] { load_icl_tasks(dir / "absent.jsonl", false); }),
            (dir / "absent.jsonl").string() + ": cannot read (does the file exist?)");
  EXPECT_EQ(error_of<std::runtime_error>([&] { load_icl_tasks(dir, false); }), dir.string() + ": is a directory, not a JSONL file");
}

}  // namespace
}  // namespace nurture
