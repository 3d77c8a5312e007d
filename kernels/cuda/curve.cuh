// BN254 G1 (y^2 = x^3 + 3 over Fq) in XYZZ coordinates: x = X/ZZ,
// y = Y/ZZZ with ZZ^3 = ZZZ^2; ZZ = 0 is the identity. Affine points have
// halo2curves' G1Affine layout (x, y in Montgomery form), (0, 0) being the
// identity. XYZZ suits bucket sums: a mixed addition costs 8M + 2S and
// needs no inversion.
#pragma once
#include "field.cuh"

struct Affine {
    Fq x, y;

    __device__ __forceinline__ bool is_identity() const { return x.is_zero() && y.is_zero(); }

    __device__ __forceinline__ Affine neg() const {
        Affine r = *this;
        if (!is_identity()) r.y = Fq::neg(y);
        return r;
    }
};

struct Xyzz {
    Fq X, Y, ZZ, ZZZ;

    static __device__ __forceinline__ Xyzz identity() {
        Xyzz r;
        r.X = Fq::one();
        r.Y = Fq::one();
        r.ZZ = Fq::zero();
        r.ZZZ = Fq::zero();
        return r;
    }

    __device__ __forceinline__ bool is_identity() const { return ZZ.is_zero(); }

    static __device__ __forceinline__ Xyzz from_affine(const Affine& p) {
        if (p.is_identity()) return identity();
        Xyzz r;
        r.X = p.x;
        r.Y = p.y;
        r.ZZ = Fq::one();
        r.ZZZ = Fq::one();
        return r;
    }

    // dbl-2008-s-1 (a = 0).
    __device__ __forceinline__ Xyzz dbl() const {
        if (is_identity()) return *this;
        Fq u = Fq::add(Y, Y);
        Fq v = Fq::sqr(u);
        Fq w = Fq::mul(u, v);
        Fq s = Fq::mul(X, v);
        Fq x2 = Fq::sqr(X);
        Fq m = Fq::add(Fq::add(x2, x2), x2);
        Xyzz r;
        r.X = Fq::sub(Fq::sqr(m), Fq::add(s, s));
        r.Y = Fq::sub(Fq::mul(m, Fq::sub(s, r.X)), Fq::mul(w, Y));
        r.ZZ = Fq::mul(v, ZZ);
        r.ZZZ = Fq::mul(w, ZZZ);
        return r;
    }

    // The shared end of both additions (add-2008-s), given P = U2 - U1 != 0,
    // R = S2 - S1, the first point's U1 and S1 and the product of the
    // inputs' ZZ and ZZZ.
    static __device__ __forceinline__ Xyzz sum(const Fq& p, const Fq& r, const Fq& u1, const Fq& s1, const Fq& zz,
                                               const Fq& zzz) {
        Fq pp = Fq::sqr(p);
        Fq ppp = Fq::mul(p, pp);
        Fq qq = Fq::mul(u1, pp);
        Xyzz o;
        o.X = Fq::sub(Fq::sub(Fq::sqr(r), ppp), Fq::add(qq, qq));
        o.Y = Fq::sub(Fq::mul(r, Fq::sub(qq, o.X)), Fq::mul(s1, ppp));
        o.ZZ = Fq::mul(zz, pp);
        o.ZZZ = Fq::mul(zzz, ppp);
        return o;
    }

    // madd-2008-s: this + affine q.
    __device__ __forceinline__ Xyzz add_affine(const Affine& q) const {
        if (q.is_identity()) return *this;
        if (is_identity()) return from_affine(q);
        Fq p = Fq::sub(Fq::mul(q.x, ZZ), X);
        Fq r = Fq::sub(Fq::mul(q.y, ZZZ), Y);
        if (p.is_zero()) return r.is_zero() ? from_affine(q).dbl() : identity();
        return sum(p, r, X, Y, ZZ, ZZZ);
    }

    // add-2008-s: this + q.
    __device__ __forceinline__ Xyzz add(const Xyzz& q) const {
        if (q.is_identity()) return *this;
        if (is_identity()) return q;
        Fq u1 = Fq::mul(X, q.ZZ);
        Fq u2 = Fq::mul(q.X, ZZ);
        Fq s1 = Fq::mul(Y, q.ZZZ);
        Fq s2 = Fq::mul(q.Y, ZZZ);
        Fq p = Fq::sub(u2, u1);
        Fq r = Fq::sub(s2, s1);
        if (p.is_zero()) return r.is_zero() ? dbl() : identity();
        return sum(p, r, u1, s1, Fq::mul(ZZ, q.ZZ), Fq::mul(ZZZ, q.ZZZ));
    }

    // The affine point, (0, 0) for the identity. ZZ^3 = ZZZ^2 gives
    // 1/ZZ = (ZZ/ZZZ)^2, so one inversion serves both coordinates.
    __device__ __forceinline__ Affine to_affine() const {
        Affine a;
        if (is_identity()) {
            a.x = Fq::zero();
            a.y = Fq::zero();
            return a;
        }
        Fq i = Fq::inv(ZZZ);
        Fq zz_inv = Fq::sqr(Fq::mul(ZZ, i));
        a.x = Fq::mul(X, zz_inv);
        a.y = Fq::mul(Y, i);
        return a;
    }

    // this * k for a small k, by double-and-add from the top bit.
    __device__ __forceinline__ Xyzz mul_small(u32 k) const {
        Xyzz acc = identity();
        for (int b = 31; b >= 0; b--) {
            acc = acc.dbl();
            if ((k >> b) & 1) acc = acc.add(*this);
        }
        return acc;
    }
};
