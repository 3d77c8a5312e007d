//! TLS to the database, as libpq's `sslmode` and `sslrootcert` URL
//! parameters ask: `disable`, `allow` and `prefer` (the default) connect in
//! plain TCP; `require`, `verify-ca` and `verify-full` connect over TLS and
//! always verify the server's certificate chain and name, against the CA
//! certificates in `sslrootcert` (a PEM file) or else the system's. The
//! client library understands neither parameter's full set of values, so
//! they are taken out of the URL before it parses the rest.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use postgres::config::SslMode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the URL asked of TLS.
pub(super) struct TlsChoice {
    /// The URL without `sslmode` and `sslrootcert`.
    pub url: String,
    /// The connector: None for plain TCP.
    pub tls: Option<MakeRustlsConnect>,
}

impl TlsChoice {
    /// The client library's mode for this choice.
    pub fn mode(&self) -> SslMode {
        if self.tls.is_some() {
            SslMode::Require
        } else {
            SslMode::Disable
        }
    }
}

/// Reads `sslmode` and `sslrootcert` from `url`'s query.
pub(super) fn choose(url: &str) -> Result<TlsChoice> {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let (mut mode, mut root) = (None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_string()),
            Some(("sslrootcert", v)) => root = Some(v.to_string()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) };
    let tls = match mode.as_deref().unwrap_or("prefer") {
        "disable" | "allow" | "prefer" => None,
        "require" | "verify-ca" | "verify-full" => Some(connector(root.as_deref())?),
        other => bail!("--store: sslmode={other} (disable, allow, prefer, require, verify-ca or verify-full)"),
    };
    if tls.is_none() && root.is_some() {
        bail!("--store: sslrootcert is given but sslmode does not ask for TLS (use sslmode=verify-full)");
    }
    Ok(TlsChoice { url, tls })
}

/// A TLS connector that trusts the CAs in `root` (PEM), or the system's.
fn connector(root: Option<&str>) -> Result<MakeRustlsConnect> {
    let mut roots = RootCertStore::empty();
    match root {
        Some(path) => {
            let certs = read_pem_certs(Path::new(path))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                bail!("--store: sslrootcert {path} holds no usable CA certificate");
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                bail!("--store: no system CA certificates found; give sslrootcert=FILE");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS configuration for the job store")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow!("--store: reading sslrootcert {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("--store: sslrootcert {} is not PEM: {e}", path.display()))?;
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_are_read_and_taken_out_of_the_url() {
        let plain = choose("postgres://u@h/db?connect_timeout=5").unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(plain.url, "postgres://u@h/db?connect_timeout=5");
        let prefer = choose("postgres://u@h/db?sslmode=prefer&connect_timeout=5").unwrap();
        assert_eq!((prefer.url.as_str(), prefer.tls.is_none()), ("postgres://u@h/db?connect_timeout=5", true));
        let err = choose("postgres://u@h/db?sslmode=sometimes").err().unwrap().to_string();
        assert!(err.contains("sslmode=sometimes"), "{err}");
        let err = choose("postgres://u@h/db?sslrootcert=/ca.pem").err().unwrap().to_string();
        assert!(err.contains("does not ask for TLS"), "{err}");
        let err = choose("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem").err().unwrap();
        assert!(err.to_string().contains("reading sslrootcert /nonexistent.pem"), "{err}");
    }
}
