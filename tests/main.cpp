// The test binary's entry point: one GoogleTest binary for the whole suite.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/test_util.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  torch::set_num_threads(2);
  const int result = RUN_ALL_TESTS();
  if (result == 0) std::filesystem::remove_all(nurture::testing::process_scratch_root());
  return result;
}
