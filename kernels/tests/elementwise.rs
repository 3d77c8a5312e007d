//! The element-wise kernels against halo2curves' field arithmetic, on the
//! CPU emulation and on the GPU where there is one.

mod common;

use std::sync::Arc;

use halo2curves::bn256::Fr;
use halo2curves::ff::Field;
use rand::SeedableRng;
use zkfarm_kernels::backend::{blocks, upload_fr, Arg, Backend, BLOCK};
use zkfarm_kernels::layout::fr_from_words;

fn upload<B: Backend>(b: &B, v: &[Fr]) -> B::Buf {
    upload_fr(b, v).unwrap()
}

fn download<B: Backend>(b: &B, buf: &B::Buf, n: usize) -> Vec<Fr> {
    let mut w = vec![0u32; 8 * n];
    b.download(buf, 0, &mut w).unwrap();
    fr_from_words(&w).unwrap()
}

fn check<B: Backend>(b: Arc<B>) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    let n = 4099usize;
    let mut x: Vec<Fr> = (0..n).map(|_| Fr::random(&mut rng)).collect();
    let y: Vec<Fr> = (0..n).map(|_| Fr::random(&mut rng)).collect();
    // Edge values: zero, one, minus one, equal operands.
    x[0] = Fr::ZERO;
    x[1] = Fr::ONE;
    x[2] = -Fr::ONE;
    x[3] = y[3];
    let (dx, dy) = (upload(&*b, &x), upload(&*b, &y));
    let grid = blocks(n, BLOCK).unwrap();
    type Op = fn(Fr, Fr) -> Fr;
    let ops: [(&str, Op); 3] = [("fr_add", |p, q| p + q), ("fr_sub", |p, q| p - q), ("fr_mul", |p, q| p * q)];
    for (kernel, op) in ops {
        let out = b.alloc(8 * n).unwrap();
        b.launch(kernel, grid, BLOCK, &[Arg::Buf(&out), Arg::Buf(&dx), Arg::Buf(&dy), Arg::U32(n as u32)]).unwrap();
        let want: Vec<Fr> = x.iter().zip(&y).map(|(p, q)| op(*p, *q)).collect();
        assert_eq!(download(&*b, &out, n), want, "{kernel}");
    }

    let c = upload(&*b, &[y[7]]);
    let data = upload(&*b, &x);
    b.launch("fr_scale", grid, BLOCK, &[Arg::Buf(&data), Arg::Buf(&c), Arg::U32(n as u32)]).unwrap();
    assert_eq!(download(&*b, &data, n), x.iter().map(|v| v * y[7]).collect::<Vec<_>>(), "fr_scale");
}

#[test]
fn elementwise_on_the_emulator() {
    check(common::emu());
}

#[test]
fn elementwise_on_the_gpu() {
    if let Some(b) = common::gpu() {
        check(b);
    }
}
