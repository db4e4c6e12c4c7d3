#include "scheduler/sharding/sharder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <queue>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace joule {
namespace {

// An impossible internal state: crash loudly rather than hand out a shard
// twice. Never triggered by input; input errors are statuses.
void InternalCheck(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "joule::Sharder internal error: %s\n", what);
  std::abort();
}

absl::Status ValidateThroughput(double throughput, absl::string_view field) {
  if (!std::isfinite(throughput) || throughput < 0.0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: throughput must be finite and >= 0, got %g", field, throughput));
  }
  return absl::OkStatus();
}

// "0-3,8,10-11": runs of two or more consecutive shards become "a-b".
template <typename Iterator>
std::string FormatRanges(Iterator begin, Iterator end) {
  std::string out;
  Iterator it = begin;
  while (it != end) {
    const int first = *it;
    int last = first;
    ++it;
    while (it != end && *it == last + 1) {
      last = *it;
      ++it;
    }
    if (!out.empty()) out.push_back(',');
    if (first == last) {
      absl::StrAppend(&out, first);
    } else {
      absl::StrAppend(&out, first, "-", last);
    }
  }
  return out;
}

// Strict non-negative decimal (digits only, no sign or spaces), at most `max`.
bool ParseCount(absl::string_view text, int64_t max, int64_t* out) {
  if (text.empty() || text.size() > 18) return false;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > max) return false;
  *out = value;
  return true;
}

bool ParseIndex(absl::string_view text, int max, int* out) {
  int64_t value;
  if (!ParseCount(text, max, &value)) return false;
  *out = static_cast<int>(value);
  return true;
}

// Parses a range list of shards below `shard_count`, appending them to `out`.
// Entries must be ascending and disjoint (as FormatRanges writes them), which
// also bounds the work a hostile input can cause to the shard count.
// Returns an empty string on success, else what is wrong.
std::string ParseRanges(absl::string_view text, int shard_count,
                        std::vector<int>* out) {
  if (text.empty()) return "";
  int previous = -1;
  for (absl::string_view token : absl::StrSplit(text, ',')) {
    const size_t dash = token.find('-');
    int lo, hi;
    if (dash == absl::string_view::npos) {
      if (!ParseIndex(token, Sharder::kMaxShardCount, &lo)) {
        return absl::StrCat("bad shard \"", token, "\"");
      }
      hi = lo;
    } else if (!ParseIndex(token.substr(0, dash), Sharder::kMaxShardCount,
                           &lo) ||
               !ParseIndex(token.substr(dash + 1), Sharder::kMaxShardCount,
                           &hi) ||
               hi <= lo) {
      return absl::StrCat("bad range \"", token, "\"");
    }
    if (hi >= shard_count) {
      return absl::StrCat("\"", token, "\" is not below the shard count ",
                          shard_count);
    }
    if (lo <= previous) {
      return absl::StrCat("\"", token, "\" is not above the entry before it");
    }
    previous = hi;
    for (int shard = lo; shard <= hi; ++shard) out->push_back(shard);
  }
  return "";
}

// Splits `total` items in proportion to `weights` (sum > 0) by largest
// remainder, ties to the lower index; then every positive weight gets at
// least one item when total >= the number of positive weights.
std::vector<int> ProportionalSplit(int total,
                                   const std::vector<double>& weights) {
  const int n = static_cast<int>(weights.size());
  double sum = 0.0;
  for (double w : weights) sum += w;
  std::vector<double> quota(n);
  std::vector<int> count(n);
  int assigned = 0;
  for (int i = 0; i < n; ++i) {
    quota[i] = total * (weights[i] / sum);
    count[i] = static_cast<int>(std::floor(quota[i]));
    assigned += count[i];
  }
  // Rounding error could in principle over-assign by one; take it back from
  // the most over-served replica.
  while (assigned > total) {
    int worst = -1;
    for (int i = 0; i < n; ++i) {
      if (count[i] > 0 &&
          (worst < 0 || count[i] - quota[i] > count[worst] - quota[worst])) {
        worst = i;
      }
    }
    --count[worst];
    --assigned;
  }
  std::vector<int> order;
  for (int i = 0; i < n; ++i) {
    if (weights[i] > 0.0) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return quota[a] - count[a] > quota[b] - count[b];
  });
  for (size_t k = 0; assigned < total; k = (k + 1) % order.size()) {
    ++count[order[k]];
    ++assigned;
  }
  int positive = static_cast<int>(order.size());
  if (total >= positive) {
    // Fastest starved replica first, so the shards taken go where they help
    // most if the donors run short (they cannot: total >= positive).
    std::vector<int> starved;
    for (int i : order) {
      if (count[i] == 0) starved.push_back(i);
    }
    std::stable_sort(starved.begin(), starved.end(),
                     [&](int a, int b) { return weights[a] > weights[b]; });
    for (int i : starved) {
      int donor = -1;
      for (int j = 0; j < n; ++j) {
        if (count[j] >= 2 &&
            (donor < 0 || count[j] - quota[j] > count[donor] - quota[donor])) {
          donor = j;
        }
      }
      InternalCheck(donor >= 0, "no donor for a starved replica");
      --count[donor];
      ++count[i];
    }
  }
  return count;
}

// Time to finish `shards` shards, in the throughput's time unit.
double FinishTime(int shards, double throughput) {
  if (shards == 0) return 0.0;
  if (throughput <= 0.0) return std::numeric_limits<double>::infinity();
  return shards / throughput;
}

// How many of a donor's `n` >= 2 pending shards an idle replica should take
// so both finish at about the same time; 0 when moving does not help.
int SplitCount(int n, double donor_throughput, double idle_throughput) {
  // A stalled donor would never finish: it keeps only its shard in progress.
  if (donor_throughput <= 0.0) return n - 1;
  // Even a single shard would finish on the idle replica later than the
  // donor finishes everything: leave the donor alone.
  if (!(1.0 / idle_throughput < n / donor_throughput)) return 0;
  const double ideal =
      n * idle_throughput / (donor_throughput + idle_throughput);
  auto clamp = [n](double k) {
    return std::clamp(static_cast<int>(k), 1, n - 1);
  };
  const int lo = clamp(std::floor(ideal));
  const int hi = clamp(std::ceil(ideal));
  auto finish = [&](int k) {
    return std::max((n - k) / donor_throughput, k / idle_throughput);
  };
  return finish(hi) < finish(lo) ? hi : lo;
}

absl::Status DataLoss(int line, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("sharder state line ", line, ": ", what));
}

// Checks that `token` is "<key>=<value>" and returns the value.
absl::StatusOr<absl::string_view> Field(absl::string_view token,
                                        absl::string_view key, int line) {
  if (token.size() <= key.size() || token.substr(0, key.size()) != key ||
      token[key.size()] != '=') {
    return DataLoss(line, absl::StrCat("expected field \"", key, "=\", got \"",
                                       token, "\""));
  }
  return token.substr(key.size() + 1);
}

}  // namespace

Sharder::Sharder(int shard_count)
    : shard_count_(shard_count),
      done_(shard_count, false),
      owner_(shard_count, kNone) {}

absl::StatusOr<Sharder> Sharder::Create(
    int shard_count, const std::vector<double>& replica_throughput) {
  if (shard_count < 0 || shard_count > kMaxShardCount) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "shard_count: must be in 0..%d, got %d", kMaxShardCount, shard_count));
  }
  if (replica_throughput.empty()) {
    return absl::InvalidArgumentError(
        "replica_throughput: a job needs at least one replica");
  }
  double sum = 0.0;
  for (size_t i = 0; i < replica_throughput.size(); ++i) {
    absl::Status status = ValidateThroughput(
        replica_throughput[i], absl::StrCat("replica_throughput[", i, "]"));
    if (!status.ok()) return status;
    sum += replica_throughput[i];
  }
  if (!(sum > 0.0) || !std::isfinite(sum)) {
    return absl::InvalidArgumentError(
        "replica_throughput: at least one replica needs a throughput > 0 "
        "(and the sum must be finite)");
  }
  Sharder sharder(shard_count);
  const std::vector<int> counts =
      ProportionalSplit(shard_count, replica_throughput);
  int next = 0;
  for (size_t i = 0; i < replica_throughput.size(); ++i) {
    const int id = static_cast<int>(i);
    sharder.replicas_[id].throughput = replica_throughput[i];
    std::vector<int> shards;
    for (int k = 0; k < counts[i]; ++k) shards.push_back(next++);
    sharder.Give(id, shards);
  }
  InternalCheck(next == shard_count, "initial split lost shards");
  return sharder;
}

void Sharder::Give(int replica, const std::vector<int>& shards) {
  auto it = replicas_.find(replica);
  InternalCheck(it != replicas_.end() && it->second.live,
                "giving shards to a replica that is not live");
  Replica& r = it->second;
  for (int shard : shards) {
    InternalCheck(!done_[shard] && owner_[shard] == kNone &&
                      unassigned_.count(shard) == 0,
                  "giving a shard that is done or owned");
    owner_[shard] = replica;
    r.pending.insert(shard);
  }
  // An idle replica starts on its lowest shard; a busy one keeps going.
  if (r.in_progress == kNone && !r.pending.empty()) {
    r.in_progress = *r.pending.begin();
  }
}

void Sharder::Release(int shard) {
  const int owner = owner_[shard];
  if (owner == kNone) {
    InternalCheck(unassigned_.erase(shard) == 1, "releasing an unowned shard");
    return;
  }
  Replica& r = replicas_.at(owner);
  InternalCheck(r.pending.erase(shard) == 1, "owner does not list its shard");
  owner_[shard] = kNone;
  if (r.in_progress == shard) {
    // The replica finished it (or someone else did): it moves on to its
    // lowest remaining shard, as the workloads do.
    r.in_progress = r.pending.empty() ? kNone : *r.pending.begin();
  }
}

absl::Status Sharder::ShardDone(int replica, int shard) {
  if (shard < 0 || shard >= shard_count_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("shard: %d is outside 0..%d", shard, shard_count_ - 1));
  }
  if (replicas_.count(replica) == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("replica: %d is not a replica of this job", replica));
  }
  if (done_[shard]) {
    ++duplicate_reports_;
    return absl::OkStatus();
  }
  if (owner_[shard] != replica) ++foreign_reports_;
  Release(shard);
  done_[shard] = true;
  ++done_count_;
  return absl::OkStatus();
}

std::vector<Sharder::Move> Sharder::Rebalance() {
  std::vector<Move> moves;
  std::vector<int> idle;
  for (const auto& [id, r] : replicas_) {
    if (r.live && r.pending.empty() && r.throughput > 0.0) idle.push_back(id);
  }
  std::stable_sort(idle.begin(), idle.end(), [this](int a, int b) {
    return replicas_.at(a).throughput > replicas_.at(b).throughput;
  });
  for (int receiver : idle) {
    // The donor: most remaining time, then most shards, then lowest index.
    int donor = kNone;
    double donor_time = 0.0;
    for (const auto& [id, r] : replicas_) {
      if (!r.live || r.pending.size() < 2) continue;
      const double time =
          FinishTime(static_cast<int>(r.pending.size()), r.throughput);
      if (donor == kNone || time > donor_time ||
          (time == donor_time &&
           r.pending.size() > replicas_.at(donor).pending.size())) {
        donor = id;
        donor_time = time;
      }
    }
    if (donor == kNone) break;  // Nobody has a shard to spare.
    Replica& from = replicas_.at(donor);
    const int k =
        SplitCount(static_cast<int>(from.pending.size()), from.throughput,
                   replicas_.at(receiver).throughput);
    if (k == 0) continue;
    std::vector<int> shards;
    for (auto it = from.pending.rbegin();
         it != from.pending.rend() && static_cast<int>(shards.size()) < k;
         ++it) {
      if (*it != from.in_progress) shards.push_back(*it);
    }
    std::reverse(shards.begin(), shards.end());
    for (int shard : shards) Release(shard);
    Give(receiver, shards);
    moves.push_back(Move{donor, receiver, std::move(shards)});
  }
  return moves;
}

absl::StatusOr<std::vector<Sharder::Move>> Sharder::ReplicaLost(int replica) {
  auto it = replicas_.find(replica);
  if (it == replicas_.end()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("replica: %d is not a replica of this job", replica));
  }
  if (!it->second.live) return std::vector<Move>();
  const std::vector<int> lost(it->second.pending.begin(),
                              it->second.pending.end());
  for (int shard : lost) Release(shard);
  it->second.live = false;

  std::vector<int> receivers = live_replicas();
  if (receivers.empty()) {
    unassigned_.insert(lost.begin(), lost.end());
    return std::vector<Move>();
  }
  // Water-filling on finish time. With no positive throughput anywhere,
  // every receiver counts as equally fast.
  bool any_positive = false;
  for (int id : receivers) any_positive |= replicas_.at(id).throughput > 0.0;
  const size_t n = receivers.size();
  std::vector<double> speed(n);
  std::vector<int> load(n), extra(n, 0);
  using Entry = std::tuple<double, int>;  // (finish time with one more, slot)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (size_t i = 0; i < n; ++i) {
    const Replica& r = replicas_.at(receivers[i]);
    speed[i] = any_positive ? r.throughput : 1.0;
    load[i] = static_cast<int>(r.pending.size());
    if (speed[i] > 0.0) {
      heap.emplace(FinishTime(load[i] + 1, speed[i]), static_cast<int>(i));
    }
  }
  for (size_t k = 0; k < lost.size(); ++k) {
    const int i = std::get<1>(heap.top());
    heap.pop();
    ++extra[i];
    heap.emplace(FinishTime(load[i] + extra[i] + 1, speed[i]), i);
  }
  std::vector<Move> moves;
  size_t next = 0;
  for (size_t i = 0; i < n; ++i) {
    if (extra[i] == 0) continue;
    std::vector<int> shards(lost.begin() + next,
                            lost.begin() + next + extra[i]);
    next += extra[i];
    Give(receivers[i], shards);
    moves.push_back(Move{replica, receivers[i], std::move(shards)});
  }
  InternalCheck(next == lost.size(), "lost shards not all reassigned");
  return moves;
}

absl::Status Sharder::AddReplica(int replica, double throughput) {
  if (replica < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("replica: index must be >= 0, got %d", replica));
  }
  absl::Status status = ValidateThroughput(throughput, "throughput");
  if (!status.ok()) return status;
  auto it = replicas_.find(replica);
  if (it != replicas_.end() && it->second.live) {
    return absl::AlreadyExistsError(
        absl::StrFormat("replica: %d is already live", replica));
  }
  Replica& r = replicas_[replica];
  r = Replica();
  r.throughput = throughput;
  const std::vector<int> shards(unassigned_.begin(), unassigned_.end());
  unassigned_.clear();
  Give(replica, shards);
  return absl::OkStatus();
}

absl::Status Sharder::UpdateThroughput(int replica, double throughput) {
  auto it = replicas_.find(replica);
  if (it == replicas_.end()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("replica: %d is not a replica of this job", replica));
  }
  absl::Status status = ValidateThroughput(throughput, "throughput");
  if (!status.ok()) return status;
  it->second.throughput = throughput;
  return absl::OkStatus();
}

std::string Sharder::ShardsOf(int replica) const {
  auto it = replicas_.find(replica);
  if (it == replicas_.end()) return "";
  return FormatRanges(it->second.pending.begin(), it->second.pending.end());
}

std::vector<int> Sharder::pending(int replica) const {
  std::vector<int> out;
  auto it = replicas_.find(replica);
  if (it == replicas_.end() || it->second.pending.empty()) return out;
  const Replica& r = it->second;
  out.push_back(r.in_progress);
  for (int shard : r.pending) {
    if (shard != r.in_progress) out.push_back(shard);
  }
  return out;
}

std::vector<int> Sharder::unassigned() const {
  return std::vector<int>(unassigned_.begin(), unassigned_.end());
}

std::vector<int> Sharder::live_replicas() const {
  std::vector<int> out;
  for (const auto& [id, r] : replicas_) {
    if (r.live) out.push_back(id);
  }
  return out;
}

std::string Sharder::Serialize() const {
  std::vector<int> done;
  for (int shard = 0; shard < shard_count_; ++shard) {
    if (done_[shard]) done.push_back(shard);
  }
  std::string out = absl::StrCat(
      "sharder v1 shards=", shard_count_, " replicas=", replicas_.size(),
      " done=", FormatRanges(done.begin(), done.end()),
      " unassigned=", FormatRanges(unassigned_.begin(), unassigned_.end()),
      " duplicates=", duplicate_reports_, " foreign=", foreign_reports_, "\n");
  for (const auto& [id, r] : replicas_) {
    absl::StrAppend(
        &out, "replica ", id, " live=", r.live ? 1 : 0,
        " throughput=", absl::StrFormat("%.17g", r.throughput), " current=",
        r.in_progress == kNone ? std::string("-") : absl::StrCat(r.in_progress),
        " owns=", FormatRanges(r.pending.begin(), r.pending.end()), "\n");
  }
  return out;
}

absl::StatusOr<Sharder> Sharder::Parse(absl::string_view text) {
  if (text.empty() || text.back() != '\n') {
    return absl::DataLossError(
        "sharder state: empty or truncated (no final newline)");
  }
  text.remove_suffix(1);
  const std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');

  // Header.
  const std::vector<absl::string_view> head = absl::StrSplit(lines[0], ' ');
  if (head.size() != 8 || head[0] != "sharder" || head[1] != "v1") {
    return DataLoss(1, "expected \"sharder v1\" and 6 fields");
  }
  int64_t shard_count, replica_count, duplicates, foreign;
  absl::StatusOr<absl::string_view> value = Field(head[2], "shards", 1);
  if (!value.ok()) return value.status();
  if (!ParseCount(*value, kMaxShardCount, &shard_count)) {
    return DataLoss(1, absl::StrCat("bad shard count \"", *value, "\""));
  }
  // The replica count makes a state cut after a whole line detectable.
  value = Field(head[3], "replicas", 1);
  if (!value.ok()) return value.status();
  if (!ParseCount(*value, std::numeric_limits<int>::max(), &replica_count) ||
      replica_count == 0) {
    return DataLoss(1, absl::StrCat("bad replica count \"", *value, "\""));
  }
  if (static_cast<int64_t>(lines.size()) - 1 != replica_count) {
    return DataLoss(1, absl::StrCat("replicas=", replica_count, " but ",
                                    lines.size() - 1, " replica lines"));
  }
  Sharder sharder(static_cast<int>(shard_count));
  std::vector<int> shards;
  value = Field(head[4], "done", 1);
  if (!value.ok()) return value.status();
  if (std::string error = ParseRanges(*value, shard_count, &shards);
      !error.empty()) {
    return DataLoss(1, absl::StrCat("done: ", error));
  }
  for (int shard : shards) {
    if (sharder.done_[shard]) {
      return DataLoss(1, absl::StrCat("done: shard ", shard, " listed twice"));
    }
    sharder.done_[shard] = true;
    ++sharder.done_count_;
  }
  shards.clear();
  value = Field(head[5], "unassigned", 1);
  if (!value.ok()) return value.status();
  if (std::string error = ParseRanges(*value, shard_count, &shards);
      !error.empty()) {
    return DataLoss(1, absl::StrCat("unassigned: ", error));
  }
  for (int shard : shards) {
    if (sharder.done_[shard] || !sharder.unassigned_.insert(shard).second) {
      return DataLoss(1, absl::StrCat("unassigned: shard ", shard,
                                      " is done or listed twice"));
    }
  }
  value = Field(head[6], "duplicates", 1);
  if (!value.ok()) return value.status();
  if (!ParseCount(*value, std::numeric_limits<int64_t>::max(), &duplicates)) {
    return DataLoss(1, absl::StrCat("bad duplicates \"", *value, "\""));
  }
  value = Field(head[7], "foreign", 1);
  if (!value.ok()) return value.status();
  if (!ParseCount(*value, std::numeric_limits<int64_t>::max(), &foreign)) {
    return DataLoss(1, absl::StrCat("bad foreign \"", *value, "\""));
  }
  sharder.duplicate_reports_ = duplicates;
  sharder.foreign_reports_ = foreign;

  // Replicas, in ascending index order.
  bool any_live = false;
  int previous_id = kNone;
  for (size_t i = 1; i < lines.size(); ++i) {
    const int line = static_cast<int>(i) + 1;
    const std::vector<absl::string_view> tokens = absl::StrSplit(lines[i], ' ');
    if (tokens.size() != 6 || tokens[0] != "replica") {
      return DataLoss(line, "expected \"replica <index>\" and 4 fields");
    }
    int id;
    if (!ParseIndex(tokens[1], std::numeric_limits<int>::max(), &id)) {
      return DataLoss(line,
                      absl::StrCat("bad replica index \"", tokens[1], "\""));
    }
    if (id <= previous_id) {
      return DataLoss(line, "replica indices must be strictly ascending");
    }
    previous_id = id;
    Replica& r = sharder.replicas_[id];
    value = Field(tokens[2], "live", line);
    if (!value.ok()) return value.status();
    if (*value != "0" && *value != "1") {
      return DataLoss(
          line, absl::StrCat("live: expected 0 or 1, got \"", *value, "\""));
    }
    r.live = *value == "1";
    any_live |= r.live;
    value = Field(tokens[3], "throughput", line);
    if (!value.ok()) return value.status();
    if (!absl::SimpleAtod(*value, &r.throughput) ||
        !std::isfinite(r.throughput) || r.throughput < 0.0) {
      return DataLoss(line, absl::StrCat("throughput: \"", *value,
                                         "\" is not a finite number >= 0"));
    }
    value = Field(tokens[4], "current", line);
    if (!value.ok()) return value.status();
    int current = kNone;
    if (*value != "-" &&
        !ParseIndex(*value, static_cast<int>(shard_count) - 1, &current)) {
      return DataLoss(line, absl::StrCat("current: \"", *value,
                                         "\" is not \"-\" or a shard"));
    }
    value = Field(tokens[5], "owns", line);
    if (!value.ok()) return value.status();
    shards.clear();
    if (std::string error = ParseRanges(*value, shard_count, &shards);
        !error.empty()) {
      return DataLoss(line, absl::StrCat("owns: ", error));
    }
    if (!r.live && !shards.empty()) {
      return DataLoss(line, "owns: a lost replica owns nothing");
    }
    for (int shard : shards) {
      if (sharder.done_[shard] || sharder.owner_[shard] != kNone ||
          sharder.unassigned_.count(shard) > 0) {
        return DataLoss(line, absl::StrCat("owns: shard ", shard,
                                           " is done, unassigned or owned "
                                           "twice"));
      }
      sharder.owner_[shard] = id;
      r.pending.insert(shard);
    }
    if (r.pending.empty() ? current != kNone : r.pending.count(current) == 0) {
      return DataLoss(line,
                      "current: must be \"-\" exactly when the replica "
                      "owns nothing, else one of its shards");
    }
    r.in_progress = current;
  }
  if (any_live && !sharder.unassigned_.empty()) {
    return DataLoss(1,
                    "unassigned: shards cannot be unassigned while a "
                    "replica is live");
  }
  for (int shard = 0; shard < shard_count; ++shard) {
    if (!sharder.done_[shard] && sharder.owner_[shard] == kNone &&
        sharder.unassigned_.count(shard) == 0) {
      return DataLoss(1, absl::StrCat("shard ", shard,
                                      " is neither done, owned nor "
                                      "unassigned"));
    }
  }
  return sharder;
}

}  // namespace joule
