#include "sim/trace/job_trace.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace joule::sim {
namespace {

constexpr const char* kColumns[] = {"arrival_s", "duration_s", "gpus", "user"};

absl::Status Error(const std::string& source, int64_t line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ":", line, ": ", what));
}

}  // namespace

absl::StatusOr<std::vector<TraceJob>> ParseJobTrace(const std::string& text,
                                                    const std::string& source, size_t limit) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  std::map<std::string, size_t> column;  // name -> index
  size_t width = 0;
  std::vector<TraceJob> jobs;
  int64_t line_number = 0;
  for (absl::string_view raw : lines) {
    ++line_number;
    absl::string_view line = absl::StripTrailingAsciiWhitespace(raw);
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string> fields = absl::StrSplit(line, ',');
    for (std::string& field : fields) field = std::string(absl::StripAsciiWhitespace(field));
    if (column.empty()) {
      for (size_t i = 0; i < fields.size(); ++i) {
        if (std::find(std::begin(kColumns), std::end(kColumns), fields[i]) == std::end(kColumns)) {
          return Error(source, line_number,
                       absl::StrCat("header: unknown column '", fields[i],
                                    "'; allowed: arrival_s, duration_s, gpus, user"));
        }
        if (!column.emplace(fields[i], i).second) {
          return Error(source, line_number, absl::StrCat("header: column '", fields[i], "' twice"));
        }
      }
      for (const char* required : {"arrival_s", "duration_s", "gpus"}) {
        if (column.count(required) == 0) {
          return Error(source, line_number,
                       absl::StrCat("header: missing column '", required, "'"));
        }
      }
      width = fields.size();
      continue;
    }
    if (fields.size() != width) {
      return Error(source, line_number,
                   absl::StrCat(fields.size(), " fields, the header has ", width));
    }
    TraceJob job;
    job.id = static_cast<int64_t>(jobs.size());
    const std::string& arrival = fields[column["arrival_s"]];
    if (!absl::SimpleAtod(arrival, &job.arrival_s) || !std::isfinite(job.arrival_s) ||
        job.arrival_s < 0) {
      return Error(source, line_number,
                   absl::StrCat("arrival_s: expected a number >= 0, got '", arrival, "'"));
    }
    const std::string& duration = fields[column["duration_s"]];
    if (!absl::SimpleAtod(duration, &job.duration_s) || !std::isfinite(job.duration_s) ||
        job.duration_s <= 0) {
      return Error(source, line_number,
                   absl::StrCat("duration_s: expected a number > 0, got '", duration, "'"));
    }
    const std::string& gpus = fields[column["gpus"]];
    if (!absl::SimpleAtoi(gpus, &job.gpus) || job.gpus < 1) {
      return Error(source, line_number,
                   absl::StrCat("gpus: expected an integer >= 1, got '", gpus, "'"));
    }
    if (column.count("user")) job.cluster = fields[column["user"]];
    jobs.push_back(std::move(job));
  }
  if (column.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": no header"));
  std::stable_sort(jobs.begin(), jobs.end(), [](const TraceJob& a, const TraceJob& b) {
    return a.arrival_s < b.arrival_s;
  });
  if (limit > 0 && jobs.size() > limit) jobs.resize(limit);
  return jobs;
}

absl::StatusOr<std::vector<TraceJob>> LoadJobTrace(const std::string& path, size_t limit) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseJobTrace(text.str(), path, limit);
}

absl::StatusOr<std::vector<TraceJob>> LoadAnyTrace(const std::string& path, size_t limit) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string first;
  std::getline(in, first);
  if (absl::StartsWith(first, "timestamp,duration,num_gpus")) return LoadPhillyTrace(path, limit);
  return LoadJobTrace(path, limit);
}

}  // namespace joule::sim
