// Every CUDA unit compiled for the host, and a launcher that runs a kernel
// by name over its grid, checking the argument list against the kernel's
// signature on the way.
#include "cuda_host.h"
#include "invoke.h"

#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// Fibers switch by hand on x86-64 ELF targets (see the fibers below).
#if defined(__x86_64__) && defined(__ELF__)
#define EMU_FAST_SWITCH 1
#endif

#ifdef EMU_FAST_SWITCH
// Saves the callee-saved registers on the current stack and its pointer in
// *from, then resumes the stack `to` saved the same way. The caller-saved
// registers are the compiler's to keep, as for any call; the kernels do not
// change the floating-point control words, so they need no saving.
extern "C" void zkfarm_emu_switch(void** from, void* to);
asm(R"(
    .pushsection .text
    .globl zkfarm_emu_switch
    .type zkfarm_emu_switch, @function
zkfarm_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size zkfarm_emu_switch, .-zkfarm_emu_switch
    .popsection
)");
#endif

#include "elementwise.cu"
#include "msm.cu"
#include "ntt.cu"
#include "poly.cu"

namespace {

struct Kernel {
    const char* name;
    size_t arity;
    bool (*kinds_match)(const char*);
    void (*call)(const uint64_t*);
    // Uses __syncthreads: its block's threads run as fibers.
    bool cooperative;
};

#define KERNEL(f, coop) Kernel{#f, Invoke<&f>::arity, &Invoke<&f>::kinds_match, &Invoke<&f>::call, coop}

const Kernel KERNELS[] = {
    KERNEL(fr_add, false),
    KERNEL(fr_sub, false),
    KERNEL(fr_mul, false),
    KERNEL(fr_scale, false),
    KERNEL(msm_fold, false),
    KERNEL(msm_digits, false),
    KERNEL(msm_table, false),
    KERNEL(msm_scan_block, true),
    KERNEL(msm_scan_add, false),
    KERNEL(msm_scatter, false),
    KERNEL(msm_accumulate_pairs, false),
    KERNEL(msm_accumulate_partials, false),
    KERNEL(msm_window_chunks, false),
    KERNEL(msm_reduce, false),
    KERNEL(fr_powers, false),
    KERNEL(ntt_bit_reverse, false),
    KERNEL(ntt_pass, true),
    KERNEL(ntt_coset_shift, false),
    KERNEL(poly_program, false),
    KERNEL(poly_factor, false),
    KERNEL(poly_mul_periodic, false),
    KERNEL(poly_axpy, false),
    KERNEL(poly_copy_range, false),
    KERNEL(poly_scan_block, true),
    KERNEL(poly_scan_apply, false),
    KERNEL(poly_grand_product, false),
    KERNEL(poly_to_canonical, false),
    KERNEL(poly_to_montgomery, false),
    KERNEL(poly_bitonic_step, false),
    KERNEL(lookup_input_runs, false),
    KERNEL(lookup_table_leftovers, false),
    KERNEL(lookup_place_starts, false),
    KERNEL(lookup_place_leftovers, false),
    KERNEL(poly_eval_chunks, false),
    KERNEL(fr_sum_rows, true),
    KERNEL(div_chunks, false),
    KERNEL(div_carries, false),
    KERNEL(div_fix, false),
};

// Shared arrays are static and the fibers below are global: one launch at
// a time.
std::mutex launch_lock;

// The fibers of a synchronising block. Each runs its thread until it
// reaches __syncthreads (and switches back here) or returns; a round resumes
// every live fiber once, so no thread passes a barrier before all have
// reached it, and a thread that has returned no longer holds the rest.
//
// A switch is a few register moves on x86-64 (zkfarm_emu_switch, above):
// swapcontext saves and restores the signal mask with a system call each
// time, which was more than half of an emulated NTT (a 2^20 transform
// switches some 23 million times). Elsewhere the fibers are ucontexts.
constexpr size_t FIBER_STACK = 64 * 1024;
std::vector<std::vector<char>> stacks;
const Kernel* running_kernel = nullptr;
const uint64_t* running_args = nullptr;

#ifdef EMU_FAST_SWITCH

struct Fiber {
    void* sp = nullptr;
    bool done = false;
};
void* scheduler = nullptr;
std::vector<Fiber> fibers;
Fiber* current = nullptr;

void fiber_main();

// A stack that zkfarm_emu_switch resumes into fiber_main: six saved
// registers, then fiber_main as the address to return to, then a null
// return address for fiber_main itself, which never returns. fiber_main
// starts with the stack pointer 8 below a 16-byte boundary, as after a call.
void start(Fiber& f, char* stack) {
    auto top = reinterpret_cast<uintptr_t>(stack + FIBER_STACK) & ~uintptr_t{15};
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;
    *--sp = reinterpret_cast<void*>(&fiber_main);
    for (int i = 0; i < 6; i++) *--sp = nullptr;
    f.sp = sp;
}

void resume(Fiber& f) { zkfarm_emu_switch(&scheduler, f.sp); }
void yield_fiber() { zkfarm_emu_switch(&current->sp, scheduler); }

#else

struct Fiber {
    ucontext_t ctx;
    bool done = false;
};
ucontext_t scheduler;
std::vector<Fiber> fibers;
Fiber* current = nullptr;

void fiber_main();

void start(Fiber& f, char* stack) {
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = FIBER_STACK;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
}

void resume(Fiber& f) { swapcontext(&scheduler, &f.ctx); }
void yield_fiber() { swapcontext(&current->ctx, &scheduler); }

#endif

void fiber_main() {
    running_kernel->call(running_args);
    current->done = true;
    yield_fiber();  // never resumed: the scheduler skips finished fibers
    __builtin_unreachable();
}

void run_cooperative(unsigned block) {
    fibers.assign(block, Fiber{});
    while (stacks.size() < block) stacks.emplace_back(FIBER_STACK);
    for (unsigned t = 0; t < block; t++) start(fibers[t], stacks[t].data());
    // Rounds alternate between ascending and descending thread order, so a
    // kernel whose threads race between two barriers (one reads what
    // another writes) gives different results and fails its tests.
    bool descending = false;
    for (bool live = true; live; descending = !descending) {
        live = false;
        for (unsigned i = 0; i < block; i++) {
            unsigned t = descending ? block - 1 - i : i;
            if (fibers[t].done) continue;
            current = &fibers[t];
            threadIdx = {t, 0, 0};
            resume(*current);
            live = live || !current->done;
        }
    }
}

void run_block(const Kernel& k, const uint64_t* args, unsigned grid, unsigned block, unsigned b) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    blockIdx = {b, 0, 0};
    if (k.cooperative) {
        running_kernel = &k;
        running_args = args;
        run_cooperative(block);
        return;
    }
    for (unsigned t = 0; t < block; t++) {
        threadIdx = {t, 0, 0};
        k.call(args);
    }
}

// A synchronising kernel's blocks run one after another (each owns the
// static shared arrays while it runs); other kernels' blocks are shared
// out among host threads, as a GPU runs blocks in any order at once.
void run_grid(const Kernel& k, const uint64_t* args, unsigned grid, unsigned block) {
    if (k.cooperative) {
        for (unsigned b = 0; b < grid; b++) run_block(k, args, grid, block, b);
        return;
    }
    if (grid == 0) return;
    std::atomic<unsigned> next{0};
    auto work = [&] {
        for (unsigned b; (b = next.fetch_add(1)) < grid;) run_block(k, args, grid, block, b);
    };
    unsigned helpers = std::min(std::max(std::thread::hardware_concurrency(), 1u), grid) - 1;
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < helpers; i++) threads.emplace_back(work);
    work();
    for (auto& t : threads) t.join();
}

}  // namespace

void emu_syncthreads() { yield_fiber(); }

// 0: the launch is well formed (and, with `run`, ran); 1: no such kernel;
// 2: wrong number of arguments; 3: an argument of the wrong kind. The
// Rust side checks each launch when it is queued and runs it later, in
// stream order.
extern "C" int zkfarm_emu_launch(const char* name, unsigned grid, unsigned block, const uint64_t* args,
                                 const char* kinds, size_t nargs, int run) {
    for (const Kernel& k : KERNELS) {
        if (std::strcmp(k.name, name) != 0) continue;
        if (k.arity != nargs) return 2;
        if (!k.kinds_match(kinds)) return 3;
        if (!run) return 0;
        std::lock_guard<std::mutex> guard(launch_lock);
        run_grid(k, args, grid, block);
        return 0;
    }
    return 1;
}
