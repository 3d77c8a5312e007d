// Element-wise kernels over Fr vectors in Montgomery form, as the prover
// needs them between NTTs: add, subtract, multiply and scale. The batched
// bit-reversal and coset shift live with the NTT (ntt.cu).
//
// Operands are copied into registers before the arithmetic: the field ops
// take references, and reading through a reference into global memory
// compiles to eight 32-bit loads per element instead of two 128-bit ones.
#include "field.cuh"

extern "C" __global__ void fr_add(Fr* out, const Fr* a, const Fr* b, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr x = a[i], y = b[i];
    out[i] = Fr::add(x, y);
}

extern "C" __global__ void fr_sub(Fr* out, const Fr* a, const Fr* b, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr x = a[i], y = b[i];
    out[i] = Fr::sub(x, y);
}

extern "C" __global__ void fr_mul(Fr* out, const Fr* a, const Fr* b, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr x = a[i], y = b[i];
    out[i] = Fr::mul(x, y);
}

extern "C" __global__ void fr_scale(Fr* data, const Fr* c, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr x = data[i], k = *c;
    data[i] = Fr::mul(x, k);
}
