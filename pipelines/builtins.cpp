// register_builtins(): every component nurture ships, registered by name.
#include <algorithm>
#include <cctype>

#include "modules/chat_template.h"
#include "modules/transformer.h"
#include "pipelines/builtin_pipelines.h"
#include "pipelines/data.h"
#include "pipelines/registry.h"
#include "pipelines/rl/advantages.h"

namespace nurture {

namespace {

std::string normalize_answer(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isspace(c)) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += static_cast<char>(std::tolower(c));
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '.')) out.pop_back();
  return out;
}

}  // namespace

void register_builtins(Registries& r) {
  r.pipelines.add("demo_data", demo_data_pipeline_entry());
  r.pipelines.add("tokenizer", tokenizer_pipeline_entry());
  r.pipelines.add("pretrain", pretrain_pipeline_entry());
  r.pipelines.add("sft", sft_pipeline_entry());
  r.pipelines.add("eval", eval_pipeline_entry());
  r.pipelines.add("reward_model", reward_model_pipeline_entry());
  r.pipelines.add("dpo", dpo_pipeline_entry());
  r.pipelines.add("ppo", ppo_pipeline_entry());

  for (const auto& name : preset_names()) r.model_presets.add(name, [name] { return preset(name); });

  // 1 when the response equals the reference (case, surrounding spaces and a final period ignored).
  r.rewards.add("exact_match", [](const RewardInput& in) {
    return in.reference.empty() ? 0.0 : normalize_answer(in.response) == normalize_answer(in.reference) ? 1.0 : 0.0;
  });

  r.chat_templates.add("chatml", [] { return std::make_shared<const ChatMLTemplate>(); });

  r.datasets.add("chat", {"{messages: [{role, content}, ...]} or {prompt, response[, system]}",
                          chat_record_to_messages});
  r.datasets.add("alpaca", {"{instruction, input, output} (Stanford Alpaca)", alpaca_record_to_messages});

  r.advantages.add("gae", rl::gae_advantages);
}

}  // namespace nurture
