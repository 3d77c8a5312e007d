// The part of CUDA C++ that zkfarm's kernels use, for host C++: qualifiers
// vanish, built-in indices are per host thread, atomics are host atomics
// (blocks of kernels that do not synchronise run on several host threads),
// and __syncthreads hands control back to the launcher, which runs each
// thread of a synchronising block as a fiber up to the barrier before
// letting any pass it.
#pragma once

#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __constant__
#define __align__(n) alignas(n)
// Blocks run one after another, so one static array per kernel is one
// block's shared memory at a time.
#define __shared__ static

struct dim3 {
    unsigned x = 0, y = 0, z = 0;
};

extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

void emu_syncthreads();
inline void __syncthreads() { emu_syncthreads(); }

inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }

inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}

inline unsigned atomicAdd(unsigned* a, unsigned v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }

inline unsigned atomicMax(unsigned* a, unsigned v) {
    unsigned old = __atomic_load_n(a, __ATOMIC_RELAXED);
    while (v > old && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}

inline unsigned atomicMin(unsigned* a, unsigned v) {
    unsigned old = __atomic_load_n(a, __ATOMIC_RELAXED);
    while (v < old && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}

inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
