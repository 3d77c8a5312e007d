//! Every kernel source compiles for sm_80 and sm_90 through NVRTC, which
//! needs no GPU. `scripts/test.sh` installs NVRTC and sets
//! `ZKFARM_REQUIRE_NVRTC=1`, so in CI a missing NVRTC fails rather than skips.

use zkfarm_kernels::source::{compile, nvrtc_available, KERNELS, UNITS};

/// Kernels whose global reads are all of whole field elements or points.
const WHOLE_ELEMENT_READERS: &[&str] = &[
    "fr_add",
    "fr_sub",
    "fr_mul",
    "fr_scale",
    "fr_powers",
    "ntt_bit_reverse",
    "ntt_pass",
    "ntt_coset_shift",
    "msm_fold",
    "msm_window_chunks",
    "msm_reduce",
];

#[test]
fn every_unit_compiles_for_sm80_and_sm90() {
    if !nvrtc_available() {
        assert!(
            std::env::var_os("ZKFARM_REQUIRE_NVRTC").is_none(),
            "NVRTC is required here but libnvrtc.so.13 cannot be loaded (LD_LIBRARY_PATH?)"
        );
        eprintln!("skipped: NVRTC is not installed (scripts/test.sh installs it)");
        return;
    }
    for arch in ["sm_80", "sm_90"] {
        for (name, src) in UNITS {
            let ptx = compile(name, src, arch).unwrap_or_else(|e| panic!("{e:#}"));
            let text = ptx.to_src();
            assert!(text.contains(&format!(".target {arch}")), "{name}: PTX for the wrong target");
            let wanted = KERNELS.iter().find(|(n, _)| n == name).map(|(_, k)| *k).unwrap_or(&[]);
            for k in wanted {
                assert!(text.contains(&format!(".entry {k}(")), "{name} for {arch} lacks kernel {k}");
            }
            // Field elements are 16-byte aligned, so elements move to and
            // from global memory in 128-bit stores, and the kernels that
            // read only whole elements read them in 128-bit loads.
            assert!(text.contains("st.global.v4.u32"), "{name} for {arch}: no 128-bit stores");
            for entry in text.split(".entry ").skip(1) {
                let kernel = entry.split('(').next().unwrap_or_default();
                if WHOLE_ELEMENT_READERS.contains(&kernel) {
                    assert!(entry.contains("ld.global.v4.u32"), "{kernel} for {arch}: no 128-bit loads");
                    assert!(!entry.contains("ld.global.u32"), "{kernel} for {arch}: reads elements word by word");
                }
            }
            // Field arithmetic runs on PTX carry chains (NVRTC assembles
            // the inline PTX, so a malformed chain fails above).
            if std::env::var_os("ZKFARM_PORTABLE_FIELD").is_none() {
                for op in ["addc.cc.u32", "subc.cc.u32", "madc.hi.cc.u32"] {
                    assert!(text.contains(op), "{name} for {arch}: no {op} in the PTX");
                }
            }
        }
    }
}

#[test]
fn field_constants_match_halo2curves() {
    use halo2curves::bn256::{Fq, Fr};
    use halo2curves::ff::{Field, PrimeField};
    use halo2curves::serde::SerdeObject;

    let src = concat!(include_str!("../cuda/field.cuh"), include_str!("../cuda/msm.cu"));
    let constant = |name: &str| -> Vec<u8> {
        let line = src.lines().find(|l| l.contains(&format!(" {name}[8]"))).unwrap_or_else(|| panic!("{name}"));
        let body = &line[line.find('{').unwrap() + 1..line.find('}').unwrap()];
        body.split(',')
            .flat_map(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).unwrap().to_le_bytes())
            .collect()
    };
    let define = |name: &str| -> u32 {
        let line = src.lines().find(|l| l.starts_with(&format!("#define {name} "))).unwrap();
        u32::from_str_radix(line.split_whitespace().nth(2).unwrap().trim_start_matches("0x").trim_end_matches('u'), 16)
            .unwrap()
    };
    fn check<F: PrimeField + SerdeObject>(modulus: Vec<u8>, r2: Vec<u8>, one: Vec<u8>, inv: u32, modulus_hex: &str) {
        let mut want = hex_le(modulus_hex);
        want.resize(32, 0);
        assert_eq!(modulus, want, "modulus");
        // One in Montgomery form is the raw limbs of F::ONE.
        assert_eq!(one, F::ONE.to_raw_bytes(), "Montgomery one");
        // R^2 mod p, as an integer: the canonical bytes of 2^512.
        assert_eq!(r2, F::from(2).pow([512]).to_repr().as_ref().to_vec(), "R^2");
        let p0 = u32::from_le_bytes(modulus[..4].try_into().unwrap());
        assert_eq!(p0.wrapping_mul(inv), u32::MAX, "-p^-1 mod 2^32");
    }
    check::<Fr>(constant("FR_MOD"), constant("FR_R2"), constant("FR_ONE"), define("FR_INV"), Fr::MODULUS);
    check::<Fq>(constant("FQ_MOD"), constant("FQ_R2"), constant("FQ_ONE"), define("FQ_INV"), Fq::MODULUS);
    // The MSM's fold threshold (p - 1) / 2, as a canonical integer.
    assert_eq!(constant("FR_HALF"), (-Fr::ONE * Fr::TWO_INV).to_repr().as_ref().to_vec(), "(p - 1) / 2");
}

/// Little-endian bytes of a 0x-prefixed big-endian hex number.
fn hex_le(h: &str) -> Vec<u8> {
    let h = h.trim_start_matches("0x");
    let h = if h.len() % 2 == 1 { format!("0{h}") } else { h.to_string() };
    let mut b: Vec<u8> = (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect();
    b.reverse();
    b
}
