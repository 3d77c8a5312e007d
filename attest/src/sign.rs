//! Attaching a tier's evidence to a receipt on the worker.

use anyhow::{anyhow, Result};
use zkfarm_prover::{Receipt, Tier};

use crate::identity::Identity;
use crate::tee::Enclave;

/// The keys a worker signs with: its registered identity, and an enclave
/// key when it runs in a TEE.
pub struct Signers {
    pub identity: Identity,
    pub enclave: Option<Enclave>,
}

impl Signers {
    /// Whether this worker can make receipts of `tier`.
    pub fn offers(&self, tier: Tier) -> bool {
        match tier {
            Tier::Zk | Tier::Signed => true,
            Tier::Tee => self.enclave.is_some(),
        }
    }

    /// The tiers this worker offers.
    pub fn tiers(&self) -> Vec<Tier> {
        Tier::ALL.into_iter().filter(|t| self.offers(*t)).collect()
    }

    /// Signs the receipt as its tier asks: a zk receipt's evidence is its
    /// proof and it is left as it is.
    pub fn sign(&self, receipt: &mut Receipt, worker_id: &str) -> Result<()> {
        match receipt.tier {
            Tier::Zk => {}
            Tier::Signed => self.identity.sign(receipt, worker_id),
            Tier::Tee => {
                let enclave = self.enclave.as_ref().ok_or_else(|| anyhow!("this worker has no TEE provider"))?;
                enclave.sign(receipt, worker_id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tee::DevProvider;
    use crate::trust::{Trust, WorkerKey};
    use crate::TeePolicy;

    fn receipt(tier: Tier) -> Receipt {
        crate::trust::tests::receipt(tier)
    }

    #[test]
    fn each_tier_gets_its_own_evidence_and_tee_needs_an_enclave() {
        let plain = Signers { identity: Identity::ephemeral(), enclave: None };
        assert_eq!(plain.tiers(), vec![Tier::Zk, Tier::Signed]);
        let mut zk = receipt(Tier::Zk);
        plain.sign(&mut zk, "w").unwrap();
        assert!(zk.signer.is_none() && zk.attestation.is_none());
        let mut tee = receipt(Tier::Tee);
        assert!(plain.sign(&mut tee, "w").unwrap_err().to_string().contains("no TEE provider"));

        let signers =
            Signers { identity: Identity::ephemeral(), enclave: Some(crate::tee::Enclave::new(&DevProvider).unwrap()) };
        assert_eq!(signers.tiers(), Tier::ALL.to_vec());
        let mut signed = receipt(Tier::Signed);
        signers.sign(&mut signed, "w").unwrap();
        signers.sign(&mut tee, "w").unwrap();
        let mut trust = Trust { tee: TeePolicy { allow_insecure: true, ..TeePolicy::default() }, ..Trust::default() };
        trust.add_worker_keys([WorkerKey { worker_id: "w".into(), public_key: signers.identity.public_key_hex() }]);
        assert!(trust.verify(&signed).is_ok());
        assert!(trust.verify(&tee).is_ok());
        assert!(tee.attestation.is_some() && signed.attestation.is_none());
    }
}
