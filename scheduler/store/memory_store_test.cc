#include "scheduler/store/memory_store.h"

#include <memory>

#include "gtest/gtest.h"
#include "scheduler/store/store_conformance.h"

namespace joule {
namespace {

INSTANTIATE_TEST_SUITE_P(MemoryStore, StoreConformanceTest,
                         ::testing::Values(StoreConformanceParam{
                             "MemoryStore",
                             []() -> absl::StatusOr<std::unique_ptr<Store>> {
                               return std::make_unique<MemoryStore>();
                             }}),
                         StoreConformanceParamName);

}  // namespace
}  // namespace joule
