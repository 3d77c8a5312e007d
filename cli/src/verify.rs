//! `zkfarm verify`: checks a receipt of any tier offline, given the trust
//! inputs its tier needs, or fetches them from a coordinator.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;
use zkfarm_attest::{TeePolicy, Trust, WorkerKey};
use zkfarm_client::ClientConfig;
use zkfarm_prover::{srs, KeyCache, Receipt, Srs, Tier, VerifierKey};

use crate::jobs::fetch_trust;
use crate::output::Output;

pub struct Inputs<'a> {
    pub vk: Option<&'a Path>,
    pub srs: Option<&'a Path>,
    pub worker_keys: Option<&'a Path>,
    pub tee: TeePolicy,
    pub coordinator: Option<&'a ClientConfig>,
}

pub fn cmd_verify(out: &Output, path: &Path, inputs: &Inputs<'_>) -> Result<()> {
    let receipt = Receipt::load(path)?;
    let trust = gather(&receipt, inputs)?;
    let (verdict, took) = out.step("verifying", || trust.verify(&receipt))?;
    for why in &verdict.insecure {
        out.warn(&format!("valid, but INSECURE: {why}"));
    }
    out.emit(
        json!({ "ok": true, "valid": true, "tier": receipt.tier, "outputs": receipt.outputs,
                "insecure": verdict.insecure, "job_id": receipt.job_id, "task_id": receipt.task_id }),
        || {
            format!(
                "valid {} receipt ({:.0} ms): outputs {:?}",
                receipt.tier,
                took.as_secs_f64() * 1e3,
                receipt.outputs
            )
        },
    );
    Ok(())
}

/// The trust inputs the receipt's tier needs: local files first, then the
/// coordinator when one is named.
fn gather(receipt: &Receipt, inputs: &Inputs<'_>) -> Result<Trust> {
    let mut trust = Trust { tee: inputs.tee.clone(), ..Trust::default() };
    if let Some(p) = inputs.worker_keys {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let keys: Vec<WorkerKey> = serde_json::from_str(&text).with_context(|| {
            format!("{} is not a worker key list ([{{\"worker_id\", \"public_key\"}}])", p.display())
        })?;
        trust.add_worker_keys(keys);
    }
    let zk = receipt.tier == Tier::Zk;
    let local_vk = match (zk, inputs.vk) {
        (false, _) => None,
        (true, Some(p)) => Some(VerifierKey::load(p)?),
        (true, None) => KeyCache::open_default()?.find_vk(&receipt.vk_hash)?,
    };
    let local_srs = match (zk, inputs.srs) {
        (false, _) => None,
        (true, Some(p)) => Some(srs::open(p)?),
        (true, None) if srs::default_path().exists() => {
            Some(srs::resolve(None)?).filter(|s| s.id == receipt.srs_id || inputs.coordinator.is_none())
        }
        (true, None) => None,
    };
    if let Some(c) = inputs.coordinator {
        let want_vk = if zk && local_vk.is_none() { vec![receipt.vk_hash.clone()] } else { vec![] };
        let srs_k = if zk && local_srs.is_none() { receipt.k } else { 0 };
        let remote = fetch_trust(c, want_vk, srs_k)?;
        for text in &remote.vk_json {
            trust.add_vk(VerifierKey::from_json(text)?);
        }
        trust.add_worker_keys(
            remote
                .worker_keys
                .into_iter()
                .map(|k| WorkerKey { worker_id: k.worker_id, public_key: hex::encode(k.public_key) }),
        );
        // The farm's TDX trust inputs fill in what was not given locally;
        // its dev-TEE setting never loosens the verifier's own.
        if trust.tee.tdx_collateral.is_none() && !remote.tdx_collateral_json.is_empty() {
            trust.tee.tdx_collateral = Some(remote.tdx_collateral_json.clone());
        }
        if trust.tee.tdx_root_ca.is_none() && !remote.tdx_root_ca_der.is_empty() {
            trust.tee.tdx_root_ca = Some(remote.tdx_root_ca_der.clone());
        }
        if trust.tee.tdx_mrtd.is_empty() {
            trust.tee.tdx_mrtd = remote.tdx_mrtd.clone();
        }
        if trust.tee.snp_measurements.is_empty() {
            trust.tee.snp_measurements = remote.snp_measurements.clone();
        }
        if !remote.srs.is_empty() {
            trust.srs = Some(Arc::new(Srs::from_bytes(&remote.srs).context("the coordinator's SRS")?));
        }
    }
    if let Some(vk) = local_vk {
        trust.add_vk(vk);
    }
    if let Some(s) = local_srs {
        trust.srs = Some(Arc::new(s));
    }
    if zk && trust.srs.is_none() {
        trust.srs = Some(Arc::new(srs::resolve(inputs.srs)?));
    }
    Ok(trust)
}
