#ifndef JOULE_CLI_TERMINAL_TEXT_H_
#define JOULE_CLI_TERMINAL_TEXT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace joule {

// `text` (a task's output: any bytes) made safe to write to a terminal, so
// that a task cannot move the cursor, retitle the window, rewrite the
// screen or hide text from whoever reads its logs.
//
// Kept as they are: '\n', '\t', printable ASCII, and well-formed UTF-8 of
// printable characters. Everything else becomes a visible escape, one
// "\xNN" per byte (ESC -> "\x1b", CR -> "\x0d"):
//  - the other ASCII control characters and DEL;
//  - bytes that are not well-formed UTF-8 (stray continuation bytes,
//    overlong forms, surrogates, beyond U+10FFFF, cut-off sequences);
//  - the C1 controls U+0080..U+009F (U+009B is a one-character CSI on many
//    terminals) and the bidirectional controls U+061C, U+200E, U+200F,
//    U+202A..U+202E and U+2066..U+2069, which reorder what is shown.
// Pure; thread-safe.
std::string EscapeForTerminal(absl::string_view text);

}  // namespace joule

#endif  // JOULE_CLI_TERMINAL_TEXT_H_
