#include "scheduler/auth/token_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/strings/escaping.h"
#include "common/log.h"
#include "common/sha256.h"

namespace joule {
namespace {

bool IsHexDigest(absl::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  return true;
}

}  // namespace

absl::Status ValidateUserName(absl::string_view user) {
  if (user.empty() || user.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("user \"", user, "\": must be 1 to 64 characters"));
  }
  if (!absl::ascii_islower(user[0]) && !absl::ascii_isdigit(user[0])) {
    return absl::InvalidArgumentError(absl::StrCat(
        "user \"", user, "\": must start with a lower-case letter or a digit"));
  }
  for (char c : user) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '.' && c != '_' &&
        c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "user \"", absl::CEscape(user), "\": only a-z, 0-9, '.', '_' and '-' are allowed"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenFile::Table> TokenFile::Parse(absl::string_view text,
                                                  absl::string_view name) {
  Table table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    const size_t hash = line.find('#');
    if (hash != absl::string_view::npos) line = line.substr(0, hash);
    const std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_number, ": ", what));
    };
    if (words[0] == "cert") {
      if (words.size() != 3) return error("expected: cert USER ROLE");
      if (absl::Status valid = ValidateUserName(words[1]); !valid.ok()) {
        return error(valid.message());
      }
      absl::StatusOr<Role> role = ParseRole(words[2]);
      if (!role.ok()) return error(role.status().message());
      table.certs[std::string(words[1])] = *role;
      continue;
    }
    if (words[0] != "token") return error(absl::StrCat("unknown entry \"", words[0], "\""));
    if (words.size() < 4 || words.size() > 5) {
      return error("expected: token sha256:HEX USER ROLE [expires=TIME]");
    }
    absl::string_view digest = words[1];
    if (!absl::ConsumePrefix(&digest, "sha256:") || !IsHexDigest(digest)) {
      return error("the token must be given as sha256: and 64 hex digits (never the token)");
    }
    Entry entry;
    if (absl::Status valid = ValidateUserName(words[2]); !valid.ok()) {
      return error(valid.message());
    }
    entry.user = std::string(words[2]);
    absl::StatusOr<Role> role = ParseRole(words[3]);
    if (!role.ok()) return error(role.status().message());
    entry.role = *role;
    if (words.size() == 5) {
      absl::string_view expires = words[4];
      absl::Time time;
      std::string parse_error;
      if (!absl::ConsumePrefix(&expires, "expires=") ||
          !absl::ParseTime(absl::RFC3339_full, expires, &time, &parse_error)) {
        return error(absl::StrCat("expected expires=RFC3339 time, e.g. "
                                  "expires=2027-01-31T00:00:00Z, got \"",
                                  words[4], "\""));
      }
      entry.expires = time;
    }
    const std::string key = absl::AsciiStrToLower(digest);
    if (table.tokens.count(key)) return error("the same token is listed twice");
    table.tokens[key] = std::move(entry);
  }
  return table;
}

absl::StatusOr<std::unique_ptr<TokenFile>> TokenFile::Load(const std::string& path,
                                                           const Clock* clock,
                                                           absl::Duration recheck) {
  std::unique_ptr<TokenFile> file(new TokenFile(path, clock, recheck));
  absl::MutexLock lock(&file->mu_);
  if (absl::Status read = file->ReadLocked(); !read.ok()) return read;
  file->next_check_ = clock->Now() + recheck;
  return file;
}

absl::Status TokenFile::ReadLocked() {
  struct stat info;
  if (stat(path_.c_str(), &info) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": cannot read: ", std::strerror(errno)));
  }
  if ((info.st_mode & 0002) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": anyone may write it (mode ",
                     absl::StrFormat("%04o", info.st_mode & 07777), "); chmod o-w"));
  }
  std::ifstream in(path_);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  file_version_ = absl::StrCat(info.st_ino, "/", info.st_size, "/", info.st_mtim.tv_sec, ".",
                               info.st_mtim.tv_nsec);
  absl::StatusOr<Table> table = Parse(text.str(), path_);
  if (!table.ok()) return table.status();
  table_ = *std::move(table);
  return absl::OkStatus();
}

void TokenFile::MaybeReloadLocked() {
  const absl::Time now = clock_->Now();
  if (now < next_check_) return;
  next_check_ = now + recheck_;
  struct stat info;
  std::string version;
  if (stat(path_.c_str(), &info) == 0) {
    version = absl::StrCat(info.st_ino, "/", info.st_size, "/", info.st_mtim.tv_sec, ".",
                           info.st_mtim.tv_nsec);
  }
  if (version == file_version_ && broken_.ok()) return;
  absl::Status read = ReadLocked();
  if (read.ok()) {
    if (!broken_.ok()) JLOG(INFO) << "token file " << path_ << " is valid again";
    JLOG(INFO) << "token file " << path_ << " re-read: " << table_.tokens.size()
               << " tokens, " << table_.certs.size() << " certificate roles";
    broken_ = absl::OkStatus();
    return;
  }
  if (broken_.ok()) {
    JLOG(ERROR) << "token file: " << read.message()
                << "; refusing every token until it is fixed";
  }
  broken_ = read;
  table_ = Table();
}

absl::StatusOr<Identity> TokenFile::Lookup(absl::string_view token) {
  const std::string digest = Sha256Hex(token);
  absl::MutexLock lock(&mu_);
  MaybeReloadLocked();
  if (!broken_.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("the scheduler's token file is invalid (", broken_.message(), ")"));
  }
  auto it = table_.tokens.find(digest);
  if (it == table_.tokens.end()) {
    return absl::UnauthenticatedError("unknown token");
  }
  if (it->second.expires.has_value() && clock_->Now() >= *it->second.expires) {
    return absl::UnauthenticatedError(absl::StrCat(
        "token of ", it->second.user, " expired at ",
        absl::FormatTime(absl::RFC3339_sec, *it->second.expires, absl::UTCTimeZone())));
  }
  Identity identity;
  identity.user = it->second.user;
  identity.role = it->second.role;
  identity.method = "token";
  return identity;
}

Role TokenFile::CertificateRole(absl::string_view user) {
  absl::MutexLock lock(&mu_);
  MaybeReloadLocked();
  auto it = table_.certs.find(std::string(user));
  return it == table_.certs.end() ? Role::kUser : it->second;
}

}  // namespace joule
