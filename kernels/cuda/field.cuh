// BN254 base field (Fq) and scalar field (Fr) in Montgomery form, R = 2^256,
// on eight 32-bit little-endian limbs: the same bytes as halo2curves' four
// 64-bit Montgomery limbs, so buffers move between host and device as they are.
//
// Multiplication is CIOS Montgomery.
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;

__constant__ u32 FR_MOD[8] = {0xf0000001, 0x43e1f593, 0x79b97091, 0x2833e848, 0x8181585d, 0xb85045b6, 0xe131a029, 0x30644e72};
__constant__ u32 FR_R2[8] = {0xae216da7, 0x1bb8e645, 0xe35c59e3, 0x53fe3ab1, 0x53bb8085, 0x8c49833d, 0x7f4e44a5, 0x0216d0b1};
__constant__ u32 FR_ONE[8] = {0x4ffffffb, 0xac96341c, 0x9f60cd29, 0x36fc7695, 0x7879462e, 0x666ea36f, 0x9a07df2f, 0x0e0a77c1};
#define FR_INV 0xefffffffu
__constant__ u32 FQ_MOD[8] = {0xd87cfd47, 0x3c208c16, 0x6871ca8d, 0x97816a91, 0x8181585d, 0xb85045b6, 0xe131a029, 0x30644e72};
__constant__ u32 FQ_R2[8] = {0x538afa89, 0xf32cfc5b, 0xd44501fb, 0xb5e71911, 0x0a417ff6, 0x47ab1eff, 0xcab8351f, 0x06d89f71};
__constant__ u32 FQ_ONE[8] = {0xc58f0d9d, 0xd35d438d, 0xf5c70b3d, 0x0a78eb28, 0x7879462c, 0x666ea36f, 0x9a07df2f, 0x0e0a77c1};
#define FQ_INV 0xe4866389u

struct FrP {
    static __device__ __forceinline__ const u32* mod() { return FR_MOD; }
    static __device__ __forceinline__ const u32* r2() { return FR_R2; }
    static __device__ __forceinline__ const u32* one() { return FR_ONE; }
    static __device__ __forceinline__ u32 inv() { return FR_INV; }
};

struct FqP {
    static __device__ __forceinline__ const u32* mod() { return FQ_MOD; }
    static __device__ __forceinline__ const u32* r2() { return FQ_R2; }
    static __device__ __forceinline__ const u32* one() { return FQ_ONE; }
    static __device__ __forceinline__ u32 inv() { return FQ_INV; }
};

// Multi-word primitives on eight 32-bit limbs. On the device they are PTX
// carry chains (add.cc/addc, sub.cc/subc, mad.lo.cc/madc.hi.cc), one asm
// block per chain so the carry flag never crosses asm statements; on the
// host (the CPU emulation of the kernels) and with ZKFARM_PORTABLE_FIELD
// defined they are plain C++ with 64-bit accumulators.
#if defined(__CUDA_ARCH__) && !defined(ZKFARM_PORTABLE_FIELD)

// r = a + b; returns the carry out.
__device__ __forceinline__ u32 add8(u32* r, const u32* a, const u32* b) {
    u32 carry;
    asm("add.cc.u32 %0, %9, %17;\n\t"
        "addc.cc.u32 %1, %10, %18;\n\t"
        "addc.cc.u32 %2, %11, %19;\n\t"
        "addc.cc.u32 %3, %12, %20;\n\t"
        "addc.cc.u32 %4, %13, %21;\n\t"
        "addc.cc.u32 %5, %14, %22;\n\t"
        "addc.cc.u32 %6, %15, %23;\n\t"
        "addc.cc.u32 %7, %16, %24;\n\t"
        "addc.u32 %8, 0, 0;"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), "=r"(r[6]), "=r"(r[7]),
          "=r"(carry)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(a[4]), "r"(a[5]), "r"(a[6]), "r"(a[7]), "r"(b[0]),
          "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(b[4]), "r"(b[5]), "r"(b[6]), "r"(b[7]));
    return carry;
}

// r = a - b; returns the borrow out (0 or 1).
__device__ __forceinline__ u32 sub8(u32* r, const u32* a, const u32* b) {
    u32 borrow;
    asm("sub.cc.u32 %0, %9, %17;\n\t"
        "subc.cc.u32 %1, %10, %18;\n\t"
        "subc.cc.u32 %2, %11, %19;\n\t"
        "subc.cc.u32 %3, %12, %20;\n\t"
        "subc.cc.u32 %4, %13, %21;\n\t"
        "subc.cc.u32 %5, %14, %22;\n\t"
        "subc.cc.u32 %6, %15, %23;\n\t"
        "subc.cc.u32 %7, %16, %24;\n\t"
        "subc.u32 %8, 0, 0;"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), "=r"(r[6]), "=r"(r[7]),
          "=r"(borrow)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(a[4]), "r"(a[5]), "r"(a[6]), "r"(a[7]), "r"(b[0]),
          "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(b[4]), "r"(b[5]), "r"(b[6]), "r"(b[7]));
    return borrow & 1u;
}

// t[0..10) += a[0..8) * b: the low halves of the products in one chain,
// the high halves, one word up, in a second.
__device__ __forceinline__ void mad_row(u32* t, const u32* a, u32 b) {
    asm("mad.lo.cc.u32 %0, %10, %18, %0;\n\t"
        "madc.lo.cc.u32 %1, %11, %18, %1;\n\t"
        "madc.lo.cc.u32 %2, %12, %18, %2;\n\t"
        "madc.lo.cc.u32 %3, %13, %18, %3;\n\t"
        "madc.lo.cc.u32 %4, %14, %18, %4;\n\t"
        "madc.lo.cc.u32 %5, %15, %18, %5;\n\t"
        "madc.lo.cc.u32 %6, %16, %18, %6;\n\t"
        "madc.lo.cc.u32 %7, %17, %18, %7;\n\t"
        "addc.cc.u32 %8, %8, 0;\n\t"
        "addc.u32 %9, %9, 0;\n\t"
        "mad.hi.cc.u32 %1, %10, %18, %1;\n\t"
        "madc.hi.cc.u32 %2, %11, %18, %2;\n\t"
        "madc.hi.cc.u32 %3, %12, %18, %3;\n\t"
        "madc.hi.cc.u32 %4, %13, %18, %4;\n\t"
        "madc.hi.cc.u32 %5, %14, %18, %5;\n\t"
        "madc.hi.cc.u32 %6, %15, %18, %6;\n\t"
        "madc.hi.cc.u32 %7, %16, %18, %7;\n\t"
        "madc.hi.cc.u32 %8, %17, %18, %8;\n\t"
        "addc.u32 %9, %9, 0;"
        : "+r"(t[0]), "+r"(t[1]), "+r"(t[2]), "+r"(t[3]), "+r"(t[4]), "+r"(t[5]), "+r"(t[6]), "+r"(t[7]),
          "+r"(t[8]), "+r"(t[9])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(a[4]), "r"(a[5]), "r"(a[6]), "r"(a[7]), "r"(b));
}

#else

__device__ __forceinline__ u32 add8(u32* r, const u32* a, const u32* b) {
    u64 c = 0;
    for (int i = 0; i < 8; i++) {
        c += (u64)a[i] + b[i];
        r[i] = (u32)c;
        c >>= 32;
    }
    return (u32)c;
}

__device__ __forceinline__ u32 sub8(u32* r, const u32* a, const u32* b) {
    long long borrow = 0;
    for (int i = 0; i < 8; i++) {
        long long d = (long long)a[i] - (long long)b[i] + borrow;
        r[i] = (u32)d;
        borrow = d >> 32;
    }
    return borrow ? 1u : 0u;
}

__device__ __forceinline__ void mad_row(u32* t, const u32* a, u32 b) {
    u64 c = 0;
    for (int j = 0; j < 8; j++) {
        c += (u64)t[j] + (u64)a[j] * b;
        t[j] = (u32)c;
        c >>= 32;
    }
    c += t[8];
    t[8] = (u32)c;
    t[9] += (u32)(c >> 32);
}

#endif

// Sixteen-byte alignment lets the compiler move elements between global
// memory and registers with 128-bit loads and stores, two per element,
// instead of eight 32-bit ones. Every array of them starts a buffer (the
// allocator aligns buffers to 256 bytes) and their sizes are multiples of 16.
template <class P>
struct __align__(16) Fp {
    u32 l[8];

    static __device__ __forceinline__ Fp zero() {
        Fp r;
#pragma unroll
        for (int i = 0; i < 8; i++) r.l[i] = 0;
        return r;
    }

    static __device__ __forceinline__ Fp one() {
        Fp r;
#pragma unroll
        for (int i = 0; i < 8; i++) r.l[i] = P::one()[i];
        return r;
    }

    __device__ __forceinline__ bool is_zero() const {
        u32 acc = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) acc |= l[i];
        return acc == 0;
    }

    __device__ __forceinline__ bool eq(const Fp& o) const {
        u32 acc = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) acc |= l[i] ^ o.l[i];
        return acc == 0;
    }

    // r = a - p if a >= p (a < 2p), given the carry out of a's top limb.
    static __device__ __forceinline__ Fp reduce_once(const Fp& a, u32 carry) {
        Fp t;
        u32 borrow = sub8(t.l, a.l, P::mod());
        // Keep a when it was below p: a borrow out that the carry does not cover.
        return (borrow && !carry) ? a : t;
    }

    static __device__ __forceinline__ Fp add(const Fp& a, const Fp& b) {
        Fp r;
        u32 carry = add8(r.l, a.l, b.l);
        return reduce_once(r, carry);
    }

    static __device__ __forceinline__ Fp sub(const Fp& a, const Fp& b) {
        Fp r;
        u32 mask = 0u - sub8(r.l, a.l, b.l);
        // Add p back after a borrow, without a branch.
        u32 p[8];
#pragma unroll
        for (int i = 0; i < 8; i++) p[i] = P::mod()[i] & mask;
        add8(r.l, r.l, p);
        return r;
    }

    static __device__ __forceinline__ Fp neg(const Fp& a) { return a.is_zero() ? a : sub(zero(), a); }

    // CIOS Montgomery multiplication: a * b / 2^256 mod p. Each round adds
    // a * b_i, then the multiple m * p that zeroes the low word, and drops
    // that word; the running value stays below 2p, so nine words hold it
    // between rounds (the tenth takes a round's intermediate carry).
    static __device__ __forceinline__ Fp mul(const Fp& a, const Fp& b) {
        u32 t[10];
#pragma unroll
        for (int i = 0; i < 10; i++) t[i] = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            mad_row(t, a.l, b.l[i]);
            u32 m = t[0] * P::inv();
            mad_row(t, P::mod(), m);
#pragma unroll
            for (int j = 0; j < 9; j++) t[j] = t[j + 1];
            t[9] = 0;
        }
        Fp r;
#pragma unroll
        for (int i = 0; i < 8; i++) r.l[i] = t[i];
        return reduce_once(r, t[8]);
    }

    static __device__ __forceinline__ Fp sqr(const Fp& a) { return mul(a, a); }

    // 1/a = a^(p-2) (0 for 0), by square-and-multiply from the top bit.
    // About 380 multiplications: for the few inversions of a table build,
    // not for inner loops.
    static __device__ Fp inv(const Fp& a) {
        u32 e[8];
#pragma unroll
        for (int i = 0; i < 8; i++) e[i] = P::mod()[i];
        e[0] -= 2;  // the moduli are odd and far above 2: no borrow
        Fp acc = one();
        for (int i = 255; i >= 0; i--) {
            acc = sqr(acc);
            if ((e[i / 32] >> (i % 32)) & 1) acc = mul(acc, a);
        }
        return acc;
    }

    // Canonical integer to Montgomery form and back.
    static __device__ __forceinline__ Fp to_mont(const Fp& a) {
        Fp r2;
#pragma unroll
        for (int i = 0; i < 8; i++) r2.l[i] = P::r2()[i];
        return mul(a, r2);
    }

    static __device__ __forceinline__ Fp from_mont(const Fp& a) {
        Fp one_raw = zero();
        one_raw.l[0] = 1;
        return mul(a, one_raw);
    }
};

typedef Fp<FrP> Fr;
typedef Fp<FqP> Fq;

// base^e for a 32-bit exponent, square and multiply.
__device__ __forceinline__ Fr fr_pow(Fr base, u32 e) {
    Fr acc = Fr::one();
    while (e) {
        if (e & 1) acc = Fr::mul(acc, base);
        base = Fr::sqr(base);
        e >>= 1;
    }
    return acc;
}
