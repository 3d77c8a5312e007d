// The prelude of a kernel compiled at run time (Backend::compile_kernel):
// cuda_host.h's CUDA subset, with the built-in indices owned by the module,
// and ZKFARM_EMU_ENTRY(kernel), which exports the kernel's arity, a check
// of its argument kinds and a runner of its grid, thread by thread.
// Generated kernels do not synchronise, so no fibers are needed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "cuda_host.h"
#include "invoke.h"

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

void emu_syncthreads() { __builtin_trap(); }

// Runs the grid thread by thread.
template <auto F>
void zkfarm_run_grid(const uint64_t* a, unsigned grid, unsigned block) {
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; b++) {
        blockIdx.x = b;
        for (unsigned t = 0; t < block; t++) {
            threadIdx.x = t;
            Invoke<F>::call(a);
        }
    }
}

#define ZKFARM_EXPORT extern "C" __attribute__((visibility("default")))
#define ZKFARM_EMU_ENTRY(f)                                                                                  \
    ZKFARM_EXPORT size_t zkfarm_arity() { return Invoke<&f>::arity; }                                   \
    ZKFARM_EXPORT int zkfarm_kinds_match(const char* k) { return Invoke<&f>::kinds_match(k) ? 1 : 0; } \
    ZKFARM_EXPORT void zkfarm_run(const uint64_t* a, unsigned grid, unsigned block) { zkfarm_run_grid<&f>(a, grid, block); }
