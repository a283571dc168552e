// Error values used across faceid: absl::Status and absl::StatusOr<T>.
//
// Every function that a user or the environment can make fail (bad image, missing file,
// SQLite busy) returns one of these instead of throwing. Their codes are gRPC's canonical
// codes, so the gRPC edge maps them one to one (see server/).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace faceid {

using Status = absl::Status;
template <typename T>
using StatusOr = absl::StatusOr<T>;

}  // namespace faceid

// Evaluates `expr` (a Status); returns it from the enclosing function when not OK.
#define FACEID_RETURN_IF_ERROR(expr)              \
  do {                                            \
    ::faceid::Status faceid_status_ = (expr);     \
    if (!faceid_status_.ok()) return faceid_status_; \
  } while (0)

#define FACEID_CONCAT_INNER_(a, b) a##b
#define FACEID_CONCAT_(a, b) FACEID_CONCAT_INNER_(a, b)

// `FACEID_ASSIGN_OR_RETURN(auto x, MakeX());` assigns the value or returns the error.
#define FACEID_ASSIGN_OR_RETURN(lhs, expr) \
  FACEID_ASSIGN_OR_RETURN_IMPL_(FACEID_CONCAT_(faceid_statusor_, __LINE__), lhs, expr)
#define FACEID_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
