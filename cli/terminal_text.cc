#include "cli/terminal_text.h"

#include <cstdint>

namespace joule {
namespace {

void AppendHex(unsigned char byte, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->append("\\x");
  out->push_back(kHex[byte >> 4]);
  out->push_back(kHex[byte & 0xf]);
}

bool IsContinuation(unsigned char byte) { return (byte & 0xc0) == 0x80; }

// The length of the well-formed UTF-8 sequence at text[i] (which is >= 0x80)
// and its code point, or 0 when it is not well formed (Unicode 15, table
// 3-7: no overlong forms, no surrogates, nothing beyond U+10FFFF).
size_t DecodeUtf8(absl::string_view text, size_t i, uint32_t* code_point) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(text[i + k]); };
  const unsigned char lead = at(0);
  size_t length;
  // The allowed range of the second byte, which is narrower than 80..BF
  // after some leads.
  unsigned char low = 0x80, high = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    *code_point = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    *code_point = lead & 0x0f;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    *code_point = lead & 0x07;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  if (at(1) < low || at(1) > high) return 0;
  for (size_t k = 1; k < length; ++k) {
    if (!IsContinuation(at(k))) return 0;
    *code_point = (*code_point << 6) | (at(k) & 0x3f);
  }
  return length;
}

// Code points that change how a terminal behaves or reorders text.
bool IsHidden(uint32_t code_point) {
  return (code_point >= 0x80 && code_point <= 0x9f) || code_point == 0x061c ||
         code_point == 0x200e || code_point == 0x200f ||
         (code_point >= 0x202a && code_point <= 0x202e) ||
         (code_point >= 0x2066 && code_point <= 0x2069);
}

}  // namespace

std::string EscapeForTerminal(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char byte = static_cast<unsigned char>(text[i]);
    if (byte == '\n' || byte == '\t' || (byte >= 0x20 && byte < 0x7f)) {
      out.push_back(static_cast<char>(byte));
      ++i;
      continue;
    }
    uint32_t code_point = 0;
    const size_t length = byte >= 0x80 ? DecodeUtf8(text, i, &code_point) : 0;
    if (length == 0) {
      AppendHex(byte, &out);
      ++i;
      continue;
    }
    if (IsHidden(code_point)) {
      for (size_t k = 0; k < length; ++k) {
        AppendHex(static_cast<unsigned char>(text[i + k]), &out);
      }
    } else {
      out.append(text.data() + i, length);
    }
    i += length;
  }
  return out;
}

}  // namespace joule
