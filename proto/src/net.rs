//! Connecting to a coordinator: endpoint, optional TLS and the bearer secret
//! (an API key for clients, the worker token for workers). Where several
//! coordinators share one job store, a comma-separated list of their URLs
//! gives a channel that moves to the next when the one in use dies.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tonic::codegen::{http, BoxFuture, Service};
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

pub type AuthChannel = InterceptedService<Coordinators, Bearer>;

/// A channel to one coordinator, or to the first of several that share a
/// job store: calls go to the coordinator in use until a call to it fails
/// to connect or is refused as unavailable (it is shutting down); later
/// calls then go to the next in the list, round and round. The failed call
/// itself returns its error, which workers and clients retry.
#[derive(Clone)]
pub struct Coordinators {
    urls: Arc<[String]>,
    /// One per URL, in the list's order.
    channels: Vec<Channel>,
    /// The index of the coordinator in use, shared by every clone.
    current: Arc<AtomicUsize>,
    /// The channel `poll_ready` readied, which `call` must use.
    readied: Option<usize>,
}

impl Coordinators {
    fn new(urls: Vec<String>, channels: Vec<Channel>, first: usize) -> Self {
        Coordinators { urls: urls.into(), channels, current: Arc::new(AtomicUsize::new(first)), readied: None }
    }

    /// Moves on from coordinator `from`, unless another call already has.
    fn moved_from(current: &AtomicUsize, urls: &[String], from: usize) {
        let next = (from + 1) % urls.len();
        if urls.len() > 1 && current.compare_exchange(from, next, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            tracing::warn!("coordinator {} is unavailable; moving to {}", urls[from], urls[next]);
        }
    }
}

impl Service<http::Request<tonic::body::Body>> for Coordinators {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        let i = self.current.load(Ordering::SeqCst) % self.channels.len();
        match self.channels[i].poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.readied = Some(i);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                Self::moved_from(&self.current, &self.urls, i);
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        // tonic readies a service before every call; without that the
        // channel itself refuses the call.
        let i = self.readied.take().unwrap_or_else(|| self.current.load(Ordering::SeqCst) % self.channels.len());
        let call = self.channels[i].call(req);
        let (current, urls) = (self.current.clone(), self.urls.clone());
        Box::pin(async move {
            let out = call.await;
            // A refusal as unavailable comes as a response whose headers
            // carry gRPC status 14.
            let unavailable = match &out {
                Err(_) => true,
                Ok(resp) => resp.headers().get("grpc-status").is_some_and(|v| v.as_bytes() == b"14"),
            };
            if unavailable {
                Self::moved_from(&current, &urls, i);
            }
            out
        })
    }
}

/// The URLs of a comma-separated list.
fn split_urls(list: &str) -> Result<Vec<String>> {
    let urls: Vec<String> = list.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect();
    if urls.is_empty() {
        bail!("no coordinator URL given");
    }
    Ok(urls)
}

/// Opens a channel to `urls` (one `http://` or `https://` URL, or several
/// separated by commas), connected to the first coordinator that answers.
/// For https, `ca` is the PEM certificate that signed the coordinators'
/// certificates.
pub async fn connect(urls: &str, ca: Option<&Path>) -> Result<Coordinators> {
    let urls = split_urls(urls)?;
    let mut channels = Vec::with_capacity(urls.len());
    let mut first = None;
    let mut errors = Vec::new();
    for url in &urls {
        let endpoint = endpoint(url, ca)?;
        if first.is_none() {
            match endpoint.connect().await {
                Ok(channel) => {
                    first = Some(channels.len());
                    channels.push(channel);
                    continue;
                }
                Err(e) => errors.push(format!("{url} ({e})")),
            }
        }
        channels.push(endpoint.connect_lazy());
    }
    let Some(first) = first else {
        bail!("cannot reach the coordinator at {}", errors.join(", "));
    };
    Ok(Coordinators::new(urls, channels, first))
}

/// Like [`connect`], but connects on first use and reconnects after a
/// coordinator restarts: for long-lived workers.
pub fn connect_lazy(urls: &str, ca: Option<&Path>) -> Result<Coordinators> {
    let urls = split_urls(urls)?;
    let channels = urls.iter().map(|u| Ok(endpoint(u, ca)?.connect_lazy())).collect::<Result<_>>()?;
    Ok(Coordinators::new(urls, channels, 0))
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

/// Errors that a later call may not repeat: the coordinator is down,
/// restarting or overloaded. Workers and clients retry these.
pub fn is_transient(s: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Internal)
}
