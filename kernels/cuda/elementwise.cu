// Element-wise kernels over Fr vectors in Montgomery form, as the prover
// needs them between NTTs: add, subtract, multiply and scale. The batched
// bit-reversal and coset shift live with the NTT (ntt.cu).
#include "field.cuh"

extern "C" __global__ void fr_add(Fr* out, const Fr* a, const Fr* b, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = Fr::add(a[i], b[i]);
}

extern "C" __global__ void fr_sub(Fr* out, const Fr* a, const Fr* b, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = Fr::sub(a[i], b[i]);
}

extern "C" __global__ void fr_mul(Fr* out, const Fr* a, const Fr* b, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = Fr::mul(a[i], b[i]);
}

extern "C" __global__ void fr_scale(Fr* data, const Fr* c, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) data[i] = Fr::mul(data[i], *c);
}
