// The built-in reward functions, each registered by name in reward_function_registry()
// (pipelines/rl/rewards.h) and scoring one reply on its own; a recipe lists them in a stage's
// reward_functions, by name or as {name: ..., weight: ..., parameters}:
//   exact_match  1 when the reply equals the prompt's reference (case, runs of spaces and a final
//                period aside), else 0
//   math_answer  1 when the reply's final answer (\boxed{}, "####", "the answer is", else its last
//                number) equals the reference as a number, else 0 (pipelines/rl/math_answer.h)
//   format       1 when the whole reply matches `pattern` (PCRE2; `.` also matches a newline),
//                else 0: e.g. "<think>.*</think>\s*\S.*" asks for the working, then an answer
//   length       −penalty for every token of the reply beyond `budget`, else 0
// A new function is one callable of RewardInput: copy exact_match below, or register it from a
// plugin (tests/plugins/example_plugin.cpp).
#pragma once
#include <string>

namespace nurture::rl {

// exact_match's score: 1 when both are equal after lower-casing, turning runs of white space into
// one space and dropping a final period and surrounding spaces; 0 for an empty reference.
double exact_match_score(const std::string& response, const std::string& reference);

}  // namespace nurture::rl
