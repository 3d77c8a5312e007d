// Every CUDA unit compiled for the host, and a launcher that runs a kernel
// by name over its grid, checking the argument list against the kernel's
// signature on the way.
#include "cuda_host.h"

#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
std::barrier<>* emu_block_barrier = nullptr;

#include "elementwise.cu"
#include "msm.cu"

namespace {

template <class T>
T arg_as(uint64_t v) {
    if constexpr (std::is_pointer_v<T>)
        return reinterpret_cast<T>(static_cast<uintptr_t>(v));
    else
        return static_cast<T>(v);
}

template <auto F>
struct Invoke;

// A kernel's parameter list, unpacked from 64-bit slots; 'p' marks a
// pointer and 'u' a 32-bit value, as the Rust side declares them.
template <class... A, void (*F)(A...)>
struct Invoke<F> {
    static constexpr size_t arity = sizeof...(A);
    static bool kinds_match(const char* kinds) {
        const char want[] = {(std::is_pointer_v<A> ? 'p' : 'u')..., 0};
        return std::strncmp(want, kinds, arity) == 0;
    }
    static void call(const uint64_t* a) { call_with(a, std::index_sequence_for<A...>{}); }
    template <size_t... I>
    static void call_with(const uint64_t* a, std::index_sequence<I...>) {
        F(arg_as<A>(a[I])...);
    }
};

struct Kernel {
    const char* name;
    size_t arity;
    bool (*kinds_match)(const char*);
    void (*call)(const uint64_t*);
    // Uses __syncthreads: its block's threads run as host threads together.
    bool cooperative;
};

#define KERNEL(f, coop) Kernel{#f, Invoke<&f>::arity, &Invoke<&f>::kinds_match, &Invoke<&f>::call, coop}

const Kernel KERNELS[] = {
    KERNEL(fr_add, false),
    KERNEL(fr_sub, false),
    KERNEL(fr_mul, false),
    KERNEL(fr_scale, false),
    KERNEL(fr_mul_powers, false),
    KERNEL(fr_bit_reverse, false),
    KERNEL(msm_fold, false),
    KERNEL(msm_digits, false),
    KERNEL(msm_scan_block, true),
    KERNEL(msm_scan_add, false),
    KERNEL(msm_scatter, false),
    KERNEL(msm_accumulate_pairs, false),
    KERNEL(msm_accumulate_partials, false),
    KERNEL(msm_window_chunks, false),
    KERNEL(msm_reduce, false),
    KERNEL(msm_clear_buckets, false),
};

// Kernels keep static shared arrays and the launch geometry is per thread:
// one launch at a time.
std::mutex launch_lock;

void run_block(const Kernel& k, const uint64_t* args, unsigned grid, unsigned block, unsigned b) {
    auto one = [&](unsigned t) {
        gridDim = {grid, 1, 1};
        blockDim = {block, 1, 1};
        blockIdx = {b, 0, 0};
        threadIdx = {t, 0, 0};
        k.call(args);
    };
    if (!k.cooperative) {
        for (unsigned t = 0; t < block; t++) one(t);
        return;
    }
    std::barrier<> barrier(block);
    emu_block_barrier = &barrier;
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned t = 0; t < block; t++)
        threads.emplace_back([&, t] {
            one(t);
            // A thread that has returned no longer holds the others back.
            barrier.arrive_and_drop();
        });
    for (auto& th : threads) th.join();
    emu_block_barrier = nullptr;
}

}  // namespace

// 0: ran; 1: no such kernel; 2: wrong number of arguments; 3: an argument
// of the wrong kind.
extern "C" int zkfarm_emu_launch(const char* name, unsigned grid, unsigned block, const uint64_t* args,
                                 const char* kinds, size_t nargs) {
    for (const Kernel& k : KERNELS) {
        if (std::strcmp(k.name, name) != 0) continue;
        if (k.arity != nargs) return 2;
        if (!k.kinds_match(kinds)) return 3;
        std::lock_guard<std::mutex> guard(launch_lock);
        for (unsigned b = 0; b < grid; b++) run_block(k, args, grid, block, b);
        return 0;
    }
    return 1;
}
