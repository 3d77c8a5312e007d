//! Proving and verifying keys, generated once per (circuit, SRS) and cached on
//! disk under a content address: the circuit hash and the SRS id.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use halo2_proofs::halo2curves::bn256::{Bn256, G1Affine};
use halo2_proofs::plonk::{keygen_pk, keygen_vk, ProvingKey, VerifyingKey};
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_proofs::SerdeFormat;
use serde::{Deserialize, Serialize};
use zkfarm_circuits::model::hash_hex;
use zkfarm_circuits::{CircuitParams, CompiledModel, ModelCircuit};

use crate::home;
use crate::srs::Srs;

/// What a verifier needs besides the raw verifying key: how to read the
/// public instances, and which circuit and SRS the key belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VkMeta {
    pub circuit_hash: String,
    pub model_hash: String,
    pub srs_id: String,
    pub k: u32,
    pub params: CircuitParams,
    /// Fixed-point scale of the outputs.
    pub scale: u32,
    pub output_shapes: Vec<Vec<usize>>,
    pub num_instances: usize,
    pub public_input: bool,
}

/// A verifying key with its metadata; `hash` is what receipts name.
#[derive(Clone, Debug)]
pub struct VerifierKey {
    pub meta: VkMeta,
    pub vk: VerifyingKey<G1Affine>,
    pub hash: String,
}

#[derive(Serialize, Deserialize)]
struct VkFile {
    meta: VkMeta,
    vk: String,
}

impl VerifierKey {
    fn new(meta: VkMeta, vk: VerifyingKey<G1Affine>) -> Self {
        let hash = Self::hash_of(&meta, &vk.to_bytes(SerdeFormat::RawBytes));
        VerifierKey { meta, vk, hash }
    }

    fn hash_of(meta: &VkMeta, vk_bytes: &[u8]) -> String {
        let mut bytes = serde_json::to_vec(meta).expect("metadata serializes");
        bytes.extend_from_slice(vk_bytes);
        hash_hex(&bytes)
    }

    pub fn to_json(&self) -> String {
        let file = VkFile { meta: self.meta.clone(), vk: hex::encode(self.vk.to_bytes(SerdeFormat::RawBytes)) };
        serde_json::to_string(&file).expect("a verifying key serializes")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let file: VkFile = serde_json::from_str(text).context("not a zkfarm verifying key file")?;
        let bytes = hex::decode(&file.vk).context("the verifying key is not hex")?;
        let vk = VerifyingKey::<G1Affine>::read::<_, ModelCircuit>(
            &mut &bytes[..],
            SerdeFormat::RawBytes,
            file.meta.params.clone(),
        )
        .map_err(|e| anyhow!("corrupt verifying key: {e}"))?;
        Ok(Self::new(file.meta, vk))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("loading {}", path.display()))
    }
}

pub struct Keys {
    pub pk: Arc<ProvingKey<G1Affine>>,
    pub vk: VerifierKey,
}

/// Which layer served a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    Disk,
    /// The layer the farm's workers share (Redis).
    Shared,
    Generated,
}

impl KeySource {
    pub fn name(self) -> &'static str {
        match self {
            KeySource::Disk => "disk",
            KeySource::Shared => "shared",
            KeySource::Generated => "generated",
        }
    }
}

/// A key entry read back from the shared layer.
pub enum Fetched {
    Hit {
        vk_json: String,
        pk: Vec<u8>,
    },
    Miss,
    /// The entry failed its checks and was deleted.
    Corrupt(String),
}

/// The proving keys a farm's workers share, by content address. The worker
/// crate implements it on Redis; the proving library knows no network.
pub trait SharedKeys: Send + Sync {
    /// The layer's name in logs and metric labels.
    fn layer(&self) -> &'static str;
    /// Reads an entry. An unreachable store is an error; a corrupt entry
    /// is deleted and reported as such.
    fn get(&self, id: &str) -> Result<Fetched>;
    /// Publishes an entry atomically: readers see all of it or none.
    fn put(&self, id: &str, vk_json: &str, pk: &[u8]) -> Result<()>;
    fn delete(&self, id: &str) -> Result<()>;
}

/// The key cache: local disk, then (when configured) the layer shared by
/// the farm's workers, then key generation, whose result is published to
/// both.
pub struct KeyCache {
    dir: PathBuf,
    remote: Option<Box<dyn SharedKeys>>,
}

fn count(name: &'static str, layer: &'static str) {
    metrics::counter!(name, "layer" => layer).increment(1);
}

fn count_error(layer: &'static str, kind: &'static str) {
    metrics::counter!("zkfarm_key_cache_errors_total", "layer" => layer, "kind" => kind).increment(1);
}

impl KeyCache {
    pub fn new(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(KeyCache { dir, remote: None })
    }

    /// The cache under the data directory.
    pub fn open_default() -> Result<Self> {
        Self::new(home::subdir("keys")?)
    }

    /// Adds the layer the farm's workers share.
    pub fn with_shared(mut self, remote: impl SharedKeys + 'static) -> Self {
        self.remote = Some(Box::new(remote));
        self
    }

    fn stem(model: &CompiledModel, srs: &Srs) -> String {
        let srs_part = srs.id.replace(':', "-");
        format!("{}-{srs_part}", &model.circuit_hash[..32])
    }

    /// The shared layer's entry name: the full content address.
    pub fn remote_id(model: &CompiledModel, srs: &Srs) -> String {
        format!("{}-{}", model.circuit_hash, srs.id.replace(':', "-"))
    }

    fn vk_index(&self, vk_hash: &str) -> PathBuf {
        self.dir.join(format!("vk-{vk_hash}.json"))
    }

    /// Loads the keys of a model from disk, or generates and stores them.
    pub fn get_or_create(&self, model: &CompiledModel, srs: &Srs) -> Result<(Keys, KeySource)> {
        self.get_checked(model, srs, None)
    }

    /// Like [`Self::get_or_create`]; with `expect_vk`, a cached key whose
    /// verifying key hash differs is dropped rather than used.
    pub fn get_checked(&self, model: &CompiledModel, srs: &Srs, expect_vk: Option<&str>) -> Result<(Keys, KeySource)> {
        let stem = Self::stem(model, srs);
        let pk_path = self.dir.join(format!("{stem}.pk"));
        let vk_path = self.dir.join(format!("{stem}.vk.json"));
        let check = |keys: Keys| -> Result<Keys> {
            match expect_vk {
                Some(want) if keys.vk.hash != want => {
                    bail!("its verifying key {} is not the expected {want}", keys.vk.hash)
                }
                _ => Ok(keys),
            }
        };
        if pk_path.exists() && vk_path.exists() {
            match self.load(model, &pk_path, &vk_path).and_then(check) {
                Ok(keys) => {
                    count("zkfarm_key_cache_hits_total", "disk");
                    return Ok((keys, KeySource::Disk));
                }
                Err(e) => {
                    tracing::warn!("discarding cached key {}: {e:#}", pk_path.display());
                    count_error("disk", "corrupt");
                }
            }
        }
        count("zkfarm_key_cache_misses_total", "disk");
        if let Some(keys) = self.fetch_remote(model, srs, &pk_path, &vk_path, &check) {
            return Ok((keys, KeySource::Shared));
        }
        let params = srs.for_k(model.k)?;
        let keys = check(generate(model, srs, &params)?)
            .context("the generated key differs from the coordinator's: are both using the same SRS?")?;
        let pk_bytes = keys.pk.to_bytes(SerdeFormat::RawBytes);
        let vk_json = keys.vk.to_json();
        self.store(&pk_path, &vk_path, &keys.vk.hash, &pk_bytes, &vk_json)?;
        if let Some(remote) = &self.remote {
            if let Err(e) = remote.put(&Self::remote_id(model, srs), &vk_json, &pk_bytes) {
                tracing::warn!("could not publish the key to {}: {e:#}", remote.layer());
                count_error(remote.layer(), "unavailable");
            }
        }
        Ok((keys, KeySource::Generated))
    }

    /// The shared layer: a hit is written to disk and loaded from there, so
    /// it passes the same checks as a local key.
    fn fetch_remote(
        &self,
        model: &CompiledModel,
        srs: &Srs,
        pk_path: &Path,
        vk_path: &Path,
        check: &dyn Fn(Keys) -> Result<Keys>,
    ) -> Option<Keys> {
        let remote = self.remote.as_ref()?;
        let id = Self::remote_id(model, srs);
        let layer = remote.layer();
        match remote.get(&id) {
            Ok(Fetched::Hit { vk_json, pk }) => {
                let loaded = VerifierKey::from_json(&vk_json)
                    .and_then(|vk| self.store(pk_path, vk_path, &vk.hash, &pk, &vk_json))
                    .and_then(|_| self.load(model, pk_path, vk_path))
                    .and_then(check);
                match loaded {
                    Ok(keys) => {
                        count("zkfarm_key_cache_hits_total", layer);
                        return Some(keys);
                    }
                    Err(e) => {
                        tracing::warn!("dropping {layer} key entry {id}: {e:#}");
                        count_error(layer, "corrupt");
                        let _ = std::fs::remove_file(pk_path);
                        let _ = remote.delete(&id);
                    }
                }
            }
            Ok(Fetched::Miss) => {}
            Ok(Fetched::Corrupt(why)) => {
                tracing::warn!("dropped corrupt {layer} key entry {id}: {why}");
                count_error(layer, "corrupt");
            }
            Err(e) => {
                tracing::warn!("{layer} key cache unavailable, going on without it: {e:#}");
                count_error(layer, "unavailable");
            }
        }
        count("zkfarm_key_cache_misses_total", layer);
        None
    }

    fn store(&self, pk_path: &Path, vk_path: &Path, vk_hash: &str, pk_bytes: &[u8], vk_json: &str) -> Result<()> {
        let mut file = hex::decode(hash_hex(pk_bytes)).expect("hex");
        file.extend_from_slice(pk_bytes);
        home::write_atomic(pk_path, &file)?;
        home::write_atomic(vk_path, vk_json.as_bytes())?;
        home::write_atomic(&self.vk_index(vk_hash), vk_json.as_bytes())
    }

    /// The verifying key of a model: from disk, else generated alone (the
    /// coordinator needs no proving key).
    pub fn verifier_key(&self, model: &CompiledModel, srs: &Srs) -> Result<VerifierKey> {
        let vk_path = self.dir.join(format!("{}.vk.json", Self::stem(model, srs)));
        if let Ok(vk) = VerifierKey::load(&vk_path) {
            if vk.meta.circuit_hash == model.circuit_hash && vk.meta.srs_id == srs.id {
                return Ok(vk);
            }
        }
        let params = srs.for_k(model.k)?;
        let circuit = ModelCircuit::new(model.program.clone(), None);
        let vk = keygen_vk(&*params, &circuit).map_err(|e| anyhow!("verifying key generation failed: {e:?}"))?;
        let vk = VerifierKey::new(vk_meta(model, srs), vk);
        let json = vk.to_json();
        home::write_atomic(&vk_path, json.as_bytes())?;
        home::write_atomic(&self.vk_index(&vk.hash), json.as_bytes())?;
        Ok(vk)
    }

    fn load(&self, model: &CompiledModel, pk_path: &Path, vk_path: &Path) -> Result<Keys> {
        let vk = VerifierKey::load(vk_path)?;
        if vk.meta.circuit_hash != model.circuit_hash {
            bail!("verifying key belongs to circuit {}", vk.meta.circuit_hash);
        }
        let file = std::fs::read(pk_path)?;
        if file.len() < 32 || hex::encode(&file[..32]) != hash_hex(&file[32..]) {
            bail!("checksum mismatch");
        }
        let pk = ProvingKey::<G1Affine>::read::<_, ModelCircuit>(
            &mut &file[32..],
            SerdeFormat::RawBytes,
            vk.meta.params.clone(),
        )
        .map_err(|e| anyhow!("corrupt proving key: {e}"))?;
        if pk.get_vk().to_bytes(SerdeFormat::RawBytes) != vk.vk.to_bytes(SerdeFormat::RawBytes) {
            bail!("proving key and verifying key disagree");
        }
        Ok(Keys { pk: Arc::new(pk), vk })
    }

    /// A verifying key by the hash receipts name, if it is in the cache.
    pub fn find_vk(&self, vk_hash: &str) -> Result<Option<VerifierKey>> {
        if !vk_hash.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("malformed verifying key hash {vk_hash:?}");
        }
        let path = self.vk_index(vk_hash);
        if !path.exists() {
            return Ok(None);
        }
        VerifierKey::load(&path).map(Some)
    }
}

/// Key generation for a compiled model.
pub fn generate(model: &CompiledModel, srs: &Srs, params: &ParamsKZG<Bn256>) -> Result<Keys> {
    let circuit = ModelCircuit::new(model.program.clone(), None);
    let vk = keygen_vk(params, &circuit).map_err(|e| anyhow!("verifying key generation failed: {e:?}"))?;
    let pk = keygen_pk(params, vk.clone(), &circuit).map_err(|e| anyhow!("proving key generation failed: {e:?}"))?;
    let meta = vk_meta(model, srs);
    Ok(Keys { pk: Arc::new(pk), vk: VerifierKey::new(meta, vk) })
}

fn vk_meta(model: &CompiledModel, srs: &Srs) -> VkMeta {
    let p = &model.program;
    VkMeta {
        circuit_hash: model.circuit_hash.clone(),
        model_hash: model.model_hash.clone(),
        srs_id: srs.id.clone(),
        k: model.k,
        params: CircuitParams::of(p),
        scale: p.settings.input_scale,
        output_shapes: p.output_shapes.clone(),
        num_instances: p.num_instances(),
        public_input: p.settings.public_input,
    }
}
