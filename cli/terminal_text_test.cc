#include "cli/terminal_text.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace joule {
namespace {

struct Case {
  std::string name;
  std::string in;
  std::string out;
};

TEST(TerminalTextTest, EscapesWhatATerminalWouldActOn) {
  const std::vector<Case> cases = {
      {"empty", "", ""},
      {"plain", "step 10 loss=0.25\n", "step 10 loss=0.25\n"},
      {"tab and newline", "a\tb\n\nc", "a\tb\n\nc"},
      {"backslash kept", "C:\\path \\x1b", "C:\\path \\x1b"},
      {"clear screen", "\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"},
      {"window title", "\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"},
      {"carriage return", "real\rfake", "real\\x0dfake"},
      {"backspace", "ab\bc", "ab\\x08c"},
      {"nul and del", std::string("a\0b\x7f", 4), "a\\x00b\\x7f"},
      {"two-byte utf-8", "caf\xc3\xa9", "caf\xc3\xa9"},
      {"three-byte utf-8", "\xe2\x82\xac 5", "\xe2\x82\xac 5"},
      {"four-byte utf-8", "\xf0\x9f\x94\x8b", "\xf0\x9f\x94\x8b"},
      {"cjk", "\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac"},
      {"c1 csi", "\xc2\x9b" "2J", "\\xc2\\x9b2J"},
      {"c1 nel", "\xc2\x85", "\\xc2\\x85"},
      {"no-break space is printable", "\xc2\xa0", "\xc2\xa0"},
      {"right-to-left override", "abc\xe2\x80\xae" "fed", "abc\\xe2\\x80\\xaefed"},
      {"bidi isolate", "\xe2\x81\xa6x\xe2\x81\xa9", "\\xe2\\x81\\xa6x\\xe2\\x81\\xa9"},
      {"arabic letter mark", "\xd8\x9c", "\\xd8\\x9c"},
      {"stray continuation", "a\x80" "b", "a\\x80b"},
      {"lone lead at end", "a\xc3", "a\\xc3"},
      {"cut-off sequence", "\xe2\x82" "x", "\\xe2\\x82x"},
      {"overlong slash", "\xc0\xaf", "\\xc0\\xaf"},
      {"overlong three-byte", "\xe0\x80\xaf", "\\xe0\\x80\\xaf"},
      {"surrogate", "\xed\xa0\x80", "\\xed\\xa0\\x80"},
      {"beyond U+10FFFF", "\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},
      {"invalid lead", "\xff\xfe", "\\xff\\xfe"},
      {"escape inside utf-8", "\xc3\x1b[31m", "\\xc3\\x1b[31m"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(EscapeForTerminal(c.in), c.out);
  }
}

TEST(TerminalTextTest, NothingEscapedContainsControlBytes) {
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte.push_back(static_cast<char>(b));
  const std::string out = EscapeForTerminal(every_byte + every_byte);
  for (char c : out) {
    const unsigned char byte = static_cast<unsigned char>(c);
    EXPECT_TRUE(byte == '\n' || byte == '\t' || (byte >= 0x20 && byte < 0x7f))
        << static_cast<int>(byte);
  }
}

}  // namespace
}  // namespace joule
