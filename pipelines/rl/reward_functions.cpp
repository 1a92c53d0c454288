// The built-in reward functions and their registry (see reward_functions.h).
#include "pipelines/rl/reward_functions.h"

#include <algorithm>
#include <cctype>
#include <memory>

#include "modules/text/regex.h"
#include "pipelines/rl/math_answer.h"
#include "pipelines/rl/rewards.h"

namespace nurture::rl {

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

RewardFunctionEntry format_entry() {
  return {"1 when the whole reply matches `pattern` (PCRE2, . matches newlines), else 0",
          [] {
            auto s = std::make_shared<Schema>();
            s->add_string("pattern", "", "the regex the whole reply must match, e.g. "
                                         "\"<think>.*</think>\\\\s*\\\\S.*\"")
                .must_be_required();
            return std::shared_ptr<const Schema>(s);
          },
          [](const Settings& s) -> RewardFunction {
            auto regex = std::make_shared<const Regex>(s.get_string("pattern"),
                                                       RegexOptions{false, false, /*dot_all=*/true}, s.where("pattern"));
            return [regex](const RewardInput& in) { return regex->matches_whole(in.response) ? 1.0 : 0.0; };
          }};
}

RewardFunctionEntry length_entry() {
  return {"-penalty for every token of the reply beyond `budget`",
          [] {
            auto s = std::make_shared<Schema>();
            s->add_int("budget", 0, "replies up to this many tokens (stop token aside) cost nothing")
                .at_least(1)
                .must_be_required();
            s->add_float("penalty", 0.01, "what each token beyond the budget costs").at_least(0);
            return std::shared_ptr<const Schema>(s);
          },
          [](const Settings& s) -> RewardFunction {
            const int64_t budget = s.get_int("budget");
            const double penalty = s.get_float("penalty");
            return [budget, penalty](const RewardInput& in) {
              return -penalty * static_cast<double>(std::max<int64_t>(0, in.response_tokens - budget));
            };
          }};
}

}  // namespace

double exact_match_score(const std::string& response, const std::string& reference) {
  if (reference.empty()) return 0.0;
  return normalize_answer(response) == normalize_answer(reference) ? 1.0 : 0.0;
}

}  // namespace nurture::rl

namespace nurture {

Registry<RewardFunctionEntry>& reward_function_registry() {
  static Registry<RewardFunctionEntry> registry = [] {
    Registry<RewardFunctionEntry> r("reward function");
    r.add("exact_match", [](const RewardInput& in) { return rl::exact_match_score(in.response, in.reference); });
    r.add("math_answer", [](const RewardInput& in) { return rl::math_answer_score(in.response, in.reference); });
    r.add("format", rl::format_entry());
    r.add("length", rl::length_entry());
    return r;
  }();
  return registry;
}

}  // namespace nurture
