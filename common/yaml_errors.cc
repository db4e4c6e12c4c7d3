#include "common/yaml_errors.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace joule {

std::string QuoteField(absl::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(text.substr(0, 64)),
                      text.size() > 64 ? "...\"" : "\"");
}

absl::Status LineError(absl::string_view file, int line, absl::string_view field,
                       absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, " line ", line, ": ", field, ": ", problem));
}

absl::StatusOr<YAML::Node> LoadYaml(absl::string_view text, const std::string& source) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        e.mark.is_null() ? absl::StrCat(source, ": ", e.msg)
                         : absl::StrCat(source, " line ", e.mark.line + 1, ": ", e.msg));
  }
}

absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read: ", std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return text.str();
}

bool ParseNonNegative(absl::string_view text, double* value, std::string* problem) {
  if (!absl::SimpleAtod(text, value)) {
    *problem = absl::StrCat("not a number: ", QuoteField(text));
    return false;
  }
  if (!std::isfinite(*value)) {
    *problem = absl::StrCat("not a finite number: ", QuoteField(text));
    return false;
  }
  if (*value < 0) {
    *problem = absl::StrCat("must be >= 0, got ", text);
    return false;
  }
  return true;
}

absl::Status YamlErrors::At(const YAML::Node& node, absl::string_view field,
                            absl::string_view problem) const {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", field, ": ", problem));
  }
  return LineError(source_, mark.line + 1, field, problem);
}

absl::Status YamlErrors::CheckKeys(const YAML::Node& map, absl::string_view prefix,
                                   const std::set<std::string>& allowed) const {
  for (const auto& entry : map) {
    const std::string key = entry.first.Scalar();
    if (!allowed.count(key)) return At(entry.first, absl::StrCat(prefix, key), "unknown key");
  }
  return absl::OkStatus();
}

absl::StatusOr<double> YamlErrors::NonNegative(const YAML::Node& node,
                                               absl::string_view field) const {
  if (!node.IsScalar()) return At(node, field, "expected a number");
  double value = 0;
  std::string problem;
  if (!ParseNonNegative(node.Scalar(), &value, &problem)) return At(node, field, problem);
  return value;
}

absl::StatusOr<int> YamlErrors::IntInRange(const YAML::Node& node, absl::string_view field,
                                           int low, int high) const {
  int value = 0;
  if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &value)) {
    return At(node, field,
              absl::StrCat("expected a whole number, got ",
                           QuoteField(node.IsScalar() ? node.Scalar() : "(not a scalar)")));
  }
  if (value < low || value > high) {
    return At(node, field, absl::StrCat("must be in [", low, ", ", high, "], got ", value));
  }
  return value;
}

absl::StatusOr<std::string> YamlErrors::NonEmptyString(const YAML::Node& node,
                                                       absl::string_view field) const {
  if (!node.IsScalar() || node.Scalar().empty()) return At(node, field, "expected a name");
  return node.Scalar();
}

}  // namespace joule
