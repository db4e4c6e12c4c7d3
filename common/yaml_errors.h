#ifndef JOULE_COMMON_YAML_ERRORS_H_
#define JOULE_COMMON_YAML_ERRORS_H_

#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "yaml-cpp/yaml.h"

namespace joule {

// The text of a bad field, quoted and escaped, at most 64 bytes of it.
std::string QuoteField(absl::string_view text);

// INVALID_ARGUMENT "FILE line N: FIELD: problem".
absl::Status LineError(absl::string_view file, int line, absl::string_view field,
                       absl::string_view problem);

// Parses a YAML document; a malformed one is INVALID_ARGUMENT naming
// `source` and the line (yaml-cpp throws; nothing escapes this function).
absl::StatusOr<YAML::Node> LoadYaml(absl::string_view text, const std::string& source);

// Errors about a configuration file's fields that read "SOURCE line N:
// FIELD: problem" (yaml-cpp's marks are 0-based; lines here are 1-based).
// Thread-compatible; keeps a reference to `source`.
class YamlErrors {
 public:
  explicit YamlErrors(const std::string& source) : source_(source) {}

  absl::Status At(const YAML::Node& node, absl::string_view field,
                  absl::string_view problem) const;

  // Unknown keys of a mapping are refused: they are usually typos.
  absl::Status CheckKeys(const YAML::Node& map, absl::string_view prefix,
                         const std::set<std::string>& allowed) const;

  // A finite number >= 0.
  absl::StatusOr<double> NonNegative(const YAML::Node& node, absl::string_view field) const;

  // A whole number in [low, high].
  absl::StatusOr<int> IntInRange(const YAML::Node& node, absl::string_view field, int low,
                                 int high) const;

  // A non-empty string.
  absl::StatusOr<std::string> NonEmptyString(const YAML::Node& node,
                                             absl::string_view field) const;

  const std::string& source() const { return source_; }

 private:
  const std::string& source_;
};

// The whole of a configuration file; NOT_FOUND "PATH: cannot read: errno
// text" when it cannot be opened.
absl::StatusOr<std::string> ReadConfigFile(const std::string& path);

// A number that must be finite and >= 0; `problem` gets why not.
bool ParseNonNegative(absl::string_view text, double* value, std::string* problem);

}  // namespace joule

#endif  // JOULE_COMMON_YAML_ERRORS_H_
