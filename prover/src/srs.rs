//! The KZG structured reference string (SRS).
//!
//! `zkfarm srs gen --insecure-dev` samples the secret locally: whoever ran it
//! knows the trapdoor and can forge proofs. Such an SRS is labelled insecure
//! in its file header, its id and every receipt made with it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use halo2_proofs::halo2curves::bn256::Bn256;
use halo2_proofs::halo2curves::group::GroupEncoding;
use halo2_proofs::poly::commitment::{Params, ParamsProver};
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use rand::RngCore;

use crate::home;

const MAGIC_DEV: &[u8] = b"ZKFARM-SRS insecure-dev v1\n";
const MAGIC: &[u8] = b"ZKFARM-SRS v1\n";
/// Largest k an SRS may have; 2^26 points is over 4 GiB.
pub const MAX_K: u32 = 26;

pub struct Srs {
    pub params: ParamsKZG<Bn256>,
    /// `insecure-dev:<hash>` or `kzg:<hash>` of the G2 elements, which stay
    /// the same when the SRS is cut down to a smaller k.
    pub id: String,
    pub insecure: bool,
    /// `for_k`'s results.
    by_k: Mutex<HashMap<u32, Arc<ParamsKZG<Bn256>>>>,
}

impl Srs {
    /// Samples a local development SRS. Insecure: the trapdoor is known here.
    pub fn generate_insecure_dev(k: u32, rng: impl RngCore) -> Result<Self> {
        if !(4..=MAX_K).contains(&k) {
            bail!("k must be between 4 and {MAX_K}, got {k}");
        }
        let params = ParamsKZG::<Bn256>::setup(k, rng);
        Ok(Self::from_params(params, true))
    }

    fn from_params(params: ParamsKZG<Bn256>, insecure: bool) -> Self {
        let mut bytes = params.g2().to_bytes().as_ref().to_vec();
        bytes.extend_from_slice(params.s_g2().to_bytes().as_ref());
        let hash = &zkfarm_circuits::model::hash_hex(&bytes)[..16];
        let id = if insecure { format!("insecure-dev:{hash}") } else { format!("kzg:{hash}") };
        Srs { params, id, insecure, by_k: Mutex::default() }
    }

    pub fn k(&self) -> u32 {
        self.params.k()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        home::write_atomic(path, &self.to_bytes(&self.params)?)
    }

    /// The file bytes of this SRS cut down to 2^k points.
    pub fn to_bytes_for_k(&self, k: u32) -> Result<Vec<u8>> {
        self.to_bytes(&*self.for_k(k)?)
    }

    fn to_bytes(&self, params: &ParamsKZG<Bn256>) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        bytes.write_all(if self.insecure { MAGIC_DEV } else { MAGIC })?;
        params.write(&mut bytes)?;
        Ok(bytes)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).with_context(|| format!("opening SRS {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Self::from_bytes(&bytes).with_context(|| format!("loading SRS {}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (insecure, body) = if let Some(b) = bytes.strip_prefix(MAGIC_DEV) {
            (true, b)
        } else if let Some(b) = bytes.strip_prefix(MAGIC) {
            (false, b)
        } else {
            bail!("not a zkfarm SRS file");
        };
        let params = ParamsKZG::<Bn256>::read(&mut &body[..]).map_err(|e| anyhow!("corrupt SRS file: {e}"))?;
        Ok(Self::from_params(params, insecure))
    }

    /// Parameters cut down to `k`, for a circuit of that size. Cutting
    /// down rebuilds the Lagrange bases (an FFT over G1), so the result is
    /// kept: the coordinator verifies every zk receipt with it.
    pub fn for_k(&self, k: u32) -> Result<Arc<ParamsKZG<Bn256>>> {
        self.check_k(k)?;
        let mut by_k = self.by_k.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = by_k.get(&k) {
            return Ok(p.clone());
        }
        let mut p = self.params.clone();
        if k < self.k() {
            p.downsize(k);
        }
        let p = Arc::new(p);
        by_k.insert(k, p.clone());
        Ok(p)
    }

    /// What a verifier needs for circuits of size 2^k: the size, g[0], g2
    /// and s·g2. KZG's SHPLONK verifier commits no instances and reads no
    /// other base, so this skips the cut-down and its Lagrange-basis FFT
    /// over G1 that [`Self::for_k`] pays: verifying costs milliseconds
    /// whatever k the SRS has.
    pub fn verifier_params(&self, k: u32) -> Result<ParamsKZG<Bn256>> {
        self.check_k(k)?;
        let g0 = self.params.get_g()[0];
        Ok(self.params.from_parts(k, vec![g0], Some(Vec::new()), self.params.g2(), self.params.s_g2()))
    }

    fn check_k(&self, k: u32) -> Result<()> {
        if k > self.k() {
            bail!(
                "the circuit needs k = {k} but the SRS ({}) has only 2^{} points; \
                 run `zkfarm srs gen --k {k} --insecure-dev` for a local one",
                self.id,
                self.k()
            );
        }
        Ok(())
    }
}

/// Where `zkfarm srs gen` stores the default SRS.
pub fn default_path() -> PathBuf {
    home::data_dir().join("srs").join("default.srs")
}

/// The SRS named by `--srs`, else the default one, else an error that says
/// how to make one.
pub fn resolve(explicit: Option<&Path>) -> Result<Srs> {
    if let Some(p) = explicit {
        return Srs::load(p);
    }
    let p = default_path();
    if !p.exists() {
        bail!(
            "no SRS found: pass --srs FILE, or run `zkfarm srs gen --k 17 --insecure-dev` \
             to create a local insecure development SRS at {}",
            p.display()
        );
    }
    Srs::load(&p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn save_load_and_downsize_keep_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let srs = Srs::generate_insecure_dev(6, rand_chacha::ChaCha20Rng::seed_from_u64(1)).unwrap();
        assert!(srs.id.starts_with("insecure-dev:"));
        let path = dir.path().join("s.srs");
        srs.save(&path).unwrap();
        let back = Srs::load(&path).unwrap();
        assert_eq!(back.id, srs.id);
        assert_eq!(back.k(), 6);
        assert_eq!(back.for_k(5).unwrap().k(), 5);
        assert!(back.for_k(7).is_err());
        let v = back.verifier_params(5).unwrap();
        assert_eq!((v.k(), v.get_g().len()), (5, 1));
        assert!(back.verifier_params(7).unwrap_err().to_string().contains("only 2^6 points"));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Srs::load(&path).is_err());
    }
}
