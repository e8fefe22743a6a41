#include "models/device_info.h"

#include <cblas.h>

#include <string>

namespace ft {

std::string blas_info() {
  std::string config = openblas_get_config();
  while (!config.empty() && config.back() == ' ') config.pop_back();
  return config + " (core in use: " + openblas_get_corename() + ")";
}

void set_blas_threads(int threads) { openblas_set_num_threads(threads); }
int blas_threads() { return openblas_get_num_threads(); }

}  // namespace ft
