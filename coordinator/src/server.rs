//! Running a coordinator: the gRPC server (optionally TLS), authentication,
//! message limits and the sweep that expires leases.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use zkfarm_proto::net::MAX_MESSAGE_BYTES;
use zkfarm_proto::v1::prover_farm_server::ProverFarmServer;
use zkfarm_proto::v1::worker_link_server::WorkerLinkServer;

use crate::api::{ClientApi, WorkerApi};
use crate::auth::{Auth, KEY_RELOAD};
use crate::farm::Farm;

/// PEM files of the server's certificate chain and private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Binds `addr`; the listener is handed to [`serve`]. Binding first lets a
/// caller learn the port before serving (port 0 in tests).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

/// Serves both services until `shutdown` resolves, then drains: no new jobs
/// or leases, watchers told to reconnect elsewhere, requests in flight (a
/// worker's report, a heartbeat) answered, and only then returns. Every
/// state change is its own committed transaction, so nothing is lost
/// however the process ends; the drain spares clients and workers errors.
/// `ready` holds while it serves and not draining.
pub async fn serve(
    farm: Arc<Farm>,
    auth: Arc<Auth>,
    listener: TcpListener,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    let mut builder = Server::builder().tcp_nodelay(true).http2_keepalive_interval(Some(Duration::from_secs(20)));
    if let Some(t) = &tls {
        let cert = std::fs::read(&t.cert).with_context(|| format!("reading TLS certificate {}", t.cert.display()))?;
        let key = std::fs::read(&t.key).with_context(|| format!("reading TLS key {}", t.key.display()))?;
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .context("TLS configuration")?;
    }
    // gRPC's own limit sits above the farm's limits, so an oversized model
    // or input gets the farm's clear message rather than a framing error.
    let max_message = (farm.cfg.limits.max_model_bytes + (1 << 20)).max(MAX_MESSAGE_BYTES);
    let client_api = ProverFarmServer::new(ClientApi { farm: farm.clone() })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let worker_api = WorkerLinkServer::new(WorkerApi { farm: farm.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(max_message);
    // Leases expire and tasks are requeued by the sweep; API keys made or
    // revoked with `zkfarm apikey` reach the server by the reload.
    let sweep_every = (farm.cfg.lease / 10).clamp(Duration::from_millis(100), Duration::from_secs(2));
    let f = farm.clone();
    let sweeper = tokio::spawn(every(sweep_every, "sweep", move || f.sweep()));
    let (f, a) = (farm.clone(), auth.clone());
    let reloader = tokio::spawn(every(KEY_RELOAD, "rereading the API keys", move || {
        if a.reload(&**f.store())? {
            tracing::info!("API keys reloaded");
        }
        Ok(())
    }));
    let (f, r) = (farm.clone(), ready.clone());
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: draining");
        r.store(false, Ordering::SeqCst);
        f.drain();
    };
    ready.store(true, Ordering::SeqCst);
    let served = builder
        .add_service(tonic::service::interceptor::InterceptedService::new(client_api, auth.client()))
        .add_service(tonic::service::interceptor::InterceptedService::new(worker_api, auth.worker()))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    sweeper.abort();
    reloader.abort();
    served.context("the gRPC server failed")
}

/// Runs the blocking `job` every `period`, off the async threads, until
/// aborted; a failure is logged and the next round runs as usual.
async fn every(period: Duration, what: &'static str, job: impl Fn() -> Result<()> + Clone + Send + 'static) {
    loop {
        tokio::time::sleep(period).await;
        match tokio::task::spawn_blocking(job.clone()).await {
            Ok(Err(e)) => tracing::error!("{what} failed: {e:#}"),
            Err(e) => tracing::error!("{what} panicked: {e}"),
            Ok(Ok(())) => {}
        }
    }
}
