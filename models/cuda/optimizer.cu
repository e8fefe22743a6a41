// The optimizers' updates on CUDA (cuda/kernels.h): AdamW and SGD over runs of the flat
// parameter array, many runs per launch.
#include <algorithm>
#include <functional>
#include <vector>

#include "models/cuda/kernels.h"
#include "models/cuda/launch.h"

namespace ft::cuda {
using namespace detail;

namespace {

struct UpdateTable {
  int count;
  i64 begin[kMaxRuns], size[kMaxRuns], state[kMaxRuns];
  float weight_decay[kMaxRuns];
};

static_assert(sizeof(UpdateTable) + 128 < 4096, "kernel parameters must stay under 4 KiB");

// blockIdx.y picks the run; its blocks stride over it.
__global__ void k_adamw(float* p, const float* g, float* m, float* v, UpdateTable t, float lr, float b1, float b2,
                        float eps, float inv_c1, float inv_c2, float gs) {
  const int r = blockIdx.y;
  float* pr = p + t.begin[r];
  const float* gr = g + t.begin[r];
  float* mr = m + t.state[r];
  float* vr = v + t.state[r];
  const float wd = t.weight_decay[r];
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < t.size[r];
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    float grad = gr[i] * gs;
    float mi = b1 * mr[i] + (1.0f - b1) * grad;
    float vi = b2 * vr[i] + (1.0f - b2) * grad * grad;
    mr[i] = mi;
    vr[i] = vi;
    pr[i] -= lr * ((mi * inv_c1) / (sqrtf(vi * inv_c2) + eps) + wd * pr[i]);
  }
}

// blockIdx.y picks the run; m is null when mu = 0.
__global__ void k_sgd(float* p, const float* g, float* m, UpdateTable t, float lr, float mu, bool nesterov, float gs,
                      bool sign) {
  const int r = blockIdx.y;
  float* pr = p + t.begin[r];
  const float* gr = g + t.begin[r];
  float* mr = m ? m + t.state[r] : nullptr;
  const float wd = t.weight_decay[r];
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < t.size[r];
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    float step = gr[i] * gs;
    if (sign) step = static_cast<float>((step > 0.0f) - (step < 0.0f));
    if (mu != 0.0f) {
      mr[i] = mu * mr[i] + step;
      step = nesterov ? step + mu * mr[i] : mr[i];
    }
    pr[i] -= lr * (step + wd * pr[i]);
  }
}

// The runs in tables of up to kMaxRuns, one launch each: launch(table, largest run).
void for_run_tables(const std::vector<UpdateRun>& runs, const std::function<void(const UpdateTable&, i64)>& launch) {
  for (std::size_t first = 0; first < runs.size(); first += kMaxRuns) {
    UpdateTable t{};
    i64 largest = 0;
    for (std::size_t i = first; i < runs.size() && t.count < kMaxRuns; ++i, ++t.count) {
      t.begin[t.count] = runs[i].begin;
      t.size[t.count] = runs[i].size;
      t.state[t.count] = runs[i].state;
      t.weight_decay[t.count] = runs[i].weight_decay;
      largest = std::max(largest, runs[i].size);
    }
    if (largest > 0) launch(t, largest);
  }
}
}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, const std::vector<UpdateRun>& runs, double lr,
                  double beta1, double beta2, double eps, double c1, double c2, double grad_scale) {
  for_run_tables(runs, [&](const UpdateTable& t, i64 largest) {
    k_adamw<<<dim3(stride_blocks(largest), static_cast<unsigned>(t.count)), kThreads, 0, ctx().stream>>>(
        param, grad, m, v, t, static_cast<float>(lr), static_cast<float>(beta1), static_cast<float>(beta2),
        static_cast<float>(eps), static_cast<float>(1.0 / c1), static_cast<float>(1.0 / c2),
        static_cast<float>(grad_scale));
    check_launch("adamw");
  });
}

void sgd_update(float* param, const float* grad, float* m, const std::vector<UpdateRun>& runs, double lr, double mu,
                bool nesterov, double grad_scale, bool sign) {
  for_run_tables(runs, [&](const UpdateTable& t, i64 largest) {
    k_sgd<<<dim3(stride_blocks(largest), static_cast<unsigned>(t.count)), kThreads, 0, ctx().stream>>>(
        param, grad, mu > 0 ? m : nullptr, t, static_cast<float>(lr), static_cast<float>(mu), nesterov,
        static_cast<float>(grad_scale), sign);
    check_launch("sgd");
  });
}

}  // namespace ft::cuda
