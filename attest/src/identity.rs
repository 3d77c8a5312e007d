//! A worker's ed25519 identity: the key that signs `signed` receipts, kept in
//! the data directory so a restarted worker keeps its registered key.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::rngs::OsRng;

use zkfarm_prover::home;
use zkfarm_prover::receipt::{Receipt, Signer};

pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh key that lives only in memory (the TEE tier's enclave key).
    pub fn ephemeral() -> Self {
        Identity { key: SigningKey::generate(&mut OsRng) }
    }

    /// Loads the key at `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if path.exists() {
            let bytes = std::fs::read(path).with_context(|| format!("reading worker key {}", path.display()))?;
            let secret: [u8; 32] =
                bytes.try_into().map_err(|_| anyhow!("worker key {} is not 32 bytes", path.display()))?;
            return Ok(Identity { key: SigningKey::from_bytes(&secret) });
        }
        let id = Self::ephemeral();
        home::write_private(path, &id.key.to_bytes())?;
        Ok(id)
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key())
    }

    /// Signs the receipt's fields, setting its `signer`.
    pub fn sign(&self, receipt: &mut Receipt, worker_id: &str) {
        let public_key = self.public_key_hex();
        receipt.signer = None;
        let sig = self.key.sign(&receipt.signing_bytes(worker_id, &public_key));
        receipt.signer =
            Some(Signer { worker_id: worker_id.to_string(), public_key, signature: hex::encode(sig.to_bytes()) });
    }
}

/// Parses a hex ed25519 public key.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey> {
    let bytes = hex::decode(hex_key).context("the public key is not hex")?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| anyhow!("an ed25519 public key is 32 bytes"))?;
    VerifyingKey::from_bytes(&arr).map_err(|e| anyhow!("invalid ed25519 public key: {e}"))
}

/// Checks the receipt's signature against the key it names.
pub fn check_signature(receipt: &Receipt) -> Result<&Signer> {
    let signer = receipt.signer.as_ref().ok_or_else(|| anyhow!("the {} receipt carries no signature", receipt.tier))?;
    let key = parse_public_key(&signer.public_key)?;
    let sig_bytes = hex::decode(&signer.signature).context("the signature is not hex")?;
    let sig = Signature::from_slice(&sig_bytes).map_err(|e| anyhow!("malformed signature: {e}"))?;
    if key.verify_strict(&receipt.signing_bytes(&signer.worker_id, &signer.public_key), &sig).is_err() {
        bail!("the signature does not match the receipt's fields");
    }
    Ok(signer)
}
