//! Verifying a receipt of any tier against the trust inputs it needs:
//! verifying keys and the SRS (zk), registered worker keys (signed), and the
//! TEE policy (tee).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use zkfarm_prover::{Receipt, Srs, Tier, VerifierKey};

use crate::identity::{check_signature, parse_public_key};
use crate::tee::{check_attestation, TeePolicy};

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
    pub tee: TeePolicy,
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub tier: Tier,
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
        match r.tier {
            Tier::Zk => {
                if r.signer.is_some() || r.attestation.is_some() {
                    bail!("a zk receipt carries no signature or attestation");
                }
                let vk = self
                    .vks
                    .get(&r.vk_hash)
                    .ok_or_else(|| anyhow!("verifying key {} is not available: pass --vk FILE", r.vk_hash))?;
                let srs =
                    self.srs.as_ref().ok_or_else(|| anyhow!("verifying a zk receipt needs the SRS: pass --srs"))?;
                zkfarm_prover::verify(r, vk, srs)?;
                if srs.insecure {
                    insecure.push(format!("the SRS {} is an insecure development SRS", srs.id));
                }
            }
            Tier::Signed => {
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
            Tier::Tee => {
                self.check_zk_fields_absent(r)?;
                let signer = check_signature(r)?;
                let att = r.attestation.as_ref().ok_or_else(|| anyhow!("a tee receipt needs an attestation report"))?;
                let key = parse_public_key(&signer.public_key)?.to_bytes();
                check_attestation(att, &key, &self.tee)?;
                if att.insecure {
                    insecure.push("the TEE report comes from the insecure dev provider".into());
                }
            }
        }
        Ok(Verdict { tier: r.tier, insecure })
    }

    fn check_zk_fields_absent(&self, r: &Receipt) -> Result<()> {
        if !r.proof.is_empty() || !r.instances.is_empty() {
            bail!("a {} receipt carries no proof", r.tier);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::tee::{DevProvider, Enclave};

    pub(crate) fn receipt(tier: Tier) -> Receipt {
        Receipt {
            tier,
            model_hash: "m".into(),
            circuit_hash: "c".into(),
            k: 15,
            outputs: vec![vec![0.5, -1.25]],
            output_shapes: vec![vec![1, 2]],
            input_hash: Some("i".into()),
            job_id: Some("j".into()),
            task_id: Some("t".into()),
            timestamp_ms: Some(7),
            vk_hash: String::new(),
            srs_id: String::new(),
            instances: vec![],
            proof: String::new(),
            signer: None,
            attestation: None,
        }
    }

    fn lax() -> Trust {
        Trust { tee: TeePolicy { allow_insecure: true, ..TeePolicy::default() }, ..Trust::default() }
    }

    /// Well-formed DCAP collateral JSON with empty contents.
    const COLLATERAL: &str = r#"{"pck_crl_issuer_chain": "", "root_ca_crl": "", "pck_crl": "",
        "tcb_info_issuer_chain": "", "tcb_info": "{}", "tcb_info_signature": "", "qe_identity_issuer_chain": "",
        "qe_identity": "{}", "qe_identity_signature": ""}"#;

    fn trust_for(worker_id: &str, id: &Identity) -> Trust {
        let mut t = Trust::default();
        t.add_worker_keys([WorkerKey { worker_id: worker_id.into(), public_key: id.public_key_hex() }]);
        t
    }

    #[test]
    fn signed_receipts_verify_only_unchanged_and_with_the_registered_key() {
        let id = Identity::ephemeral();
        let mut r = receipt(Tier::Signed);
        id.sign(&mut r, "w1");
        let trust = trust_for("w1", &id);
        assert_eq!(trust.verify(&r).unwrap().insecure, Vec::<String>::new());
        let mut changed = r.clone();
        changed.outputs[0][1] = -1.0;
        assert!(trust.verify(&changed).unwrap_err().to_string().contains("does not match"));
        let mut moved = r.clone();
        moved.task_id = Some("t2".into());
        assert!(trust.verify(&moved).is_err());
        // Signed by another key under the same worker id.
        let mut forged = receipt(Tier::Signed);
        Identity::ephemeral().sign(&mut forged, "w1");
        assert!(trust.verify(&forged).unwrap_err().to_string().contains("registered key"));
        assert!(Trust::default().verify(&r).unwrap_err().to_string().contains("no registered key"));
        // A signed receipt cannot be passed off as another tier.
        let mut retiered = r.clone();
        retiered.tier = Tier::Tee;
        assert!(trust.verify(&retiered).is_err());
    }

    #[test]
    fn dev_tee_receipts_need_the_insecure_flag_and_a_binding_report() {
        let enclave = Enclave::new(&DevProvider).unwrap();
        let mut r = receipt(Tier::Tee);
        enclave.sign(&mut r, "w1");
        let strict = Trust::default();
        assert!(strict.verify(&r).unwrap_err().to_string().contains("--allow-insecure-tee"));
        let lax = lax();
        assert_eq!(lax.verify(&r).unwrap().insecure.len(), 1);
        // The report of one enclave does not vouch for another key.
        let other = Enclave::new(&DevProvider).unwrap();
        let mut swapped = receipt(Tier::Tee);
        other.sign(&mut swapped, "w1");
        swapped.attestation = r.attestation.clone();
        assert!(lax.verify(&swapped).is_err(), "the signature covers the attestation");
        let mut resigned = receipt(Tier::Tee);
        let key = Identity::ephemeral();
        resigned.attestation = r.attestation.clone();
        key.sign(&mut resigned, "w1");
        assert!(lax.verify(&resigned).unwrap_err().to_string().contains("does not bind"));
    }

    #[test]
    fn hardware_quotes_must_bind_the_key_and_verify_with_their_vendor_chain() {
        let key = Identity::ephemeral();
        let mut quote = crate::tee::tdx_quote(4, &crate::tee::binding(&key.public_key()));
        let mut r = receipt(Tier::Tee);
        r.attestation = Some(zkfarm_prover::receipt::Attestation {
            provider: "configfs-tsm/tdx_guest".into(),
            report: hex::encode(&quote),
            insecure: false,
            aux: None,
        });
        key.sign(&mut r, "w1");
        let lax = lax();
        assert!(lax.verify(&r).unwrap_err().to_string().contains("--tee-collateral"));
        // With collateral, the quote itself must verify: this one is not signed.
        let with_collateral = Trust {
            tee: TeePolicy { tdx_collateral: Some(COLLATERAL.into()), ..TeePolicy::default() },
            ..Trust::default()
        };
        let e = format!("{:#}", with_collateral.verify(&r).unwrap_err());
        assert!(e.contains("does not verify"), "{e}");
        quote[600] ^= 1;
        r.attestation.as_mut().unwrap().report = hex::encode(&quote);
        key.sign(&mut r, "w1");
        assert!(lax.verify(&r).unwrap_err().to_string().contains("does not bind"));
        // SEV-SNP: the binding is checked, then the report is refused.
        let mut snp = vec![0u8; 1184];
        snp[0] = 2; // report version 2
        snp[0x50..0x90].copy_from_slice(&crate::tee::binding(&key.public_key()));
        r.attestation = Some(zkfarm_prover::receipt::Attestation {
            provider: "configfs-tsm/sev_guest".into(),
            report: hex::encode(&snp),
            insecure: false,
            aux: None,
        });
        key.sign(&mut r, "w1");
        assert!(lax.verify(&r).unwrap_err().to_string().contains("--tee-vcek"));
        // A report that is not signed by a VCEK chaining to AMD's roots is refused.
        let vcek = rcgen::generate_simple_self_signed(vec!["vcek".to_string()]).unwrap().cert.pem();
        let strict =
            Trust { tee: TeePolicy { snp_vcek: Some(vcek.into_bytes()), ..TeePolicy::default() }, ..Trust::default() };
        let e = format!("{:#}", strict.verify(&r).unwrap_err());
        assert!(e.contains("AMD's roots") || e.contains("malformed"), "{e}");
    }
}
