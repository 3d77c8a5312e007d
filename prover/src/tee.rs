//! The `tee` tier: a signing key created inside the enclave, bound to it by
//! an attestation report whose report data is a hash of the public key.
//!
//! Providers: `configfs-tsm` reads a quote through Linux's configfs TSM
//! interface (`/sys/kernel/config/tsm/report`, TDX and SEV-SNP guests);
//! `dev` makes an unsigned stand-in report for development and is refused
//! unless insecure TEE receipts are explicitly allowed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use blake2::{Blake2b512, Digest};

use crate::identity::Identity;
use crate::receipt::{Attestation, Receipt};

const DEV_MAGIC: &[u8] = b"ZKFARM-DEV-TEE-REPORT v1\n";
pub const CONFIGFS_TSM: &str = "/sys/kernel/config/tsm/report";
/// Offset of the 64-byte report data in a TDX quote (v4 header + TD report body).
const TDX_REPORT_DATA: usize = 48 + 520;
/// Offset of the 64-byte report data in an SEV-SNP attestation report.
const SNP_REPORT_DATA: usize = 0x50;

/// The 64 report-data bytes that bind an ed25519 public key to a report.
pub fn binding(public_key: &[u8; 32]) -> [u8; 64] {
    let mut h = Blake2b512::new();
    h.update(b"zkfarm-tee-key-v1");
    h.update(public_key);
    h.finalize().into()
}

pub trait Provider: Send + Sync {
    /// "dev" or "configfs-tsm/<provider>".
    fn name(&self) -> String;
    fn insecure(&self) -> bool;
    /// A report over the given 64 bytes of report data.
    fn report(&self, report_data: &[u8; 64]) -> Result<Vec<u8>>;
}

/// The development provider: no hardware, no security.
pub struct DevProvider;

impl Provider for DevProvider {
    fn name(&self) -> String {
        "dev".into()
    }
    fn insecure(&self) -> bool {
        true
    }
    fn report(&self, report_data: &[u8; 64]) -> Result<Vec<u8>> {
        let mut r = DEV_MAGIC.to_vec();
        r.extend_from_slice(report_data);
        Ok(r)
    }
}

/// Quotes through configfs-tsm.
pub struct ConfigfsTsm {
    root: PathBuf,
    provider: String,
}

static REPORT_SEQ: AtomicU64 = AtomicU64::new(0);

impl ConfigfsTsm {
    /// Opens the configfs-tsm interface, or says why it is not usable here.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!(
                "{} does not exist: this machine is not a TDX or SEV-SNP guest with configfs-tsm \
                 (Linux 6.7+, configfs mounted)",
                root.display()
            );
        }
        let mut tsm = ConfigfsTsm { root: root.to_path_buf(), provider: String::new() };
        let probe = tsm.with_entry(|dir| read_trimmed(&dir.join("provider")))?;
        tsm.provider = probe;
        Ok(tsm)
    }

    fn with_entry<T>(&self, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        let name = format!("zkfarm-{}-{}", std::process::id(), REPORT_SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = self.root.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("creating report entry {}", dir.display()))?;
        let out = f(&dir);
        let _ = std::fs::remove_dir(&dir);
        out
    }
}

fn read_trimmed(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_string())
}

impl Provider for ConfigfsTsm {
    fn name(&self) -> String {
        format!("configfs-tsm/{}", self.provider)
    }
    fn insecure(&self) -> bool {
        false
    }
    fn report(&self, report_data: &[u8; 64]) -> Result<Vec<u8>> {
        self.with_entry(|dir| {
            std::fs::write(dir.join("inblob"), report_data).context("writing the report data")?;
            let before = read_trimmed(&dir.join("generation"))?;
            let quote = std::fs::read(dir.join("outblob")).context("reading the quote")?;
            // Another writer to the same entry changes the generation; the
            // quote would then cover someone else's data.
            if read_trimmed(&dir.join("generation"))? != before {
                bail!("the report entry changed while the quote was read");
            }
            Ok(quote)
        })
    }
}

/// The provider a worker asked for by name.
pub fn provider(name: &str, allow_insecure: bool) -> Result<Box<dyn Provider>> {
    match name {
        "dev" if allow_insecure => Ok(Box::new(DevProvider)),
        "dev" => bail!("the dev TEE provider makes forgeable reports; pass --allow-insecure-tee to use it"),
        "configfs-tsm" => Ok(Box::new(ConfigfsTsm::open(Path::new(CONFIGFS_TSM))?)),
        other => bail!("unknown TEE provider {other:?}: expected configfs-tsm or dev"),
    }
}

/// An enclave signing key and the report that binds it.
pub struct Enclave {
    key: Identity,
    attestation: Attestation,
}

impl Enclave {
    pub fn new(provider: &dyn Provider) -> Result<Self> {
        let key = Identity::ephemeral();
        let report = provider.report(&binding(&key.public_key()))?;
        let attestation =
            Attestation { provider: provider.name(), report: hex::encode(report), insecure: provider.insecure() };
        Ok(Enclave { key, attestation })
    }

    pub fn provider(&self) -> &str {
        &self.attestation.provider
    }

    /// Attaches the attestation and signs the receipt with the enclave key.
    pub fn sign(&self, receipt: &mut Receipt, worker_id: &str) {
        receipt.attestation = Some(self.attestation.clone());
        self.key.sign(receipt, worker_id);
    }
}

/// What a verifier accepts from TEEs: its trust roots and policy.
#[derive(Clone, Debug, Default)]
pub struct TeePolicy {
    /// Accept dev reports (insecure).
    pub allow_insecure: bool,
    /// Intel DCAP collateral for TDX quotes (JSON: PCK CRL and its issuer
    /// chain, root CA CRL, TCB info and QE identity with their signatures
    /// and issuer chains), as fetched from Intel PCS or a PCCS.
    pub tdx_collateral: Option<String>,
    /// Root CA (DER) the PCK chain must end in; Intel's SGX root CA if unset.
    pub tdx_root_ca: Option<Vec<u8>>,
    /// Accepted TD measurements (MRTD, hex); a TDX quote of any other TD is
    /// refused.
    pub tdx_mrtd: Vec<String>,
}

/// TCB statuses under which a quote is accepted.
const TDX_ACCEPTED_TCB: &[&str] = &["UpToDate", "SWHardeningNeeded"];

/// Checks that the attestation is genuine under `policy` and binds
/// `public_key`. Dev reports pass only when the policy allows insecure ones;
/// TDX quotes are checked against Intel's DCAP collateral; SEV-SNP reports
/// are refused until their AMD certificate chain can be checked here.
pub fn check_attestation(att: &Attestation, public_key: &[u8; 32], policy: &TeePolicy) -> Result<()> {
    let report = hex::decode(&att.report).context("the attestation report is not hex")?;
    let want = binding(public_key);
    match att.provider.as_str() {
        "dev" => {
            let data = report.strip_prefix(DEV_MAGIC).ok_or_else(|| anyhow!("not a dev TEE report"))?;
            if data != want {
                bail!("the dev report does not bind the receipt's signing key");
            }
            if !att.insecure {
                bail!("a dev TEE report must be marked insecure");
            }
            if !policy.allow_insecure {
                bail!(
                    "the receipt's TEE report comes from the insecure dev provider; pass --allow-insecure-tee to accept it"
                );
            }
            Ok(())
        }
        "configfs-tsm/tdx_guest" => {
            if slice64(&report, TDX_REPORT_DATA)? != want {
                bail!("the TDX quote does not bind the receipt's signing key");
            }
            check_tdx(&report, &want, policy)
        }
        "configfs-tsm/sev_guest" => {
            if slice64(&report, SNP_REPORT_DATA)? != want {
                bail!("the SEV-SNP report does not bind the receipt's signing key");
            }
            bail!("the SEV-SNP report binds the key, but checking its AMD certificate chain is not supported yet")
        }
        other => bail!("unknown attestation provider {other:?}"),
    }
}

/// Verifies a TDX quote with Intel DCAP (PCK chain to the root CA, CRLs, TCB
/// info, QE identity, quote signature), then the TCB status, the bound
/// report data and the TD measurement.
fn check_tdx(quote: &[u8], want: &[u8; 64], policy: &TeePolicy) -> Result<()> {
    use dcap_qvl::quote::Report;
    use dcap_qvl::verify::QuoteVerifier;

    let json = policy
        .tdx_collateral
        .as_deref()
        .ok_or_else(|| anyhow!("verifying a TDX quote needs Intel DCAP collateral: pass --tee-collateral FILE"))?;
    let collateral: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_str(json).context("the TDX collateral is not DCAP collateral JSON")?;
    let backend = dcap_qvl::verify::ring::backend();
    let verifier = match &policy.tdx_root_ca {
        Some(der) => QuoteVerifier::new(der.clone(), backend),
        None => QuoteVerifier::new_prod(backend),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let verified =
        verifier.verify(quote, &collateral, now).map_err(|e| anyhow!("the TDX quote does not verify: {e:#}"))?;
    if !TDX_ACCEPTED_TCB.contains(&verified.status.as_str()) {
        bail!("the TDX platform's TCB status is {} (accepted: {})", verified.status, TDX_ACCEPTED_TCB.join(", "));
    }
    let td = match &verified.report {
        Report::TD10(r) => r,
        Report::TD15(r) => &r.base,
        Report::SgxEnclave(_) => bail!("the quote is an SGX enclave quote, not a TDX one"),
    };
    if td.report_data[..] != want[..] {
        bail!("the verified TDX quote does not bind the receipt's signing key");
    }
    let mrtd = hex::encode(td.mr_td);
    if !policy.tdx_mrtd.iter().any(|m| m.eq_ignore_ascii_case(&mrtd)) {
        bail!("the TD's measurement {mrtd} is not an accepted one (pass --tee-mrtd)");
    }
    Ok(())
}

fn slice64(report: &[u8], at: usize) -> Result<&[u8]> {
    report.get(at..at + 64).ok_or_else(|| anyhow!("the attestation report is too short ({} bytes)", report.len()))
}
