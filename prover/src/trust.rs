//! Verifying a receipt of any tier against the trust inputs it needs:
//! verifying keys and the SRS (zk), registered worker keys (signed), and the
//! TEE policy (tee).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::identity::{check_signature, parse_public_key};
use crate::keys::VerifierKey;
use crate::receipt::Receipt;
use crate::srs::Srs;
use crate::tee::check_attestation;

/// A worker's registered signing key, as `zkfarm verify --worker-keys` reads them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerKey {
    pub worker_id: String,
    /// ed25519 public key, hex.
    pub public_key: String,
}

#[derive(Default)]
pub struct Trust {
    pub vks: HashMap<String, VerifierKey>,
    pub srs: Option<Arc<Srs>>,
    /// Registered worker keys by worker id.
    pub worker_keys: HashMap<String, String>,
    pub allow_insecure_tee: bool,
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub tier: String,
    /// Why the receipt, though valid, carries no real guarantee (a dev SRS
    /// or a dev TEE report); empty when it does.
    pub insecure: Vec<String>,
}

impl Trust {
    pub fn add_vk(&mut self, vk: VerifierKey) {
        self.vks.insert(vk.hash.clone(), vk);
    }

    pub fn add_worker_keys(&mut self, keys: impl IntoIterator<Item = WorkerKey>) {
        self.worker_keys.extend(keys.into_iter().map(|k| (k.worker_id, k.public_key)));
    }

    pub fn verify(&self, r: &Receipt) -> Result<Verdict> {
        let mut insecure = Vec::new();
        match r.tier.as_str() {
            "zk" => {
                if r.signer.is_some() || r.attestation.is_some() {
                    bail!("a zk receipt carries no signature or attestation");
                }
                let vk = self
                    .vks
                    .get(&r.vk_hash)
                    .ok_or_else(|| anyhow!("verifying key {} is not available: pass --vk FILE", r.vk_hash))?;
                let srs =
                    self.srs.as_ref().ok_or_else(|| anyhow!("verifying a zk receipt needs the SRS: pass --srs"))?;
                crate::prove::verify(r, vk, srs)?;
                if srs.insecure {
                    insecure.push(format!("the SRS {} is an insecure development SRS", srs.id));
                }
            }
            "signed" => {
                if r.attestation.is_some() {
                    bail!("a signed receipt carries no attestation");
                }
                self.check_zk_fields_absent(r)?;
                let signer = check_signature(r)?;
                let registered = self.worker_keys.get(&signer.worker_id).ok_or_else(|| {
                    anyhow!(
                        "worker {} has no registered key here: pass --worker-keys or --coordinator",
                        signer.worker_id
                    )
                })?;
                if parse_public_key(registered)? != parse_public_key(&signer.public_key)? {
                    bail!("the receipt is signed by a key that is not worker {}'s registered key", signer.worker_id);
                }
            }
            "tee" => {
                self.check_zk_fields_absent(r)?;
                let signer = check_signature(r)?;
                let att = r.attestation.as_ref().ok_or_else(|| anyhow!("a tee receipt needs an attestation report"))?;
                let key = parse_public_key(&signer.public_key)?.to_bytes();
                check_attestation(att, &key, self.allow_insecure_tee)?;
                if att.insecure {
                    insecure.push("the TEE report comes from the insecure dev provider".into());
                }
            }
            other => bail!("unknown receipt tier {other:?}"),
        }
        Ok(Verdict { tier: r.tier.clone(), insecure })
    }

    fn check_zk_fields_absent(&self, r: &Receipt) -> Result<()> {
        if !r.proof.is_empty() || !r.instances.is_empty() {
            bail!("a {} receipt carries no proof", r.tier);
        }
        Ok(())
    }
}
