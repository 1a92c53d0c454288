// Tests for pipelines/rl/math_answer.h: math_answer's score on replies as math models write them
// against references as data sets write them, each case with its known result; the final answer
// each marker picks; numbers read by parse_number, and the texts that are not one number.
#include "pipelines/rl/math_answer.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace nurture {
namespace {

const std::string kMinus = "\xE2\x88\x92";  // U+2212

struct Case {
  std::string reply, reference;
  double score;
};

void expect_scores(const std::vector<Case>& cases) {
  for (const auto& c : cases)
    EXPECT_EQ(rl::math_answer_score(c.reply, c.reference), c.score)
        << "reply '" << c.reply << "' reference '" << c.reference << "'";
}

TEST(MathAnswer, SignsSeparatorsDecimalsAndFractions) {
  expect_scores({
      {"7", "7", 1},
      {"3 + 4 = 8.", "7", 0},                   // wrong
      {"-3", "3", 0},                           // signs matter
      {kMinus + "8", "-8", 1},                  // the Unicode minus
      {"-8", kMinus + "8", 1},                  // in the reference too
      {"+3", "3", 1},                           // an explicit plus
      {"7-3", "-3", 0},                         // an operator after a digit is no sign: 3
      {"x = -3", "-3", 1},                      // a sign after a space is
      {"so 1,234,567 in all", "1234567", 1},    // two thousands separators
      {"1234", "1,234", 1},                     // a reference with a separator
      {"we get 3,4", "4", 1},                   // "3,4" is 3 then 4
      {"we get 3,4", "34", 0},                  // and not 34
      {"about 2.50", "2.5", 1},                 // decimals compare as numbers
      {"x = .5", "0.5", 1},                     // a leading decimal point
      {"1/2", "0.5", 1},                        // a fraction against a decimal
      {"0.5", "\\frac{1}{2}", 1},               // a \frac reference
      {"\\boxed{\\dfrac{1}{3}}", "1/3", 1},     // \dfrac against a fraction
      {"1/3 is about 0.333333", "1/3", 0},      // beyond the relative tolerance of 1e-9
      {"0.1 + 0.2 = 0.30000000000000004", "0.3", 1},  // within it
      {"1/0", "1", 0},                          // a zero denominator is no number (nor is its 0)
      {"1/0", "0", 0},
  });
}

TEST(MathAnswer, MarkersPickTheAnswer) {
  expect_scores({
      {"\\boxed{\\frac{3}{4}}", "0.75", 1},                   // nested braces in \boxed
      {"first \\boxed{2} then \\boxed{5}", "5", 1},           // several: the last wins
      {"first \\boxed{2} then \\boxed{5}", "2", 0},
      {"\\boxed{5} and later 9", "5", 1},                     // \boxed wins over later numbers
      {"\\boxed{x} so 9", "9", 1},                            // one without a number falls through
      {"#### 18\nbut maybe 20", "18", 1},                     // "####" wins over later numbers
      {"#### 18 \\boxed{3}", "3", 1},                         // \boxed wins over "####"
      {"The answer is 42 apples. Later: 7", "42", 1},         // "the answer is", its first number
      {"the ANSWER is -5, not 5", "-5", 1},                   // any case
      {"Answer: 12\nCheck: 6 + 6 = 12", "12", 1},             // "answer:"
      {"The final answer is 9. I used 3 steps", "9", 1},      // "final answer is" counts too
      {"the answer is unknown. Maybe 3 or 4", "4", 1},        // no number in its sentence: the last number
      {"#### $1,234.", "1234", 1},                            // dollar sign, separator, final period
      {"3 + 4 = 7.", "7", 1},                                 // no marker: the last number, a final period
      {"I have 3 apples and 5 pears", "5", 1},                // several numbers: the last
      {"I have 3 apples and 5 pears", "3", 0},
  });
}

TEST(MathAnswer, NoAnswerNoReferenceAndOtherForms) {
  expect_scores({
      {"I do not know.", "7", 0},                             // no number at all
      {"", "7", 0},                                           // an empty reply
      {"7", "", 0},                                           // no reference
      {"7", "   ", 0},                                        // only white space
      {"", "", 0},
      {"7", " 42 ", 0},                                       // a padded reference, wrong
      {"it is 42", " 42 ", 1},                                // and right
      {"50%", "50", 1},                                       // a percent sign is not converted
      {"the answer is 50%", "0.5", 0},
      {"\\boxed{50\\%}", "50\\%", 1},                         // LaTeX's percent
      {"It costs $5.", "5", 1},                               // a dollar sign
      {"It costs -$5.", "-5", 1},
      {"#### 1{,}234", "1234", 1},                            // LaTeX's thousands separator
      {"the area is x2", "2", 0},                             // digits glued to a letter are no number
      {"finished 3rd", "3", 1},                               // letters on the right are allowed
      {"so 72", "She sold 48 + 24 = 72 clips.\n#### 72", 1},  // a GSM8K solution as the reference
      {"so 71", "She sold 48 + 24 = 72 clips.\n#### 72", 0},
      {"\\boxed{B}", "B", 1},                                 // a reference that is no number: as text
      {"The answer is B.", "B", 1},
      {"\\boxed{C}", "B", 0},
      {"\\boxed{\\sqrt{2}}", "\\sqrt{2}", 1},
      {"B", " B ", 1},                                        // no marker: the whole reply
  });
}

TEST(MathAnswer, FinalAnswerIsTheTextOfTheNumber) {
  using rl::final_answer;
  EXPECT_EQ(final_answer("#### $1,234."), "1,234");
  EXPECT_EQ(final_answer("the answer is 42 apples"), "42");
  EXPECT_EQ(final_answer("\\boxed{\\frac{1}{2}}"), "\\frac{1}{2}");
  EXPECT_EQ(final_answer("\\boxed{x = \\boxed{7}}"), "7");      // the last \boxed to open
  EXPECT_EQ(final_answer("\\boxed{4} \\boxed{5"), "5");          // an unclosed last \boxed: the last number
  EXPECT_EQ(final_answer("3 then -2"), "-2");
  EXPECT_EQ(final_answer("then " + kMinus + "2"), kMinus + "2");  // the sign as written
  EXPECT_EQ(final_answer("costs $-5"), "-5");
  EXPECT_EQ(final_answer("is 2."), "2");
  EXPECT_EQ(final_answer("score 50%"), "50");
  EXPECT_EQ(final_answer("v1.2.3 is out"), std::nullopt);
  EXPECT_EQ(final_answer("1.2.3"), "1.2");
  EXPECT_EQ(final_answer("Answer: none. H2O"), std::nullopt);
  EXPECT_EQ(final_answer("none here"), std::nullopt);
  EXPECT_EQ(final_answer(""), std::nullopt);
  EXPECT_EQ(final_answer("(3,4)"), "4");
  EXPECT_EQ(final_answer("answer: (3,4)"), "3");
  EXPECT_EQ(final_answer("12/25/2023"), "2023");  // "12/25", then "/2023"
}

TEST(MathAnswer, FinalAnswerOfALongReplyStaysCheap) {
  std::string reply;
  for (int i = 0; i < 200000; ++i) reply += "\\boxed{\\frac{1";  // unclosed, unfinished openings
  reply += " 17";
  EXPECT_EQ(rl::final_answer(reply), "17");
  EXPECT_EQ(rl::final_answer(std::string(400, '9')), std::nullopt);  // beyond a double
}

TEST(MathAnswer, ParseNumberReadsOneNumber) {
  using rl::parse_number;
  EXPECT_EQ(parse_number("42"), 42.0);
  EXPECT_EQ(parse_number(" 42 "), 42.0);
  EXPECT_EQ(parse_number("+5"), 5.0);
  EXPECT_EQ(parse_number("-5"), -5.0);
  EXPECT_EQ(parse_number(kMinus + "3"), -3.0);
  EXPECT_EQ(parse_number("1,234,567"), 1234567.0);
  EXPECT_EQ(parse_number("1,234.5"), 1234.5);
  EXPECT_EQ(parse_number("2.50"), 2.5);
  EXPECT_EQ(parse_number(".5"), 0.5);
  EXPECT_EQ(parse_number("2."), 2.0);
  EXPECT_EQ(parse_number("-3/4"), -0.75);
  EXPECT_EQ(parse_number("\\frac{6}{3}"), 2.0);
  EXPECT_EQ(parse_number("\\dfrac{3}{4}"), 0.75);
  EXPECT_EQ(parse_number("-\\frac{1}{4}"), -0.25);
  EXPECT_EQ(parse_number("\\frac{ -1 }{ 2 }"), -0.5);
  EXPECT_EQ(parse_number("$5"), 5.0);
  EXPECT_EQ(parse_number("-$5"), -5.0);
  EXPECT_EQ(parse_number("$1,234.50"), 1234.5);
  EXPECT_EQ(parse_number("50%"), 50.0);
  EXPECT_EQ(parse_number("50\\%"), 50.0);
}

TEST(MathAnswer, ParseNumberRejectsWhatIsNotOneNumber) {
  using rl::parse_number;
  for (const std::string text : {"", "   ", "seven", "3 4", "3,4", "1,23", "1234,567", "5 apples", "x2", "2x",
                                 "- 3", "--5", "1/0", "\\frac{1}{0}", "\\frac{1}{x}", "1.2.3", "1e5", "$"})
    EXPECT_EQ(parse_number(text), std::nullopt) << "'" << text << "'";
  EXPECT_EQ(parse_number(std::string(400, '9')), std::nullopt);  // overflows a double
}

}  // namespace
}  // namespace nurture
