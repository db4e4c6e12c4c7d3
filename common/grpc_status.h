#ifndef JOULE_COMMON_GRPC_STATUS_H_
#define JOULE_COMMON_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace joule {

// absl::Status and grpc::Status share their code numbering.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace joule

#endif  // JOULE_COMMON_GRPC_STATUS_H_
