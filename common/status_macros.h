#ifndef DSV3_COMMON_STATUS_MACROS_H_
#define DSV3_COMMON_STATUS_MACROS_H_

// Early-return helpers for absl::Status / absl::StatusOr (no nested error checks), for every
// module: header-only, so the engine (which links nothing of common/) uses it too.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DSV3_STATUS_CONCAT_INNER_(a, b) a##b
#define DSV3_STATUS_CONCAT_(a, b) DSV3_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define DSV3_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status dsv3_status_ = (expr);        \
    if (!dsv3_status_.ok()) return dsv3_status_; \
  } while (0)

// `DSV3_ASSIGN_OR_RETURN(auto x, MakeX());` or `DSV3_ASSIGN_OR_RETURN(x, MakeX());`
#define DSV3_ASSIGN_OR_RETURN(lhs, expr) \
  DSV3_ASSIGN_OR_RETURN_IMPL_(DSV3_STATUS_CONCAT_(dsv3_statusor_, __LINE__), lhs, expr)
#define DSV3_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

#endif  // DSV3_COMMON_STATUS_MACROS_H_
