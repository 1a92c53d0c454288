// Checkpoint manifests: the SHA-256 of known inputs, every malformed manifest named by its key,
// and verification that catches a missing, truncated, grown or altered file.
#include <gmock/gmock.h>

#include "pipelines/train/manifest.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(Manifest, Sha256OfKnownInputs) {
  const fs::path dir = scratch_dir("manifest_sha");
  // FIPS 180-2 examples.
  EXPECT_EQ(sha256_file(write_file(dir / "abc", "abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_file(write_file(dir / "empty", "")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // Longer than the read buffer (64 KiB): a million 'a's.
  EXPECT_EQ(sha256_file(write_file(dir / "million", std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_THROW(sha256_file(dir / "absent"), std::runtime_error);
}

TEST(Manifest, RoundTripsAndNamesEveryMalformedKey) {
  Manifest m;
  m.step = 120;
  m.files["model.pt"] = {42, std::string(64, 'a')};
  const Manifest back = parse_manifest(manifest_to_json(m), "m.json");
  EXPECT_EQ(back.step, 120);
  ASSERT_EQ(back.files.size(), 1u);
  EXPECT_EQ(back.files.at("model.pt").bytes, 42);

  const std::string hash = "\"" + std::string(64, 'b') + "\"";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "m.json: not valid JSON"},
      {"[]", "m.json: manifest: expected an object, got array"},
      {R"({"step": 1, "files": {}})", "m.json: format: expected 1"},
      {R"({"format": 1, "step": -3, "files": {}})", "m.json: step: expected a whole number >= 0"},
      {R"({"format": 1, "step": 1, "files": {}})", "m.json: files: expected an object of file name"},
      {R"({"format": 1, "step": 1, "files": {"../x": {"bytes": 1, "sha256": )" + hash + "}}}",
       "m.json: files.../x: not a file name of the checkpoint directory"},
      {R"({"format": 1, "step": 1, "files": {"a.pt": {"bytes": "1", "sha256": )" + hash + "}}}",
       "m.json: files.a.pt.bytes: expected a whole number >= 0"},
      {R"({"format": 1, "step": 1, "files": {"a.pt": {"bytes": 1, "sha256": "xyz"}}})",
       "m.json: files.a.pt.sha256: expected 64 lowercase hex digits, got \"xyz\""},
      {R"({"format": 1, "step": 1, "files": {"a.pt": 5}})", "m.json: files.a.pt: expected {bytes, sha256}"},
  };
  for (const auto& [text, message] : cases) {
    try {
      parse_manifest(text, "m.json");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(e.what(), HasSubstr(message)) << text;
    }
  }
}

TEST(Manifest, VerificationCatchesEveryKindOfDamage) {
  const fs::path dir = scratch_dir("manifest_verify");
  write_file(dir / "model.pt", std::string(5000, 'm'));
  write_file(dir / "state.json", "{\"step\": 3}\n");
  write_manifest(dir, 3, {"model.pt", "state.json"});
  std::string problem;
  auto m = verify_checkpoint_dir(dir, &problem);
  ASSERT_TRUE(m.has_value()) << problem;
  EXPECT_EQ(m->step, 3);
  EXPECT_EQ(m->files.at("model.pt").bytes, 5000);
  EXPECT_EQ(m->files.at("model.pt").sha256, sha256_file(dir / "model.pt"));

  auto damage = [&](const std::string& content) {
    write_file(dir / "model.pt", content);
    problem.clear();
    EXPECT_FALSE(verify_checkpoint_dir(dir, &problem).has_value());
    return problem;
  };
  EXPECT_EQ(damage(std::string(4000, 'm')), "model.pt: 4000 bytes, the manifest says 5000 (truncated?)");
  EXPECT_EQ(damage(std::string(5001, 'm')), "model.pt: 5001 bytes, the manifest says 5000");
  EXPECT_EQ(damage(std::string(4999, 'm') + "M"),
            "model.pt: its SHA-256 differs from the manifest's (the file was altered or damaged)");
  fs::remove(dir / "model.pt");
  EXPECT_FALSE(verify_checkpoint_dir(dir, &problem).has_value());
  EXPECT_EQ(problem, "model.pt: missing");
  fs::remove(dir / kManifestFileName);
  EXPECT_FALSE(verify_checkpoint_dir(dir, &problem).has_value());
  EXPECT_EQ(problem, "no manifest.json (the checkpoint was not finished)");
}

}  // namespace
}  // namespace nurture
