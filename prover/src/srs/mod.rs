//! The KZG structured reference string (SRS).
//!
//! `zkfarm srs gen --insecure-dev` samples the secret locally: whoever ran it
//! knows the trapdoor and can forge proofs. Such an SRS is labelled insecure
//! in its file header, its id and every receipt made with it.
//!
//! `zkfarm srs import` reads the parameters of a public ceremony as halo2
//! writes them (`ParamsKZG`, raw or compressed points) and checks them before
//! use: every point on the curve, g[0] and g2 the generators, one τ behind
//! every consecutive pair of powers, and the Lagrange bases consistent with
//! the powers (a random linear combination each, so two pairings and a few
//! MSMs, not 2^k pairings): see `import`.
//!
//! Parameters cut down to a smaller k are kept on disk (`cache`), and a
//! verifier reads only g[0], g2 and s·g2 (`verifier_params`).

mod cache;
mod import;

pub use cache::{cached_ks, default_cache_dir};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use halo2_proofs::arithmetic::CurveAffine;
use halo2_proofs::halo2curves::bn256::{Bn256, G1Affine, G2Affine};
use halo2_proofs::halo2curves::group::GroupEncoding;
use halo2_proofs::poly::commitment::{Params, ParamsProver};
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_proofs::{SerdeCurveAffine, SerdeFormat};
use rand::rngs::OsRng;
use rand::RngCore;

use self::import::{layout, RAW};
use crate::home;

const MAGIC_DEV: &[u8] = b"ZKFARM-SRS insecure-dev v1\n";
const MAGIC: &[u8] = b"ZKFARM-SRS v1\n";
/// What a verifier needs at one k: a byte (1 for insecure), k (u32 LE), then
/// g[0], g2 and s·g2 as raw points.
const MAGIC_VERIFIER: &[u8] = b"ZKFARM-SRS verifier v1\n";
/// Largest k an SRS may have; 2^26 points is over 4 GiB.
pub const MAX_K: u32 = 26;

pub struct Srs {
    pub params: ParamsKZG<Bn256>,
    /// `insecure-dev:<hash>` or `kzg:<hash>` of the G2 elements, which stay
    /// the same when the SRS is cut down to a smaller k.
    pub id: String,
    pub insecure: bool,
    /// Holds only g[0], g2 and s·g2 (see [`Srs::verifier_bytes`]): enough to
    /// verify, not to prove or make keys.
    verifier_only: bool,
    /// `for_k`'s results.
    by_k: Mutex<HashMap<u32, Arc<ParamsKZG<Bn256>>>>,
    /// Where parameters cut down to each k are kept across processes.
    cache_dir: Option<PathBuf>,
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
        let id = id_of(&params.g2(), &params.s_g2(), insecure);
        Srs { params, id, insecure, verifier_only: false, by_k: Mutex::default(), cache_dir: None }
    }

    pub fn k(&self) -> u32 {
        self.params.k()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = if self.verifier_only { self.verifier_bytes(self.k())? } else { self.to_bytes(&self.params)? };
        home::write_atomic(path, &bytes)
    }

    /// The SRS as a verifier of circuits of size 2^k needs it: g[0], g2 and
    /// s·g2, a few hundred bytes whatever the SRS's size. `from_bytes` reads
    /// it back as an SRS with the same id that can verify but not prove.
    pub fn verifier_bytes(&self, k: u32) -> Result<Vec<u8>> {
        self.check_k(k)?;
        let mut bytes = MAGIC_VERIFIER.to_vec();
        bytes.push(u8::from(self.insecure));
        bytes.extend_from_slice(&k.to_le_bytes());
        self.params.get_g()[0].write(&mut bytes, SerdeFormat::RawBytes)?;
        self.params.g2().write(&mut bytes, SerdeFormat::RawBytes)?;
        self.params.s_g2().write(&mut bytes, SerdeFormat::RawBytes)?;
        Ok(bytes)
    }

    fn from_verifier_bytes(body: &[u8]) -> Result<Self> {
        if body.len() != 1 + 4 + RAW.0 + 2 * RAW.1 {
            bail!("corrupt verifier SRS: {} bytes", body.len());
        }
        let insecure = match body[0] {
            0 => false,
            1 => true,
            b => bail!("corrupt verifier SRS: flag byte {b}"),
        };
        let k = u32::from_le_bytes(body[1..5].try_into().expect("4 bytes"));
        if !(1..=MAX_K).contains(&k) {
            bail!("corrupt verifier SRS: k = {k}");
        }
        let mut rest = &body[5..];
        let g0 = G1Affine::read(&mut rest, SerdeFormat::RawBytes)?;
        let g2 = G2Affine::read(&mut rest, SerdeFormat::RawBytes)?;
        let s_g2 = G2Affine::read(&mut rest, SerdeFormat::RawBytes)?;
        if ![g0.is_on_curve(), g2.is_on_curve(), s_g2.is_on_curve()].into_iter().all(bool::from) {
            bail!("corrupt verifier SRS: a point is not on the curve");
        }
        // Any params value serves as the receiver of `from_parts`.
        let params = ParamsKZG::<Bn256>::setup(1, OsRng).from_parts(k, vec![g0], Some(Vec::new()), g2, s_g2);
        Ok(Srs { verifier_only: true, ..Self::from_params(params, insecure) })
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
        if let Some(body) = bytes.strip_prefix(MAGIC_VERIFIER) {
            return Self::from_verifier_bytes(body);
        }
        let (insecure, body) = if let Some(b) = bytes.strip_prefix(MAGIC_DEV) {
            (true, b)
        } else if let Some(b) = bytes.strip_prefix(MAGIC) {
            (false, b)
        } else {
            bail!("not a zkfarm SRS file");
        };
        // Our own files hold raw points, read unchecked for speed; the size
        // is checked first, so a cut or padded file is an error, not a panic.
        let (k, format) = layout(body)?;
        if !matches!(format, SerdeFormat::RawBytes) {
            bail!("corrupt SRS file: a zkfarm SRS of k = {k} holds raw points");
        }
        let params = ParamsKZG::<Bn256>::read_custom(&mut &body[..], SerdeFormat::RawBytesUnchecked)
            .map_err(|e| anyhow!("corrupt SRS file: {e}"))?;
        Ok(Self::from_params(params, insecure))
    }

    /// Parameters cut down to `k`, for a circuit of that size. Cutting
    /// down rebuilds the Lagrange bases (an FFT over G1), so the result is
    /// kept: the coordinator verifies every zk receipt with it.
    pub fn for_k(&self, k: u32) -> Result<Arc<ParamsKZG<Bn256>>> {
        self.check_k(k)?;
        if self.verifier_only {
            bail!(
                "the SRS {} holds only what verification needs; proving and key generation need the whole SRS",
                self.id
            );
        }
        let mut by_k = self.by_k.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = by_k.get(&k) {
            return Ok(p.clone());
        }
        let p = if k == self.k() {
            self.params.clone()
        } else if let Some(p) = self.load_cut(k) {
            p
        } else {
            let mut p = self.params.clone();
            p.downsize(k);
            self.store_cut(k, &p);
            p
        };
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

/// `insecure-dev:` or `kzg:` and a hash of the G2 points, which cutting the
/// SRS down keeps.
fn id_of(g2: &G2Affine, s_g2: &G2Affine, insecure: bool) -> String {
    let mut bytes = g2.to_bytes().as_ref().to_vec();
    bytes.extend_from_slice(s_g2.to_bytes().as_ref());
    let hash = &zkfarm_circuits::model::hash_hex(&bytes)[..16];
    if insecure {
        format!("insecure-dev:{hash}")
    } else {
        format!("kzg:{hash}")
    }
}

/// Where `zkfarm srs gen` stores the default SRS.
pub fn default_path() -> PathBuf {
    home::data_dir().join("srs").join("default.srs")
}

/// What `zkfarm srs list` shows of an SRS file.
pub struct SrsInfo {
    pub id: String,
    pub k: u32,
    pub insecure: bool,
}

/// An SRS file's id and size from its header and its last points (g2 and
/// s·g2), without reading the bases.
pub fn peek(path: &Path) -> Result<SrsInfo> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).with_context(|| format!("opening SRS {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut head = vec![0u8; MAGIC_VERIFIER.len().max(MAGIC_DEV.len()) + 5];
    let want = head.len().min(len as usize);
    file.read_exact(&mut head[..want]).context("reading the SRS header")?;
    if head.starts_with(MAGIC_VERIFIER) {
        let srs = Srs::load(path)?;
        return Ok(SrsInfo { k: srs.k(), insecure: srs.insecure, id: srs.id });
    }
    let (insecure, magic_len) = if head.starts_with(MAGIC_DEV) {
        (true, MAGIC_DEV.len())
    } else if head.starts_with(MAGIC) {
        (false, MAGIC.len())
    } else {
        bail!("not a zkfarm SRS file");
    };
    let k = u32::from_le_bytes(head[magic_len..magic_len + 4].try_into().expect("4 bytes"));
    let body = len - magic_len as u64;
    if !(1..=MAX_K).contains(&k) || body != 4 + 2 * (1u64 << k) * import::RAW.0 as u64 + 2 * import::RAW.1 as u64 {
        bail!("corrupt SRS file: its size does not match its k");
    }
    let mut tail = vec![0u8; 2 * import::RAW.1];
    file.seek(SeekFrom::End(-(tail.len() as i64)))?;
    file.read_exact(&mut tail)?;
    let mut rest = &tail[..];
    let g2 = G2Affine::read(&mut rest, SerdeFormat::RawBytes)?;
    let s_g2 = G2Affine::read(&mut rest, SerdeFormat::RawBytes)?;
    Ok(SrsInfo { id: id_of(&g2, &s_g2, insecure), k, insecure })
}

/// An SRS file with its per-k parameters cached under the data directory.
pub fn open(path: &Path) -> Result<Srs> {
    Ok(Srs::load(path)?.with_cache(default_cache_dir()))
}

/// The SRS named by `--srs`, else the default one, else an error that says
/// how to make one.
pub fn resolve(explicit: Option<&Path>) -> Result<Srs> {
    if let Some(p) = explicit {
        return open(p);
    }
    let p = default_path();
    if !p.exists() {
        bail!(
            "no SRS found: pass --srs FILE, or run `zkfarm srs gen --k 17 --insecure-dev` \
             to create a local insecure development SRS at {}",
            p.display()
        );
    }
    open(&p)
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
        let info = peek(&path).unwrap();
        assert_eq!((info.id.as_str(), info.k, info.insecure), (srs.id.as_str(), 6, true));
        assert_eq!(back.k(), 6);
        assert_eq!(back.for_k(5).unwrap().k(), 5);
        assert!(back.for_k(7).is_err());
        let v = back.verifier_params(5).unwrap();
        assert_eq!((v.k(), v.get_g().len()), (5, 1));
        assert!(back.verifier_params(7).unwrap_err().to_string().contains("only 2^6 points"));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Srs::load(&path).is_err());
    }

    #[test]
    fn the_verifier_srs_is_small_keeps_the_id_and_cannot_prove() {
        let srs = Srs::generate_insecure_dev(6, rand_chacha::ChaCha20Rng::seed_from_u64(4)).unwrap();
        let bytes = srs.verifier_bytes(5).unwrap();
        assert!(bytes.len() < 400, "{} bytes", bytes.len());
        let small = Srs::from_bytes(&bytes).unwrap();
        assert_eq!((small.id.as_str(), small.insecure, small.k()), (srs.id.as_str(), true, 5));
        let (a, b) = (small.verifier_params(5).unwrap(), srs.verifier_params(5).unwrap());
        assert_eq!((a.get_g(), a.g2(), a.s_g2()), (b.get_g(), b.g2(), b.s_g2()));
        assert!(small.for_k(5).unwrap_err().to_string().contains("only what verification needs"));
        assert!(srs.verifier_bytes(7).is_err());
        for cut in [bytes.len() - 1, MAGIC_VERIFIER.len() + 2] {
            assert!(Srs::from_bytes(&bytes[..cut]).is_err());
        }
        let mut flag = bytes.clone();
        flag[MAGIC_VERIFIER.len()] = 7;
        assert!(Srs::from_bytes(&flag).is_err());
    }

    #[test]
    fn a_cut_or_garbled_srs_file_is_an_error_not_a_panic() {
        let srs = Srs::generate_insecure_dev(4, rand_chacha::ChaCha20Rng::seed_from_u64(2)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.srs");
        srs.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [bytes.len() - 1, MAGIC_DEV.len() + 3, MAGIC_DEV.len() + 100] {
            let err = Srs::from_bytes(&bytes[..cut]).err().expect("a cut file is refused");
            assert!(format!("{err:#}").contains("KZG parameters"), "{err:#}");
        }
    }
}
