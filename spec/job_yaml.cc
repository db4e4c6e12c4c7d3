#include "spec/job_yaml.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <exception>
#include <limits>
#include <new>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "joule/v1/job.pb.h"
#include "yaml-cpp/depthguard.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace joule {
namespace {

// Counts documents for ParseJobYaml; ignores everything else.
struct DocumentCounter : public YAML::EventHandler {
  int documents = 0;
  // Where the second document's content starts (its "---" if it is empty).
  YAML::Mark second;
  bool second_found = false;
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents == 2) second = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnMapEnd() override {}

 private:
  void Node(const YAML::Mark& mark) {
    if (documents == 2 && !second_found) {
      second = mark;
      second_found = true;
    }
  }
};

}  // namespace
namespace {

using ::joule::v1::JobSpec;

// Keys of each mapping in a job file, in the order the error messages list
// them.
constexpr absl::string_view kJobFields[] = {
    "name",      "type",     "command",    "args",        "env",
    "resources", "replicas", "batch_size", "shard_count", "objective",
    "labels",    "user",     "job_class",  "working_dir", "pin_max_cap",
    "energy_budget_j", "early_stop", "latency_slo_ms", "restart_policy",
    "expected_samples", "placement_profile"};
constexpr absl::string_view kEarlyStopFields[] = {"patience", "min_delta",
                                                  "higher_is_better"};
constexpr absl::string_view kResourcesFields[] = {"gpus", "cpus", "memory",
                                                  "memory_bytes", "gpu_model"};
constexpr absl::string_view kBatchSizeFields[] = {"default", "default_size",
                                                  "min", "max"};
constexpr absl::string_view kObjectiveFields[] = {"max_slowdown", "deadline",
                                                  "energy_time_weight"};
constexpr absl::string_view kRestartPolicyFields[] = {"max_retries", "backoff_s",
                                                      "max_backoff_s", "retry_on"};

// google.protobuf.Timestamp's valid range: years 0001 to 9999.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

// Longest piece of user text echoed in an error message.
constexpr size_t kMaxQuotedBytes = 64;

constexpr absl::string_view kQuantitySuffixes =
    "Ki, Mi, Gi, Ti (1024-based), k, M, G, T (1000-based), or none for bytes";

// "text" with control and non-ASCII bytes escaped, cut at kMaxQuotedBytes.
std::string Quote(absl::string_view text) {
  if (text.size() <= kMaxQuotedBytes) {
    return absl::StrCat("\"", absl::CHexEscape(text), "\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMaxQuotedBytes)),
                      "\"... (", text.size(), " bytes)");
}

// "line L, column C: " (1-based), or "" when yaml-cpp has no position.
std::string Position(const YAML::Mark& mark) {
  if (mark.is_null()) return "";
  return absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1,
                      ": ");
}

absl::Status ErrorAt(const YAML::Node& node, absl::string_view path,
                     absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      Position(node.Mark()), path, path.empty() ? "" : ": ", what));
}

// What the user wrote, for "expected X, got Y".
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

std::string ChildPath(absl::string_view parent, absl::string_view key) {
  std::string shown =
      key.size() <= kMaxQuotedBytes
          ? absl::CHexEscape(key)
          : absl::StrCat(absl::CHexEscape(key.substr(0, kMaxQuotedBytes)),
                         "...");
  return parent.empty() ? shown : absl::StrCat(parent, ".", shown);
}

// Proto3 strings must be UTF-8; yaml-cpp passes bytes through unchecked.
bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char lead = static_cast<unsigned char>(s[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((lead & 0xE0) == 0xC0) {
      len = 2;
      cp = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      len = 3;
      cp = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      len = 4;
      cp = lead & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cont = static_cast<unsigned char>(s[i + k]);
      if ((cont & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cont & 0x3F);
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                          (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// [+-]?[0-9]+
bool IsDecimalInteger(absl::string_view s) {
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  return true;
}

// [+-]?(digits[.digits?]|.digits)([eE][+-]?digits)?
bool IsDecimalNumber(absl::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  size_t mantissa_digits = 0;
  while (i < s.size() && IsDigit(s[i])) ++i, ++mantissa_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && IsDigit(s[i])) ++i, ++mantissa_digits;
  }
  if (mantissa_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exponent_digits = 0;
    while (i < s.size() && IsDigit(s[i])) ++i, ++exponent_digits;
    if (exponent_digits == 0) return false;
  }
  return i == s.size();
}

absl::Status ParseString(const YAML::Node& node, absl::string_view path,
                         std::string* out) {
  if (!node.IsScalar()) {
    return ErrorAt(node, path,
                   absl::StrCat("expected a string, got ", Describe(node)));
  }
  if (!IsValidUtf8(node.Scalar())) {
    return ErrorAt(node, path, "not valid UTF-8");
  }
  *out = node.Scalar();
  return absl::OkStatus();
}

absl::Status ParseInt64(const YAML::Node& node, absl::string_view path,
                        int64_t* out) {
  if (!node.IsScalar() || !IsDecimalInteger(node.Scalar())) {
    return ErrorAt(node, path,
                   absl::StrCat("expected an integer, got ", Describe(node)));
  }
  if (!absl::SimpleAtoi(node.Scalar(), out)) {
    return ErrorAt(node, path,
                   absl::StrCat(Quote(node.Scalar()),
                                " is out of range for a 64-bit integer"));
  }
  return absl::OkStatus();
}

absl::Status ParseInt32(const YAML::Node& node, absl::string_view path,
                        int32_t* out) {
  if (!node.IsScalar() || !IsDecimalInteger(node.Scalar())) {
    return ErrorAt(node, path,
                   absl::StrCat("expected an integer, got ", Describe(node)));
  }
  if (!absl::SimpleAtoi(node.Scalar(), out)) {
    return ErrorAt(node, path,
                   absl::StrCat(Quote(node.Scalar()),
                                " is out of range for a 32-bit integer "
                                "[-2147483648, 2147483647]"));
  }
  return absl::OkStatus();
}

// Decimal numbers, plus YAML's .inf / -.inf / .nan, which are passed through
// for ValidateJobSpec to refuse.
absl::Status ParseDouble(const YAML::Node& node, absl::string_view path,
                         double* out) {
  if (node.IsScalar()) {
    const std::string& s = node.Scalar();
    if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf" ||
        s == "+.Inf" || s == "+.INF") {
      *out = std::numeric_limits<double>::infinity();
      return absl::OkStatus();
    }
    if (s == "-.inf" || s == "-.Inf" || s == "-.INF") {
      *out = -std::numeric_limits<double>::infinity();
      return absl::OkStatus();
    }
    if (s == ".nan" || s == ".NaN" || s == ".NAN") {
      *out = std::numeric_limits<double>::quiet_NaN();
      return absl::OkStatus();
    }
    // SimpleAtod alone would also take hex, "inf" and surrounding spaces.
    if (IsDecimalNumber(s) && absl::SimpleAtod(s, out)) {
      return absl::OkStatus();
    }
  }
  return ErrorAt(node, path,
                 absl::StrCat("expected a number, got ", Describe(node)));
}

// Calls fn(key, key_node, value_node) for each entry of the mapping `node`
// at `path`, refusing non-mappings, non-string and duplicate keys and, when
// `allowed` is not empty, keys outside it. With `skip_null_values`, entries
// whose value is null are checked but not passed on: in a job file `key:`
// means the same as leaving the key out.
template <typename Fn>
absl::Status ForEachEntry(const YAML::Node& node, absl::string_view path,
                          absl::Span<const absl::string_view> allowed,
                          bool skip_null_values, Fn fn) {
  if (!node.IsMap()) {
    return ErrorAt(node, path,
                   absl::StrCat("expected a mapping, got ", Describe(node)));
  }
  const absl::string_view kind = allowed.empty() ? "key" : "field";
  absl::flat_hash_set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: `it->` yields a temporary proxy, so references into it would
    // dangle (YAML::Node copies are cheap handles).
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      return ErrorAt(
          key, path,
          absl::StrCat("expected a string key, got ", Describe(key)));
    }
    const std::string& name = key.Scalar();
    if (!IsValidUtf8(name)) {
      return ErrorAt(
          key, path,
          absl::StrCat(kind, " ", Quote(name), " is not valid UTF-8"));
    }
    if (!allowed.empty() &&
        std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      return ErrorAt(key, path,
                     absl::StrCat("unknown field ", Quote(name),
                                  "; allowed: ", absl::StrJoin(allowed, ", ")));
    }
    if (!seen.insert(name).second) {
      return ErrorAt(key, path,
                     absl::StrCat("duplicate ", kind, " ", Quote(name)));
    }
    if (skip_null_values && value.IsNull()) continue;
    if (absl::Status s = fn(name, key, value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ParseType(const YAML::Node& node, JobSpec* spec) {
  std::string text;
  if (absl::Status s = ParseString(node, "type", &text); !s.ok()) return s;
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "training") {
    spec->set_type(joule::v1::JOB_TYPE_TRAINING);
  } else if (lower == "inference") {
    spec->set_type(joule::v1::JOB_TYPE_INFERENCE);
  } else {
    return ErrorAt(
        node, "type",
        absl::StrCat("must be training or inference, got ", Quote(text)));
  }
  return absl::OkStatus();
}

absl::Status ParseArgs(const YAML::Node& node, JobSpec* spec) {
  if (!node.IsSequence()) {
    return ErrorAt(
        node, "args",
        absl::StrCat("expected a list of strings, got ", Describe(node)));
  }
  int index = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++index) {
    if (absl::Status s = ParseString(*it, absl::StrCat("args[", index, "]"),
                                     spec->add_args());
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ParseStringMap(
    const YAML::Node& node, absl::string_view path,
    google::protobuf::Map<std::string, std::string>* out) {
  return ForEachEntry(
      node, path, {}, /*skip_null_values=*/false,
      [&](const std::string& key, const YAML::Node&,
          const YAML::Node& value) -> absl::Status {
        std::string text;
        if (absl::Status s = ParseString(value, ChildPath(path, key), &text);
            !s.ok()) {
          return s;
        }
        (*out)[key] = std::move(text);
        return absl::OkStatus();
      });
}

absl::Status ParseResources(const YAML::Node& node,
                            joule::v1::Resources* resources) {
  const YAML::Node* memory_key = nullptr;
  return ForEachEntry(
      node, "resources", kResourcesFields, /*skip_null_values=*/true,
      [&](const std::string& key, const YAML::Node& key_node,
          const YAML::Node& value) -> absl::Status {
        const std::string path = ChildPath("resources", key);
        if (key == "gpus") {
          int32_t gpus;
          if (absl::Status s = ParseInt32(value, path, &gpus); !s.ok()) {
            return s;
          }
          resources->set_gpus(gpus);
        } else if (key == "cpus") {
          double cpus;
          if (absl::Status s = ParseDouble(value, path, &cpus); !s.ok()) {
            return s;
          }
          resources->set_cpus(cpus);
        } else if (key == "memory" || key == "memory_bytes") {
          if (memory_key != nullptr) {
            return ErrorAt(key_node, "resources",
                           "set either memory or memory_bytes, not both");
          }
          memory_key = &key_node;
          int64_t bytes;
          if (key == "memory_bytes") {
            if (absl::Status s = ParseInt64(value, path, &bytes); !s.ok()) {
              return s;
            }
          } else {
            if (!value.IsScalar()) {
              return ErrorAt(value, path,
                             absl::StrCat("expected a quantity such as 2Gi, "
                                          "got ",
                                          Describe(value)));
            }
            if (absl::Status s = ParseQuantity(value.Scalar(), &bytes);
                !s.ok()) {
              return ErrorAt(value, path, s.message());
            }
          }
          resources->set_memory_bytes(bytes);
        } else {  // gpu_model
          return ParseString(value, path, resources->mutable_gpu_model());
        }
        return absl::OkStatus();
      });
}

absl::Status ParseBatchSize(const YAML::Node& node,
                            joule::v1::BatchSizeRange* batch) {
  bool have_default = false;
  return ForEachEntry(
      node, "batch_size", kBatchSizeFields, /*skip_null_values=*/true,
      [&](const std::string& key, const YAML::Node& key_node,
          const YAML::Node& value) -> absl::Status {
        int32_t size;
        if (absl::Status s =
                ParseInt32(value, ChildPath("batch_size", key), &size);
            !s.ok()) {
          return s;
        }
        if (key == "min") {
          batch->set_min(size);
        } else if (key == "max") {
          batch->set_max(size);
        } else {  // default or default_size
          if (have_default) {
            return ErrorAt(key_node, "batch_size",
                           "default and default_size are the same field; "
                           "set only one");
          }
          have_default = true;
          batch->set_default_size(size);
        }
        return absl::OkStatus();
      });
}

absl::Status ParseDeadline(const YAML::Node& node,
                           google::protobuf::Timestamp* deadline) {
  constexpr absl::string_view kPath = "objective.deadline";
  std::string text;
  if (absl::Status s = ParseString(node, kPath, &text); !s.ok()) return s;
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &time, &error)) {
    return ErrorAt(node, kPath,
                   absl::StrCat("expected an RFC 3339 time such as "
                                "\"2026-12-01T10:00:00Z\", got ",
                                Quote(text)));
  }
  const int64_t seconds = absl::ToUnixSeconds(time);
  if (time == absl::InfiniteFuture() || time == absl::InfinitePast() ||
      seconds < kMinTimestampSeconds || seconds > kMaxTimestampSeconds) {
    return ErrorAt(node, kPath,
                   absl::StrCat(Quote(text),
                                " is out of range; allowed: years 0001 to "
                                "9999"));
  }
  deadline->set_seconds(seconds);
  deadline->set_nanos(static_cast<int32_t>(
      (time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  return absl::OkStatus();
}

absl::Status ParseObjective(const YAML::Node& node,
                            joule::v1::Objective* objective) {
  std::string goal;
  return ForEachEntry(
      node, "objective", kObjectiveFields, /*skip_null_values=*/true,
      [&](const std::string& key, const YAML::Node& key_node,
          const YAML::Node& value) -> absl::Status {
        if (!goal.empty()) {
          return ErrorAt(key_node, "objective",
                         absl::StrCat("at most one of max_slowdown, deadline, "
                                      "energy_time_weight; got ",
                                      goal, " and ", key));
        }
        goal = key;
        const std::string path = ChildPath("objective", key);
        if (key == "deadline") {
          return ParseDeadline(value, objective->mutable_deadline());
        }
        double number;
        if (absl::Status s = ParseDouble(value, path, &number); !s.ok()) {
          return s;
        }
        if (key == "max_slowdown") {
          objective->set_max_slowdown(number);
        } else {  // energy_time_weight
          objective->set_energy_time_weight(number);
        }
        return absl::OkStatus();
      });
}

// retry_on: a list of lost / failed (any case). Duplicates are left for
// ValidateJobSpec; an empty list is refused here, since the proto cannot tell
// it from an unset one (which means the default, lost).
absl::Status ParseRetryOn(const YAML::Node& node,
                          joule::v1::RestartPolicy* policy) {
  constexpr absl::string_view kPath = "restart_policy.retry_on";
  if (!node.IsSequence()) {
    return ErrorAt(node, kPath,
                   absl::StrCat("expected a list of lost and/or failed, got ",
                                Describe(node)));
  }
  if (node.size() == 0) {
    return ErrorAt(node, kPath,
                   "empty; list lost and/or failed (max_retries: 0 never retries)");
  }
  int index = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++index) {
    const std::string path = absl::StrCat(kPath, "[", index, "]");
    std::string text;
    if (absl::Status s = ParseString(*it, path, &text); !s.ok()) return s;
    const std::string lower = absl::AsciiStrToLower(text);
    if (lower == "lost") {
      policy->add_retry_on(joule::v1::RETRY_ON_LOST);
    } else if (lower == "failed") {
      policy->add_retry_on(joule::v1::RETRY_ON_FAILED);
    } else {
      return ErrorAt(*it, path,
                     absl::StrCat("must be lost or failed, got ", Quote(text)));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseRestartPolicy(const YAML::Node& node,
                                joule::v1::RestartPolicy* policy) {
  return ForEachEntry(
      node, "restart_policy", kRestartPolicyFields, /*skip_null_values=*/true,
      [&](const std::string& key, const YAML::Node&,
          const YAML::Node& value) -> absl::Status {
        const std::string path = ChildPath("restart_policy", key);
        if (key == "max_retries") {
          int32_t retries;
          if (absl::Status s = ParseInt32(value, path, &retries); !s.ok()) return s;
          policy->set_max_retries(retries);
        } else if (key == "backoff_s" || key == "max_backoff_s") {
          double seconds;
          if (absl::Status s = ParseDouble(value, path, &seconds); !s.ok()) return s;
          if (key == "backoff_s") {
            policy->set_backoff_s(seconds);
          } else {
            policy->set_max_backoff_s(seconds);
          }
        } else {  // retry_on
          return ParseRetryOn(value, policy);
        }
        return absl::OkStatus();
      });
}

absl::Status ParseJobField(const std::string& key, const YAML::Node& value,
                           JobSpec* spec) {
  if (key == "name") return ParseString(value, key, spec->mutable_name());
  if (key == "type") return ParseType(value, spec);
  if (key == "command") return ParseString(value, key, spec->mutable_command());
  if (key == "args") return ParseArgs(value, spec);
  if (key == "env") return ParseStringMap(value, key, spec->mutable_env());
  if (key == "resources") {
    return ParseResources(value, spec->mutable_resources());
  }
  if (key == "replicas") {
    int32_t replicas;
    if (absl::Status s = ParseInt32(value, key, &replicas); !s.ok()) return s;
    spec->set_replicas(replicas);
    return absl::OkStatus();
  }
  if (key == "batch_size") {
    return ParseBatchSize(value, spec->mutable_batch_size());
  }
  if (key == "shard_count") {
    int32_t shards;
    if (absl::Status s = ParseInt32(value, key, &shards); !s.ok()) return s;
    spec->set_shard_count(shards);
    return absl::OkStatus();
  }
  if (key == "objective") {
    return ParseObjective(value, spec->mutable_objective());
  }
  if (key == "labels") {
    return ParseStringMap(value, key, spec->mutable_labels());
  }
  if (key == "user") return ParseString(value, key, spec->mutable_user());
  if (key == "job_class") {
    return ParseString(value, key, spec->mutable_job_class());
  }
  if (key == "placement_profile") {
    return ParseString(value, key, spec->mutable_placement_profile());
  }
  if (key == "working_dir") {
    return ParseString(value, key, spec->mutable_working_dir());
  }
  if (key == "early_stop") {
    joule::v1::EarlyStop* early = spec->mutable_early_stop();
    return ForEachEntry(
        value, "early_stop", kEarlyStopFields, /*skip_null_values=*/true,
        [&](const std::string& field, const YAML::Node& key_node,
            const YAML::Node& field_value) -> absl::Status {
          const std::string path = ChildPath("early_stop", field);
          if (field == "patience") {
            int32_t patience;
            if (absl::Status s = ParseInt32(field_value, path, &patience); !s.ok()) return s;
            early->set_patience(patience);
          } else if (field == "min_delta") {
            double delta;
            if (absl::Status s = ParseDouble(field_value, path, &delta); !s.ok()) return s;
            early->set_min_delta(delta);
          } else {
            if (!field_value.IsScalar() ||
                (field_value.Scalar() != "true" && field_value.Scalar() != "false")) {
              return ErrorAt(field_value, path,
                             absl::StrCat("expected true or false, got ", Describe(field_value)));
            }
            early->set_higher_is_better(field_value.Scalar() == "true");
          }
          return absl::OkStatus();
        });
  }
  if (key == "restart_policy") {
    return ParseRestartPolicy(value, spec->mutable_restart_policy());
  }
  if (key == "latency_slo_ms") {
    double ms = 0;
    if (absl::Status s = ParseDouble(value, key, &ms); !s.ok()) return s;
    spec->set_latency_slo_ms(ms);
    return absl::OkStatus();
  }
  if (key == "expected_samples") {
    if (!value.IsScalar() || !IsDecimalNumber(value.Scalar())) {
      return ErrorAt(value, key, absl::StrCat("expected a number of samples, got ", Describe(value)));
    }
    double samples = 0;
    if (!absl::SimpleAtod(value.Scalar(), &samples)) {
      return ErrorAt(value, key, "not a number");
    }
    spec->set_expected_samples(samples);
    return absl::OkStatus();
  }
  if (key == "energy_budget_j") {
    if (!value.IsScalar() || !IsDecimalNumber(value.Scalar())) {
      return ErrorAt(value, key, absl::StrCat("expected a number of joules, got ", Describe(value)));
    }
    double joules = 0;
    if (!absl::SimpleAtod(value.Scalar(), &joules)) {
      return ErrorAt(value, key, "not a number");
    }
    spec->set_energy_budget_j(joules);
    return absl::OkStatus();
  }
  if (key == "pin_max_cap") {
    if (!value.IsScalar() || (value.Scalar() != "true" && value.Scalar() != "false")) {
      return ErrorAt(value, key, absl::StrCat("expected true or false, got ", Describe(value)));
    }
    spec->set_pin_max_cap(value.Scalar() == "true");
    return absl::OkStatus();
  }
  // ForEachEntry only passes keys from kJobFields.
  return absl::InternalError(
      absl::StrCat("job file field ", Quote(key), " has no parser"));
}

absl::StatusOr<JobSpec> ConvertDocuments(const std::vector<YAML::Node>& docs) {
  if (docs.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        Position(docs[1].Mark()),
        "more than one YAML document; a job file holds exactly one job"));
  }
  if (docs.empty() || docs[0].IsNull()) {
    return absl::InvalidArgumentError(
        "empty document; expected a mapping of job fields");
  }
  const YAML::Node& root = docs[0];
  if (!root.IsMap()) {
    return ErrorAt(
        root, "",
        absl::StrCat("expected a mapping of job fields, got ", Describe(root)));
  }
  JobSpec spec;
  absl::Status status = ForEachEntry(
      root, "", kJobFields, /*skip_null_values=*/true,
      [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
        return ParseJobField(key, value, &spec);
      });
  if (!status.ok()) return status;
  return spec;
}

}  // namespace

absl::Status ParseQuantity(absl::string_view text, int64_t* bytes) {
  auto bad = [text](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad quantity ", Quote(text), ": ", why));
  };
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    negative = text[i] == '-';
    ++i;
  }
  const size_t integer_begin = i;
  while (i < text.size() && IsDigit(text[i])) ++i;
  absl::string_view integer = text.substr(integer_begin, i - integer_begin);
  absl::string_view fraction;
  if (i < text.size() && text[i] == '.') {
    const size_t fraction_begin = ++i;
    while (i < text.size() && IsDigit(text[i])) ++i;
    fraction = text.substr(fraction_begin, i - fraction_begin);
  }
  if (integer.empty() && fraction.empty()) {
    return bad(absl::StrCat("expected a number with an optional suffix ",
                            kQuantitySuffixes, ", e.g. 2Gi"));
  }
  const absl::string_view suffix = text.substr(i);
  struct Suffix {
    absl::string_view name;
    uint64_t multiplier;
  };
  constexpr Suffix kSuffixes[] = {
      {"", 1},
      {"Ki", uint64_t{1} << 10},
      {"Mi", uint64_t{1} << 20},
      {"Gi", uint64_t{1} << 30},
      {"Ti", uint64_t{1} << 40},
      {"k", 1000},
      {"M", 1000000},
      {"G", 1000000000},
      {"T", 1000000000000},
  };
  uint64_t multiplier = 0;
  for (const Suffix& s : kSuffixes) {
    if (s.name == suffix) multiplier = s.multiplier;
  }
  if (multiplier == 0) {
    return bad(absl::StrCat("unknown suffix ", Quote(suffix),
                            "; allowed: ", kQuantitySuffixes));
  }

  // Exact arithmetic: value = (integer * 10^d + fraction) * multiplier / 10^d.
  while (!integer.empty() && integer.front() == '0') integer.remove_prefix(1);
  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  const absl::string_view kOutOfRange =
      "out of range for a 64-bit number of bytes";
  if (integer.size() > 19) return bad(kOutOfRange);
  if (fraction.size() > 18) return bad("too many decimal places (at most 18)");
  uint64_t integer_value = 0;
  uint64_t fraction_value = 0;
  if (!integer.empty() && !absl::SimpleAtoi(integer, &integer_value)) {
    return bad(kOutOfRange);
  }
  if (!fraction.empty() && !absl::SimpleAtoi(fraction, &fraction_value)) {
    return bad("malformed decimal places");
  }
  absl::uint128 scale = 1;
  for (size_t k = 0; k < fraction.size(); ++k) scale *= 10;
  // < 10^19 * 10^18 + 10^18 < 2^127, so this cannot overflow.
  const absl::uint128 numerator =
      absl::uint128(integer_value) * scale + fraction_value;
  if (numerator > absl::Uint128Max() / multiplier) return bad(kOutOfRange);
  const absl::uint128 scaled = numerator * multiplier;
  if (scaled % scale != 0) return bad("not a whole number of bytes");
  const absl::uint128 magnitude = scaled / scale;
  const absl::uint128 limit =
      absl::uint128(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0);
  if (magnitude > limit) return bad(kOutOfRange);

  const uint64_t m = absl::Uint128Low64(magnitude);
  // Two's complement negation covers -2^63 as well.
  *bytes = negative ? static_cast<int64_t>(~m + 1) : static_cast<int64_t>(m);
  return absl::OkStatus();
}

absl::StatusOr<joule::v1::JobSpec> ParseJobYaml(absl::string_view yaml) {
  if (static_cast<int64_t>(yaml.size()) > kMaxJobYamlBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("job file is ", yaml.size(), " bytes, at most ",
                     kMaxJobYamlBytes, " allowed"));
  }
  try {
    // yaml-cpp's LoadAll never ends on a document that starts with ','
    // (it keeps returning empty documents and grows without bound), so the
    // documents are counted first with a bounded number of parser steps.
    std::stringstream counted{std::string(yaml)};
    YAML::Parser parser(counted);
    DocumentCounter counter;
    for (int step = 0; step < 3 && parser.HandleNextDocument(counter); ++step) {
    }
    if (counter.documents > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          Position(counter.second),
          "more than one YAML document; a job file holds exactly one job"));
    }
    std::vector<YAML::Node> docs;
    if (counter.documents == 1) docs.push_back(YAML::Load(std::string(yaml)));
    return ConvertDocuments(docs);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own message for this is "bad file".
    return absl::InvalidArgumentError(
        absl::StrCat(Position(e.mark), "invalid YAML: nested too deeply"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(Position(e.mark), "invalid YAML: ", e.msg));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory parsing the job file");
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("unexpected error parsing the job file: ", e.what()));
  }
}

absl::StatusOr<joule::v1::JobSpec> ParseJobYamlFile(const std::string& path) {
  auto with_path = [&path](const absl::Status& status) {
    return absl::Status(status.code(),
                        absl::StrCat(path, ": ", status.message()));
  };
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return with_path(absl::ErrnoToStatus(errno, "cannot open"));
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } closer{fd};

  struct stat st;
  if (fstat(fd, &st) != 0) {
    return with_path(absl::ErrnoToStatus(errno, "cannot stat"));
  }
  if (S_ISDIR(st.st_mode)) {
    return with_path(absl::InvalidArgumentError("is a directory"));
  }
  if (S_ISREG(st.st_mode) && st.st_size > kMaxJobYamlBytes) {
    return with_path(absl::InvalidArgumentError(
        absl::StrCat("job file is ", st.st_size, " bytes, at most ",
                     kMaxJobYamlBytes, " allowed")));
  }

  // Read at most one byte past the limit, so a pipe or a growing file cannot
  // make us buffer more than that.
  std::string content;
  char buffer[64 * 1024];
  while (static_cast<int64_t>(content.size()) <= kMaxJobYamlBytes) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return with_path(absl::ErrnoToStatus(errno, "cannot read"));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  if (static_cast<int64_t>(content.size()) > kMaxJobYamlBytes) {
    return with_path(absl::InvalidArgumentError(
        absl::StrCat("job file is larger than ", kMaxJobYamlBytes,
                     " bytes, the most allowed")));
  }
  absl::StatusOr<JobSpec> spec = ParseJobYaml(content);
  if (!spec.ok()) return with_path(spec.status());
  return spec;
}

}  // namespace joule
