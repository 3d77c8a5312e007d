// Polynomial kernels of a Halo2 proof kept on the device: constraint
// programs, grand products, the lookup permutation, evaluation at points,
// linear combinations and division by linear factors. Every value is an Fr
// in Montgomery form, except where a kernel says it works on canonical
// integers (the lookup's sort, which orders values as integers).
#include "field.cuh"

// ---------------------------------------------------------------------------
// Constraint programs: a flat list of register instructions, four words each
// (op, dst, a, b), evaluated independently at every point of a grid.

#define PROGRAM_REGS 64

#define OP_LEAF 0   // r[dst] = leaves[a][(i + b) mod size]
#define OP_CONST 1  // r[dst] = consts[a]
#define OP_X 2      // r[dst] = consts[a] * consts[b]^i
#define OP_ADD 3
#define OP_SUB 4
#define OP_MUL 5
#define OP_NEG 6    // r[dst] = -r[a]

extern "C" __global__ void poly_program(Fr* out, const Fr* const* leaves, const u32* code, u32 len, const Fr* consts,
                                        u32 size, u32 out_reg) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    Fr r[PROGRAM_REGS];
    for (u32 pc = 0; pc < len; pc++) {
        u32 op = code[4 * pc], dst = code[4 * pc + 1], a = code[4 * pc + 2], b = code[4 * pc + 3];
        switch (op) {
            case OP_LEAF: {
                u32 at = i + b;  // b < size, so one subtraction wraps it
                if (at >= size) at -= size;
                r[dst] = leaves[a][at];
                break;
            }
            case OP_CONST:
                r[dst] = consts[a];
                break;
            case OP_X:
                r[dst] = Fr::mul(consts[a], fr_pow(consts[b], i));
                break;
            case OP_ADD:
                r[dst] = Fr::add(r[a], r[b]);
                break;
            case OP_SUB:
                r[dst] = Fr::sub(r[a], r[b]);
                break;
            case OP_MUL:
                r[dst] = Fr::mul(r[a], r[b]);
                break;
            default:
                r[dst] = Fr::neg(r[a]);
                break;
        }
    }
    out[i] = r[out_reg];
}

// ---------------------------------------------------------------------------
// Element-wise steps.

// out[i] (= or *=) a[i] + s·b[i] + c, with sc = [s, c]; without b, a[i] + c.
extern "C" __global__ void poly_factor(Fr* out, const Fr* a, const Fr* b, const Fr* sc, u32 n, u32 has_b, u32 first) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr x = a[i], c = sc[1];
    Fr v = Fr::add(x, c);
    if (has_b) {
        Fr y = b[i], s = sc[0];
        v = Fr::add(v, Fr::mul(s, y));
    }
    if (!first) {
        Fr o = out[i];
        v = Fr::mul(o, v);
    }
    out[i] = v;
}

// data[i] *= table[i mod period]: 1/(X^n - 1) on the extended coset.
extern "C" __global__ void poly_mul_periodic(Fr* data, const Fr* table, u32 n, u32 period) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr x = data[i], t = table[i % period];
    data[i] = Fr::mul(x, t);
}

// out[i] += scalars[at] · p[i].
extern "C" __global__ void poly_axpy(Fr* out, const Fr* p, const Fr* scalars, u32 at, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr o = out[i], x = p[i], k = scalars[at];
    out[i] = Fr::add(o, Fr::mul(k, x));
}

// out[i] = src[start + i].
extern "C" __global__ void poly_copy_range(Fr* out, const Fr* src, u32 start, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = src[start + i];
}

// ---------------------------------------------------------------------------
// Inclusive product scans, forward or (reverse = 1) from the last element
// down: a block scans SCAN_SPAN consecutive elements of the scan's order,
// writes its total, and after the totals are scanned the same way,
// poly_scan_apply multiplies each block by the product of those before it.

#define PSCAN_THREADS 256
#define PSCAN_ITEMS 8
#define PSCAN_SPAN (PSCAN_THREADS * PSCAN_ITEMS)

__device__ __forceinline__ u32 scan_at(u32 j, u32 n, u32 reverse) { return reverse ? n - 1 - j : j; }

extern "C" __global__ void poly_scan_block(Fr* data, u32 n, Fr* totals, u32 reverse) {
    __shared__ Fr s[PSCAN_THREADS];
    u32 t = threadIdx.x;
    u32 base = blockIdx.x * PSCAN_SPAN + t * PSCAN_ITEMS;
    Fr run = Fr::one();
    for (u32 j = 0; j < PSCAN_ITEMS; j++) {
        if (base + j < n) {
            Fr v = data[scan_at(base + j, n, reverse)];
            run = Fr::mul(run, v);
        }
    }
    s[t] = run;
    __syncthreads();
    // Hillis-Steele over the threads' products.
    for (u32 off = 1; off < PSCAN_THREADS; off <<= 1) {
        Fr other = t >= off ? s[t - off] : Fr::one();
        __syncthreads();
        s[t] = Fr::mul(s[t], other);
        __syncthreads();
    }
    Fr acc = t > 0 ? s[t - 1] : Fr::one();
    for (u32 j = 0; j < PSCAN_ITEMS; j++) {
        if (base + j < n) {
            u32 at = scan_at(base + j, n, reverse);
            Fr v = data[at];
            acc = Fr::mul(acc, v);
            data[at] = acc;
        }
    }
    if (t == PSCAN_THREADS - 1) totals[blockIdx.x] = s[t];
}

// Block b > 0 times the inclusive scan of the block totals at b - 1.
extern "C" __global__ void poly_scan_apply(Fr* data, u32 n, const Fr* scanned_totals, u32 reverse) {
    u32 j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    u32 block = j / PSCAN_SPAN;
    if (block == 0) return;
    u32 at = scan_at(j, n, reverse);
    Fr v = data[at], k = scanned_totals[block - 1];
    data[at] = Fr::mul(v, k);
}

// z[0] = c[1]; z[i + 1] = c[0] · prefix_num[i] · suffix_den[i + 1] for
// i < m, the last suffix term being 1. With c[0] = z[0] / Π den this is
// z[0] · Π_{j<=i} num[j] / den[j]: one inversion for the whole product.
extern "C" __global__ void poly_grand_product(Fr* z, const Fr* prefix_num, const Fr* suffix_den, const Fr* c, u32 m) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i > m) return;
    if (i == m) {
        z[0] = c[1];
        return;
    }
    Fr v = Fr::mul(c[0], prefix_num[i]);
    if (i + 1 < m) v = Fr::mul(v, suffix_den[i + 1]);
    z[i + 1] = v;
}

// ---------------------------------------------------------------------------
// The lookup permutation, on canonical integers.

// a < b as 256-bit integers: -1, 0 or 1.
__device__ __forceinline__ int fr_cmp(const Fr& a, const Fr& b) {
    for (int j = 7; j >= 0; j--) {
        if (a.l[j] != b.l[j]) return a.l[j] < b.l[j] ? -1 : 1;
    }
    return 0;
}

// out[i] = the canonical integer of in[i] for i < len; all ones (above every
// element) up to total, so a power-of-two sort leaves them at the end.
extern "C" __global__ void poly_to_canonical(Fr* out, const Fr* in, u32 len, u32 total) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    if (i < len) {
        Fr x = in[i];
        out[i] = Fr::from_mont(x);
    } else {
        Fr pad;
        for (int j = 0; j < 8; j++) pad.l[j] = 0xffffffffu;
        out[i] = pad;
    }
}

extern "C" __global__ void poly_to_montgomery(Fr* data, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr x = data[i];
    data[i] = Fr::to_mont(x);
}

// One compare-exchange step of a bitonic sort of n (a power of two) keys:
// element i meets i ^ j, ascending where bit k of i is clear.
extern "C" __global__ void poly_bitonic_step(Fr* keys, u32 n, u32 j, u32 k) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 l = i ^ j;
    if (l <= i) return;
    Fr x = keys[i], y = keys[l];
    int c = fr_cmp(x, y);
    bool ascending = (i & k) == 0;
    if ((ascending && c > 0) || (!ascending && c < 0)) {
        keys[i] = y;
        keys[l] = x;
    }
}

// Whether sorted[0..n) holds v.
__device__ __forceinline__ bool sorted_contains(const Fr* sorted, u32 n, const Fr& v) {
    u32 lo = 0, hi = n;
    while (lo < hi) {
        u32 mid = lo + (hi - lo) / 2;
        Fr m = sorted[mid];
        int c = fr_cmp(m, v);
        if (c == 0) return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

__device__ __forceinline__ bool run_start(const Fr* sorted, u32 i) {
    if (i == 0) return true;
    Fr x = sorted[i], y = sorted[i - 1];
    return !x.eq(y);
}

// For the sorted input a: 1 where a row continues a run (its S' value comes
// from the table's leftovers), and the first run start whose value the
// sorted table s lacks, by atomicMin into *missing.
extern "C" __global__ void lookup_input_runs(const Fr* a, const Fr* s, u32 n, u32* repeats, u32* missing) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    bool start = run_start(a, i);
    repeats[i] = start ? 0u : 1u;
    if (start) {
        Fr v = a[i];
        if (!sorted_contains(s, n, v)) atomicMin(missing, i);
    }
}

// Whether table row t of the sorted table is left over: every entry but
// the first of each value that the input holds.
__device__ __forceinline__ bool table_leftover(const Fr* a, const Fr* s, u32 n, u32 t) {
    if (!run_start(s, t)) return true;
    Fr v = s[t];
    return !sorted_contains(a, n, v);
}

extern "C" __global__ void lookup_table_leftovers(const Fr* a, const Fr* s, u32 n, u32* leftover) {
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    leftover[t] = table_leftover(a, s, n, t) ? 1u : 0u;
}

// S' on run starts is the run's value; the r-th repeated row is recorded
// as the slot that takes the r-th leftover (repeat_rank: exclusive scan of
// lookup_input_runs' flags).
extern "C" __global__ void lookup_place_starts(const Fr* a, const u32* repeat_rank, u32 n, u32* slot_of_rank,
                                               Fr* s_out) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (run_start(a, i))
        s_out[i] = a[i];
    else
        slot_of_rank[repeat_rank[i]] = i;
}

// The r-th leftover, in table order, to the r-th repeated row.
extern "C" __global__ void lookup_place_leftovers(const Fr* a, const Fr* s, const u32* leftover_rank,
                                                  const u32* slot_of_rank, u32 n, Fr* s_out) {
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    if (table_leftover(a, s, n, t)) s_out[slot_of_rank[leftover_rank[t]]] = s[t];
}

// ---------------------------------------------------------------------------
// Evaluation of coefficient vectors at points, batched: each thread takes
// EVAL_CHUNK coefficients of one query by Horner's rule and scales the
// result by x^start; fr_sum_rows adds each query's partial sums.

#define EVAL_CHUNK 64

extern "C" __global__ void poly_eval_chunks(const Fr* const* polys, const u32* lens, const Fr* points, u32 queries,
                                            u32 chunks, Fr* partials) {
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= queries * chunks) return;
    u32 q = t / chunks, c = t % chunks;
    u32 len = lens[q], start = c * EVAL_CHUNK;
    Fr acc = Fr::zero();
    if (start < len) {
        const Fr* p = polys[q];
        Fr x = points[q];
        u32 end = min(start + EVAL_CHUNK, len);
        for (u32 j = end; j-- > start;) {
            Fr v = p[j];
            acc = Fr::add(Fr::mul(acc, x), v);
        }
        acc = Fr::mul(acc, fr_pow(x, start));
    }
    partials[t] = acc;
}

#define SUM_THREADS 256

// out[r] = Σ data[r · cols + j]: one block per row.
extern "C" __global__ void fr_sum_rows(const Fr* data, u32 cols, Fr* out) {
    __shared__ Fr s[SUM_THREADS];
    u32 t = threadIdx.x, r = blockIdx.x;
    Fr acc = Fr::zero();
    for (u32 j = t; j < cols; j += SUM_THREADS) {
        Fr v = data[(u64)r * cols + j];
        acc = Fr::add(acc, v);
    }
    s[t] = acc;
    __syncthreads();
    for (u32 half = SUM_THREADS / 2; half > 0; half >>= 1) {
        if (t < half) s[t] = Fr::add(s[t], s[t + half]);
        __syncthreads();
    }
    if (t == 0) out[r] = s[0];
}

// ---------------------------------------------------------------------------
// Division by (X - b): q[j] = a[j + 1] + b · q[j + 1] for j < m = len - 1,
// from the top down. Chunks of DIV_CHUNK outputs run the recurrence from a
// zero carry; one thread then chains the chunks' true first values (the
// recurrence is linear: a chunk's true values are its own plus b^(end - j)
// times the true value at its end), and each chunk adds its correction.

#define DIV_CHUNK 256

// bp = [b, b^DIV_CHUNK].
extern "C" __global__ void div_chunks(const Fr* a, Fr* q, u32 m, const Fr* bp, Fr* carry) {
    u32 c = blockIdx.x * blockDim.x + threadIdx.x;
    u32 start = c * DIV_CHUNK;
    if (start >= m) return;
    u32 end = min(start + DIV_CHUNK, m);
    Fr b = bp[0], acc = Fr::zero();
    for (u32 j = end; j-- > start;) {
        Fr v = a[j + 1];
        acc = Fr::add(v, Fr::mul(b, acc));
        q[j] = acc;
    }
    carry[c] = acc;
}

// carry[c] becomes q's true value at the first output of chunk c.
extern "C" __global__ void div_carries(Fr* carry, u32 chunks, const Fr* bp) {
    if (blockIdx.x * blockDim.x + threadIdx.x != 0 || chunks < 2) return;
    Fr bc = bp[1];
    Fr above = carry[chunks - 1];
    for (u32 c = chunks - 1; c-- > 0;) {
        Fr own = carry[c];
        above = Fr::add(own, Fr::mul(bc, above));
        carry[c] = above;
    }
}

extern "C" __global__ void div_fix(Fr* q, const Fr* bp, const Fr* carry, u32 chunks) {
    u32 c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c + 1 >= chunks) return;  // the top chunk has nothing above it
    u32 start = c * DIV_CHUNK, end = start + DIV_CHUNK;
    Fr b = bp[0], r = carry[c + 1];
    for (u32 j = end; j-- > start;) {
        r = Fr::mul(r, b);
        Fr v = q[j];
        q[j] = Fr::add(v, r);
    }
}
