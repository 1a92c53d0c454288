// `nurture tokenizer encode | decode` through the executable: the ids are the library's, decode
// inverts encode, special tokens are atomic only with --special, and mistakes are usage errors.
#include <gmock/gmock.h>

#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

std::string joined(const std::vector<int64_t>& ids) {
  std::string out;
  for (int64_t id : ids) out += (out.empty() ? "" : " ") + std::to_string(id);
  return out;
}

TEST(TokenizerCommand, EncodeAndDecodeAreTheLibrarys) {
  const fs::path dir = scratch_dir("TokenizerCommand");
  const Tokenizer tokenizer = train_tiny_tokenizer(dir, "the red cat sat on the blue mat.\nthe dog ran.\n");
  const std::string model = (dir / "tok.model").string();
  auto r = run_nurture("tokenizer encode --model " + model + " 'the red cat' 'the dog'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, joined(tokenizer.encode("the red cat")) + "\n" + joined(tokenizer.encode("the dog")) + "\n");

  r = run_nurture("tokenizer decode --model " + model + " " + joined(tokenizer.encode("the blue mat.")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "the blue mat.\n");

  r = run_nurture("tokenizer encode --model " + model + " --special '<|im_start|>user'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find(' ')), std::to_string(tokenizer.im_start_id()));
  r = run_nurture("tokenizer encode --model " + model + " '<|im_start|>user'");
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr(std::to_string(tokenizer.im_start_id()) + " ")));

  write_file(dir / "ids.txt", joined(tokenizer.encode("the cat")) + "\nx 1\n");
  r = run_nurture("tokenizer decode --model " + model + " < " + (dir / "ids.txt").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture tokenizer decode: 'x' on stdin is not a token id"));
  r = run_nurture("tokenizer encode 'the cat'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture tokenizer encode: which tokenizer?"));
  r = run_nurture("tokenizer encode --model " + (dir / "absent.model").string() + " x");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("absent.model"));
}

}  // namespace
}  // namespace nurture
