//! The host model of the MSM (`msm_plan`), the specification the kernels
//! follow, against halo2curves' own MSM.

mod common;

use halo2curves::bn256::{Fr, G1Affine, G1};
use halo2curves::group::{Curve, Group};
use halo2curves::msm::msm_best;
use rand::SeedableRng;
use zkfarm_kernels::msm_plan::{msm_model, msm_table_model};

#[test]
fn the_model_matches_halo2curves_msm() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    for n in [1, 2, 3, 255, 256, 1031] {
        let bases = common::points(n, &mut rng);
        for (name, scalars) in common::scalar_sets(n, &mut rng) {
            let want = msm_best(&scalars, &bases);
            for (seg, chunk) in [(4, 1), (5, 7), (32, 64)] {
                let got = msm_model(&scalars, &bases, seg, chunk);
                assert_eq!(got.to_affine(), want.to_affine(), "n = {n}, {name}, seg = {seg}, chunk = {chunk}");
            }
        }
    }
}

#[test]
fn repeated_points_and_one_heavy_bucket() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(12);
    let p = G1Affine::from(G1::random(&mut rng));
    let n = 5000;
    let bases = vec![p; n];
    // Nine tenths of the scalars are one value: one bucket per window
    // holds most pairs and is split across many segments and levels.
    let scalars: Vec<Fr> = (0..n as u64).map(|i| if i % 10 == 0 { Fr::from(i) } else { Fr::from(77) }).collect();
    let want = msm_best(&scalars, &bases);
    assert_eq!(msm_model(&scalars, &bases, 4, 16).to_affine(), want.to_affine());
}

#[test]
fn the_table_model_matches_halo2curves_msm() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(13);
    for n in [1, 3, 256, 1031] {
        let bases = common::points(n, &mut rng);
        for (name, scalars) in common::scalar_sets(n, &mut rng) {
            let want = msm_best(&scalars, &bases).to_affine();
            // Windows narrower and wider than the scalars' bits.
            for (c, seg, chunk) in [(5, 4, 3), (11, 16, 32), (14, 5, 7)] {
                let got = msm_table_model(&scalars, &bases, c, seg, chunk);
                assert_eq!(got.to_affine(), want, "n = {n}, {name}, c = {c}");
            }
        }
    }
}
