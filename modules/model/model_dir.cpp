// Saving and loading self-contained model directories (config.json + model.pt), with errors that
// name the file and the key or parameter at fault.
#include "modules/model/model_dir.h"

#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <c10/core/DefaultDtype.h>

#include "modules/core/files.h"
#include "modules/core/json_file.h"
#include "modules/model/hf_format.h"

namespace nurture {

namespace fs = std::filesystem;

namespace {

// While it lives, new modules get parameters of `dtype` (LibTorch's default dtype): a bf16
// checkpoint goes into a model that never held an fp32 copy of itself. (The model has no
// buffers; RoPE's angles are computed in fp32 at each forward.)
class DefaultDtypeScope {
 public:
  explicit DefaultDtypeScope(torch::ScalarType dtype) : saved_(c10::get_default_dtype()) {
    c10::set_default_dtype(caffe2::TypeMeta::fromScalarType(dtype));
  }
  ~DefaultDtypeScope() { c10::set_default_dtype(saved_); }
  DefaultDtypeScope(const DefaultDtypeScope&) = delete;
  DefaultDtypeScope& operator=(const DefaultDtypeScope&) = delete;

 private:
  caffe2::TypeMeta saved_;
};

// A module of type M for a Hugging Face directory, built in the dtype it is loaded in.
template <typename M>
M build_for_hf(const TransformerOptions& options, torch::ScalarType dtype) {
  DefaultDtypeScope scope(dtype);
  return M(options);
}

const std::vector<std::string> kKinds = {"lm", "reward", "value"};

bool known_kind(const std::string& kind) {
  for (const auto& k : kKinds) {
    if (k == kind) return true;
  }
  return false;
}

// First line of an exception message (c10::Error appends a long C++ backtrace).
std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

// A reward model whose score bias was set (older nurture versions trained it): Hugging Face's
// head cannot hold it.
bool has_nonzero_score_bias(torch::nn::Module& model) {
  auto params = model.named_parameters(/*recurse=*/true);
  const torch::Tensor* bias = params.find("score.bias");
  return bias != nullptr && bias->abs().max().item<double>() != 0.0;
}

struct ModelConfig {
  std::string kind;
  TransformerOptions options;
};

ModelConfig read_config(const fs::path& dir) {
  if (!fs::is_directory(dir)) {
    throw std::runtime_error(dir.string() + ": model directory does not exist");
  }
  if (is_hf_model_dir(dir)) {
    const HfModelConfig hf = read_hf_config(dir);
    return {hf.kind, hf.options};
  }
  const fs::path file = dir / "config.json";
  if (!std::ifstream(file)) {
    throw std::runtime_error(file.string() +
                             ": missing or unreadable (a model directory holds config.json, model.pt "
                             "and tokenizer.model, as written by save_model)");
  }
  const nlohmann::json json = read_json_file(file, {/*max_bytes=*/1 << 20});
  const std::string where = file.string() + ": ";
  if (!json.is_object()) throw std::runtime_error(where + "expected a JSON object");
  if (!json.contains("format") || json["format"] != kModelFormat) {
    throw std::runtime_error(where + "format: expected \"" + kModelFormat + "\", got " +
                             (json.contains("format") ? json["format"].dump() : "nothing"));
  }
  if (!json.contains("version") || !json["version"].is_number_integer() ||
      json["version"].get<int>() != kModelFormatVersion) {
    throw std::runtime_error(where + "version: expected " + std::to_string(kModelFormatVersion) + ", got " +
                             (json.contains("version") ? json["version"].dump() : "nothing"));
  }
  if (!json.contains("kind") || !json["kind"].is_string() || !known_kind(json["kind"].get<std::string>())) {
    throw std::runtime_error(where + "kind: expected \"lm\", \"reward\" or \"value\", got " +
                             (json.contains("kind") ? json["kind"].dump() : "nothing"));
  }
  if (!json.contains("transformer")) throw std::runtime_error(where + "transformer: missing");
  ModelConfig config;
  config.kind = json["kind"].get<std::string>();
  try {
    config.options = options_from_json(json["transformer"], file.string() + ": transformer");
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  return config;
}

// Every tensor of an archive written by Module::save, by dotted name ("h.0.attn.c_attn.weight").
void collect_tensors(torch::serialize::InputArchive& archive, const std::string& prefix,
                     std::map<std::string, torch::Tensor>& out) {
  for (const auto& key : archive.keys()) {
    c10::IValue value;
    archive.read(key, value);
    if (value.isTensor()) {
      out[prefix + key] = value.toTensor();
    } else if (value.isObject()) {
      torch::serialize::InputArchive child;
      archive.read(key, child);
      collect_tensors(child, prefix + key + ".", out);
    }  // other attributes (the `training` flag) carry no weights
  }
}

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

}  // namespace

void save_model(const fs::path& dir, torch::nn::Module& model, const TransformerOptions& options,
                const std::string& kind, ModelFormat format, const HfSaveOptions& hf) {
  if (!known_kind(kind)) {
    throw std::invalid_argument("save_model: kind \"" + kind + "\" must be \"lm\", \"reward\" or \"value\"");
  }
  if (format == ModelFormat::kAuto) {
    format = kind != "value" && !hf_model_type_of(options).empty() && !has_nonzero_score_bias(model)
                 ? ModelFormat::kHuggingFace
                 : ModelFormat::kNurture;
  }
  if (format == ModelFormat::kHuggingFace) {
    save_hf_model(dir, model, options, kind, hf);
    return;
  }
  std::error_code error;
  fs::create_directories(dir, error);
  if (error)
    throw std::runtime_error(dir.string() + ": cannot create the model directory: " + error.message());

  // Weights first: config.json appears last, so a directory with a config is complete.
  const fs::path weights = dir / "model.pt";
  const fs::path weights_temp = temp_path_beside(weights);
  try {
    torch::serialize::OutputArchive archive;
    model.save(archive);
    archive.save_to(weights_temp.string());
  } catch (const std::exception& e) {
    fs::remove(weights_temp, error);
    throw std::runtime_error(weights.string() + ": cannot write: " + first_line(e.what()));
  }
  rename_into_place(weights_temp, weights);

  nlohmann::json config = {{"format", kModelFormat},
                           {"version", kModelFormatVersion},
                           {"kind", kind},
                           {"transformer", to_json(options)}};
  write_file_atomic(dir / "config.json", config.dump(2) + "\n");
}

TransformerOptions read_model_config(const fs::path& dir) { return read_config(dir).options; }

std::string read_model_kind(const fs::path& dir) { return read_config(dir).kind; }

void load_weights(torch::nn::Module& module, const fs::path& file, const torch::Device& device,
                  const std::string& prefix) {
  if (!fs::is_regular_file(file)) throw std::runtime_error(file.string() + ": missing");
  std::map<std::string, torch::Tensor> stored;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(file.string(), device);
    collect_tensors(archive, "", stored);
  } catch (const std::exception& e) {
    throw std::runtime_error(
        file.string() + ": cannot read the weights (truncated or not a model.pt?): " + first_line(e.what()));
  }
  // The file's tensors under `prefix`, with it stripped.
  std::map<std::string, torch::Tensor> available;
  for (auto& [name, tensor] : stored) {
    if (name.compare(0, prefix.size(), prefix) == 0) available[name.substr(prefix.size())] = tensor;
  }
  if (available.empty()) {
    throw std::runtime_error(file.string() + ": holds no tensors" +
                             (prefix.empty() ? std::string() : " under \"" + prefix + "\""));
  }

  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (auto& item : module.named_parameters(/*recurse=*/true)) targets.emplace_back(item.key(), item.value());
  for (auto& item : module.named_buffers(/*recurse=*/true)) targets.emplace_back(item.key(), item.value());

  // Check everything before touching the module, so a bad file leaves it unchanged.
  for (const auto& [name, target] : targets) {
    auto found = available.find(name);
    if (found == available.end()) {
      throw std::runtime_error(file.string() + ": missing parameter \"" + prefix + name + "\" (shape " +
                               shape_string(target) + ")");
    }
    if (found->second.sizes() != target.sizes()) {
      throw std::runtime_error(file.string() + ": parameter \"" + prefix + name + "\" has shape " +
                               shape_string(found->second) + " but the model expects " +
                               shape_string(target) + " (does config.json match the weights?)");
    }
  }
  if (available.size() != targets.size()) {
    std::map<std::string, bool> wanted;
    for (const auto& target : targets) wanted[target.first] = true;
    for (const auto& entry : available) {
      if (wanted.count(entry.first) == 0) {
        throw std::runtime_error(file.string() + ": unexpected parameter \"" + prefix + entry.first +
                                 "\" (the model has no such parameter; wrong kind or config?)");
      }
    }
  }
  // The model takes the weights' precision (a float64 model directory stays float64).
  const torch::Tensor& first = available.begin()->second;
  if (first.is_floating_point() && !targets.empty() && targets.front().second.scalar_type() != first.scalar_type()) {
    module.to(first.scalar_type());
    targets.clear();
    for (auto& item : module.named_parameters(/*recurse=*/true)) targets.emplace_back(item.key(), item.value());
    for (auto& item : module.named_buffers(/*recurse=*/true)) targets.emplace_back(item.key(), item.value());
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) target.copy_(available.at(name));
}

ModelFormat model_format_of(const fs::path& dir) {
  read_config(dir);  // a directory of either format, valid
  return is_hf_model_dir(dir) ? ModelFormat::kHuggingFace : ModelFormat::kNurture;
}

Transformer load_transformer(const fs::path& dir, const torch::Device& device, c10::optional<torch::ScalarType> dtype) {
  const ModelConfig config = read_config(dir);
  if (is_hf_model_dir(dir)) {
    const HfModelConfig hf = read_hf_config(dir);
    auto model = build_for_hf<Transformer>(config.options, dtype.value_or(hf.dtype));
    model->to(device);
    load_hf_weights(*model, dir, hf, "lm");
    return model;
  }
  Transformer model(config.options);
  model->to(device);
  load_weights(*model, dir / "model.pt", device, config.kind == "lm" ? "" : "transformer.");
  if (dtype) model->to(*dtype);
  return model;
}

RewardModel load_reward_model(const fs::path& dir, const torch::Device& device, c10::optional<torch::ScalarType> dtype) {
  const ModelConfig config = read_config(dir);
  if (is_hf_model_dir(dir)) {
    const HfModelConfig hf = read_hf_config(dir);
    auto model = build_for_hf<RewardModel>(config.options, dtype.value_or(hf.dtype));
    model->to(device);
    load_hf_weights(*model, dir, hf, "reward", /*backbone_only=*/config.kind != "reward");
    return model;
  }
  RewardModel model(config.options);
  model->to(device);
  if (config.kind == "reward") {
    load_weights(*model, dir / "model.pt", device);
  } else {
    load_weights(*model->transformer, dir / "model.pt", device, config.kind == "lm" ? "" : "transformer.");
  }
  if (dtype) model->to(*dtype);
  return model;
}

ValueModel load_value_model(const fs::path& dir, const torch::Device& device, c10::optional<torch::ScalarType> dtype) {
  const ModelConfig config = read_config(dir);
  if (is_hf_model_dir(dir)) {
    const HfModelConfig hf = read_hf_config(dir);
    auto model = build_for_hf<ValueModel>(config.options, dtype.value_or(hf.dtype));
    model->to(device);
    load_hf_weights(*model->transformer, dir, hf, "lm");
    return model;
  }
  ValueModel model(config.options);
  model->to(device);
  if (config.kind == "value") {
    load_weights(*model, dir / "model.pt", device);
  } else {
    load_weights(*model->transformer, dir / "model.pt", device, config.kind == "lm" ? "" : "transformer.");
  }
  if (dtype) model->to(*dtype);
  return model;
}

}  // namespace nurture
