//! Roots of unity for the NTT over BN254's scalar field. The twiddle tables
//! themselves are computed on the device (`ntt.rs`).

use halo2curves::bn256::Fr;
use halo2curves::ff::PrimeField;

/// The primitive 2^log_n-th root of unity halo2 uses for a domain of that size.
pub fn omega(log_n: u32) -> Fr {
    assert!(log_n <= Fr::S, "the scalar field has roots of unity up to 2^{}", Fr::S);
    let mut w = Fr::ROOT_OF_UNITY;
    for _ in log_n..Fr::S {
        w = w.square();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2_proofs::arithmetic::best_fft;
    use halo2_proofs::fft::recursive::FFTData;
    use halo2curves::ff::Field;
    use rand::SeedableRng;

    /// `[w^0, w^1, ..., w^(n/2 - 1)]`: the twiddles of every radix-2 stage.
    fn twiddles(w: Fr, log_n: u32) -> Vec<Fr> {
        let half = (1usize << log_n) / 2;
        let mut out = Vec::with_capacity(half);
        let mut x = Fr::ONE;
        for _ in 0..half {
            out.push(x);
            x *= w;
        }
        out
    }

    /// A textbook iterative radix-2 NTT over the twiddle table, the schedule
    /// the device kernels follow.
    fn ntt(a: &mut [Fr], log_n: u32) {
        let n = a.len();
        for i in 0..n {
            let j = (i as u32).reverse_bits() >> (32 - log_n) as usize;
            if i < j as usize {
                a.swap(i, j as usize);
            }
        }
        let tw = twiddles(omega(log_n), log_n);
        let mut len = 2;
        while len <= n {
            let step = n / len;
            for start in (0..n).step_by(len) {
                for k in 0..len / 2 {
                    let t = a[start + k + len / 2] * tw[k * step];
                    let u = a[start + k];
                    a[start + k] = u + t;
                    a[start + k + len / 2] = u - t;
                }
            }
            len <<= 1;
        }
    }

    #[test]
    fn omega_has_the_right_order() {
        for log_n in [1, 2, 10, 20, Fr::S] {
            let w = omega(log_n);
            assert_eq!(w.pow([1u64 << log_n]), Fr::ONE);
            assert_eq!(w.pow([1u64 << (log_n - 1)]), -Fr::ONE);
        }
    }

    #[test]
    fn the_twiddle_schedule_matches_halo2_best_fft() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        for log_n in 1..=10 {
            let data: Vec<Fr> = (0..1usize << log_n).map(|_| Fr::random(&mut rng)).collect();
            let mut ours = data.clone();
            ntt(&mut ours, log_n);
            let mut theirs = data;
            let w = omega(log_n);
            let data = FFTData::new(1 << log_n, w, w.invert().unwrap());
            best_fft(&mut theirs, w, log_n, &data, false);
            assert_eq!(ours, theirs, "n = 2^{log_n}");
        }
    }
}
