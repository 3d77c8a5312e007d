//! The NTT driver and kernels against halo2-axiom's `best_fft`: forward,
//! inverse and coset transforms, round trips and batches of columns, on the
//! CPU emulation of the kernels and on the GPU where there is one.

mod common;

use std::sync::Arc;

use halo2_proofs::arithmetic::best_fft;
use halo2_proofs::fft::recursive::FFTData;
use halo2curves::bn256::Fr;
use halo2curves::ff::{Field, PrimeField};
use rand::SeedableRng;
use zkfarm_kernels::backend::Backend;
use zkfarm_kernels::ntt::Ntt;
use zkfarm_kernels::twiddles::omega;

/// halo2's transform of `a` with root `w`.
fn reference(a: &[Fr], w: Fr, log_n: u32) -> Vec<Fr> {
    let mut out = a.to_vec();
    let data = FFTData::new(a.len(), w, w.invert().unwrap());
    best_fft(&mut out, w, log_n, &data, false);
    out
}

fn random(n: usize, rng: &mut impl rand::Rng) -> Vec<Fr> {
    (0..n).map(|_| Fr::random(&mut *rng)).collect()
}

fn check<B: Backend>(backend: Arc<B>, max_log_n: u32) {
    let ntt = Ntt::new(backend);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(31);
    let g = Fr::MULTIPLICATIVE_GENERATOR;
    for log_n in 0..=max_log_n {
        let n = 1usize << log_n;
        let a = random(n, &mut rng);
        let w = omega(log_n);

        let mut fwd = a.clone();
        ntt.forward(&mut fwd, log_n).unwrap();
        assert_eq!(fwd, reference(&a, w, log_n), "forward 2^{log_n}");

        let mut back = fwd.clone();
        ntt.inverse(&mut back, log_n).unwrap();
        assert_eq!(back, a, "inverse of forward 2^{log_n}");

        let n_inv = Fr::from(n as u64).invert().unwrap();
        let want: Vec<Fr> = reference(&a, w.invert().unwrap(), log_n).iter().map(|x| x * n_inv).collect();
        let mut inv = a.clone();
        ntt.inverse(&mut inv, log_n).unwrap();
        assert_eq!(inv, want, "inverse 2^{log_n}");

        let shifted: Vec<Fr> = a.iter().zip(powers(g, n)).map(|(x, p)| x * p).collect();
        let mut coset = a.clone();
        ntt.coset_forward(&mut coset, log_n, g).unwrap();
        assert_eq!(coset, reference(&shifted, w, log_n), "coset 2^{log_n}");
    }
}

fn powers(g: Fr, n: usize) -> impl Iterator<Item = Fr> {
    std::iter::successors(Some(Fr::ONE), move |p| Some(p * g)).take(n)
}

/// Several columns in one launch equal each column on its own.
fn check_batch<B: Backend>(backend: Arc<B>, log_n: u32, cols: usize) {
    let ntt = Ntt::new(backend);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(32);
    let n = 1usize << log_n;
    let a = random(n * cols, &mut rng);
    let mut batch = a.clone();
    ntt.forward(&mut batch, log_n).unwrap();
    for (c, col) in a.chunks(n).enumerate() {
        assert_eq!(&batch[c * n..(c + 1) * n], reference(col, omega(log_n), log_n).as_slice(), "column {c}");
    }
    ntt.inverse(&mut batch, log_n).unwrap();
    assert_eq!(batch, a, "batched round trip");
    let err = ntt.forward(&mut batch[..n + 1], log_n).unwrap_err().to_string();
    assert!(err.contains("not whole columns"), "{err}");
}

#[test]
fn ntt_on_the_emulator() {
    check(common::emu(), 12);
    check_batch(common::emu(), 11, 3);
    // Blocks pack several groups: a block that the last pairs fill in part.
    check_batch(common::emu(), 4, 5);
    check_batch(common::emu(), 13, 3);
}

#[test]
fn ntt_on_the_gpu() {
    let Some(b) = common::gpu() else { return };
    check(b.clone(), 24);
    check_batch(b, 20, 5);
}
