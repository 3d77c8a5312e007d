//! The backends a test runs on: the CPU emulation always, and the GPU when
//! this machine has one (the GPU part says why it is skipped otherwise).

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use halo2curves::bn256::{Fr, G1Affine, G1};
use halo2curves::ff::Field;
use halo2curves::group::{Curve, Group};
use rand::Rng;
use zkfarm_kernels::gpu::Gpu;
use zkfarm_kernels_emu::Emu;

pub fn emu() -> Arc<Emu> {
    Arc::new(Emu)
}

/// The GPU, opened once per test binary; `None` (with the reason printed)
/// when there is none.
pub fn gpu() -> Option<Arc<Gpu>> {
    static GPU: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::open() {
        Ok(g) => {
            eprintln!("GPU: {}", g.describe());
            Some(Arc::new(g))
        }
        Err(e) => {
            assert!(
                std::env::var_os("ZKFARM_REQUIRE_GPU").is_none(),
                "ZKFARM_REQUIRE_GPU is set but no GPU opened: {e:#}"
            );
            eprintln!("GPU part skipped: {e:#}");
            None
        }
    })
    .clone()
}

/// n distinct points, cheaply: 64 random ones, then sums of earlier ones.
pub fn points(n: usize, rng: &mut impl Rng) -> Vec<G1Affine> {
    let mut proj: Vec<G1> = (0..n.min(64)).map(|_| G1::random(&mut *rng)).collect();
    while proj.len() < n {
        let (a, b) = (proj[proj.len() - 1], proj[proj.len() - 64]);
        proj.push(a + b);
    }
    let mut aff = vec![G1Affine::default(); n];
    G1::batch_normalize(&proj, &mut aff);
    aff
}

/// The scalar sets ML witnesses and edge cases call for.
pub fn scalar_sets(n: usize, rng: &mut impl Rng) -> Vec<(&'static str, Vec<Fr>)> {
    vec![
        ("random", (0..n).map(|_| Fr::random(&mut *rng)).collect()),
        ("zero", vec![Fr::ZERO; n]),
        ("one", vec![Fr::ONE; n]),
        ("small positive", (0..n as u64).map(|i| Fr::from((i * 2654435761) % 65536)).collect()),
        ("small negative", (0..n as u64).map(|i| -Fr::from(1 + (i * 2654435761) % 65535)).collect()),
        ("mixed sign", (0..n as u64).map(|i| Fr::from(i % 7) - Fr::from(3)).collect()),
        ("all equal", vec![Fr::from(0xdead_beef_u64); n]),
        ("all equal large", vec![-Fr::from(12345) * Fr::from(u64::MAX); n]),
    ]
}
