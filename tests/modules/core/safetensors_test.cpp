// safetensors: tensors of every supported dtype round-trip bit for bit with their metadata, the
// bytes on disk are the format's (checked on a file written by hand and on one the safetensors
// library wrote), and every way a header can lie is an error naming the file and the tensor,
// before any tensor is read.
#include "modules/core/safetensors.h"

#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

// A file of an 8-byte little-endian length, `header` as it is, then `data`.
fs::path raw_file(const fs::path& path, const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return write_file(path, bytes + header + data);
}

std::string floats(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);
  return out;
}

TEST(Safetensors, EveryDtypeRoundTripsWithTheMetadata) {
  const fs::path file = scratch_dir("SafetensorsRoundTrip") / "model.safetensors";
  torch::manual_seed(0);
  const std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"w.f32", torch::randn({3, 4})},
      {"w.bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"w.f16", torch::randn({2, 1, 3}).to(torch::kFloat16)},
      {"w.f64", torch::randn({2}, torch::kFloat64)},
      {"ids", torch::arange(7)},
      {"mask", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(2.5f)},
      {"empty", torch::zeros({0, 4})},
      {"strided", torch::randn({4, 3}).t()},  // written contiguous
  };
  save_safetensors(file, tensors, {{"format", "pt"}});
  const SafetensorsFile f(file);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(f.entries().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const torch::Tensor back = f.tensor(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(back.equal(t)) << name;
  }
  EXPECT_THAT(error_of<std::runtime_error>([&] { f.tensor("absent"); }), HasSubstr(": no tensor \"absent\""));
}

TEST(Safetensors, TheBytesAreTheFormats) {
  const fs::path dir = scratch_dir("SafetensorsBytes");
  save_safetensors(dir / "a.safetensors", {{"a", torch::tensor({1.0f, 2.0f})}});
  std::string header = R"({"a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  EXPECT_EQ(read_file(dir / "a.safetensors"), read_file(raw_file(dir / "by_hand.safetensors", header, floats({1, 2}))));

  // Written by hand with another key order, no padding (so the data is unaligned) and metadata.
  const fs::path odd = raw_file(dir / "odd.safetensors",
                                R"({"__metadata__":{"k":"v"},"b":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}})",
                                floats({3, 4}));
  const SafetensorsFile f(odd);
  EXPECT_TRUE(f.tensor("b").equal(torch::tensor({{3.0f, 4.0f}})));
  EXPECT_EQ(f.metadata().at("k"), "v");
}

TEST(Safetensors, EveryLieInTheHeaderIsNamed) {
  const fs::path dir = scratch_dir("SafetensorsLies");
  auto error = [&](const std::string& header, const std::string& data) {
    const fs::path file = raw_file(dir / "bad.safetensors", header, data);
    return error_of<std::runtime_error>([&] { SafetensorsFile f(file); });
  };
  const std::string file = (dir / "bad.safetensors").string();
  const std::string data = floats({1, 2});
  EXPECT_THAT(error("{\"a\":", data), HasSubstr(file + ": the header is not valid JSON ([json.exception.parse_error"));
  EXPECT_EQ(error("{\"a\":" + std::string(10, '[') + std::string(10, ']') + "}", data),
            file + ": the header nests deeper than 8 levels (at byte 12)");
  EXPECT_EQ(error(R"({"a":{"dtype":"F8","shape":[2],"data_offsets":[0,8]}})", data),
            file + ": tensor \"a\": unsupported dtype \"F8\" (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
  EXPECT_EQ(error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", data),
            file + ": tensor \"a\": data_offsets [0, 12] are outside the file's 8 data bytes");
  EXPECT_EQ(error(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
            file + ": tensor \"a\": 8 bytes for F32 [3], which needs 12");
  EXPECT_EQ(error(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
            file + ": tensor \"a\": shape [-2] is not whole numbers");
  EXPECT_EQ(error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                  data),
            file + ": tensor \"b\" overlaps tensor \"a\"");
  EXPECT_EQ(error(R"({"a":{"dtype":"F32","shape":[2]}})", data), file + ": tensor \"a\": expected {dtype, shape, data_offsets}");
  EXPECT_EQ(error(R"({"__metadata__":{"k":1}})", ""), file + ": __metadata__.k is not a string");
  EXPECT_EQ(error(R"([1, 2])", ""), file + ": the header is not a JSON object");

  write_file(dir / "short.safetensors", "abc");
  EXPECT_EQ(error_of<std::runtime_error>([&] { SafetensorsFile f(dir / "short.safetensors"); }),
            (dir / "short.safetensors").string() + ": 3 bytes, too short for a safetensors header");
  std::string huge(8, '\0');
  huge[0] = static_cast<char>(0xff);
  huge[1] = static_cast<char>(0xff);  // 65535 header bytes claimed, 4 there
  write_file(dir / "huge.safetensors", huge + "{}  ");
  EXPECT_EQ(error_of<std::runtime_error>([&] { SafetensorsFile f(dir / "huge.safetensors"); }),
            (dir / "huge.safetensors").string() + ": header length 65535 exceeds the file's 4 bytes after it");
  EXPECT_THAT(error_of<std::runtime_error>([&] { SafetensorsFile f(dir / "absent.safetensors"); }),
              HasSubstr("absent.safetensors: cannot open: No such file or directory"));
}

// tests/fixtures/hf/safetensors/: a file the safetensors library wrote, and the values it was given
// (tools/hf/make_fixtures.py).
TEST(Safetensors, ReadsWhatTheSafetensorsLibraryWrote) {
  const fs::path dir = source_dir() / "tests" / "fixtures" / "hf" / "safetensors";
  const auto reference = nlohmann::json::parse(read_file(dir / "reference.json"));
  const SafetensorsFile f(dir / "reference.safetensors");
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"by", "safetensors"}, {"format", "pt"}}));
  ASSERT_EQ(f.entries().size(), reference.size());
  for (const auto& [name, expected] : reference.items()) {
    ASSERT_TRUE(f.contains(name)) << name;
    const torch::Tensor t = f.tensor(name);
    EXPECT_EQ(safetensors_dtype_name(t.scalar_type()), expected["dtype"].get<std::string>()) << name;
    EXPECT_EQ(t.sizes().vec(), expected["shape"].get<std::vector<int64_t>>()) << name;
    const auto values = expected["values"].get<std::vector<double>>();
    const torch::Tensor flat = t.to(torch::kDouble).flatten();
    ASSERT_EQ(flat.numel(), static_cast<int64_t>(values.size())) << name;
    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(flat[i].item<double>(), values[i]) << name << "[" << i << "]";
  }
}

TEST(Safetensors, NamesAreUniqueWhenWriting) {
  const fs::path file = scratch_dir("SafetensorsNames") / "x.safetensors";
  EXPECT_THROW(save_safetensors(file, {{"a", torch::ones(1)}, {"a", torch::ones(1)}}), std::invalid_argument);
  EXPECT_THROW(save_safetensors(file, {{"__metadata__", torch::ones(1)}}), std::invalid_argument);
  EXPECT_FALSE(fs::exists(file));
}

}  // namespace
}  // namespace nurture
