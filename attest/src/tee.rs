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
use zkfarm_prover::receipt::{Attestation, Receipt};

const DEV_MAGIC: &[u8] = b"ZKFARM-DEV-TEE-REPORT v1\n";
pub const CONFIGFS_TSM: &str = "/sys/kernel/config/tsm/report";
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
    /// A report over the given 64 bytes of report data, and the provider's
    /// extra evidence if it has any.
    fn report(&self, report_data: &[u8; 64]) -> Result<(Vec<u8>, Option<Vec<u8>>)>;
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
    fn report(&self, report_data: &[u8; 64]) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        let mut r = DEV_MAGIC.to_vec();
        r.extend_from_slice(report_data);
        Ok((r, None))
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
    fn report(&self, report_data: &[u8; 64]) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.with_entry(|dir| {
            std::fs::write(dir.join("inblob"), report_data).context("writing the report data")?;
            let before = read_trimmed(&dir.join("generation"))?;
            let quote = std::fs::read(dir.join("outblob")).context("reading the quote")?;
            // Another writer to the same entry changes the generation; the
            // quote would then cover someone else's data.
            // SEV-SNP hosts may attach their certificate table (VCEK).
            let aux = std::fs::read(dir.join("auxblob")).ok().filter(|a| !a.is_empty());
            if read_trimmed(&dir.join("generation"))? != before {
                bail!("the report entry changed while the quote was read");
            }
            Ok((quote, aux))
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
        let (report, aux) = provider.report(&binding(&key.public_key()))?;
        let attestation = Attestation {
            provider: provider.name(),
            report: hex::encode(report),
            insecure: provider.insecure(),
            aux: aux.map(hex::encode),
        };
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
    /// The VCEK (or VLEK) certificate, PEM or DER, for SEV-SNP reports whose
    /// receipt carries no certificate table.
    pub snp_vcek: Option<Vec<u8>>,
    /// Accepted SEV-SNP launch measurements (hex).
    pub snp_measurements: Vec<String>,
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
            if tdx_report_data(&report)? != want {
                bail!("the TDX quote does not bind the receipt's signing key");
            }
            check_tdx(&report, &want, policy)
        }
        "configfs-tsm/sev_guest" => {
            if slice64(&report, SNP_REPORT_DATA)? != want {
                bail!("the SEV-SNP report does not bind the receipt's signing key");
            }
            let aux = att.aux.as_deref().map(hex::decode).transpose().context("the certificate table is not hex")?;
            check_snp(&report, aux.as_deref(), &want, policy)
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

/// The report data of a TDX quote, read before the (slower, collateral-bound)
/// verification so that a quote over another key is refused with that reason.
/// The quote is parsed, not indexed: a v5 quote puts a body descriptor
/// before the TD report, which moves the report data by six bytes.
fn tdx_report_data(quote: &[u8]) -> Result<[u8; 64]> {
    let parsed = dcap_qvl::quote::Quote::parse(quote).map_err(|e| anyhow!("malformed TDX quote: {e:#}"))?;
    let td = parsed.report.as_td10().ok_or_else(|| anyhow!("the quote is an SGX enclave quote, not a TDX one"))?;
    Ok(td.report_data)
}

/// Size of an SEV-SNP attestation report.
const SNP_REPORT_LEN: usize = 0x4a0;
/// GUIDs of the VCEK and VLEK entries of an SEV-SNP certificate table.
const SNP_VCEK_GUID: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
const SNP_VLEK_GUID: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";

/// Verifies an SEV-SNP report: the VCEK chains to one of AMD's product roots
/// (ARK, ASK; Milan, Genoa or Turin), the VCEK signs the report, the report
/// binds the key, debugging is off and the measurement is accepted.
fn check_snp(report: &[u8], aux: Option<&[u8]>, want: &[u8; 64], policy: &TeePolicy) -> Result<()> {
    use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
    use sev::firmware::guest::AttestationReport;

    if report.len() != SNP_REPORT_LEN {
        bail!("an SEV-SNP report is {SNP_REPORT_LEN} bytes, this one {}", report.len());
    }
    let vcek_bytes = match (&policy.snp_vcek, aux) {
        (Some(v), _) => v.clone(),
        (None, Some(table)) => snp_cert(table, &[SNP_VCEK_GUID, SNP_VLEK_GUID])?
            .ok_or_else(|| anyhow!("the receipt's certificate table holds no VCEK or VLEK"))?,
        (None, None) => bail!("verifying an SEV-SNP report needs the VCEK certificate: pass --tee-vcek FILE"),
    };
    let vek = Certificate::from_pem(&vcek_bytes)
        .or_else(|_| Certificate::from_der(&vcek_bytes))
        .map_err(|e| anyhow!("the VCEK is not a certificate: {e}"))?;
    // The parser indexes into the bytes; a malformed report must not panic.
    let parsed = std::panic::catch_unwind(|| AttestationReport::from_bytes(report))
        .map_err(|_| anyhow!("malformed SEV-SNP report"))?
        .map_err(|e| anyhow!("malformed SEV-SNP report: {e}"))?;
    let roots = [
        (builtin::milan::ark(), builtin::milan::ask()),
        (builtin::genoa::ark(), builtin::genoa::ask()),
        (builtin::turin::ark(), builtin::turin::ask()),
    ];
    let signed = roots.into_iter().any(|(ark, ask)| match (ark, ask) {
        (Ok(ark), Ok(ask)) => {
            let chain = Chain { ca: ca::Chain { ark, ask }, vek: vek.clone() };
            (&chain, &parsed).verify().is_ok()
        }
        _ => false,
    });
    if !signed {
        bail!("the SEV-SNP report is not signed by a VCEK that chains to AMD's roots");
    }
    if parsed.report_data[..] != want[..] {
        bail!("the verified SEV-SNP report does not bind the receipt's signing key");
    }
    if parsed.policy.debug_allowed() {
        bail!("the SEV-SNP guest allows debugging, so its memory is not protected");
    }
    let measurement = hex::encode(&parsed.measurement[..]);
    if !policy.snp_measurements.iter().any(|m| m.eq_ignore_ascii_case(&measurement)) {
        bail!("the guest's measurement {measurement} is not an accepted one (pass --tee-snp-measurement)");
    }
    Ok(())
}

/// Finds the first certificate with one of `guids` in an SEV-SNP certificate
/// table: entries of (GUID, offset u32, length u32), ended by a zero GUID.
pub fn snp_cert(table: &[u8], guids: &[&str]) -> Result<Option<Vec<u8>>> {
    for entry in table.chunks(24) {
        if entry.len() < 24 {
            bail!("the certificate table ends inside an entry");
        }
        if entry[..16].iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let g = &entry[..16];
        // GUIDs are stored with their first three fields little-endian.
        let guid = format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
            g[3],
            g[2],
            g[1],
            g[0],
            g[5],
            g[4],
            g[7],
            g[6],
            hex::encode(&g[8..10]),
            hex::encode(&g[10..16])
        );
        let offset = u32::from_le_bytes(entry[16..20].try_into().expect("4 bytes")) as usize;
        let len = u32::from_le_bytes(entry[20..24].try_into().expect("4 bytes")) as usize;
        if guids.contains(&guid.as_str()) {
            let cert = table
                .get(offset..offset.saturating_add(len))
                .ok_or_else(|| anyhow!("a certificate lies outside the certificate table"))?;
            return Ok(Some(cert.to_vec()));
        }
    }
    bail!("the certificate table has no end marker")
}

fn slice64(report: &[u8], at: usize) -> Result<&[u8]> {
    report.get(at..at + 64).ok_or_else(|| anyhow!("the attestation report is too short ({} bytes)", report.len()))
}

#[cfg(test)]
/// A TDX quote laid out by Intel's DCAP quote format (header, for v5 a
/// body descriptor, the TD report, then ECDSA auth data with an empty QE
/// certification chain): enough to parse, not to verify.
pub(crate) fn tdx_quote(version: u16, report_data: &[u8; 64]) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend(version.to_le_bytes());
    q.extend(2u16.to_le_bytes()); // ECDSA-256 attestation key
    q.extend(0x81u32.to_le_bytes()); // TEE type TDX
    q.extend([0u8; 2 + 2 + 16 + 20]); // QE SVN, PCE SVN, QE vendor, user data
    if version == 5 {
        q.extend(3u16.to_le_bytes()); // body: TD report 1.5
        q.extend(648u32.to_le_bytes());
    }
    q.extend([0u8; 520]); // TCB SVN .. RTMR3
    q.extend(report_data);
    if version == 5 {
        q.extend([0u8; 16 + 48]); // TEE TCB SVN 2, MRSERVICETD
    }
    let mut qe = vec![0u8; 384 + 64]; // QE report and its signature
    qe.extend(0u16.to_le_bytes()); // QE auth data, empty
    qe.extend(5u16.to_le_bytes()); // PCK chain, empty
    qe.extend(0u32.to_le_bytes());
    let mut auth = vec![0u8; 64 + 64]; // quote signature, attestation key
    auth.extend(6u16.to_le_bytes()); // QE report certification data
    auth.extend((qe.len() as u32).to_le_bytes());
    auth.extend(qe);
    q.extend((auth.len() as u32).to_le_bytes());
    q.extend(auth);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(guid: [u8; 16], offset: u32, len: u32) -> Vec<u8> {
        let mut e = guid.to_vec();
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e
    }

    #[test]
    fn finds_the_vcek_in_a_certificate_table() {
        // 63da758d-e664-4564-adc5-f4b93be8accd, first three fields little-endian.
        let vcek = [0x8d, 0x75, 0xda, 0x63, 0x64, 0xe6, 0x64, 0x45, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd];
        let other = [7u8; 16];
        let mut table = entry(other, 72, 3);
        table.extend(entry(vcek, 75, 4));
        table.extend(entry([0; 16], 0, 0));
        table.extend_from_slice(b"ASKVCEK");
        assert_eq!(snp_cert(&table, &[SNP_VCEK_GUID]).unwrap().unwrap(), b"VCEK");
        assert_eq!(snp_cert(&table, &["00000000-0000-0000-0000-000000000001"]).unwrap(), None);
        let mut out_of_range = entry(vcek, 70, 400);
        out_of_range.extend(entry([0; 16], 0, 0));
        assert!(snp_cert(&out_of_range, &[SNP_VCEK_GUID]).is_err());
        assert!(snp_cert(&table[..30], &[SNP_VCEK_GUID]).is_err(), "a cut table is refused");
    }

    #[test]
    fn reads_the_report_data_of_v4_and_v5_tdx_quotes() {
        let key = [9u8; 32];
        let want = binding(&key);
        let policy = TeePolicy::default();
        for version in [4, 5] {
            let quote = tdx_quote(version, &want);
            assert_eq!(tdx_report_data(&quote).unwrap(), want, "v{version}");
            let att = |quote: &[u8]| Attestation {
                provider: "configfs-tsm/tdx_guest".into(),
                report: hex::encode(quote),
                insecure: false,
                aux: None,
            };
            // The binding holds, so the check goes on to ask for collateral.
            let err = check_attestation(&att(&quote), &key, &policy).unwrap_err().to_string();
            assert!(err.contains("collateral"), "v{version}: {err}");
            let err = check_attestation(&att(&quote), &[8u8; 32], &policy).unwrap_err().to_string();
            assert!(err.contains("does not bind"), "v{version}: {err}");
            let err = check_attestation(&att(&quote[..600]), &key, &policy).unwrap_err().to_string();
            assert!(err.contains("malformed TDX quote"), "v{version}: {err}");
        }
    }
}
