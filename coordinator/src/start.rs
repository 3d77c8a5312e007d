//! Starting a coordinator: open the farm's data directory (job store, keys,
//! the first API key and the worker token), bind the listener, then serve.
//! The CLI, the benchmarks and the tests all start one this way.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use zkfarm_prover::Srs;

use crate::auth::{self, Auth};
use crate::farm::{Farm, FarmConfig};
use crate::server::{self, TlsFiles};

/// How to start a coordinator.
pub struct StartOptions {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The farm's rules; its `data_dir` holds the store and secrets.
    pub config: FarmConfig,
    pub tls: Option<TlsFiles>,
    /// The token workers present; read from (or created in) the data
    /// directory when not given.
    pub worker_token: Option<String>,
    /// API keys to accept, as `name:key` lines, added to the store at start
    /// (no `local` key is made when it names any).
    pub api_keys_file: Option<PathBuf>,
}

/// A coordinator with its store open and its port bound, not yet serving.
pub struct Coordinator {
    pub farm: Arc<Farm>,
    auth: Arc<Auth>,
    listener: TcpListener,
    pub worker_token: String,
    pub tls: Option<TlsFiles>,
    /// Whether this start created the data directory's first API key.
    pub created_api_key: bool,
    /// Readiness: true while serving and not draining (`/readyz`).
    pub ready: Arc<AtomicBool>,
}

impl Coordinator {
    pub async fn start(opts: StartOptions, srs: Arc<Srs>) -> Result<Self> {
        let data = opts.config.data_dir.clone();
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let farm = Arc::new(Farm::open(opts.config, srs)?);
        if let Some(path) = &opts.api_keys_file {
            let n = auth::import_api_keys(&**farm.store(), path)?;
            tracing::info!("{n} API key(s) from {}", path.display());
        }
        let created_api_key = auth::ensure_first_api_key(&**farm.store(), &data)?;
        let worker_token = auth::worker_token(&data, opts.worker_token.as_deref())?;
        let auth = Arc::new(Auth::new(&**farm.store(), &worker_token)?);
        let listener = server::bind(opts.listen).await?;
        let ready = Arc::new(AtomicBool::new(false));
        Ok(Coordinator { farm, auth, listener, worker_token, tls: opts.tls, created_api_key, ready })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The URL local clients and workers reach it at (`https://localhost:…`
    /// under TLS, so the certificate's name matches).
    pub fn url(&self) -> Result<String> {
        let addr = self.local_addr()?;
        Ok(match &self.tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        })
    }

    /// The CA certificate local clients need: the server's own under TLS.
    pub fn tls_ca(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|t| t.cert.clone())
    }

    /// The file holding the API key made on first start.
    pub fn api_key_path(&self) -> PathBuf {
        self.farm.cfg.data_dir.join("api-key")
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        server::serve(self.farm, self.auth, self.listener, self.tls, shutdown, self.ready).await
    }
}
