// What the communication backends were built against, for --version and HDF5 attributes.
#pragma once

#include <string>

namespace ft {

std::string mpi_library_version();  // works before MPI_Init
// "2.28.3", or "not built" when the NCCL backend is off.
std::string nccl_version();

}  // namespace ft
