//! The MSM driver and kernels against halo2curves' MSM: on the CPU
//! emulation of the kernels everywhere, and on the GPU where there is one
//! (`ZKFARM_REQUIRE_GPU=1` makes a missing GPU a failure).

mod common;

use std::sync::Arc;

use halo2curves::bn256::{Fr, G1Affine, G1};
use halo2curves::group::Curve;
use halo2curves::msm::msm_best;
use rand::SeedableRng;
use zkfarm_kernels::backend::Backend;
use zkfarm_kernels::msm::{table_windows, Msm, Tuning};
use zkfarm_kernels::msm_plan;

/// Every scalar set at every size, against `msm_best`, through one set of
/// resident bases (so prefixes of the bases are exercised too).
fn check_sizes<B: Backend>(backend: Arc<B>, sizes: &[usize], tuning: Tuning, seed: u64) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let max = *sizes.iter().max().unwrap();
    let bases = common::points(max, &mut rng);
    let msm = Msm::new(backend, &bases).unwrap().with_tuning(tuning).unwrap();
    for &n in sizes {
        for (name, scalars) in common::scalar_sets(n, &mut rng) {
            let want = msm_best(&scalars, &bases[..n]).to_affine();
            let got = msm.msm(&scalars).unwrap_or_else(|e| panic!("n = {n}, {name}: {e:#}")).to_affine();
            assert_eq!(got, want, "n = {n}, {name}, {tuning:?}");
        }
    }
}

/// Repeated points and one bucket that holds most pairs.
fn check_heavy_bucket<B: Backend>(backend: Arc<B>, n: usize) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(21);
    let p = common::points(1, &mut rng)[0];
    let mut bases = vec![p; n];
    bases[n / 2] = common::points(1, &mut rng)[0];
    let scalars: Vec<Fr> = (0..n as u64).map(|i| if i % 10 == 0 { Fr::from(i) } else { Fr::from(77) }).collect();
    let msm = Msm::new(backend, &bases).unwrap();
    assert_eq!(msm.msm(&scalars).unwrap().to_affine(), msm_best(&scalars, &bases).to_affine());
}

/// The device's bucket sums are the host model's, bucket by bucket.
fn check_buckets_against_the_model<B: Backend>(backend: Arc<B>) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(22);
    let n = 300;
    let bases = common::points(n, &mut rng);
    let msm = Msm::new(backend, &bases).unwrap();
    for (name, scalars) in common::scalar_sets(n, &mut rng) {
        let got = msm.bucket_sums(&scalars).unwrap();
        let bits = msm_plan::folded_bits(&scalars);
        if bits == 0 {
            assert!(got.is_none(), "{name}: all-zero scalars have no buckets");
            continue;
        }
        let (plan, sums) = got.unwrap();
        assert_eq!(plan, msm_plan::Plan::new(n, bits), "{name}");
        let sorted = msm_plan::sort(msm_plan::pairs(&scalars, &plan));
        let want = msm_plan::accumulate(&sorted, &bases, &plan, 4);
        let to_affine = |v: &[G1]| v.iter().map(|p| p.to_affine()).collect::<Vec<G1Affine>>();
        assert_eq!(to_affine(&sums), to_affine(&want), "{name}");
    }
}

/// MSMs through a table of multiples built on the device: the table is
/// the host's, point by point, and every scalar set at every size (prefixes
/// included) gives halo2curves' result, as do the bucket sums the model's.
fn check_table<B: Backend>(backend: Arc<B>, sizes: &[usize], c: u32, tuning: Tuning, seed: u64) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let max = *sizes.iter().max().unwrap();
    let mut bases = common::points(max, &mut rng);
    bases[max / 2] = G1Affine::default(); // the identity among the bases
    let msm = Msm::new(backend, &bases).unwrap().with_tuning(tuning).unwrap().with_table(c).unwrap();
    let table = msm.table_points().unwrap().unwrap();
    assert!(
        table == msm_plan::table(&bases, c, table_windows(c)),
        "the device's table of width {c} differs from the host's"
    );
    assert_eq!(msm.table_bytes(), max * table_windows(c) as usize * 64);
    for &n in sizes {
        for (name, scalars) in common::scalar_sets(n, &mut rng) {
            let want = msm_best(&scalars, &bases[..n]).to_affine();
            let got = msm.msm(&scalars).unwrap_or_else(|e| panic!("n = {n}, {name}: {e:#}")).to_affine();
            assert_eq!(got, want, "n = {n}, {name}, table of width {c}, {tuning:?}");
            if n == max {
                let bits = msm_plan::folded_bits(&scalars);
                let Some((plan, sums)) = msm.bucket_sums(&scalars).unwrap() else {
                    assert_eq!(bits, 0, "{name}");
                    continue;
                };
                // Scalars narrower than the window skip the table.
                let want = if bits + 1 >= c {
                    let digits = msm_plan::Plan::with_window(bits, c);
                    assert_eq!(plan, msm_plan::Plan { windows: 1, ..digits }, "{name}");
                    let sorted = msm_plan::sort(msm_plan::table_pairs(&scalars, &digits, max));
                    msm_plan::accumulate(&sorted, &table, &plan, 4)
                } else {
                    assert_eq!(plan, msm_plan::Plan::new(n, bits), "{name}");
                    msm_plan::accumulate(&msm_plan::sort(msm_plan::pairs(&scalars, &plan)), &bases, &plan, 4)
                };
                assert_eq!(sums.len(), want.len(), "{name}");
                assert!(sums.iter().zip(&want).all(|(a, b)| a.to_affine() == b.to_affine()), "{name}: bucket sums");
            }
        }
    }
}

fn errors_are_reported<B: Backend>(backend: Arc<B>) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(23);
    let msm = Msm::new(backend, &common::points(4, &mut rng)).unwrap();
    let err = msm.msm(&[Fr::from(1); 5]).unwrap_err().to_string();
    assert!(err.contains("5 scalars but only 4 resident bases"), "{err}");
    assert_eq!(msm.msm(&[]).unwrap(), G1::default());
    let err = msm.with_table(30).err().expect("a 30-bit window is refused").to_string();
    assert!(err.contains("outside 2..=24"), "{err}");
}

#[test]
fn msm_on_the_emulator() {
    let b = common::emu();
    check_sizes(b.clone(), &[1, 2, 3, 255, 256, 1031], Tuning::default(), 1);
    // Narrow segments and chunks: many levels, partial sums and reductions.
    check_sizes(b.clone(), &[3, 256, 1031], Tuning { seg: 4, chunk: 3, group: 2, window: 0 }, 2);
    // Windows chosen by hand, narrower and wider than the default.
    for window in [1, 7, 13, 20] {
        check_sizes(b.clone(), &[3, 1031], Tuning { window, ..Tuning::default() }, 5);
    }
    check_heavy_bucket(b.clone(), 5000);
    check_buckets_against_the_model(b.clone());
    check_table(b.clone(), &[1, 3, 256, 1031], 11, Tuning::default(), 3);
    check_table(b.clone(), &[2, 300], 5, Tuning { seg: 4, chunk: 3, group: 2, window: 0 }, 4);
    errors_are_reported(b);
}

#[test]
fn msm_on_the_gpu() {
    let Some(b) = common::gpu() else { return };
    check_sizes(b.clone(), &[1, 2, 3, 255, 256, (1 << 10) + 7, 1 << 16, 1 << 20], Tuning::default(), 1);
    check_sizes(b.clone(), &[3, 256, 1031, 1 << 16], Tuning { seg: 4, chunk: 3, group: 2, window: 0 }, 2);
    check_heavy_bucket(b.clone(), 1 << 20);
    check_buckets_against_the_model(b.clone());
    check_table(b.clone(), &[1, 3, 1031, 1 << 16, 1 << 20], 18, Tuning::default(), 3);
    check_table(b.clone(), &[2, 300, 1 << 16], 5, Tuning { seg: 4, chunk: 3, group: 2, window: 0 }, 4);
    errors_are_reported(b);
}
