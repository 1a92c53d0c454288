// math_answer's checker: the final answer a reply to a math word problem states (GSM8K / MATH
// style: \boxed{}, "####", "the answer is", else its last number), the value of a number as people
// write it, and the 0/1 score of a reply against a reference answer. Standard library only, and
// scanned by hand in linear time, so that a long or adversarial reply costs no more than its length
// (std::regex recurses and overflows the stack on long inputs).
//
// How numbers are read, everywhere below:
//   sign        "+", "-" or the Unicode minus U+2212, directly before the digits (or the "$"): "- 3"
//               has none. In a reply a sign right after a letter, digit, ')', ']' or '}' is an
//               operator, so "7-3" holds 7 and 3, not -3.
//   "$"         one before or after the sign is skipped: "$5", "-$5", "$-5".
//   digits      with optional thousands separators: "," (or LaTeX's "{,}") followed by exactly three
//               digits, after a first group of one to three: "1,234,567". Any other comma ends the
//               number: "3,4" is 3 then 4, "1234,567" is 1234 then 567, "0,5" is 0 then 5 (decimal
//               commas are not read).
//   decimals    "2.50", ".5"; a point not followed by a digit is not part of the number, so "2." at
//               the end of a sentence is 2.
//   fractions   "a/b" (b a plain unsigned number) and \frac{a}{b}, \dfrac{a}{b}, \tfrac{a}{b} (a and
//               b may be signed, spaces inside the braces are allowed). A zero denominator makes no
//               number at all.
//   percent     a trailing "%" (or "\%") is not converted: 50% is 50.
//   letters     a number whose digits (or leading point) are glued to a letter, digit or '_' on
//               their left belongs to a word and is none: "x2", "H2O", "v1.2.3" hold none, "1.2.3"
//               holds only 1.2. Letters on the right are allowed, as units are often glued ("10km",
//               "5x"): "3rd" is 3, which is what a GSM8K reference for "which place?" says. "1e5" is
//               1 (no exponents).
//   range       a value a double cannot hold (overflow, underflow to 0 of a non-zero number) is no
//               number, so two different huge numbers never compare equal as infinities.
#pragma once
#include <optional>
#include <string>

namespace nurture::rl {

// The final answer a reply states, as the text of a number (its sign as written, then the number
// without a leading "$" or trailing "%": "-1,234", "\frac{1}{2}"), or nullopt when it states none.
// Looked for in this order, the first kind found wins:
//   1. the last \boxed{...} to open (nested braces allowed: \boxed{\frac{1}{2}}); one never closed
//      does not count
//   2. the text after the last "####" (GSM8K's marker), up to the end of that line
//   3. the text after the last "answer is" or "answer:" (case-insensitive, not inside a word; so
//      "the answer is", "The final answer is" and "Final Answer:" all count), up to the end of that
//      sentence (".", "!", "?" or ";" followed by a space or the end) or line
//   4. otherwise the last number anywhere in the reply
// Within the chosen span the answer is the first number it contains ("#### $1,234." gives "1,234",
// "the answer is 42 apples" gives "42"); a span with no number falls through to the next rule. The
// result always parses with parse_number.
std::optional<std::string> final_answer(const std::string& reply);

// The value of `text` when, surrounding white space, a trailing "%" / "\%" and a final sentence
// period aside, it is exactly one number as read above ("$1,234.50", "−3", "\dfrac{3}{4}", "2.",
// "50%"), else nullopt ("", "3,4", "5 apples", "x2", "1/0", "- 3").
std::optional<double> parse_number(const std::string& text);

// 1.0 when the reply's final answer equals `reference` numerically (both parsed with parse_number,
// equal within a relative tolerance of 1e-9: "1/2" == "0.5", "2.50" == "2.5", "-3" == "−3"), else
// 0.0; 0.0 when the reply states no answer or the reference is empty or only white space.
// A reference that is not one number but a worked solution ending in a \boxed{} or "####" answer
// (GSM8K's "answer" field: "... = 72 clips.\n#### 72") counts as that answer's number.
// Any other reference ("B", "\sqrt{2}") cannot equal a number, so it is compared as a string:
// 1.0 when it equals, trimmed of white space, the span of the first marker kind the reply has (the
// \boxed{} contents, the rest of the "####" line or of the "answer is" sentence, numbers or not;
// else the whole reply), trimmed of white space and a final period.
double math_answer_score(const std::string& reply, const std::string& reference);

}  // namespace nurture::rl
