#include "common/basic_auth_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/sha256.h"

namespace joule {
namespace {

constexpr char kSchemePrefix[] = "sha256:";
constexpr size_t kHashDigits = 64;
// A credentials file is a few lines; anything larger is a mistake.
constexpr std::streamsize kMaxFileBytes = 1 << 20;

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Basic auth sends "user:password": a user name with ':' or anything but
// printable ASCII could not be typed or would split wrongly.
bool IsValidUser(absl::string_view user) {
  for (char c : user) {
    if (c == ':' || !absl::ascii_isgraph(static_cast<unsigned char>(c))) return false;
  }
  return !user.empty();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string out(static_cast<size_t>(kMaxFileBytes) + 1, '\0');
  in.read(out.data(), kMaxFileBytes + 1);
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  out.resize(static_cast<size_t>(in.gcount()));
  if (out.size() > static_cast<size_t>(kMaxFileBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than ", kMaxFileBytes, " bytes"));
  }
  return out;
}

}  // namespace

absl::StatusOr<BasicAuthFile::Credentials> BasicAuthFile::Parse(absl::string_view text,
                                                                 absl::string_view source) {
  Credentials out;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    auto fail = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ":", number, ": ", why, " (want: USER sha256:<64 hex digits>)"));
    };
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 2) return fail("want two fields");
    if (!IsValidUser(fields[0])) {
      return fail("the user must be printable ASCII without ':' or spaces");
    }
    absl::string_view hash = fields[1];
    if (!absl::ConsumePrefix(&hash, kSchemePrefix)) return fail("the hash must start with sha256:");
    if (hash.size() != kHashDigits || !IsLowerHex(absl::AsciiStrToLower(hash))) {
      return fail("the hash must be 64 hex digits");
    }
    if (!out.emplace(std::string(fields[0]), absl::AsciiStrToLower(hash)).second) {
      return fail(absl::StrCat("user ", fields[0], " appears twice"));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<BasicAuthFile>> BasicAuthFile::Load(
    std::string path, const Clock* clock, absl::Duration reload_interval) {
  std::unique_ptr<BasicAuthFile> file(
      new BasicAuthFile(std::move(path), clock, reload_interval));
  absl::MutexLock lock(&file->mu_);
  file->Reload();
  if (!file->error_.ok()) return file->error_;
  return file;
}

void BasicAuthFile::Reload() {
  last_read_ = clock_->Now();
  absl::StatusOr<std::string> contents = ReadFile(path_);
  if (!contents.ok()) {
    if (readable_) {
      JLOG(ERROR) << "metrics auth: " << contents.status().message()
                  << "; refusing every login until it can be read";
    }
    readable_ = false;
    contents_.clear();
    credentials_.clear();
    error_ = contents.status();
    return;
  }
  if (readable_ && *contents == contents_) return;
  const bool first = !readable_ && error_.ok() && credentials_.empty();
  readable_ = true;
  contents_ = *std::move(contents);
  absl::StatusOr<Credentials> parsed = Parse(contents_, path_);
  if (!parsed.ok()) {
    JLOG(ERROR) << "metrics auth: " << parsed.status().message()
                << "; refusing every login until it is fixed";
    credentials_.clear();
    error_ = parsed.status();
    return;
  }
  if (!first) {
    JLOG(INFO) << "metrics auth: read " << path_ << " again (" << parsed->size() << " users)";
  }
  credentials_ = *std::move(parsed);
  error_ = absl::OkStatus();
}

bool BasicAuthFile::Check(absl::string_view user, absl::string_view password) {
  // Hashing outside the lock: it is the costly part.
  const std::string hash = Sha256Hex(password);
  absl::MutexLock lock(&mu_);
  if (clock_->Now() - last_read_ >= reload_interval_) Reload();
  if (!error_.ok()) return false;
  static const std::string* const kDummy = new std::string(kHashDigits, '0');
  auto it = credentials_.find(user);
  const bool match = ConstantTimeEquals(hash, it != credentials_.end() ? it->second : *kDummy);
  return match && it != credentials_.end();
}

}  // namespace joule
