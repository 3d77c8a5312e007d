//! Parameters cut down to each k, kept on disk beside the SRS so that no
//! other process cuts them again: cutting down rebuilds the Lagrange bases
//! with an FFT over G1, seconds to minutes on a few cores. One file per
//! (SRS id, k): a header, the BLAKE2b-256 of the body, then the parameters
//! as halo2 writes them. A file that fails its hash or does not belong to
//! the SRS is dropped and made again.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use halo2_proofs::halo2curves::bn256::Bn256;
use halo2_proofs::poly::commitment::ParamsProver;
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_proofs::SerdeFormat;
use zkfarm_circuits::model::hash_hex;

use super::import::layout;
use super::Srs;
use crate::home;

const MAGIC_PER_K: &[u8] = b"ZKFARM-SRS per-k v1\n";

/// Where the CLI keeps per-k parameters: `$ZKFARM_HOME/srs/per-k`.
pub fn default_cache_dir() -> PathBuf {
    home::data_dir().join("srs").join("per-k")
}

/// The file of one SRS's parameters at `k` under `dir`.
fn path_in(dir: &Path, id: &str, k: u32) -> PathBuf {
    dir.join(id.replace(':', "-")).join(format!("k{k}.params"))
}

/// The k's whose parameters `dir` holds for the SRS `id`, ascending.
pub fn cached_ks(dir: &Path, id: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir.join(id.replace(':', "-"))) else { return Vec::new() };
    let mut ks: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix('k')?.strip_suffix(".params")?.parse().ok())
        .collect();
    ks.sort_unstable();
    ks
}

impl Srs {
    /// Keeps parameters cut down to each k under `dir`, shared by every
    /// process that uses this SRS.
    pub fn with_cache(mut self, dir: PathBuf) -> Self {
        self.cache_dir = Some(dir);
        self
    }

    /// The cached parameters for `k`, if a good file holds them; a bad
    /// file is removed.
    pub(super) fn load_cut(&self, k: u32) -> Option<ParamsKZG<Bn256>> {
        let path = path_in(self.cache_dir.as_ref()?, &self.id, k);
        let bytes = std::fs::read(&path).ok()?;
        match self.read_cut(&bytes, k) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("dropping cached SRS parameters {}: {e:#}", path.display());
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores parameters cut down to `k`; a failure costs only speed.
    pub(super) fn store_cut(&self, k: u32, params: &ParamsKZG<Bn256>) {
        let Some(dir) = &self.cache_dir else { return };
        let path = path_in(dir, &self.id, k);
        let write = || -> Result<()> {
            let mut body = Vec::new();
            params.write_custom(&mut body, SerdeFormat::RawBytes)?;
            let mut file = MAGIC_PER_K.to_vec();
            file.extend_from_slice(hash_hex(&body).as_bytes());
            file.push(b'\n');
            file.extend_from_slice(&body);
            let parent = path.parent().expect("a file under the cache directory");
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            home::write_atomic(&path, &file)
        };
        if let Err(e) = write() {
            tracing::warn!("could not cache the SRS parameters for k = {k}: {e:#}");
        }
    }

    fn read_cut(&self, bytes: &[u8], k: u32) -> Result<ParamsKZG<Bn256>> {
        let rest = bytes.strip_prefix(MAGIC_PER_K).context("not a per-k parameter file")?;
        let (hash, body) = rest.split_at_checked(65).context("truncated")?;
        if hash[64] != b'\n' || &hash[..64] != hash_hex(body).as_bytes() {
            bail!("checksum mismatch");
        }
        if !matches!(layout(body)?, (found, SerdeFormat::RawBytes) if found == k) {
            bail!("not the parameters for k = {k}");
        }
        // The checksum vouches for the points, which are read unchecked.
        let p = ParamsKZG::<Bn256>::read_custom(&mut &body[..], SerdeFormat::RawBytesUnchecked)?;
        if p.g2() != self.params.g2()
            || p.s_g2() != self.params.s_g2()
            || p.get_g()[..] != self.params.get_g()[..p.get_g().len()]
        {
            bail!("the parameters belong to another SRS");
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use halo2_proofs::poly::commitment::Params;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn cut_parameters_are_stored_once_reused_and_remade_when_bad() {
        let dir = tempfile::tempdir().unwrap();
        let make = || {
            Srs::generate_insecure_dev(7, rand_chacha::ChaCha20Rng::seed_from_u64(3))
                .unwrap()
                .with_cache(dir.path().to_path_buf())
        };
        let first = make();
        let cut = first.for_k(5).unwrap();
        assert_eq!(cached_ks(dir.path(), &first.id), vec![5]);
        assert!(first.for_k(7).is_ok() && cached_ks(dir.path(), &first.id) == vec![5], "the full size is not cut");

        // Another process (a fresh Srs) reads the file, equal to a fresh cut.
        let second = make();
        let from_disk = second.load_cut(5).expect("cached");
        let mut bytes = (Vec::new(), Vec::new());
        from_disk.write(&mut bytes.0).unwrap();
        cut.write(&mut bytes.1).unwrap();
        assert!(bytes.0 == bytes.1);

        // A flipped byte fails the checksum: the file is dropped, then made again.
        let path = path_in(dir.path(), &first.id, 5);
        let mut file = std::fs::read(&path).unwrap();
        let last = file.len() - 1;
        file[last] ^= 1;
        std::fs::write(&path, &file).unwrap();
        assert!(make().load_cut(5).is_none());
        assert!(!path.exists());
        assert_eq!(make().for_k(5).unwrap().k(), 5);
        assert!(path.exists());

        // Another SRS's file under this id is refused.
        let other = Srs::generate_insecure_dev(7, rand_chacha::ChaCha20Rng::seed_from_u64(4)).unwrap();
        let other_cut = other.for_k(5).unwrap();
        let mut body = Vec::new();
        other_cut.write_custom(&mut body, SerdeFormat::RawBytes).unwrap();
        let mut forged = MAGIC_PER_K.to_vec();
        forged.extend_from_slice(hash_hex(&body).as_bytes());
        forged.push(b'\n');
        forged.extend_from_slice(&body);
        std::fs::write(&path, &forged).unwrap();
        assert!(make().read_cut(&forged, 5).unwrap_err().to_string().contains("another SRS"));
    }
}
