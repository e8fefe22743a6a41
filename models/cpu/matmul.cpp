// Matmul kernels over OpenBLAS (row-major sgemm / dgemm).
#include <cblas.h>

#include "models/cpu/kernels.h"
#include "models/cpu/parallel.h"

namespace ft::cpu {

namespace {

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda,
               const float* B, i64 ldb, float beta, float* C, i64 ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha,
              A, static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, i64 M, i64 N, i64 K, double alpha, const double* A, i64 lda,
               const double* B, i64 ldb, double beta, double* C, i64 ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha,
              A, static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, T alpha, const T* A, i64 lda, const T* B, i64 ldb,
          T beta, T* C, i64 ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // BLAS leaves C untouched for K = 0 only when beta = 1
    for (i64 i = 0; i < M; ++i)
      for (i64 j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  blas_gemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
            beta, C, ldc);
}

template <class T> void matmul_forward(T* out, const T* inp, const T* w, const T* bias, i64 N, i64 C, i64 OC) {
  if (bias) {
    for (i64 n = 0; n < N; ++n)
      for (i64 o = 0; o < OC; ++o) out[n * OC + o] = bias[o];
  }
  gemm<T>(false, true, N, OC, C, T(1), inp, C, w, C, bias ? T(1) : T(0), out, OC);
}

template <class T>
void matmul_backward(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, i64 N, i64 C, i64 OC) {
  if (dinp) gemm<T>(false, false, N, C, OC, T(1), dout, OC, w, C, T(1), dinp, C);
  if (dw) gemm<T>(true, false, OC, C, N, T(1), dout, OC, inp, C, T(1), dw, C);
  if (dbias) {  // column sums; each thread owns a band of columns and adds rows in order
    parallel_for(OC, 64, [&](i64 o0, i64 o1) {
      for (i64 n = 0; n < N; ++n)
        for (i64 o = o0; o < o1; ++o) dbias[o] += dout[n * OC + o];
    });
  }
}

template void gemm<float>(bool, bool, i64, i64, i64, float, const float*, i64, const float*, i64, float, float*, i64);
template void gemm<double>(bool, bool, i64, i64, i64, double, const double*, i64, const double*, i64, double, double*,
                           i64);
template void matmul_forward<float>(float*, const float*, const float*, const float*, i64, i64, i64);
template void matmul_forward<double>(double*, const double*, const double*, const double*, i64, i64, i64);
template void matmul_backward<float>(float*, float*, float*, const float*, const float*, const float*, i64, i64, i64);
template void matmul_backward<double>(double*, double*, double*, const double*, const double*, const double*, i64, i64,
                                      i64);

}  // namespace ft::cpu
