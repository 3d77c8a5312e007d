// BN254 base field (Fq) and scalar field (Fr) in Montgomery form, R = 2^256,
// on eight 32-bit little-endian limbs: the same bytes as halo2curves' four
// 64-bit Montgomery limbs, so buffers move between host and device as they are.
//
// Multiplication is CIOS Montgomery with 64-bit accumulators.
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

template <class P>
struct Fp {
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
        long long borrow = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            long long d = (long long)a.l[i] - (long long)P::mod()[i] + borrow;
            t.l[i] = (u32)d;
            borrow = d >> 32;
        }
        // Keep a when it was below p: a borrow out that the carry does not cover.
        bool below = (borrow != 0) && (carry == 0);
        return below ? a : t;
    }

    static __device__ __forceinline__ Fp add(const Fp& a, const Fp& b) {
        Fp r;
        u64 c = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            c += (u64)a.l[i] + b.l[i];
            r.l[i] = (u32)c;
            c >>= 32;
        }
        return reduce_once(r, (u32)c);
    }

    static __device__ __forceinline__ Fp sub(const Fp& a, const Fp& b) {
        Fp r;
        long long borrow = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            long long d = (long long)a.l[i] - (long long)b.l[i] + borrow;
            r.l[i] = (u32)d;
            borrow = d >> 32;
        }
        if (borrow) {
            u64 c = 0;
#pragma unroll
            for (int i = 0; i < 8; i++) {
                c += (u64)r.l[i] + P::mod()[i];
                r.l[i] = (u32)c;
                c >>= 32;
            }
        }
        return r;
    }

    static __device__ __forceinline__ Fp neg(const Fp& a) { return a.is_zero() ? a : sub(zero(), a); }

    // CIOS Montgomery multiplication: a * b / 2^256 mod p.
    static __device__ __forceinline__ Fp mul(const Fp& a, const Fp& b) {
        u32 t[10];
#pragma unroll
        for (int i = 0; i < 10; i++) t[i] = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            u64 c = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                c += (u64)t[j] + (u64)a.l[j] * b.l[i];
                t[j] = (u32)c;
                c >>= 32;
            }
            c += t[8];
            t[8] = (u32)c;
            t[9] = (u32)(c >> 32);
            u32 m = t[0] * P::inv();
            c = (u64)t[0] + (u64)m * P::mod()[0];
            c >>= 32;
#pragma unroll
            for (int j = 1; j < 8; j++) {
                c += (u64)t[j] + (u64)m * P::mod()[j];
                t[j - 1] = (u32)c;
                c >>= 32;
            }
            c += t[8];
            t[7] = (u32)c;
            t[8] = t[9] + (u32)(c >> 32);
        }
        Fp r;
#pragma unroll
        for (int i = 0; i < 8; i++) r.l[i] = t[i];
        return reduce_once(r, t[8]);
    }

    static __device__ __forceinline__ Fp sqr(const Fp& a) { return mul(a, a); }

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
