// `nurture score`: the model as a scorer. A language model gives each input its log-probability
// (lm-eval's loglikelihood; the seeds' "a language model gives each sentence a probability"), a
// reward model its reward; one JSON object per input line, in order, on stdout.
#include <fstream>
#include <functional>
#include <optional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "modules/model/model_dir.h"
#include "modules/text/chat_template.h"
#include "pipelines/cli/model.h"

namespace nurture::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kScoreUsage =
    "score --model DIR --input FILE.jsonl [--per-token] [--batch N] [--chat-template NAME] [--dtype D]\n"
    "              [--device cpu|cuda]";

constexpr const char* kScoreSummary =
    "Scores every line of FILE.jsonl with the model in DIR and prints one JSON object per line:\n"
    "  {\"text\": ...}                      every token after the first scored (after BOS where the\n"
    "                                     tokenizer starts sequences with one)\n"
    "  {\"prompt\": ..., \"completion\": ...}  the completion's tokens scored, given the prompt\n"
    "  {\"messages\": [...]}                the assistant replies scored (the chat template, as sft trains)\n"
    "  {\"ids\": [...]}                     given token ids; every id after the first scored\n"
    "A language model prints {\"logprob\", \"tokens\", \"perplexity\"} (natural log, summed over\n"
    "the scored tokens; perplexity = exp(-logprob / tokens)) and with --per-token also\n"
    "\"token_logprobs\"; a reward model prints {\"reward\"}. {\"ids\"} lines need no tokenizer: a\n"
    "directory without one scores those alone.";

// One input line as ids and which of them are scored (mask[t] = 1: ids[t] is predicted from
// ids[..t-1]; the first id is never scored).
struct Scored {
  std::vector<int64_t> ids;
  std::vector<uint8_t> mask;
};

std::vector<int64_t> ids_of(const json& value, const std::string& where, int64_t vocab) {
  if (!value.is_array()) throw UsageError(where + "ids: expected a list of token ids");
  std::vector<int64_t> ids;
  for (const auto& id : value) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab)
      throw UsageError(where + "ids: " + id.dump() + " is not a token id of this model (0.." + std::to_string(vocab - 1) + ")");
    ids.push_back(id.get<int64_t>());
  }
  return ids;
}

std::string string_of(const json& record, const std::string& key, const std::string& where) {
  if (!record[key].is_string()) throw UsageError(where + key + ": expected a string, got " + record[key].dump());
  return record[key].get<std::string>();
}

// `scored` with its first token unscored (nothing predicts it), if it has tokens and fits the context.
Scored checked(Scored scored, const std::string& where, int64_t block_size) {
  if (!scored.mask.empty()) scored.mask[0] = 0;
  if (scored.ids.empty()) throw UsageError(where + "nothing to score: the line has no tokens");
  if (static_cast<int64_t>(scored.ids.size()) > block_size)
    throw UsageError(where + std::to_string(scored.ids.size()) + " tokens, more than the model's context of " +
                     std::to_string(block_size));
  return scored;
}

// The model scored and its tokenizer; a directory without tokenizer files scores {"ids"} lines only.
struct ScoreModel {
  Transformer model{nullptr};
  std::optional<Tokenizer> tokenizer;
  std::string dir;

  // The tokenizer a line of `where` needs to become ids.
  const Tokenizer& tokenizer_for(const std::string& where) const {
    if (!tokenizer)
      throw UsageError(where + dir + " has no tokenizer (" + kTokenizerFileName + " or " + kHfTokenizerFileName +
                       "): only {\"ids\": [...]} lines can be scored with it");
    return *tokenizer;
  }
  int64_t pad_id() const { return tokenizer ? std::max<int64_t>(tokenizer->pad_id(), 0) : 0; }
};

ScoreModel load_score_model(const fs::path& dir, const torch::Device& device, c10::optional<torch::ScalarType> dtype) {
  if (fs::is_regular_file(dir / kTokenizerFileName) || fs::is_regular_file(dir / kHfTokenizerFileName)) {
    LoadedModel loaded = load_model_dir("score", dir, device, dtype);
    return {loaded.model, std::move(loaded.tokenizer), dir.string()};
  }
  if (!fs::is_directory(dir)) bad_value("score", "--model", dir.string() + ": no such directory");
  try {
    return {load_transformer(dir, device, dtype), std::nullopt, dir.string()};
  } catch (const std::runtime_error& e) {
    throw UsageError("nurture score: --model " + std::string(e.what()));
  }
}

Scored parse_line(const json& record, const std::string& where, const ScoreModel& loaded,
                  const std::function<std::shared_ptr<const ChatTemplate>()>& chat_template) {
  Scored out;
  if (record.contains("ids")) {
    out.ids = ids_of(record["ids"], where, loaded.model->options.vocab_size());
    out.mask.assign(out.ids.size(), 1);
    return checked(std::move(out), where, loaded.model->options.block_size());
  }
  const Tokenizer& tokenizer = loaded.tokenizer_for(where);
  if (record.contains("text")) {
    out.ids = tokenizer.prefix_ids();  // BOS where the tokenizer puts one (Llama 3), then the text
    const auto text = tokenizer.encode(string_of(record, "text", where));
    out.ids.insert(out.ids.end(), text.begin(), text.end());
    out.mask.assign(out.ids.size(), 1);
  } else if (record.contains("prompt") && record.contains("completion")) {
    out.ids = tokenizer.prefix_ids();
    const auto prompt = tokenizer.encode(string_of(record, "prompt", where));
    out.ids.insert(out.ids.end(), prompt.begin(), prompt.end());
    const auto completion = tokenizer.encode(string_of(record, "completion", where));
    out.mask.assign(out.ids.size(), 0);
    out.ids.insert(out.ids.end(), completion.begin(), completion.end());
    out.mask.resize(out.ids.size(), 1);
  } else if (record.contains("messages")) {
    std::vector<Message> messages;
    if (!record["messages"].is_array()) throw UsageError(where + "messages: expected a list");
    for (const auto& m : record["messages"]) {
      if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
          !m["content"].is_string())
        throw UsageError(where + "messages: each message is {\"role\": ..., \"content\": ...}, got " + m.dump());
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    const RenderedChat chat = chat_template()->render(tokenizer, messages, /*add_generation_prompt=*/false);
    out.ids = chat.ids;
    out.mask = chat.loss_mask;
  } else {
    throw UsageError(where + "expected \"text\", \"prompt\" and \"completion\", \"messages\" or \"ids\"");
  }
  return checked(std::move(out), where, loaded.model->options.block_size());
}

// The batch right-padded: ids and attention mask [B, T].
std::pair<torch::Tensor, torch::Tensor> pad_batch(const std::vector<Scored>& batch, int64_t pad_id,
                                                  const torch::Device& device) {
  size_t length = 0;
  for (const auto& s : batch) length = std::max(length, s.ids.size());
  auto ids = torch::full({static_cast<int64_t>(batch.size()), static_cast<int64_t>(length)}, pad_id, torch::kLong);
  auto mask = torch::zeros_like(ids);
  for (size_t b = 0; b < batch.size(); ++b) {
    const auto n = static_cast<int64_t>(batch[b].ids.size());
    ids[b].narrow(0, 0, n).copy_(torch::tensor(batch[b].ids, torch::kLong));
    mask[b].narrow(0, 0, n).fill_(1);
  }
  return {ids.to(device), mask.to(device)};
}

// Log-probs of each scored token -> one JSON object per row.
std::vector<json> score_lm(ScoreModel& loaded, const std::vector<Scored>& batch, bool per_token,
                           const torch::Device& device) {
  auto [ids, mask] = pad_batch(batch, loaded.pad_id(), device);
  const auto logits = loaded.model->forward(ids, mask).to(torch::kFloat64);  // [B, T, V]
  const auto logprobs = torch::log_softmax(logits.narrow(1, 0, ids.size(1) - 1), -1)
                            .gather(-1, ids.narrow(1, 1, ids.size(1) - 1).unsqueeze(-1))
                            .squeeze(-1)
                            .cpu();  // [B, T-1]: log p(ids[t+1] | ids[..t])
  std::vector<json> out;
  for (size_t b = 0; b < batch.size(); ++b) {
    double total = 0;
    int64_t tokens = 0;
    json per = json::array();
    for (size_t t = 1; t < batch[b].ids.size(); ++t) {
      if (!batch[b].mask[t]) continue;
      const double lp = logprobs[static_cast<int64_t>(b)][static_cast<int64_t>(t - 1)].item<double>();
      total += lp;
      ++tokens;
      per.push_back(lp);
    }
    json row = {{"logprob", total}, {"tokens", tokens},
                {"perplexity", tokens > 0 ? std::exp(-total / static_cast<double>(tokens)) : 1.0}};
    if (per_token) row["token_logprobs"] = per;
    out.push_back(row);
  }
  return out;
}

}  // namespace

int score_command(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("model", po::value<std::string>(), "model directory: a language or reward model (required)")
      ("input", po::value<std::string>(), "JSONL file, one input per line (required)")
      ("per-token", "also print each scored token's log-prob")
      ("chat-template", po::value<std::string>()->default_value("auto"),
       "how {\"messages\"} lines become tokens: auto (the model's own template), chatml, qwen3, llama3, llama3.1, transcript")
      ("batch", po::value<int64_t>()->default_value(8), "lines scored together")
      ("dtype", po::value<std::string>()->default_value(""), "compute in fp32, bf16 or f16 (default: as stored)")
      ("device", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
      ("help,h", "this help");
  auto vm = parse_args("score", args, options);
  if (vm.count("help")) {
    print_help(kScoreUsage, kScoreSummary, options);
    return kExitOk;
  }
  if (!vm.count("model")) throw UsageError("nurture score: which model? e.g. --model runs/quickstart/sft/model");
  if (!vm.count("input")) throw UsageError("nurture score: what to score? e.g. --input sentences.jsonl");
  const int64_t batch_size = vm["batch"].as<int64_t>();
  if (batch_size < 1) bad_value("score", "--batch", "must be at least 1, got " + std::to_string(batch_size));
  const torch::Device device = parse_device("score", vm["device"].as<std::string>());
  const auto dtype = parse_dtype("score", vm["dtype"].as<std::string>());
  const fs::path input = vm["input"].as<std::string>();
  std::ifstream in(input);
  if (!in) bad_value("score", "--input", input.string() + ": cannot read");
  const fs::path dir = vm["model"].as<std::string>();
  const bool per_token = vm.count("per-token") > 0;

  // A reward model scores with its head; anything else is scored as a language model.
  ScoreModel loaded = load_score_model(dir, device, dtype);
  RewardModel reward{nullptr};
  if (read_model_kind(dir) == "reward") {
    reward = load_reward_model(dir, device, dtype);
    reward->eval();
  }
  loaded.model->eval();
  torch::NoGradGuard no_grad;

  // Every line is read and checked before anything is printed: a bad line stops the command
  // with its file and line, not after half the output.
  std::shared_ptr<const ChatTemplate> resolved;  // on the first {"messages"} line
  auto chat_template = [&] { return resolved ? resolved : (resolved = chat_template_option("score", vm, *loaded.tokenizer)); };
  std::vector<Scored> inputs;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    const std::string where = input.string() + ":" + std::to_string(number) + ": ";
    json record;
    try {
      record = json::parse(line);
    } catch (const json::exception& e) {
      throw UsageError(where + "not valid JSON (" + e.what() + ")");
    }
    if (!record.is_object()) throw UsageError(where + "expected a JSON object");
    inputs.push_back(parse_line(record, where, loaded, chat_template));
  }

  const int64_t pad = loaded.pad_id();
  for (size_t begin = 0; begin < inputs.size(); begin += static_cast<size_t>(batch_size)) {
    const std::vector<Scored> batch(inputs.begin() + static_cast<std::ptrdiff_t>(begin),
                                    inputs.begin() + static_cast<std::ptrdiff_t>(std::min(inputs.size(), begin + static_cast<size_t>(batch_size))));
    std::vector<json> rows;
    if (!reward.is_empty()) {
      auto [ids, mask] = pad_batch(batch, pad, device);
      const auto rewards = reward->forward(ids, mask).to(torch::kFloat64).cpu();
      for (int64_t b = 0; b < rewards.size(0); ++b) rows.push_back({{"reward", rewards[b].item<double>()}});
    } else {
      rows = score_lm(loaded, batch, per_token, device);
    }
    for (const auto& row : rows) std::cout << row.dump() << "\n";
    std::cout.flush();
  }
  return kExitOk;
}

}  // namespace nurture::cli
