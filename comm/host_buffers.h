// Element-wise work on host buffers, what the ring algorithms do on arrival (add, scale,
// fp16/bf16 casts): the MPI transport's, and the CPU model of NCCL's device work. The
// device twin is cuda/buffer_ops.h.
#pragma once

#include "comm/device.h"

namespace ft::host_buffers {

void add(Buffer dst, Buffer src);  // dst += src (f32, f64 and the integer types)
void scale(Buffer buf, double factor);  // f32, f64
// dst = src or dst += src, between f32 and f16/bf16 (round to nearest even; fp16 clamps at
// +-65504).
void convert(Buffer dst, Buffer src, bool add);

}  // namespace ft::host_buffers
