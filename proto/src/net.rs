//! Connecting to a coordinator: endpoint, optional TLS and the bearer secret
//! (an API key for clients, the worker token for workers).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

/// Largest gRPC message accepted or sent by zkfarm clients and workers:
/// receipts and SRS transfers are a few MiB.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Adds `authorization: Bearer <secret>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    pub fn new(secret: &str) -> Result<Self> {
        let value = format!("Bearer {}", secret.trim());
        Ok(Bearer(value.parse().context("the API key or token has characters that cannot be sent")?))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// Opens a channel to `url` (`http://` or `https://`). For https, `ca` is the
/// PEM certificate that signed the coordinator's certificate.
pub async fn connect(url: &str, ca: Option<&Path>) -> Result<Channel> {
    endpoint(url, ca)?.connect().await.with_context(|| format!("cannot reach the coordinator at {url}"))
}

fn endpoint(url: &str, ca: Option<&Path>) -> Result<Endpoint> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("{url:?} is not a valid coordinator URL"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        match ca {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("reading CA certificate {}", path.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            None => bail!("{url} uses TLS: pass --tls-ca with the certificate that signed the coordinator's"),
        }
        endpoint = endpoint.tls_config(tls).context("TLS configuration")?;
    } else if ca.is_some() {
        bail!("--tls-ca was given but {url} is not an https:// URL");
    }
    Ok(endpoint)
}

/// Like [`connect`], but connects on first use and reconnects after the
/// coordinator restarts: for long-lived workers.
pub fn connect_lazy(url: &str, ca: Option<&Path>) -> Result<Channel> {
    Ok(endpoint(url, ca)?.connect_lazy())
}

/// Errors that a later call may not repeat: the coordinator is down,
/// restarting or overloaded. Workers and clients retry these.
pub fn is_transient(s: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Internal)
}
