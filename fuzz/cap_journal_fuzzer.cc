// Fuzz target: loading the agent's caps journal (agent/cap_journal.h), a file
// that outlives the agent and that a crash, a full disk or a hostile task may
// have left in any state.
//
// Input: the journal file's contents.
//
// Checked, besides never crashing: a journal that loads survives a round
// trip. Recording one more setting rewrites the file; loading that file gives
// back every entry loaded before (values bit for bit) plus the new one.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/cap_journal.h"
#include "fuzz/fuzz_support.h"

namespace joule::fuzz {
namespace {

constexpr char kProbeKey[] = "fuzz/probe";
constexpr double kProbeValue = 123.25;

bool SameBits(double a, double b) {
  // NaN payloads and signs are not kept by the text format; any NaN matches.
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace
}  // namespace joule::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace joule::fuzz;  // NOLINT: a fuzz target's one function.
  const std::string dir = FreshDir();
  const std::string path = dir + "/caps.journal";
  WriteFileOrDie(path, absl::string_view(reinterpret_cast<const char*>(data), size));

  absl::StatusOr<joule::CapJournal> journal = joule::CapJournal::Open(path);
  if (journal.ok()) {
    const std::map<std::string, double> loaded = journal->entries();
    if (journal->Record(kProbeKey, kProbeValue).ok()) {
      absl::StatusOr<joule::CapJournal> reloaded = joule::CapJournal::Open(path);
      FUZZ_CHECK_MSG(reloaded.ok(), "the journal's own rewrite does not load: " +
                                        reloaded.status().ToString());
      std::map<std::string, double> want = loaded;
      want.emplace(kProbeKey, kProbeValue);  // a key loaded keeps its value
      const std::map<std::string, double>& got = reloaded->entries();
      FUZZ_CHECK_MSG(got.size() == want.size(), "the rewrite lost or added entries");
      for (const auto& [key, value] : want) {
        auto it = got.find(key);
        FUZZ_CHECK_MSG(it != got.end(), "the rewrite lost key " + key);
        FUZZ_CHECK_MSG(SameBits(it->second, value), "the rewrite changed key " + key);
      }
    }
  }
  RemoveTree(dir);
  return 0;
}
