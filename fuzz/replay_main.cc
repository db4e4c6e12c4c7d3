// A stand-in for libFuzzer's main() in the normal (gcc) build: runs the fuzz
// target once over each file named on the command line, or over every file
// (sorted, recursively) in each directory named. So the targets build and
// their seed corpora run as ordinary tests without clang; scripts/fuzz.sh
// builds the same targets against libFuzzer to search for new inputs.
//
// Calls LLVMFuzzerInitialize first when the target defines it, as libFuzzer
// does. Prints each input's path before running it, so a crash names the
// input. Exits 1 when an argument cannot be read or names no input.

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace {

// Appends the regular files at or under `path` to `out`; false when `path`
// cannot be read.
bool CollectInputs(const std::string& path, std::vector<std::string>* out) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  if (S_ISREG(st.st_mode)) {
    out->push_back(path);
    return true;
  }
  if (!S_ISDIR(st.st_mode)) return false;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return false;
  std::vector<std::string> names;
  while (struct dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    if (!CollectInputs(path + "/" + name, out)) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (!arg.empty() && arg[0] == '-') continue;  // libFuzzer flags: ignored.
    if (!CollectInputs(arg, &inputs)) {
      fprintf(stderr, "replay: cannot read %s\n", arg.c_str());
      return 1;
    }
  }
  if (inputs.empty()) {
    fprintf(stderr, "usage: %s FILE_OR_DIR...  (no inputs found)\n", argv[0]);
    return 1;
  }
  for (const std::string& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)),
                           std::istreambuf_iterator<char>());
    fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), data.size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  }
  fprintf(stderr, "replay: %zu inputs ran\n", inputs.size());
  return 0;
}
