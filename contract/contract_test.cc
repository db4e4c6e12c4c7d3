#include "contract/contract.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace joule::contract {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The vectors the C++ and the Python implementations both check themselves
// against (contract/testdata/contract_vectors.jsonl: one JSON object per
// line; see the Python tests for the same reading).
std::vector<Struct> LoadVectors() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  const std::string path = absl::StrCat(srcdir ? srcdir : ".", "/", workspace ? workspace : "joule",
                                        "/contract/testdata/contract_vectors.jsonl");
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::vector<Struct> vectors;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    Struct vector;
    const auto status = google::protobuf::util::JsonStringToMessage(line, &vector);
    EXPECT_TRUE(status.ok()) << status.ToString() << ": " << line;
    vectors.push_back(vector);
  }
  return vectors;
}

bool Has(const Struct& s, const std::string& key) { return s.fields().contains(key); }
const Value& Get(const Struct& s, const std::string& key) { return s.fields().at(key); }

std::set<int> IntSet(const Value& list) {
  std::set<int> out;
  for (const Value& v : list.list_value().values()) out.insert(static_cast<int>(v.number_value()));
  return out;
}

ProgressEvent EventOf(const Struct& json) {
  static const std::map<std::string, ProgressEvent::Type> kTypes = {
      {"progress", ProgressEvent::Type::kProgress},
      {"shard_done", ProgressEvent::Type::kShardDone},
      {"target_reached", ProgressEvent::Type::kTargetReached},
      {"waiting", ProgressEvent::Type::kWaiting}};
  ProgressEvent event;
  event.type = kTypes.at(Get(json, "type").string_value());
  auto number = [&](const char* key) -> std::optional<double> {
    if (!Has(json, key)) return std::nullopt;
    return Get(json, key).number_value();
  };
  if (auto v = number("samples")) event.samples = static_cast<int64_t>(*v);
  if (auto v = number("steps")) event.steps = static_cast<int64_t>(*v);
  if (auto v = number("total")) event.total = static_cast<int64_t>(*v);
  if (auto v = number("batch")) event.batch = static_cast<int32_t>(*v);
  if (auto v = number("latency_ms")) event.latency_ms = *v;
  if (auto v = number("quality")) event.quality = *v;
  if (auto v = number("shard")) event.shard = static_cast<int>(*v);
  return event;
}

Hints HintsOf(const Struct& json) {
  Hints hints;
  if (Has(json, "batch_size")) hints.batch_size = static_cast<int>(Get(json, "batch_size").number_value());
  if (Has(json, "shards")) hints.shards = IntSet(Get(json, "shards"));
  if (Has(json, "stop")) hints.stop = Get(json, "stop").bool_value();
  if (Has(json, "device_speed")) hints.device_speed = Get(json, "device_speed").number_value();
  return hints;
}

std::string Describe(const ProgressEvent& e) {
  return absl::StrCat("{", FormatProgress(e), " | samples ", e.samples.has_value(), " steps ",
                      e.steps.has_value(), " quality ", e.quality.has_value(), " shard ",
                      e.shard.has_value(), "}");
}

TEST(ContractVectorsTest, ProgressLines) {
  int checked = 0;
  for (const Struct& vector : LoadVectors()) {
    if (!Has(vector, "line")) continue;
    const std::string name = Get(vector, "case").string_value();
    const std::string line = Get(vector, "line").string_value();
    const bool parse_only = Has(vector, "parse_only") && Get(vector, "parse_only").bool_value();
    const std::optional<ProgressEvent> parsed = ParseProgressLine(line);
    if (Get(vector, "progress").has_null_value()) {
      EXPECT_FALSE(parsed.has_value()) << name;
    } else {
      const ProgressEvent want = EventOf(Get(vector, "progress").struct_value());
      ASSERT_TRUE(parsed.has_value()) << name;
      EXPECT_TRUE(*parsed == want) << name << ": parsed " << Describe(*parsed) << ", want "
                                   << Describe(want);
      if (!parse_only) {
        EXPECT_EQ(FormatProgress(want), line) << name;
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 20);
}

TEST(ContractVectorsTest, Hints) {
  int checked = 0;
  for (const Struct& vector : LoadVectors()) {
    if (!Has(vector, "hints")) continue;
    const std::string name = Get(vector, "case").string_value();
    const std::string text = Get(vector, "text").string_value();
    const bool parse_only = Has(vector, "parse_only") && Get(vector, "parse_only").bool_value();
    const Hints want = HintsOf(Get(vector, "hints").struct_value());
    std::vector<std::string> warnings;
    EXPECT_TRUE(ParseHints(text, &warnings) == want) << name;
    if (Has(vector, "warnings")) {
      EXPECT_EQ(warnings.size(), static_cast<size_t>(Get(vector, "warnings").number_value()))
          << name;
    }
    if (!parse_only) {
      EXPECT_EQ(FormatHints(want), text) << name;
    }
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

TEST(ContractVectorsTest, Environment) {
  int checked = 0;
  for (const Struct& vector : LoadVectors()) {
    if (!Has(vector, "env")) continue;
    const std::string name = Get(vector, "case").string_value();
    const Struct& env = Get(vector, "env").struct_value();
    absl::StatusOr<TaskEnv> read = ReadTaskEnv([&](const char* key) -> std::optional<std::string> {
      if (!Has(env, key)) return std::nullopt;
      return Get(env, key).string_value();
    });
    ++checked;
    if (Has(vector, "error")) {
      ASSERT_FALSE(read.ok()) << name;
      EXPECT_THAT(std::string(read.status().message()),
                  StartsWith(Get(vector, "error").string_value()))
          << name;
      continue;
    }
    ASSERT_TRUE(read.ok()) << name << ": " << read.status();
    const Struct& want = Get(vector, "task_env").struct_value();
    EXPECT_EQ(read->job_id, Get(want, "job_id").string_value()) << name;
    EXPECT_EQ(read->task_id, Get(want, "task_id").string_value()) << name;
    EXPECT_EQ(read->replica_index, Get(want, "replica_index").number_value()) << name;
    EXPECT_EQ(read->replica_count, Get(want, "replica_count").number_value()) << name;
    EXPECT_EQ(read->progress_file, Get(want, "progress_file").string_value()) << name;
    EXPECT_EQ(read->hints_file, Get(want, "hints_file").string_value()) << name;
    EXPECT_EQ(read->batch_size.has_value(), Has(want, "batch_size")) << name;
    if (Has(want, "batch_size")) {
      EXPECT_EQ(*read->batch_size, Get(want, "batch_size").number_value());
    }
    EXPECT_EQ(read->shards.has_value(), Has(want, "shards")) << name;
    if (Has(want, "shards")) {
      EXPECT_EQ(*read->shards, IntSet(Get(want, "shards"))) << name;
    }
    EXPECT_EQ(read->shard_count.has_value(), Has(want, "shard_count")) << name;
    if (Has(want, "shard_count")) {
      EXPECT_EQ(*read->shard_count, Get(want, "shard_count").number_value()) << name;
    }
  }
  EXPECT_GE(checked, 5);
}

TEST(ContractTest, WarningsNameTheLine) {
  std::vector<std::string> warnings;
  ParseHints("batch_size=64\nstop=maybe\n", &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("line 2"));  // NOLINT
  EXPECT_THAT(warnings[0], HasSubstr("stop must be 0 or 1"));
}

TEST(ContractTest, ProgressWithoutCountersStillCarriesThem) {
  ProgressEvent event;
  event.quality = 0.5;
  EXPECT_EQ(FormatProgress(event), "progress samples=0 steps=0 quality=0.5");
  // A latency needs its batch size, and the other way round.
  event.batch = 8;
  EXPECT_EQ(FormatProgress(event), "progress samples=0 steps=0 quality=0.5");
}

}  // namespace
}  // namespace joule::contract
