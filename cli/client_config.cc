#include "cli/client_config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace joule {
namespace {

std::string Resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || dir.empty()) return path;
  return absl::StrCat(dir, "/", path);
}

}  // namespace

void ClientConfig::MergeFrom(const ClientConfig& other) {
  if (!other.scheduler.empty()) scheduler = other.scheduler;
  if (!other.ca_file.empty()) ca_file = other.ca_file;
  if (!other.cert_file.empty()) cert_file = other.cert_file;
  if (!other.key_file.empty()) key_file = other.key_file;
  if (!other.token.empty()) {
    token = other.token;
    token_file.clear();
  }
  if (!other.token_file.empty()) {
    token_file = other.token_file;
    token.clear();
  }
  if (!other.server_name.empty()) server_name = other.server_name;
  if (other.insecure) insecure = true;
}

std::string DefaultClientConfigPath() {
  if (const char* path = std::getenv("JOULE_CONFIG"); path != nullptr && *path != '\0') {
    return path;
  }
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') return "";
  return absl::StrCat(home, "/.config/joule/config.yaml");
}

absl::StatusOr<ClientConfig> LoadClientConfig(const std::string& path, bool must_exist) {
  ClientConfig config;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT && !must_exist) return config;
    return absl::NotFoundError(
        absl::StrCat("config ", path, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& error) {
    return absl::InvalidArgumentError(absl::StrCat("config ", path, ": ", error.what()));
  }
  if (root.IsNull()) return config;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat("config ", path, ": expected a mapping"));
  }
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>("");
    const YAML::Node& value = entry.second;
    if (!value.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config ", path, ": ", key, ": expected a single value"));
    }
    const std::string text_value = value.as<std::string>();
    if (key == "scheduler") {
      config.scheduler = text_value;
    } else if (key == "ca") {
      config.ca_file = Resolve(dir, text_value);
    } else if (key == "cert") {
      config.cert_file = Resolve(dir, text_value);
    } else if (key == "key") {
      config.key_file = Resolve(dir, text_value);
    } else if (key == "token") {
      config.token = text_value;
    } else if (key == "token-file") {
      config.token_file = Resolve(dir, text_value);
    } else if (key == "server-name") {
      config.server_name = text_value;
    } else if (key == "insecure") {
      const std::string lower = absl::AsciiStrToLower(text_value);
      if (lower != "true" && lower != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("config ", path, ": insecure: expected true or false"));
      }
      config.insecure = lower == "true";
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "config ", path, ": unknown key \"", key,
          "\" (known: scheduler, ca, cert, key, token, token-file, server-name, insecure)"));
    }
  }
  return config;
}

absl::StatusOr<std::string> ResolveToken(const ClientConfig& config) {
  if (!config.token.empty()) return config.token;
  if (config.token_file.empty()) return std::string();
  std::ifstream in(config.token_file);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token file ", config.token_file, ": cannot read: ", std::strerror(errno)));
  }
  std::string line;
  std::getline(in, line);
  const std::string token(absl::StripAsciiWhitespace(line));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", config.token_file, ": empty"));
  }
  return token;
}

}  // namespace joule
