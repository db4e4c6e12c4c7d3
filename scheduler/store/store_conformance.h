#ifndef JOULE_SCHEDULER_STORE_STORE_CONFORMANCE_H_
#define JOULE_SCHEDULER_STORE_STORE_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "scheduler/store/store.h"

namespace joule {

// One Store implementation under test.
struct StoreConformanceParam {
  std::string name;  // test name suffix, e.g. "LocalStore"
  // Returns a new, empty store on every call (one per test).
  std::function<absl::StatusOr<std::unique_ptr<Store>>()> make_store;
};

// The behaviour every Store implementation must have. The TEST_Ps live in
// store_conformance.cc; an implementation's test instantiates them:
//
//   INSTANTIATE_TEST_SUITE_P(
//       LocalStore, StoreConformanceTest,
//       ::testing::Values(StoreConformanceParam{"LocalStore", MakeStore}),
//       StoreConformanceParamName);
class StoreConformanceTest
    : public ::testing::TestWithParam<StoreConformanceParam> {
 protected:
  void SetUp() override;

  Store& store() { return *store_; }

 private:
  std::unique_ptr<Store> store_;
};

// Prints the name instead of the bytes in gtest messages.
void PrintTo(const StoreConformanceParam& param, std::ostream* os);

std::string StoreConformanceParamName(
    const ::testing::TestParamInfo<StoreConformanceParam>& info);

}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_STORE_CONFORMANCE_H_
