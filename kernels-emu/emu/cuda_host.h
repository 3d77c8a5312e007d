// The part of CUDA C++ that zkfarm's kernels use, for host C++: qualifiers
// vanish, built-in indices are per host thread, atomics are plain (the
// launcher runs one thread at a time unless a kernel synchronises), and
// __syncthreads is a barrier over the block's host threads.
#pragma once

#include <barrier>
#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __constant__
// Blocks run one after another, so one static array per kernel is one
// block's shared memory at a time.
#define __shared__ static

struct dim3 {
    unsigned x = 0, y = 0, z = 0;
};

extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
extern std::barrier<>* emu_block_barrier;

inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }

inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }

inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}

inline unsigned atomicAdd(unsigned* a, unsigned v) {
    unsigned old = *a;
    *a = old + v;
    return old;
}

inline unsigned atomicMax(unsigned* a, unsigned v) {
    unsigned old = *a;
    if (v > old) *a = v;
    return old;
}

inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
