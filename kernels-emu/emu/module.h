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

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

void emu_syncthreads() { __builtin_trap(); }

template <class T>
T zkfarm_arg(uint64_t v) {
    if constexpr (std::is_pointer_v<T>)
        return reinterpret_cast<T>(static_cast<uintptr_t>(v));
    else
        return static_cast<T>(v);
}

template <auto F>
struct ZkfarmEntry;

template <class... A, void (*F)(A...)>
struct ZkfarmEntry<F> {
    static constexpr size_t arity = sizeof...(A);
    static bool kinds_match(const char* kinds) {
        const char want[] = {(std::is_pointer_v<A> ? 'p' : 'u')..., 0};
        return std::strncmp(want, kinds, arity + 1) == 0;
    }
    template <size_t... I>
    static void call(const uint64_t* a, std::index_sequence<I...>) {
        F(zkfarm_arg<A>(a[I])...);
    }
    static void run(const uint64_t* a, unsigned grid, unsigned block) {
        gridDim.x = grid;
        blockDim.x = block;
        for (unsigned b = 0; b < grid; b++) {
            blockIdx.x = b;
            for (unsigned t = 0; t < block; t++) {
                threadIdx.x = t;
                call(a, std::index_sequence_for<A...>{});
            }
        }
    }
};

#define ZKFARM_EXPORT extern "C" __attribute__((visibility("default")))
#define ZKFARM_EMU_ENTRY(f)                                                                                  \
    ZKFARM_EXPORT size_t zkfarm_arity() { return ZkfarmEntry<&f>::arity; }                                   \
    ZKFARM_EXPORT int zkfarm_kinds_match(const char* k) { return ZkfarmEntry<&f>::kinds_match(k) ? 1 : 0; } \
    ZKFARM_EXPORT void zkfarm_run(const uint64_t* a, unsigned grid, unsigned block) { ZkfarmEntry<&f>::run(a, grid, block); }
