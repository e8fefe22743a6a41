#include "models/device_info.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/cpu/kernels.h"
#include "models/cpu/parallel.h"

namespace ft {

std::string blas_info() {
  std::string config = openblas_get_config();
  while (!config.empty() && config.back() == ' ') config.pop_back();
  return config + " (core in use: " + openblas_get_corename() + ")";
}

void set_cpu_threads(int threads) { cpu::set_threads(threads); }
int cpu_threads() { return cpu::threads(); }

double measure_matmul_flops(Device device, int size, double seconds) {
  if (device == Device::cuda) return measure_cuda_matmul_flops(size < 2048 ? 4096 : size, seconds);
  const std::int64_t n = size;
  std::vector<float> a(static_cast<std::size_t>(n * n)), b(a.size()), c(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {  // not zeros: some units run faster on them
    a[i] = static_cast<float>(i % 97) * 0.01f - 0.4f;
    b[i] = static_cast<float>(i % 89) * 0.01f - 0.3f;
  }
  double best = 0;
  auto start = std::chrono::steady_clock::now();
  for (int rep = 0; rep < 1000; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    cpu::gemm<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(n * n * n) / dt);
    if (rep >= 3 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds) break;
  }
  return best;
}

// MemAvailable from /proc/meminfo, and below it the room left in this process's cgroup (v2)
// when one limits it, as Slurm and containers do.
std::size_t host_memory_available() {
  std::size_t available = 0;
  {
    std::ifstream in("/proc/meminfo");
    std::string key, unit;
    std::size_t kib = 0;
    while (in >> key >> kib >> unit)
      if (key == "MemAvailable:") available = kib * 1024;
  }
  std::ifstream self("/proc/self/cgroup");
  for (std::string line; std::getline(self, line);) {
    if (line.rfind("0::", 0) != 0) continue;
    std::string dir = "/sys/fs/cgroup" + line.substr(3);
    std::ifstream max_file(dir + "/memory.max"), current_file(dir + "/memory.current");
    std::string max_text;
    std::size_t current = 0;
    if (!(max_file >> max_text) || max_text == "max" || !(current_file >> current)) break;
    std::size_t limit = std::stoull(max_text);
    std::size_t room = limit > current ? limit - current : 0;
    available = available == 0 ? room : std::min(available, room);
  }
  return available;
}

}  // namespace ft
