#include "sim/trace/philly_trace.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"

namespace joule::sim {
namespace {

constexpr absl::string_view kHeader =
    "timestamp,duration,num_gpus,gpu_time,cluster";
constexpr const char* kFieldNames[] = {"timestamp", "duration", "num_gpus",
                                       "gpu_time", "cluster"};
constexpr size_t kNumFields = 5;

// Reads exactly `width` decimal digits starting at `pos`.
bool ReadDigits(absl::string_view text, size_t pos, size_t width, int* out) {
  int value = 0;
  for (size_t i = 0; i < width; ++i) {
    const char c = text[pos + i];
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    value = value * 10 + (c - '0');
  }
  *out = value;
  return true;
}

absl::Status RowError(const std::string& path, int64_t line, size_t field,
                      absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ":", line, ": column ", field + 1, " (",
                   kFieldNames[field], "): ", message));
}

struct ParsedRow {
  int64_t submit_s;
  TraceJob job;
};

}  // namespace

absl::StatusOr<int64_t> ParsePhillyTimestamp(const std::string& text) {
  // Fixed layout: YYYY-MM-DD HH:MM:SS (19 characters).
  if (text.size() != 19 || text[4] != '-' || text[7] != '-' ||
      text[10] != ' ' || text[13] != ':' || text[16] != ':') {
    return absl::InvalidArgumentError(
        absl::StrCat("timestamp '", text, "' is not YYYY-MM-DD HH:MM:SS"));
  }
  int year, month, day, hour, minute, second;
  if (!ReadDigits(text, 0, 4, &year) || !ReadDigits(text, 5, 2, &month) ||
      !ReadDigits(text, 8, 2, &day) || !ReadDigits(text, 11, 2, &hour) ||
      !ReadDigits(text, 14, 2, &minute) || !ReadDigits(text, 17, 2, &second)) {
    return absl::InvalidArgumentError(
        absl::StrCat("timestamp '", text, "' has a non-digit"));
  }
  // absl::CivilSecond normalizes out-of-range fields (Feb 30 -> Mar 2); a
  // field that changed under normalization was out of range.
  const absl::CivilSecond civil(year, month, day, hour, minute, second);
  if (civil.year() != year || civil.month() != month || civil.day() != day ||
      civil.hour() != hour || civil.minute() != minute ||
      civil.second() != second) {
    return absl::InvalidArgumentError(
        absl::StrCat("timestamp '", text, "' is not a valid date and time"));
  }
  // Civil-time difference: no time zone involved (the trace is taken as UTC).
  return static_cast<int64_t>(civil - absl::CivilSecond(1970, 1, 1, 0, 0, 0));
}

absl::StatusOr<std::vector<TraceJob>> LoadPhillyTrace(const std::string& path,
                                                      size_t limit) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open trace file"));
  }
  std::vector<ParsedRow> rows;
  std::string line;
  int64_t line_number = 0;
  bool seen_header = false;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (!seen_header) {
      if (line != kHeader) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_number, ": expected header '", kHeader,
                         "', got '", line, "'"));
      }
      seen_header = true;
      continue;
    }
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    if (fields.size() != kNumFields) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": expected ", kNumFields,
                       " comma-separated fields, got ", fields.size()));
    }
    ParsedRow row;
    row.job.id = static_cast<int64_t>(rows.size());

    absl::StatusOr<int64_t> submit =
        ParsePhillyTimestamp(std::string(fields[0]));
    if (!submit.ok()) {
      return RowError(path, line_number, 0, submit.status().message());
    }
    row.submit_s = *submit;

    double duration = 0;
    if (!absl::SimpleAtod(fields[1], &duration) || !std::isfinite(duration)) {
      return RowError(path, line_number, 1,
                      absl::StrCat("'", fields[1], "' is not a number"));
    }
    if (duration <= 0) {
      return RowError(path, line_number, 1,
                      absl::StrCat("duration must be > 0 s, got ", fields[1]));
    }
    row.job.duration_s = duration;

    int32_t gpus = 0;
    if (!absl::SimpleAtoi(fields[2], &gpus)) {
      return RowError(path, line_number, 2,
                      absl::StrCat("'", fields[2], "' is not an integer"));
    }
    if (gpus < 1) {
      return RowError(path, line_number, 2,
                      absl::StrCat("num_gpus must be >= 1, got ", gpus));
    }
    row.job.gpus = gpus;

    double gpu_time = 0;
    if (!absl::SimpleAtod(fields[3], &gpu_time) || !std::isfinite(gpu_time)) {
      return RowError(path, line_number, 3,
                      absl::StrCat("'", fields[3], "' is not a number"));
    }

    if (fields[4].empty()) {
      return RowError(path, line_number, 4, "cluster id is empty");
    }
    row.job.cluster = std::string(fields[4]);
    rows.push_back(std::move(row));
  }
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat(path, ": read error"));
  }
  if (!seen_header) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": empty file, expected header '", kHeader, "'"));
  }

  std::stable_sort(rows.begin(), rows.end(),
                   [](const ParsedRow& a, const ParsedRow& b) {
                     return a.submit_s < b.submit_s;
                   });
  const size_t count = (limit > 0 && limit < rows.size()) ? limit : rows.size();
  std::vector<TraceJob> jobs;
  jobs.reserve(count);
  const int64_t earliest = rows.empty() ? 0 : rows.front().submit_s;
  for (size_t i = 0; i < count; ++i) {
    TraceJob job = std::move(rows[i].job);
    job.arrival_s = static_cast<double>(rows[i].submit_s - earliest);
    jobs.push_back(std::move(job));
  }
  return jobs;
}

}  // namespace joule::sim
