// Element-wise kernels over Fr vectors in Montgomery form, as the prover
// needs them between NTTs: add, subtract, multiply, scale, powers (coset
// shift) and the bit-reversal permutation.
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

// data[i] *= powers[i]: the coset shift g^i, with the powers precomputed.
extern "C" __global__ void fr_mul_powers(Fr* data, const Fr* powers, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) data[i] = Fr::mul(data[i], powers[i]);
}

// Swaps data[i] and data[rev(i)] for a length of 2^log_n, once per pair.
extern "C" __global__ void fr_bit_reverse(Fr* data, u32 log_n) {
    u32 n = 1u << log_n;
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n || log_n == 0) return;
    u32 j = __brev(i) >> (32 - log_n);
    if (i < j) {
        Fr t = data[i];
        data[i] = data[j];
        data[j] = t;
    }
}
