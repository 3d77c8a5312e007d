// Radix-2 NTT over Fr, batched over columns stored one after another.
// Forward: bit-reverse, then decimation-in-time stages 0 .. log_n - 1
// (stage s joins pairs 2^s apart with twiddle w^(k · n / 2^(s+1)), k the
// position inside the pair's 2^(s+1) block). The stages run in passes of up
// to NTT_MAX_PASS: a pass over stages [s, s + b) touches, for each group,
// 2^b elements spaced 2^s apart and nothing else, so a block loads its group
// into shared memory, runs the b stages there and writes it back.
// Twiddles are w^0 .. w^(n/2 - 1), computed on the device by fr_powers.
#include "field.cuh"

#define NTT_MAX_PASS 10

// out[i] = base^i, by square-and-multiply on the bits of i.
extern "C" __global__ void fr_powers(Fr* out, const Fr* base, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr acc = Fr::one(), sq = *base;
    for (u32 e = i; e; e >>= 1) {
        if (e & 1) acc = Fr::mul(acc, sq);
        sq = Fr::sqr(sq);
    }
    out[i] = acc;
}

// The bit-reversal permutation of each column of 2^log_n.
extern "C" __global__ void ntt_bit_reverse(Fr* data, u32 log_n, u32 cols) {
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    if (log_n == 0 || t >= (cols << log_n)) return;
    u32 n = 1u << log_n;
    u32 i = t & (n - 1);
    u32 j = __brev(i) >> (32 - log_n);
    if (i < j) {
        Fr* d = data + (t - i);
        Fr x = d[i];
        d[i] = d[j];
        d[j] = x;
    }
}

// Stages [s, s + b) of every column. A block takes 2^log_per_block of the
// cols * 2^(log_n - b) (column, group) pairs, 2^(b-1) threads each, so that
// short passes still fill the shared array and the SM: one group of a
// 3-pass 2^24 transform is 128 threads, and one block per group would leave
// the static 32 KB array three-quarters empty and cap an SM at 7 blocks.
//
// The shared array holds element j of the block's group `sub` at
// j * per_block + sub, so neighbouring threads work on neighbouring groups:
// their butterflies touch neighbouring shared words, and past the first pass
// (s > 0, where neighbouring groups are neighbouring elements in memory)
// their global loads and stores are contiguous. The first pass's groups are
// contiguous runs of 2^b elements, so it walks memory in that order instead.
extern "C" __global__ void ntt_pass(Fr* data, u32 log_n, u32 s, u32 b, u32 log_per_block, u32 total,
                                    const Fr* twiddles) {
    __shared__ Fr x[1 << NTT_MAX_PASS];
    u32 log_groups = log_n - b;
    u32 per_block = 1u << log_per_block;
    u32 first = blockIdx.x << log_per_block;
    u32 elements = per_block << b;
    // The e-th element the block moves between memory and shared memory:
    // its shared slot, and its address in `data`, which the padding groups
    // past the last pair lack (false).
    auto locate = [&](u32 e, u32* slot, u64* where) {
        u32 sub = s == 0 ? e >> b : e & (per_block - 1);
        u32 j = s == 0 ? e & ((1u << b) - 1) : e >> log_per_block;
        *slot = j * per_block + sub;
        u32 pair = first + sub;
        if (pair >= total) return false;
        u32 col = pair >> log_groups, g = pair & ((1u << log_groups) - 1);
        u32 base = ((g >> s) << (s + b)) | (g & ((1u << s) - 1));
        *where = ((u64)col << log_n) + base + ((u64)j << s);
        return true;
    };
    for (u32 e = threadIdx.x; e < elements; e += blockDim.x) {
        u32 slot;
        u64 where;
        bool real = locate(e, &slot, &where);
        x[slot] = real ? data[where] : Fr::zero();
    }
    __syncthreads();
    u32 sub = threadIdx.x & (per_block - 1), k = threadIdx.x >> log_per_block;
    u32 g = (first + sub) & ((1u << log_groups) - 1);
    u32 low = g & ((1u << s) - 1);  // the group's offset inside a block of 2^s
    for (u32 t = 0; t < b; t++) {
        u32 j0 = ((k >> t) << (t + 1)) | (k & ((1u << t) - 1));
        u32 j1 = j0 | (1u << t);
        u32 stage = s + t;
        Fr& lo = x[j0 * per_block + sub];
        Fr& hi = x[j1 * per_block + sub];
        Fr u = lo, v = hi;
        // Stage 0's twiddles are all w^0 = 1: the whole block skips the
        // product (one of log_n stages' multiplications).
        if (stage != 0) {
            u32 pos = (low + (j0 << s)) & ((1u << stage) - 1);
            Fr w = twiddles[pos << (log_n - stage - 1)];
            v = Fr::mul(v, w);
        }
        lo = Fr::add(u, v);
        hi = Fr::sub(u, v);
        __syncthreads();
    }
    for (u32 e = threadIdx.x; e < elements; e += blockDim.x) {
        u32 slot;
        u64 where;
        if (locate(e, &slot, &where)) data[where] = x[slot];
    }
}

// data[col][i] *= powers[i]: the coset shift g^i before a forward NTT.
extern "C" __global__ void ntt_coset_shift(Fr* data, const Fr* powers, u32 log_n, u32 cols) {
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (cols << log_n)) return;
    Fr x = data[t], g = powers[t & ((1u << log_n) - 1)];  // 128-bit loads, as in elementwise.cu
    data[t] = Fr::mul(x, g);
}
