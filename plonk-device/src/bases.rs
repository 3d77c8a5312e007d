//! An SRS's bases resident on a kernel backend (the GPU, or its CPU
//! emulation in tests): the device backend's commitments, and the engine
//! commitment scheme's MSMs.

use std::io;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1};
use halo2_proofs::poly::commitment::Params;
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_proofs::SerdeFormat;
use zkfarm_kernels::backend::Backend;
use zkfarm_kernels::layout::AFFINE_WORDS;
use zkfarm_kernels::msm::{table_window, table_windows, Msm};

use zkfarm_plonk::Basis;

/// Both bases of one (SRS, k), uploaded once.
pub struct DeviceBases<B: Backend> {
    monomial: Msm<B>,
    lagrange: Msm<B>,
}

impl<B: Backend> DeviceBases<B> {
    /// Uploads the monomial and Lagrange bases of `kzg` to `backend`.
    pub fn upload(backend: Arc<B>, kzg: &ParamsKZG<Bn256>) -> Result<Self> {
        Self::upload_with(backend, kzg, false)
    }

    /// The same, and with `tables` each basis also gets a table of its
    /// windows' multiples ([`Msm::with_table`]): one window of buckets per
    /// MSM, for [`table_bytes`] more device memory.
    pub fn upload_with(backend: Arc<B>, kzg: &ParamsKZG<Bn256>, tables: bool) -> Result<Self> {
        let [monomial, lagrange] = raw_bases(kzg)?;
        let what = |set: &str| format!("uploading the {set} bases of k = {} to {}", kzg.k(), backend.name());
        let upload = |words: &[u32], set: &str| {
            let msm = Msm::from_words(backend.clone(), words).with_context(|| what(set))?;
            if !tables {
                return Ok(msm);
            }
            let c = table_window(msm.len());
            msm.with_table(c).with_context(|| format!("building the {set} bases' table of {c}-bit windows"))
        };
        Ok(DeviceBases { monomial: upload(&monomial, "monomial")?, lagrange: upload(&lagrange, "Lagrange")? })
    }
}

/// Device memory the tables of both bases of 2^k points take.
pub fn table_bytes(k: u32) -> usize {
    let n = 1usize << k;
    2 * n * table_windows(table_window(n)) as usize * AFFINE_WORDS * 4
}

impl<B: Backend> DeviceBases<B> {
    pub fn backend(&self) -> &Arc<B> {
        self.monomial.backend()
    }

    /// Points per basis.
    pub fn len(&self) -> usize {
        self.monomial.len()
    }

    pub fn is_empty(&self) -> bool {
        self.monomial.is_empty()
    }

    /// `Σ scalars[i]·bases[i]` over the first `scalars.len()` bases of `set`.
    pub fn msm(&self, set: Basis, scalars: &[Fr]) -> Result<G1> {
        self.of(set).msm(scalars)
    }

    /// The same with the `n` scalars already on the device.
    pub fn msm_device(&self, set: Basis, scalars: &B::Buf, n: usize) -> Result<G1> {
        self.of(set).msm_device(scalars, n)
    }

    fn of(&self, set: Basis) -> &Msm<B> {
        match set {
            Basis::Monomial => &self.monomial,
            Basis::Lagrange => &self.lagrange,
        }
    }
}

/// Both bases as device words. halo2-axiom keeps the Lagrange basis
/// private but writes it in its raw serialisation (k, then the monomial
/// points, then the Lagrange points, each x then y in Montgomery form),
/// which is the kernels' own layout; reading it there avoids recomputing it
/// by an FFT over G1.
fn raw_bases(kzg: &ParamsKZG<Bn256>) -> Result<[Vec<u32>; 2]> {
    let points = kzg.n() as usize;
    let mut sink = Capture { skip: 4, bases: [Vec::new(), Vec::new()], points, partial: Vec::new() };
    kzg.write_custom(&mut sink, SerdeFormat::RawBytesUnchecked).context("reading the SRS's raw bases")?;
    let [monomial, lagrange] = sink.bases;
    let want = points * AFFINE_WORDS;
    ensure!(monomial.len() == want && lagrange.len() == want, "the SRS's raw serialisation has an unexpected size");
    Ok([monomial, lagrange])
}

/// Keeps the two point arrays of a raw `ParamsKZG` serialisation as words,
/// skipping the leading k and ignoring the trailing G2 points.
struct Capture {
    skip: usize,
    bases: [Vec<u32>; 2],
    points: usize,
    /// Bytes of a word split across writes.
    partial: Vec<u8>,
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let skipped = self.skip.min(buf.len());
        self.skip -= skipped;
        let mut data = &buf[skipped..];
        let cap = self.points * AFFINE_WORDS;
        while !data.is_empty() {
            let set = if self.bases[0].len() < cap { 0 } else { 1 };
            let room = cap - self.bases[set].len();
            if room == 0 {
                break;
            }
            if self.partial.is_empty() && data.len() >= 4 {
                // Whole words, the usual case: halo2 writes whole field elements.
                let words = (data.len() / 4).min(room);
                let (head, rest) = data.split_at(words * 4);
                self.bases[set].extend(head.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                data = rest;
                continue;
            }
            self.partial.push(data[0]);
            data = &data[1..];
            if self.partial.len() == 4 {
                let w = u32::from_le_bytes([self.partial[0], self.partial[1], self.partial[2], self.partial[3]]);
                self.bases[set].push(w);
                self.partial.clear();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2_proofs::arithmetic::g_to_lagrange;
    use halo2_proofs::halo2curves::group::prime::PrimeCurveAffine;
    use halo2_proofs::poly::commitment::ParamsProver;
    use rand::SeedableRng;
    use zkfarm_kernels::layout::affine_words;

    #[test]
    fn raw_bases_are_the_monomial_and_lagrange_points() {
        let k = 5;
        let kzg = ParamsKZG::<Bn256>::setup(k, rand_chacha::ChaCha20Rng::seed_from_u64(1));
        let [monomial, lagrange] = raw_bases(&kzg).unwrap();
        assert_eq!(monomial, affine_words(kzg.get_g()).into_owned());
        let g_lagrange = g_to_lagrange(kzg.get_g().iter().map(|p| p.to_curve()).collect(), k);
        assert_eq!(lagrange, affine_words(&g_lagrange).into_owned());
    }
}
