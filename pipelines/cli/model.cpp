// Flags, loading and sampling shared by `nurture generate` and `nurture chat`.
#include "pipelines/cli/model.h"

#include <sstream>

#include "modules/model/model_dir.h"

namespace nurture::cli {

namespace {

std::string str(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// How --help shows a real default: 1 as "1.0", 0.7 as "0.7".
std::string default_text(double v) {
  std::string text = str(v);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

}  // namespace

void bad_value(const std::string& command, const std::string& flag, const std::string& what) {
  throw UsageError("nurture " + command + ": " + flag + " " + what + " (see nurture " + command + " --help)");
}

torch::Device parse_device(const std::string& command, const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name != "cuda") bad_value(command, "--device", "must be cpu or cuda, got '" + name + "'");
  if (!torch::cuda::is_available())
    bad_value(command, "--device", "cuda: no CUDA device is available to this LibTorch; use --device cpu");
  return torch::kCUDA;
}

c10::optional<torch::ScalarType> parse_dtype(const std::string& command, const std::string& name) {
  if (name.empty()) return c10::nullopt;
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "f16" || name == "fp16" || name == "float16") return torch::kFloat16;
  bad_value(command, "--dtype", "must be fp32, bf16 or f16, got '" + name + "'");
}

void add_chat_template_option(po::options_description& options) {
  options.add_options()("chat-template", po::value<std::string>()->default_value("auto"),
                        "auto (the model's own template), chatml, qwen3, llama3, llama3.1 or transcript");
}

std::shared_ptr<const ChatTemplate> chat_template_option(const std::string& command, const po::variables_map& vm,
                                                         const Tokenizer& tokenizer) {
  const std::string name = vm["chat-template"].as<std::string>();
  std::shared_ptr<const ChatTemplate> found;
  try {
    found = resolve_chat_template(name, tokenizer, "--chat-template " + name);
    found->stop_ids(tokenizer);  // the tokens it needs are there
  } catch (const std::runtime_error& e) {
    throw UsageError("nurture " + command + ": " + e.what());
  }
  return found;
}

LoadedModel load_model_dir(const std::string& command, const std::filesystem::path& dir,
                           const torch::Device& device, c10::optional<torch::ScalarType> dtype) {
  if (!std::filesystem::is_directory(dir))
    bad_value(command, "--model", dir.string() + ": no such directory (a model directory holds "
                                                 "config.json, the weights and tokenizer.model)");
  if (!std::filesystem::is_regular_file(dir / "config.json"))
    bad_value(command, "--model", (dir / "config.json").string() + " is missing; is " + dir.string() +
                                      " a model directory?");
  if (!std::filesystem::is_regular_file(dir / kTokenizerFileName) &&
      !std::filesystem::is_regular_file(dir / kHfTokenizerFileName))
    bad_value(command, "--model", dir.string() + " has no tokenizer (" + kTokenizerFileName + " or " +
                                      kHfTokenizerFileName + ")");
  bool weights = false;
  for (const char* file : {"model.pt", "model.safetensors", "model.safetensors.index.json"})
    weights = weights || std::filesystem::is_regular_file(dir / file);
  if (!weights)
    bad_value(command, "--model", dir.string() + " has no weights (model.pt, or a Hugging Face directory's "
                                                 "model.safetensors or model.safetensors.index.json)");
  LoadedModel loaded = [&] {
    try {
      return LoadedModel{load_transformer(dir, device, dtype), Tokenizer::load(dir.string())};
    } catch (const std::runtime_error& e) {
      throw UsageError("nurture " + command + ": " + std::string(e.what()));
    }
  }();
  // A model may have more embedding rows than its tokenizer has pieces (padded), never fewer.
  if (loaded.tokenizer.vocab_size() > loaded.model->options.vocab_size())
    bad_value(command, "--model", loaded.tokenizer.source() + " has " +
                                      std::to_string(loaded.tokenizer.vocab_size()) + " pieces but " +
                                      (dir / "config.json").string() + " says vocab_size " +
                                      std::to_string(loaded.model->options.vocab_size()) +
                                      ": the tokenizer is not the one the model was trained with");
  return loaded;
}

void add_sampling_options(po::options_description& options, const SamplingOptions& defaults) {
  options.add_options()
      ("max-new-tokens", po::value<int64_t>()->default_value(defaults.max_new_tokens()),
       "most tokens to generate (fewer if the model's block_size is reached)")
      ("temperature", po::value<double>()->default_value(defaults.temperature(), default_text(defaults.temperature())),
       "softmax temperature; 0 = greedy")
      ("top-k", po::value<int64_t>()->default_value(defaults.top_k()), "sample from the K most likely tokens (0 = all)")
      ("top-p", po::value<double>()->default_value(defaults.top_p(), default_text(defaults.top_p())),
       "sample from the smallest set of tokens with probability >= P (1 = all)");
}

SamplingOptions sampling_options(const std::string& command, const po::variables_map& vm) {
  const auto sampling = SamplingOptions()
                            .max_new_tokens(vm["max-new-tokens"].as<int64_t>())
                            .temperature(vm["temperature"].as<double>())
                            .top_k(vm["top-k"].as<int64_t>())
                            .top_p(vm["top-p"].as<double>());
  if (sampling.max_new_tokens() < 1)
    bad_value(command, "--max-new-tokens",
              "must be at least 1, got " + std::to_string(sampling.max_new_tokens()));
  if (sampling.temperature() < 0)
    bad_value(command, "--temperature", "must be >= 0 (0 = greedy), got " + str(sampling.temperature()));
  if (sampling.top_k() < 0)
    bad_value(command, "--top-k", "must be >= 0 (0 = off), got " + std::to_string(sampling.top_k()));
  if (!(sampling.top_p() > 0 && sampling.top_p() <= 1))
    bad_value(command, "--top-p", "must be in (0, 1] (1 = off), got " + str(sampling.top_p()));
  return sampling;
}

std::vector<int64_t> sample_reply(LoadedModel& loaded, const std::vector<int64_t>& prompt,
                                  const SamplingOptions& sampling, const std::vector<int64_t>& stop_ids,
                                  at::Generator& generator) {
  const int64_t pad = loaded.tokenizer.pad_id();
  auto settings = SamplingOptions(sampling)
                      .stop_ids(stop_ids)
                      .pad_id(pad >= 0 && pad < loaded.model->options.vocab_size() ? pad : 0)
                      .vocab_limit(loaded.tokenizer.vocab_size());
  return reply_ids(generate(loaded.model, {prompt}, settings, generator)).front();
}

}  // namespace nurture::cli
