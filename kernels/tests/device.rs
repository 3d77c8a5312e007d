//! Kernels run on the GPU against halo2curves. Without a CUDA driver and
//! device these tests print why and pass; on the GPU machine they run.

use cudarc::driver::{LaunchConfig, PushKernelArg};
use halo2curves::bn256::Fr;
use halo2curves::ff::Field;
use halo2curves::serde::SerdeObject;
use rand::SeedableRng;
use zkfarm_kernels::source::{compile, UNITS};

/// Fr elements as the device holds them: raw Montgomery limbs.
fn to_words(v: &[Fr]) -> Vec<u32> {
    v.iter()
        .flat_map(|x| x.to_raw_bytes().chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>())
        .collect()
}

fn from_words(w: &[u32]) -> Vec<Fr> {
    w.chunks(8)
        .map(|c| {
            let bytes: Vec<u8> = c.iter().flat_map(|x| x.to_le_bytes()).collect();
            Fr::from_raw_bytes(&bytes).expect("a reduced field element")
        })
        .collect()
}

#[test]
fn elementwise_kernels_match_halo2curves() {
    let ctx = match zkfarm_kernels::device::open() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("skipped: {e:#}");
            return;
        }
    };
    let (major, minor) = ctx.compute_capability().unwrap();
    let arch: &'static str = Box::leak(format!("sm_{major}{minor}").into_boxed_str());
    let (name, src) = UNITS.iter().find(|(n, _)| *n == "elementwise").unwrap();
    let module = ctx.load_module(compile(name, src, arch).unwrap()).unwrap();
    let stream = ctx.default_stream();

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    let n = 4099usize;
    let mut a: Vec<Fr> = (0..n).map(|_| Fr::random(&mut rng)).collect();
    let b: Vec<Fr> = (0..n).map(|_| Fr::random(&mut rng)).collect();
    // Edge values: zero, one, minus one, equal operands.
    a[0] = Fr::ZERO;
    a[1] = Fr::ONE;
    a[2] = -Fr::ONE;
    a[3] = b[3];
    let da = stream.clone_htod(&to_words(&a)).unwrap();
    let db = stream.clone_htod(&to_words(&b)).unwrap();
    type Op = fn(Fr, Fr) -> Fr;
    let ops: [(&str, Op); 3] = [("fr_add", |x, y| x + y), ("fr_sub", |x, y| x - y), ("fr_mul", |x, y| x * y)];
    for (kernel, op) in ops {
        let f = module.load_function(kernel).unwrap();
        let mut out = stream.alloc_zeros::<u32>(8 * n).unwrap();
        let len = n as u32;
        let mut launch = stream.launch_builder(&f);
        launch.arg(&mut out).arg(&da).arg(&db).arg(&len);
        // SAFETY: the buffers hold n elements of 8 words each, as the kernel reads and writes.
        unsafe { launch.launch(LaunchConfig::for_num_elems(len)) }.unwrap();
        let got = from_words(&stream.clone_dtoh(&out).unwrap());
        let want: Vec<Fr> = a.iter().zip(&b).map(|(x, y)| op(*x, *y)).collect();
        assert_eq!(got, want, "{kernel}");
    }
}
