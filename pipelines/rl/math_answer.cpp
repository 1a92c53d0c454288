// Final answers and numbers as math replies write them, and math_answer's score (see math_answer.h).
// Everything works on string_views of the reply and moves forwards (or backwards, for the markers)
// a bounded number of times per character, so the cost stays linear in the reply's length.
#include "pipelines/rl/math_answer.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <initializer_list>
#include <string_view>
#include <system_error>

namespace nurture::rl {

namespace {

constexpr std::string_view kMinus = "\xE2\x88\x92";  // U+2212 MINUS SIGN in UTF-8
constexpr std::string_view kSpaces = " \t\r\n\f\v";

bool digit_at(std::string_view s, size_t i) { return i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); }

// A character that makes digits after it part of a word ("x2", "H2O"). Bytes of other UTF-8
// characters do not: "×4" and "≈3.14" hold numbers.
bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// A character after which "-" or "+" is an operator, not a sign: "7-3", "(a)+2".
bool operand_end(char c) { return word_char(c) || c == ')' || c == ']' || c == '}'; }

std::string_view trim(std::string_view s) {
  const size_t a = s.find_first_not_of(kSpaces);
  if (a == std::string_view::npos) return {};
  return s.substr(a, s.find_last_not_of(kSpaces) - a + 1);
}

// The length of a sign (+, -, U+2212) at s[i], or 0.
size_t sign_length(std::string_view s, size_t i) {
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) return 1;
  return s.substr(std::min(i, s.size())).substr(0, kMinus.size()) == kMinus ? kMinus.size() : 0;
}

// The length of a thousands separator at s[i] ("," or LaTeX's "{,}") when exactly three digits
// follow it, or 0: "1,234" has one, "3,4" and "1,2345" have none.
size_t separator_length(std::string_view s, size_t i) {
  size_t n = 0;
  if (i < s.size() && s[i] == ',') n = 1;
  if (s.substr(std::min(i, s.size())).substr(0, 3) == "{,}") n = 3;
  if (n == 0) return 0;
  const size_t d = i + n;
  return digit_at(s, d) && digit_at(s, d + 1) && digit_at(s, d + 2) && !digit_at(s, d + 3) ? n : 0;
}

// The end of the plain unsigned number at s[i] (digits, separators, a decimal part), or i when
// none starts there. Separators count only after a first group of one to three digits.
size_t plain_end(std::string_view s, size_t i) {
  size_t j = i;
  while (digit_at(s, j)) ++j;
  if (j > i && j - i <= 3)
    while (const size_t sep = separator_length(s, j)) j += sep + 3;
  if (j < s.size() && s[j] == '.' && digit_at(s, j + 1)) {
    ++j;
    while (digit_at(s, j)) ++j;
  }
  return j;
}

// The value of a plain number (as plain_end reads it); nullopt when a double cannot hold it.
// std::from_chars, unlike strtod, ignores the C locale's decimal point.
std::optional<double> plain_value(std::string_view s) {
  std::string digits;
  for (char c : s)
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') digits += c;
  double v = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || end != digits.data() + digits.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// What reading a number at some position gave: nothing (found false), or its end, where its body
// (digits, '.' or '\') starts, its sign as written, and its value (nullopt for a number without
// one: a zero denominator, or beyond a double's range).
struct Read {
  bool found = false;
  size_t body = 0, end = 0;
  std::string_view sign;
  std::optional<double> value;
};

// "{a}" at s[i] for \frac: a signed plain number, spaces around it allowed.
Read braced_part(std::string_view s, size_t i) {
  if (i >= s.size() || s[i] != '{') return {};
  size_t j = i + 1;
  while (j < s.size() && s[j] == ' ') ++j;
  const size_t sign = sign_length(s, j), body = j + sign, end = plain_end(s, body);
  j = end;
  while (j < s.size() && s[j] == ' ') ++j;
  if (end == body || j >= s.size() || s[j] != '}') return {};
  const auto v = plain_value(s.substr(body, end - body));
  const bool negative = sign > 0 && s[body - sign] != '+';
  return {true, body, j + 1, s.substr(body - sign, sign), v ? std::optional<double>(negative ? -*v : *v) : v};
}

// \frac{a}{b}, \dfrac{a}{b} or \tfrac{a}{b} at s[i].
Read frac_at(std::string_view s, size_t i) {
  for (const std::string_view name : {"\\frac", "\\dfrac", "\\tfrac"}) {
    if (s.substr(i).substr(0, name.size()) != name) continue;
    const Read a = braced_part(s, i + name.size());
    const Read b = a.found ? braced_part(s, a.end) : Read{};
    if (!b.found) return {};
    Read r{true, i, b.end, {}, std::nullopt};
    if (a.value && b.value && *b.value != 0) r.value = *a.value / *b.value;
    return r;
  }
  return {};
}

// The unsigned number at s[i]: \frac, or a plain number, over a plain one after "/" ("1/2").
Read body_at(std::string_view s, size_t i) {
  if (i < s.size() && s[i] == '\\') return frac_at(s, i);
  const size_t end = plain_end(s, i);
  if (end == i) return {};
  Read r{true, i, end, {}, plain_value(s.substr(i, end - i))};
  if (end < s.size() && s[end] == '/') {
    const size_t denominator_end = plain_end(s, end + 1);
    if (denominator_end == end + 1) return r;
    const auto b = plain_value(s.substr(end + 1, denominator_end - end - 1));
    r.end = denominator_end;
    r.value = r.value && b && *b != 0 ? std::optional<double>(*r.value / *b) : std::nullopt;
  }
  return r;
}

// The number that starts at s[i]: a "$" before or after the sign, the sign (unless s[i - 1] makes
// it an operator), then the body.
Read number_at(std::string_view s, size_t i) {
  size_t j = i;
  const bool dollar_first = j < s.size() && s[j] == '$';
  if (dollar_first) ++j;
  const size_t sign = j == 0 || !operand_end(s[j - 1]) ? sign_length(s, j) : 0;
  const std::string_view sign_text = s.substr(j, sign);
  j += sign;
  if (!dollar_first && sign > 0 && j < s.size() && s[j] == '$') ++j;
  Read r = body_at(s, j);
  if (!r.found) return {};
  r.sign = sign_text;
  if (r.value && sign > 0 && sign_text != "+") r.value = -*r.value;
  return r;
}

std::string text_of(std::string_view s, const Read& r) {
  return std::string(r.sign) + std::string(s.substr(r.body, r.end - r.body));
}

// The first (or the last) number in s as its text. A number with no value, or whose body is glued
// to a word on its left, is skipped whole, so that "x2.5" yields neither 2.5 nor 5.
std::optional<std::string> number_in(std::string_view s, bool last) {
  std::optional<std::string> found;
  for (size_t i = 0; i < s.size();) {
    const Read r = number_at(s, i);
    if (!r.found) {
      ++i;
      continue;
    }
    if (r.value && !(r.body > 0 && word_char(s[r.body - 1]))) {
      found = text_of(s, r);
      if (!last) return found;
    }
    i = r.end;
  }
  return found;
}

// The contents of the last \boxed{...} to open, braces nested; nullopt when there is none or it
// is never closed.
std::optional<std::string_view> boxed_span(std::string_view s) {
  const size_t at = s.rfind("\\boxed{");
  if (at == std::string_view::npos) return std::nullopt;
  const size_t open = at + 6;
  int depth = 0;
  for (size_t j = open; j < s.size(); ++j) {
    if (s[j] == '{') ++depth;
    if (s[j] == '}' && --depth == 0) return s.substr(open + 1, j - open - 1);
  }
  return std::nullopt;
}

// The rest of the line after the last "####".
std::optional<std::string_view> hashes_span(std::string_view s) {
  const size_t at = s.rfind("####");
  if (at == std::string_view::npos) return std::nullopt;
  const std::string_view rest = s.substr(at + 4);
  return rest.substr(0, rest.find('\n'));
}

// Where the last `needle` (lower case) starts in `lowered` (the reply lower-cased) with no letter
// right before it, or npos.
size_t last_word(std::string_view lowered, std::string_view needle) {
  for (size_t at = lowered.rfind(needle); at != std::string_view::npos; at = lowered.rfind(needle, at - 1)) {
    if (at == 0 || !std::isalpha(static_cast<unsigned char>(lowered[at - 1]))) return at;  // so at - 1 never wraps
  }
  return std::string_view::npos;
}

// The rest of the sentence after the last "answer is" or "answer:": up to a line end, or to ".",
// "!", "?" or ";" followed by white space or the end (a decimal point is followed by a digit).
std::optional<std::string_view> answer_span(std::string_view s) {
  std::string lowered(s);
  for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  constexpr std::string_view kIs = "answer is", kColon = "answer:";
  const size_t is = last_word(lowered, kIs), colon = last_word(lowered, kColon);
  if (is == std::string_view::npos && colon == std::string_view::npos) return std::nullopt;
  const bool use_is = colon == std::string_view::npos || (is != std::string_view::npos && is > colon);
  const size_t from = use_is ? is + kIs.size() : colon + kColon.size();
  size_t to = from;
  for (; to < s.size() && s[to] != '\n'; ++to) {
    const bool ends = to + 1 == s.size() || std::isspace(static_cast<unsigned char>(s[to + 1]));
    if (ends && (s[to] == '.' || s[to] == '!' || s[to] == '?' || s[to] == ';')) break;
  }
  return s.substr(from, to - from);
}

// Relative tolerance 1e-9, so that 1/3 equals 0.3333333333 but not 0.333333.
bool same_number(double a, double b) {
  return a == b || std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b));
}

// A reference's value: the reference as one number, or the \boxed{} / "####" answer of a worked
// solution (GSM8K's "answer" field ends in "#### 72", MATH's solutions in \boxed{...}).
std::optional<double> reference_value(const std::string& reference) {
  if (auto v = parse_number(reference)) return v;
  const std::string_view r(reference);
  for (const auto& span : {boxed_span(r), hashes_span(r)})
    if (span)
      if (const auto text = number_in(*span, false)) return parse_number(*text);
  return std::nullopt;
}

// A non-numeric reference against the span of the reply's first marker kind, or the whole reply.
bool same_text(std::string_view reply, std::string_view reference) {
  std::string_view span = reply;
  for (const auto& marked : {boxed_span(reply), hashes_span(reply), answer_span(reply)})
    if (marked) {
      span = *marked;
      break;
    }
  span = trim(span);
  if (!span.empty() && span.back() == '.') span = trim(span.substr(0, span.size() - 1));
  return span == trim(reference);
}

}  // namespace

std::optional<std::string> final_answer(const std::string& reply) {
  const std::string_view r(reply);
  for (const auto& span : {boxed_span(r), hashes_span(r), answer_span(r)})
    if (span)
      if (auto text = number_in(*span, false)) return text;
  return number_in(r, true);
}

std::optional<double> parse_number(const std::string& text) {
  std::string_view s = trim(text);
  if (!s.empty() && s.back() == '.') s = s.substr(0, s.size() - 1);
  if (s.size() >= 2 && s.substr(s.size() - 2) == "\\%") s = s.substr(0, s.size() - 2);
  if (!s.empty() && s.back() == '%') s = s.substr(0, s.size() - 1);
  const Read r = number_at(s, 0);
  if (!r.found || r.end != s.size()) return std::nullopt;
  return r.value;
}

double math_answer_score(const std::string& reply, const std::string& reference) {
  if (trim(reference).empty()) return 0.0;
  const auto expected = reference_value(reference);
  if (!expected) return same_text(reply, reference) ? 1.0 : 0.0;
  const auto answer = final_answer(reply);
  if (!answer) return 0.0;
  const auto got = parse_number(*answer);
  return got && same_number(*got, *expected) ? 1.0 : 0.0;
}

}  // namespace nurture::rl
