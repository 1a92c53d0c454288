// Names the user typed, checked against the known ones: "did you mean 'sft'?" hints and the
// lists error messages show.
#pragma once
#include <string>
#include <vector>

namespace nurture {

// "did you mean 'lr'?" for the closest of `known` to `word`, or "" if none is close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& known);

// "a, b, c", or "none" for an empty list.
std::string join_names(const std::vector<std::string>& names);

}  // namespace nurture
