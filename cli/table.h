#ifndef JOULE_CLI_TABLE_H_
#define JOULE_CLI_TABLE_H_

#include <ostream>
#include <string>
#include <vector>

namespace joule {

// A plain-text table with left-aligned columns padded to their widest cell,
// as kubectl prints them.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace joule

#endif  // JOULE_CLI_TABLE_H_
