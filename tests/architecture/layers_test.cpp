// The layers of modules/ and pipelines/ (docs/architecture.md): every source sits in a layer's
// folder, and includes only its own layer's headers and those of the layers below it, as the
// nurture_layer() calls in the CMakeLists.txt files list them. (A call into a layer not listed
// fails to link; this catches the includes of header-only parts too.)
#include <gmock/gmock.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "tests/layers.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

namespace fs = std::filesystem;
using namespace nurture::testing;

// Each layer with every layer it reaches through its DEPS, itself included.
std::map<std::string, std::set<std::string>> reachable_layers() {
  std::map<std::string, std::vector<std::string>> deps(kLayers.begin(), kLayers.end());
  std::map<std::string, std::set<std::string>> out;
  for (const auto& [layer, unused] : kLayers) {
    std::vector<std::string> pending = {layer};
    while (!pending.empty()) {
      const std::string next = pending.back();
      pending.pop_back();
      if (!out[layer].insert(next).second) continue;
      for (const auto& d : deps[next]) pending.push_back(d);
    }
  }
  return out;
}

// The folders of modules/ and pipelines/ holding sources, relative to the source tree.
std::set<std::string> source_folders() {
  std::set<std::string> out;
  for (const char* top : {"modules", "pipelines"})
    for (const auto& e : fs::recursive_directory_iterator(source_dir() / top)) {
      const std::string ext = e.path().extension().string();
      if (ext == ".h" || ext == ".cpp")
        out.insert(fs::relative(e.path().parent_path(), source_dir()).string());
    }
  return out;
}

TEST(Layers, TheLayersAreTheFoldersOfModulesAndPipelines) {
  std::set<std::string> layers;
  for (const auto& [layer, unused] : kLayers) layers.insert(layer);
  EXPECT_EQ(source_folders(), layers);
  EXPECT_EQ(layers.size(), 13u);  // 5 in modules/, 8 in pipelines/
}

TEST(Layers, IncludesPointToTheSameLayerOrOneBelow) {
  const auto reach = reachable_layers();
  const std::regex include_line(R"re(^\s*#\s*include\s*"((modules|pipelines|tests)/[^"]+)")re");
  std::vector<std::string> wrong;
  int64_t checked = 0;
  for (const auto& [layer, allowed] : reach) {
    for (const auto& e : fs::directory_iterator(source_dir() / layer)) {
      std::ifstream in(e.path());
      int line_number = 0;
      for (std::string line; std::getline(in, line);) {
        ++line_number;
        std::smatch m;
        if (!std::regex_search(line, m, include_line)) continue;
        ++checked;
        const std::string folder = fs::path(m[1].str()).parent_path().string();
        if (allowed.count(folder) == 0)
          wrong.push_back(fs::relative(e.path(), source_dir()).string() + ":" +
                          std::to_string(line_number) + ": " + layer + " includes " + m[1].str());
      }
    }
  }
  EXPECT_GT(checked, 250);  // the scan found the sources
  EXPECT_THAT(wrong, ::testing::IsEmpty());
}

TEST(Layers, TheModulesLayersIncludeNoPipelines) {
  const auto reach = reachable_layers();
  for (const auto& [layer, allowed] : reach) {
    if (layer.rfind("modules/", 0) != 0) continue;
    for (const auto& reached : allowed) EXPECT_EQ(reached.rfind("modules/", 0), 0u) << layer << " reaches " << reached;
  }
  EXPECT_EQ(reach.at("pipelines/cli").size(), 13u);  // the top reaches every layer
  EXPECT_EQ(reach.at("modules/core").size(), 1u);
}

}  // namespace
}  // namespace nurture
