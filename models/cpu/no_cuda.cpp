// device_info.h's CUDA functions when the build has no CUDA.
#include <stdexcept>

#include "comm/error.h"
#include "models/device_info.h"

namespace ft {

int cuda_device_count() { return 0; }
std::string cuda_info() { return "not built (configure with -DFIBERTRAIN_CUDA=ON and the CUDA toolkit)"; }
int select_cuda_device(int) {
  throw UserError("device: cuda needs a build with CUDA (configure with -DFIBERTRAIN_CUDA=ON and the CUDA toolkit)");
}
double measure_cuda_matmul_flops(int, double) { throw std::logic_error("no CUDA in this build"); }
double cuda_datasheet_flops(bool) { return 0; }

std::shared_ptr<void> cuda_allocate(std::size_t) {
  throw std::logic_error("device memory requested, but this build has no CUDA");
}

}  // namespace ft
