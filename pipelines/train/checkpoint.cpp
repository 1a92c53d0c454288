// Checkpoints: atomic, verified, pruned (see checkpoint.h).
#include "pipelines/train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>

#include "modules/core/json_file.h"
#include "modules/model/model_dir.h"
#include "pipelines/runtime/log.h"
#include "pipelines/train/manifest.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- state -------------------------------------------------------------------------------------------

json TrainingState::to_json() const {
  return {{"step", step}, {"data_position", data_position}, {"tokens", tokens}, {"extra", extra}};
}

TrainingState TrainingState::from_json(const json& j, const std::string& source) {
  try {
    TrainingState s;
    s.step = j.at("step").get<int64_t>();
    s.data_position = j.at("data_position").get<int64_t>();
    s.tokens = j.at("tokens").get<int64_t>();
    s.extra = j.value("extra", json::object());
    return s;
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": not a training state (" + e.what() + ")");
  }
}

// ---- where checkpoints are ---------------------------------------------------------------------------

fs::path checkpoints_dir(const fs::path& stage_dir) { return stage_dir / "checkpoints"; }

static std::string step_name(int64_t step) {
  std::ostringstream name;
  name << "step-" << std::setw(8) << std::setfill('0') << step;
  return name.str();
}

// The step of a directory named step-N, or -1.
static int64_t step_of(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5) return -1;
  const std::string digits = name.substr(5);
  if (digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

std::vector<fs::path> list_checkpoints(const fs::path& stage_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir(stage_dir), ec)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step >= 0 && entry.is_directory()) found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

// ---- saving ------------------------------------------------------------------------------------------

static void save_module(torch::nn::Module& module, const fs::path& file) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  archive.save_to(file.string());
}

fs::path save_checkpoint(const fs::path& stage_dir, const NamedModules& modules, const NamedOptimizers& optimizers,
                         const TrainingState& state, int64_t keep) {
  const fs::path root = checkpoints_dir(stage_dir);
  const fs::path final_dir = root / step_name(state.step);
  if (!is_main_process()) return final_dir;
  const fs::path tmp = root / (step_name(state.step) + ".tmp");
  try {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    std::vector<std::string> names;
    for (const auto& [name, module] : modules) {
      save_module(*module, tmp / (name + ".pt"));
      names.push_back(name + ".pt");
    }
    for (const auto& [name, optimizer] : optimizers) {
      torch::save(*optimizer, (tmp / (name + ".pt")).string());
      names.push_back(name + ".pt");
    }
    torch::save(at::detail::getDefaultCPUGenerator().get_state(), (tmp / "rng.pt").string());
    names.push_back("rng.pt");
    if (torch::cuda::is_available()) {
      torch::save(at::globalContext().defaultGenerator(torch::Device(torch::kCUDA)).get_state(),
                  (tmp / "rng_cuda.pt").string());
      names.push_back("rng_cuda.pt");
    }
    write_file_durably(tmp / "state.json", state.to_json().dump(2) + "\n");
    names.push_back("state.json");
    write_manifest(tmp, state.step, names);
    sync_path(tmp);
  } catch (const std::exception& e) {
    throw std::runtime_error("writing the checkpoint of step " + std::to_string(state.step) + " into " +
                             tmp.string() + " failed: " + e.what() + "; the earlier checkpoints in " +
                             root.string() + " are intact");
  }
  // Swap in; a checkpoint of the same step (a resumed run saving its last step again) is replaced
  // only once the new one is complete.
  const fs::path old = root / (step_name(state.step) + ".old");
  fs::remove_all(old);
  if (fs::exists(final_dir)) fs::rename(final_dir, old);
  fs::rename(tmp, final_dir);
  sync_path(root);
  fs::remove_all(old);
  const auto all = list_checkpoints(stage_dir);
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep, 1)); i < all.size(); ++i) fs::remove_all(all[i]);
  return final_dir;
}

// ---- loading -----------------------------------------------------------------------------------------

static void load_from(const fs::path& dir, const NamedModules& modules, const NamedOptimizers& optimizers,
                      TrainingState& state) {
  auto checked = [&](const fs::path& file, const std::function<void()>& load) {
    try {
      load();
    } catch (const std::exception& e) {
      throw std::runtime_error(file.string() + ": cannot resume from this checkpoint (" +
                               std::string(e.what()).substr(0, 300) +
                               "); was the stage's model or optimizer configuration changed? Run with "
                               "--force to start the stage over, or delete " + dir.parent_path().string());
    }
  };
  for (const auto& [name, module] : modules) {
    const fs::path file = dir / (name + ".pt");
    torch::Device device = torch::kCPU;
    for (const auto& p : module->parameters()) {
      device = p.device();
      break;
    }
    // load_weights checks every name and shape first (Module::load would take a tensor of another
    // shape as it is), so a checkpoint of another configuration is an error, not a changed model.
    checked(file, [&] { load_weights(*module, file, device); });
  }
  for (const auto& [name, optimizer] : optimizers) {
    const fs::path file = dir / (name + ".pt");
    // The state onto the parameters' device: rank 0 wrote cuda:0, rank 1 trains on cuda:1.
    c10::optional<torch::Device> device;
    for (const auto& group : optimizer->param_groups())
      if (!group.params().empty() && !device) device = group.params().front().device();
    checked(file, [&] { torch::load(*optimizer, file.string(), device); });
  }
  checked(dir / "rng.pt", [&] {
    torch::Tensor rng;
    torch::load(rng, (dir / "rng.pt").string());
    at::Generator generator = at::detail::getDefaultCPUGenerator();  // a handle to the global one
    generator.set_state(rng);
  });
  if (fs::exists(dir / "rng_cuda.pt") && torch::cuda::is_available()) {
    checked(dir / "rng_cuda.pt", [&] {
      torch::Tensor rng;
      torch::load(rng, (dir / "rng_cuda.pt").string());
      at::Generator generator = at::globalContext().defaultGenerator(torch::Device(torch::kCUDA));
      generator.set_state(rng);
    });
  }
  json j;
  checked(dir / "state.json", [&] { j = read_json_file(dir / "state.json", {/*max_bytes=*/1 << 20}); });
  state = TrainingState::from_json(j, (dir / "state.json").string());
}

bool load_checkpoint(const fs::path& stage_dir, const NamedModules& modules, const NamedOptimizers& optimizers,
                     TrainingState& state, const std::string& component) {
  const auto candidates = list_checkpoints(stage_dir);
  if (candidates.empty()) return false;
  std::vector<std::string> damaged;
  for (const auto& dir : candidates) {
    std::string problem;
    if (!verify_checkpoint_dir(dir, &problem)) {
      damaged.push_back(dir.filename().string() + ": " + problem);
      continue;
    }
    for (const auto& d : damaged) warn_line(component, "damaged checkpoint " + d);
    if (!damaged.empty()) warn_line(component, "resuming from the newest intact one, " + dir.string());
    load_from(dir, modules, optimizers, state);
    return true;
  }
  std::string list;
  for (const auto& d : damaged) list += (list.empty() ? "" : "; ") + d;
  throw std::runtime_error("no intact checkpoint in " + checkpoints_dir(stage_dir).string() + " (" + list +
                           "). HINT: run with --force to start the stage over (its outputs are replaced)");
}

}  // namespace nurture
