#include "agent/cap_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace joule {
namespace {

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Errno("open", path);
  const int rc = fsync(fd);
  close(fd);
  return rc == 0 ? absl::OkStatus() : Errno("fsync", path);
}

}  // namespace

absl::StatusOr<CapJournal> CapJournal::Open(const std::string& path) {
  CapJournal journal(path);
  std::ifstream in(path);
  if (!in) return journal;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    std::vector<std::string> fields = absl::StrSplit(line, '\t');
    double value = 0;
    if (fields.size() != 2 || fields[0].empty() ||
        !absl::SimpleAtod(fields[1], &value) || !std::isfinite(value)) {
      return absl::DataLossError(absl::StrFormat(
          "%s line %d: expected KEY<tab>NUMBER, got \"%s\"", path, number,
          absl::CHexEscape(line.substr(0, 200))));
    }
    journal.entries_[fields[0]] = value;
  }
  return journal;
}

CapJournal CapJournal::OpenOrReset(const std::string& path, absl::Time now,
                                   std::optional<Reset>* reset) {
  if (reset != nullptr) reset->reset();
  // Older agents wrote it 0644.
  chmod(path.c_str(), 0600);
  absl::StatusOr<CapJournal> opened = Open(path);
  if (opened.ok()) return *std::move(opened);
  Reset what;
  what.error = std::string(opened.status().message());
  const std::string base =
      absl::StrCat(path, ".corrupt-", absl::FormatTime("%Y%m%dT%H%M%SZ", now, absl::UTCTimeZone()));
  std::string kept = base;
  struct stat st;
  for (int n = 1; lstat(kept.c_str(), &st) == 0 && n < 1000; ++n) {
    kept = absl::StrCat(base, "-", n);
  }
  if (std::rename(path.c_str(), kept.c_str()) == 0) {
    what.kept_as = kept;
  } else {
    absl::StrAppend(&what.error, "; could not keep it as ", kept, ": ", std::strerror(errno));
  }
  CapJournal journal(path);
  // A fresh, empty journal on disk; if this fails, so will every Record,
  // each saying why.
  absl::Status written = journal.Write();
  if (!written.ok()) absl::StrAppend(&what.error, "; starting a new journal: ", written.message());
  if (reset != nullptr) *reset = std::move(what);
  return journal;
}

absl::Status CapJournal::Record(const std::string& key, double original) {
  if (entries_.count(key)) return absl::OkStatus();
  entries_[key] = original;
  absl::Status written = Write();
  if (!written.ok()) entries_.erase(key);
  return written;
}

absl::Status CapJournal::Forget(const std::string& key) {
  if (!entries_.erase(key)) return absl::OkStatus();
  return Write();
}

absl::Status CapJournal::Write() const {
  std::string text;
  for (const auto& [key, value] : entries_) {
    absl::StrAppend(&text, key, "\t", absl::StrFormat("%.17g", value), "\n");
  }
  const std::string tmp = path_ + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("open", tmp);
  fchmod(fd, 0600);  // A temp file an older agent left may be 0644.
  const ssize_t n = write(fd, text.data(), text.size());
  const bool ok = n == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  close(fd);
  if (!ok) return Errno("write", tmp);
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) return Errno("rename", tmp);
  const size_t slash = path_.rfind('/');
  return FsyncPath(slash == std::string::npos ? "." : path_.substr(0, slash),
                   O_RDONLY | O_DIRECTORY);
}

}  // namespace joule
