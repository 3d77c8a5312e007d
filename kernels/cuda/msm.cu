// Pippenger MSM over BN254 G1, stage by stage as specified (and modelled
// on the host) in src/msm_plan.rs: fold, signed digits, counting sort by
// bucket, level-wise segmented bucket accumulation, chunked window sums.
// The host combines the few window sums by Horner's rule.
#include "curve.cuh"

#define EMPTY 0xffffffffu

// (p - 1) / 2 of Fr, canonical, little-endian limbs.
__constant__ u32 FR_HALF[8] = {0xf8000000, 0xa1f0fac9, 0x3cdcb848, 0x9419f424, 0x40c0ac2e, 0xdc2822db, 0x7098d014, 0x18322739};

__device__ __forceinline__ u32 bit_length(const u32* l) {
    for (int i = 7; i >= 0; i--)
        if (l[i]) return 32 * i + 32 - __clz(l[i]);
    return 0;
}

// Stage 1: canonical |s| <= (p-1)/2 and its sign; the largest bit length.
extern "C" __global__ void msm_fold(const Fr* scalars, u32 n, Fr* folded, u32* negated, u32* max_bits) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr raw = scalars[i];  // 128-bit loads
    Fr s = Fr::from_mont(raw);
    bool above = false;
    for (int j = 7; j >= 0; j--) {
        if (s.l[j] != FR_HALF[j]) {
            above = s.l[j] > FR_HALF[j];
            break;
        }
    }
    if (above) {
        // p - s as integers: Fr::sub wraps 0 - s to p - s.
        s = Fr::sub(Fr::zero(), s);
    }
    folded[i] = s;
    negated[i] = above ? 1u : 0u;
    u32 bits = bit_length(s.l);
    if (bits) atomicMax(max_bits, bits);
}

__device__ __forceinline__ u32 window_bits(const u32* l, u32 at, u32 c) {
    u32 limb = at / 32, shift = at % 32;
    if (limb >= 8) return 0;
    u64 v = l[limb] >> shift;
    if (shift + c > 32 && limb + 1 < 8) v |= (u64)l[limb + 1] << (32 - shift);
    if (shift + c > 64 && limb + 2 < 8) v |= (u64)l[limb + 2] << (64 - shift);
    return (u32)(v & ((1ull << c) - 1));
}

// Stage 2: one thread per scalar walks its windows (the signed digit's
// carry runs from window to window). Slot w * n + i holds the pair of
// window w, or EMPTY for a zero digit; counts[bucket] is the histogram.
// Window w's digit d goes to bucket w * key_stride + |d| - 1 with point
// w * point_stride + i: each window its own buckets over the bases
// (key_stride = 2^(c-1), point_stride = 0), or one set of buckets shared
// by all windows over a table of the bases' multiples (key_stride = 0,
// point_stride = the table's points per window).
extern "C" __global__ void msm_digits(const Fr* folded, const u32* negated, u32 n, u32 c, u32 windows,
                                      u32 key_stride, u32 point_stride, u32* keys, u32* vals, u32* counts) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const u32* l = folded[i].l;
    int half = 1 << (c - 1);
    int carry = 0;
    for (u32 w = 0; w < windows; w++) {
        int d = (int)window_bits(l, w * c, c) + carry;
        carry = 0;
        if (d > half) {
            d -= 1 << c;
            carry = 1;
        }
        u32 slot = w * n + i;
        if (d == 0) {
            keys[slot] = EMPTY;
            continue;
        }
        u32 key = w * key_stride + (u32)(d < 0 ? -d : d) - 1;
        u32 sign = ((d < 0) != (negated[i] != 0)) ? 1u : 0u;
        keys[slot] = key;
        vals[slot] = ((w * point_stride + i) << 1) | sign;
        atomicAdd(&counts[key], 1u);
    }
}

// The table for fixed bases: table[w * n + i] = 2^(c·w) · bases[i] for
// w < windows, affine. One thread per base doubles its way up the windows.
extern "C" __global__ void msm_table(const Affine* bases, u32 n, u32 c, u32 windows, Affine* table) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Affine p = bases[i];
    table[i] = p;
    Xyzz acc = Xyzz::from_affine(p);
    for (u32 w = 1; w < windows; w++) {
        for (u32 j = 0; j < c; j++) acc = acc.dbl();
        table[(u64)w * n + i] = acc.to_affine();
    }
}

// Exclusive scan, stage 3's bucket offsets. A block covers SCAN_THREADS *
// SCAN_ITEMS entries: each thread scans its own run of SCAN_ITEMS, the
// run totals are scanned in shared memory, and the block leaves its total;
// the host scans the totals the same way and msm_scan_add adds them back.
#define SCAN_THREADS 256
#define SCAN_ITEMS 16

extern "C" __global__ void msm_scan_block(u32* data, u32 n, u32* block_totals) {
    __shared__ u32 s[SCAN_THREADS];
    u32 t = threadIdx.x;
    u32 base = (blockIdx.x * SCAN_THREADS + t) * SCAN_ITEMS;
    u32 v[SCAN_ITEMS];
    u32 run = 0;
    for (u32 j = 0; j < SCAN_ITEMS; j++) {
        v[j] = base + j < n ? data[base + j] : 0;
        run += v[j];
    }
    s[t] = run;
    __syncthreads();
    for (u32 off = 1; off < SCAN_THREADS; off <<= 1) {
        u32 add = t >= off ? s[t - off] : 0;
        __syncthreads();
        s[t] += add;
        __syncthreads();
    }
    u32 acc = s[t] - run;
    for (u32 j = 0; j < SCAN_ITEMS; j++) {
        if (base + j < n) data[base + j] = acc;
        acc += v[j];
    }
    if (t == SCAN_THREADS - 1) block_totals[blockIdx.x] = s[t];
}

extern "C" __global__ void msm_scan_add(u32* data, u32 n, const u32* block_offsets) {
    u32 add = block_offsets[blockIdx.x];
    for (u32 j = 0; j < SCAN_ITEMS; j++) {
        u32 i = (blockIdx.x * SCAN_ITEMS + j) * SCAN_THREADS + threadIdx.x;
        if (i < n) data[i] += add;
    }
}

// Stage 3: scatter the pairs to their bucket's range. The order inside a
// bucket is not kept; bucket sums do not depend on it.
extern "C" __global__ void msm_scatter(const u32* keys, const u32* vals, u32 slots, u32* cursor,
                                       u32* sorted_keys, u32* sorted_vals) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= slots || keys[i] == EMPTY) return;
    u32 at = atomicAdd(&cursor[keys[i]], 1u);
    sorted_keys[at] = keys[i];
    sorted_vals[at] = vals[i];
}

// Stage 4, shared by both kinds of level: sums the runs of one segment,
// writes complete runs to their bucket and the cut ones to two slots of
// the next level, padded so equal keys stay adjacent.
//
// Every thread adds exactly one point per pair of its segment, in one flat
// loop: a run's end only stores its sum. Nested loops (one per run) would
// let the threads of a warp wait at each run's end for the warp's longest
// run, which with random scalars wastes about half of the additions' time.
template <class Load>
__device__ void accumulate_segment(const u32* keys, u32 len, u32 seg, Load load, Xyzz* buckets, u32* next_keys,
                                   Xyzz* next_points) {
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    u32 start = t * seg;
    if (start >= len) return;
    u32 end = min(start + seg, len);
    u32 pk[2] = {EMPTY, EMPTY};
    Xyzz pp[2] = {Xyzz::identity(), Xyzz::identity()};
    int partials = 0;
    bool first_cut_before = false;
    // The run [run, stop) of `key` is complete: a whole bucket, or a part
    // of one that the next level finishes.
    auto finish = [&](u32 key, u32 run, u32 stop, const Xyzz& sum) {
        if (key == EMPTY) return;
        bool before = run == start && start > 0 && keys[start - 1] == key;
        bool after = stop == end && end < len && keys[end] == key;
        if (before || after) {
            if (partials == 0) first_cut_before = before;
            pk[partials] = key;
            pp[partials] = sum;
            partials++;
        } else {
            buckets[key] = sum;
        }
    };
    u32 key = keys[start], run = start;
    Xyzz sum = Xyzz::identity();
    for (u32 i = start; i < end; i++) {
        u32 k = keys[i];
        if (k != key) {
            finish(key, run, i, sum);
            key = k;
            run = i;
            sum = Xyzz::identity();
        }
        sum = load(sum, i);
    }
    finish(key, run, end, sum);
    Xyzz id = Xyzz::identity();
    if (partials == 1) {
        if (first_cut_before) {
            pk[1] = pk[0];
            pp[1] = id;
        } else {
            pk[1] = pk[0];
            pp[1] = pp[0];
            pp[0] = id;
        }
    }
    next_keys[2 * t] = pk[0];
    next_points[2 * t] = pp[0];
    next_keys[2 * t + 1] = pk[1];
    next_points[2 * t + 1] = pp[1];
}

struct LoadBase {
    const u32* vals;
    const Affine* bases;
    __device__ __forceinline__ Xyzz operator()(const Xyzz& acc, u32 i) const {
        u32 v = vals[i];
        Affine p = bases[v >> 1];
        return acc.add_affine((v & 1) ? p.neg() : p);
    }
};

struct LoadPoint {
    const Xyzz* points;
    __device__ __forceinline__ Xyzz operator()(const Xyzz& acc, u32 i) const {
        Xyzz q = points[i];  // whole-point 128-bit loads, not 32 word loads
        return acc.add(q);
    }
};

// The first level reads (bucket, point index and sign) pairs and the bases.
extern "C" __global__ void msm_accumulate_pairs(const u32* keys, const u32* vals, u32 len, const Affine* bases,
                                                u32 seg, Xyzz* buckets, u32* next_keys, Xyzz* next_points) {
    accumulate_segment(keys, len, seg, LoadBase{vals, bases}, buckets, next_keys, next_points);
}

// Later levels read the partial sums the previous level left.
extern "C" __global__ void msm_accumulate_partials(const u32* keys, const Xyzz* points, u32 len, u32 seg,
                                                   Xyzz* buckets, u32* next_keys, Xyzz* next_points) {
    accumulate_segment(keys, len, seg, LoadPoint{points}, buckets, next_keys, next_points);
}

// Stage 5: one thread per (window, chunk): sum (b + 1) B_b over the chunk
// by running sums, with the chunk's offset added as offset * sum B_b.
extern "C" __global__ void msm_window_chunks(const Xyzz* buckets, u32 windows, u32 half, u32 chunk,
                                             Xyzz* chunk_sums) {
    u32 chunks = (half + chunk - 1) / chunk;
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= windows * chunks) return;
    u32 w = t / chunks, j = t % chunks;
    u32 lo = j * chunk, hi = min(lo + chunk, half);
    Xyzz running = Xyzz::identity(), local = Xyzz::identity();
    for (u32 b = hi; b > lo; b--) {
        Xyzz bucket = buckets[w * half + b - 1];
        running = running.add(bucket);
        local = local.add(running);
    }
    chunk_sums[t] = local.add(running.mul_small(lo));
}

// Stage 5, end: each window's `len` partial sums are added in groups of
// `group`, one thread per (window, group), leaving ceil(len / group) per
// window; the host repeats this until one sum per window is left.
extern "C" __global__ void msm_reduce(const Xyzz* in, u32 windows, u32 len, u32 group, Xyzz* out) {
    u32 groups = (len + group - 1) / group;
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= windows * groups) return;
    u32 w = t / groups, lo = (t % groups) * group, hi = min(lo + group, len);
    Xyzz acc = Xyzz::identity();
    for (u32 j = lo; j < hi; j++) {
        Xyzz q = in[w * len + j];
        acc = acc.add(q);
    }
    out[t] = acc;
}
