#include "fuzz/fuzz_support.h"

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/log.h"

namespace joule::fuzz {
namespace {

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

std::string* scratch_root = nullptr;

void RemoveScratchRoot() {
  if (scratch_root != nullptr) RemoveTree(*scratch_root);
}

bool Writable(const char* dir) {
  struct stat st;
  return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && access(dir, W_OK) == 0;
}

const std::string& ScratchRoot() {
  if (scratch_root != nullptr) return *scratch_root;
  const char* test_tmpdir = getenv("TEST_TMPDIR");
  std::string base;
  if (test_tmpdir != nullptr && *test_tmpdir != '\0') {
    base = test_tmpdir;
  } else if (Writable("/dev/shm")) {
    base = "/dev/shm";
  } else {
    base = "/tmp";
  }
  std::string tmpl = absl::StrCat(base, "/joule_fuzz_XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    Fail(__FILE__, __LINE__,
         absl::StrCat("mkdtemp under ", base, ": ", std::strerror(errno)));
  }
  scratch_root = new std::string(tmpl);
  atexit(RemoveScratchRoot);
  return *scratch_root;
}

}  // namespace

uint8_t InputReader::U8() {
  if (pos_ >= size_) return 0;
  return static_cast<uint8_t>(data_[pos_++]);
}

uint16_t InputReader::U16() {
  const uint16_t low = U8();
  return static_cast<uint16_t>(low | (U8() << 8));
}

absl::string_view InputReader::Bytes(size_t n) {
  if (n > remaining()) n = remaining();
  absl::string_view out(data_ + pos_, n);
  pos_ += n;
  return out;
}

absl::string_view InputReader::Rest() { return Bytes(remaining()); }

void QuietLogs() {
  const char* verbose = getenv("JOULE_FUZZ_VERBOSE");
  if (verbose != nullptr && std::string(verbose) == "1") return;
  // One above the highest level: nothing is logged.
  SetMinLogLevel(static_cast<LogLevel>(static_cast<int>(LogLevel::kError) + 1));
}

std::string FreshDir() {
  static int64_t counter = 0;
  const std::string dir = absl::StrCat(ScratchRoot(), "/", counter++);
  RemoveTree(dir);
  if (mkdir(dir.c_str(), 0700) != 0) {
    Fail(__FILE__, __LINE__, absl::StrCat("mkdir ", dir, ": ", std::strerror(errno)));
  }
  return dir;
}

void WriteFileOrDie(const std::string& path, absl::string_view contents) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    mkdir(path.substr(0, slash).c_str(), 0700);
  }
  FILE* file = fopen(path.c_str(), "wb");
  if (file == nullptr) {
    Fail(__FILE__, __LINE__, absl::StrCat("open ", path, ": ", std::strerror(errno)));
  }
  const bool ok = fwrite(contents.data(), 1, contents.size(), file) == contents.size();
  if (fclose(file) != 0 || !ok) {
    Fail(__FILE__, __LINE__, absl::StrCat("write ", path, ": ", std::strerror(errno)));
  }
}

void RemoveTree(const std::string& path) {
  nftw(path.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS);
}

void Fail(const char* file, int line, const std::string& message) {
  fprintf(stderr, "%s:%d: %s\n", file, line, message.c_str());
  fflush(stderr);
  abort();
}

}  // namespace joule::fuzz
