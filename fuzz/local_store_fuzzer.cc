// Fuzz target: the embedded store's recovery (scheduler/store/local_store.h),
// through its public API only: files planted in a fresh data directory,
// then LocalStore::Open and List.
//
// Input: [u8 flags][u16 little-endian snapshot length][snapshot][log]
//   flags & 1  write `snapshot` (the bytes given)
//   flags & 2  write the log as wal.<G>, G being the generation the snapshot
//              header names (bytes 12..19, little-endian), else 0
//   flags & 4  also an empty wal.<G+1> (a compaction that crashed early)
//   flags & 8  also a snapshot.tmp holding the log bytes (an unfinished
//              compaction)
//
// Checked, besides never crashing:
//  - Open fails closed: when it refuses, the snapshot and the log are
//    byte-for-byte what was planted, and a second Open refuses the same way.
//  - Recovery only ever cuts a torn tail: after a successful Open the log is
//    a prefix of the planted one, and reopening gives the same contents.

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_support.h"
#include "scheduler/store/local_store.h"

namespace joule::fuzz {
namespace {

using Entries = std::vector<std::pair<std::string, std::string>>;

// The file's bytes; nullopt-like "<missing>" marker when it cannot be read.
std::string ReadOrMissing(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "<missing>";
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

absl::StatusOr<Entries> OpenAndList(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(dir);
  if (!store.ok()) return store.status();
  return (*store)->List("");
}

uint64_t GenerationOf(absl::string_view snapshot) {
  if (snapshot.size() < 20) return 0;
  uint64_t generation = 0;
  for (int i = 7; i >= 0; --i) {
    generation = (generation << 8) | static_cast<uint8_t>(snapshot[12 + i]);
  }
  return generation;
}

}  // namespace
}  // namespace joule::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace joule::fuzz;  // NOLINT: a fuzz target's one function.
  InputReader input(data, size);
  const uint8_t flags = input.U8();
  const absl::string_view snapshot = input.Bytes(input.U16());
  const absl::string_view log = input.Rest();

  const std::string dir = FreshDir();
  const uint64_t generation = (flags & 1) ? GenerationOf(snapshot) : 0;
  const std::string snapshot_path = dir + "/snapshot";
  const std::string log_path = absl::StrCat(dir, "/wal.", generation);
  if (flags & 1) WriteFileOrDie(snapshot_path, snapshot);
  if (flags & 2) WriteFileOrDie(log_path, log);
  if ((flags & 4) && generation != UINT64_MAX) {
    WriteFileOrDie(absl::StrCat(dir, "/wal.", generation + 1), "");
  }
  if (flags & 8) WriteFileOrDie(dir + "/snapshot.tmp", log);
  const std::string planted_snapshot = ReadOrMissing(snapshot_path);
  const std::string planted_log = ReadOrMissing(log_path);

  absl::StatusOr<Entries> first = OpenAndList(dir);
  if (!first.ok()) {
    FUZZ_CHECK_MSG(ReadOrMissing(snapshot_path) == planted_snapshot,
                   "a refused Open changed the snapshot: " + first.status().ToString());
    FUZZ_CHECK_MSG(ReadOrMissing(log_path) == planted_log,
                   "a refused Open changed the log: " + first.status().ToString());
    absl::StatusOr<Entries> again = OpenAndList(dir);
    FUZZ_CHECK_MSG(!again.ok() && again.status().code() == first.status().code(),
                   "a second Open answered differently: " + first.status().ToString() +
                       " then " + again.status().ToString());
  } else {
    const std::string recovered_log = ReadOrMissing(log_path);
    if (flags & 2) {
      FUZZ_CHECK_MSG(planted_log.compare(0, recovered_log.size(), recovered_log) == 0 &&
                         recovered_log.size() <= planted_log.size(),
                     "recovery did more than cut the log's tail");
    }
    absl::StatusOr<Entries> again = OpenAndList(dir);
    FUZZ_CHECK_MSG(again.ok(), "the store opened once, then refused: " +
                                   again.status().ToString());
    FUZZ_CHECK_MSG(*again == *first, "reopening the store changed its contents");
    FUZZ_CHECK_MSG(ReadOrMissing(log_path) == recovered_log,
                   "reopening a recovered store changed its log again");
  }
  RemoveTree(dir);
  return 0;
}
