#include "comm/backend_info.h"

#include <mpi.h>

#include <fmt/format.h>

#ifdef FIBERTRAIN_CUDA
#include <nccl.h>
#endif

namespace ft {

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string s(text, static_cast<std::size_t>(len));
  // Open MPI appends build details after a comma; the first part names it.
  if (auto comma = s.find(','); comma != std::string::npos) s.resize(comma);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

std::string nccl_version() {
#ifdef FIBERTRAIN_CUDA
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
#else
  return "not built";
#endif
}

}  // namespace ft
