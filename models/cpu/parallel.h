// Threads for the CPU kernels' own loops, beside OpenBLAS's. One count for both, set per
// process (set_cpu_threads in device_info.h). Loops split into contiguous chunks and every
// element is computed by exactly the arithmetic of the serial loop, in the same order, so a
// kernel's result does not depend on the thread count (as OpenBLAS's sgemm does not).
//
// The pool's threads sleep between loops instead of spinning: OpenBLAS's own threads spin
// after each product, and two spinning pools on the same cores slow each other down.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ft::cpu {

void set_threads(int n);
int threads();

namespace detail {
// Runs chunk(ctx, id) for id in [0, chunks) on the pool, the caller taking id 0; serially on
// the caller when the pool is busy with another thread's loop.
void run_chunks(int chunks, void (*chunk)(void* ctx, int id), void* ctx);
}  // namespace detail

// f(begin, end) over [0, n) in one contiguous chunk per thread; serial when n < 2 * grain.
template <class F> void parallel_for(std::int64_t n, std::int64_t grain, F f) {
  const int t = static_cast<int>(std::min<std::int64_t>(threads(), n / std::max<std::int64_t>(grain, 1)));
  if (t <= 1) {
    f(std::int64_t{0}, n);
    return;
  }
  struct Ctx {
    F* f;
    std::int64_t n;
    int t;
  } ctx{&f, n, t};
  detail::run_chunks(t, [](void* p, int id) {
    auto* c = static_cast<Ctx*>(p);
    (*c->f)(c->n * id / c->t, c->n * (id + 1) / c->t);
  }, &ctx);
}

// While alive, BLAS runs on the calling thread only: for BLAS calls inside parallel_for,
// where the kernel's threads already fill the cores.
class SerialBlas {
 public:
  SerialBlas();
  ~SerialBlas();
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;

 private:
  int saved_;
};

}  // namespace ft::cpu
