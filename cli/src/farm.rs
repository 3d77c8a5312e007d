//! The commands that run a farm: `coordinator`, `worker`, `serve` (a
//! coordinator with local workers) and `apikey`. They parse arguments and
//! call the coordinator and worker libraries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use tokio::sync::watch;
use zkfarm_attest::{tee, TeePolicy};
use zkfarm_coordinator::auth;
use zkfarm_coordinator::store;
use zkfarm_coordinator::{telemetry, Coordinator, FarmConfig, Limits, StartOptions, TlsFiles};
use zkfarm_prover::{home, srs, EngineChoice, Prover, Srs};
use zkfarm_worker::{key_cache, LocalSpec, LocalWorkers, WorkerConfig};

use crate::output::Output;
use crate::DEFAULT_URL;

/// The farm's data directory: job store, keys, API key and worker token.
pub fn default_data_dir() -> PathBuf {
    home::data_dir().join("farm")
}

#[derive(Args, Clone)]
pub struct CoordinatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Data directory (job store, keys, secrets); default `$ZKFARM_HOME/farm`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The job store: a `postgres://user:password@host:port/database` URL,
    /// which several coordinators share, or `sqlite` (the default: a file in
    /// the data directory, for one coordinator).
    #[arg(long, env = "ZKFARM_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// The SRS to prove against; the default SRS otherwise.
    #[arg(long)]
    pub srs: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Lease length; workers renew leases with heartbeats at a third of it.
    #[arg(long, default_value_t = 30_000)]
    pub lease_ms: u64,
    /// Retryable failures a task may have before it fails.
    #[arg(long, default_value_t = 3)]
    pub max_retries: u32,
    /// Accept receipts of the insecure dev TEE provider.
    #[arg(long)]
    pub allow_insecure_tee: bool,
    #[command(flatten)]
    pub tee: TeeArgs,
    /// TLS certificate chain (PEM); with --tls-key, serve over TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The token workers present; read from (or created in) the data directory otherwise.
    #[arg(long, env = "ZKFARM_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// Largest ONNX model accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_model_bytes: usize,
    /// Largest input of one inference request, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_input_bytes: usize,
    /// Most inference requests in one job.
    #[arg(long, default_value_t = 10_000)]
    pub max_batch: usize,
    /// Largest circuit (k) a registered model may need.
    #[arg(long, default_value_t = 22)]
    pub max_k: u32,
    /// API keys to accept: a file of `name:key` lines (e.g. a mounted
    /// Secret), added to the store at start.
    #[arg(long, env = "ZKFARM_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct WorkerArgs {
    /// Proving engine: auto (cuda when available, else cpu), cpu or cuda.
    #[arg(long, default_value = "auto", env = "ZKFARM_ENGINE")]
    pub engine: EngineChoice,
    /// Shared proving-key cache, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "ZKFARM_REDIS")]
    pub redis: Option<String>,
    /// TEE provider for `tee` tasks: configfs-tsm or dev.
    #[arg(long)]
    pub tee: Option<String>,
    /// Lanes per worker that take only signed and tee tasks, so they run
    /// while a proof does (0: cheap tasks wait for the proving lane).
    #[arg(long, default_value_t = 1, env = "ZKFARM_CHEAP_LANES")]
    pub cheap_lanes: usize,
    /// On SIGTERM, seconds running tasks may take to finish before they are
    /// handed back to the coordinator.
    #[arg(long, default_value_t = 25, env = "ZKFARM_DRAIN_TIMEOUT")]
    pub drain_timeout: u64,
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn farm_config(a: &CoordinatorArgs, data: PathBuf) -> Result<FarmConfig> {
    let mut cfg = FarmConfig::new(data);
    cfg.store = a.store.clone();
    cfg.lease = Duration::from_millis(a.lease_ms.max(100));
    cfg.dead_after = cfg.lease * 3;
    cfg.max_retries = a.max_retries;
    cfg.tee = a.tee.policy(a.allow_insecure_tee)?;
    cfg.limits = Limits {
        max_model_bytes: a.max_model_bytes,
        max_input_bytes: a.max_input_bytes,
        max_batch: a.max_batch,
        max_k: a.max_k,
    };
    Ok(cfg)
}

/// Trust inputs for hardware TEE receipts (TDX).
#[derive(Args, Clone, Default)]
pub struct TeeArgs {
    /// Intel DCAP collateral (JSON) for TDX quotes, from Intel PCS or a PCCS.
    #[arg(long)]
    pub tee_collateral: Option<PathBuf>,
    /// Root CA (DER) for TDX quotes, when not Intel's SGX root CA.
    #[arg(long)]
    pub tee_root_ca: Option<PathBuf>,
    /// An accepted TD measurement (MRTD, hex); repeat for several.
    #[arg(long)]
    pub tee_mrtd: Vec<String>,
    /// VCEK certificate (PEM or DER) for SEV-SNP reports whose receipt carries no certificate table.
    #[arg(long)]
    pub tee_vcek: Option<PathBuf>,
    /// An accepted SEV-SNP launch measurement (hex); repeat for several.
    #[arg(long)]
    pub tee_snp_measurement: Vec<String>,
}

impl TeeArgs {
    pub fn policy(&self, allow_insecure: bool) -> Result<TeePolicy> {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        Ok(TeePolicy {
            allow_insecure,
            tdx_collateral: match &self.tee_collateral {
                Some(p) => Some(String::from_utf8(read(p)?).context("the TDX collateral is not UTF-8 JSON")?),
                None => None,
            },
            tdx_root_ca: self.tee_root_ca.as_ref().map(read).transpose()?,
            tdx_mrtd: self.tee_mrtd.clone(),
            snp_vcek: self.tee_vcek.as_ref().map(read).transpose()?,
            snp_measurements: self.tee_snp_measurement.clone(),
        })
    }
}

/// The coordinator's status page, read from its store on each request.
fn status_page(c: &Coordinator) -> telemetry::Page {
    let farm = c.farm.clone();
    Arc::new(move || zkfarm_coordinator::status::page(&**farm.store(), zkfarm_coordinator::farm::now_ms()))
}

/// Starts the coordinator `a` describes and says where it listens.
async fn start_coordinator(out: &Output, a: &CoordinatorArgs, srs: Srs) -> Result<Coordinator> {
    let data = a.data.clone().unwrap_or_else(default_data_dir);
    if srs.insecure {
        out.warn(&format!("the farm proves against the INSECURE development SRS {}", srs.id));
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
        _ => None,
    };
    let opts = StartOptions {
        listen: a.listen,
        config: farm_config(a, data.clone())?,
        tls,
        worker_token: a.worker_token.clone(),
        api_keys_file: a.api_keys_file.clone(),
    };
    let c = Coordinator::start(opts, Arc::new(srs)).await?;
    if c.created_api_key {
        eprintln!("created an API key for local use in {}", c.api_key_path().display());
    }
    eprintln!(
        "coordinator listening on {}://{} (data {}, SRS {})",
        if c.tls.is_some() { "https" } else { "http" },
        c.local_addr()?,
        data.display(),
        c.farm.srs.id
    );
    Ok(c)
}

pub fn cmd_coordinator(out: &Output, a: &CoordinatorArgs) -> Result<()> {
    let srs = srs::resolve(a.srs.as_deref())?;
    runtime()?.block_on(async {
        let c = start_coordinator(out, a, srs).await?;
        if let Some(m) = a.metrics {
            telemetry::install(m, c.ready.clone(), Some(status_page(&c)))?;
        }
        c.serve(shutdown_signal()).await
    })
}

#[derive(Args, Clone)]
pub struct WorkerCmdArgs {
    /// The coordinator's URL; for coordinators sharing a PostgreSQL store,
    /// several URLs separated by commas (the next is used when one dies).
    #[arg(long, env = "ZKFARM_COORDINATOR", default_value = DEFAULT_URL)]
    pub coordinator: String,
    /// The worker token; read from `$ZKFARM_HOME/farm/worker-token` when not given.
    #[arg(long, env = "ZKFARM_WORKER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) for an https:// coordinator.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// A name for logs and `zkfarm job status`; the host name and process
    /// id otherwise (a container's host name is its pod or container name).
    #[arg(long, env = "ZKFARM_WORKER_NAME")]
    pub name: Option<String>,
    /// The SRS; must be the coordinator's.
    #[arg(long)]
    pub srs: Option<PathBuf>,
    /// Accept the insecure dev TEE provider (--tee dev).
    #[arg(long)]
    pub allow_insecure_tee: bool,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

pub fn cmd_worker(a: &WorkerCmdArgs) -> Result<()> {
    let token = match &a.token {
        Some(t) => t.clone(),
        None => read_secret(&default_data_dir().join("worker-token"), "worker token", "--token")?,
    };
    let srs = Arc::new(srs::resolve(a.srs.as_deref())?);
    let name = a.name.clone().unwrap_or_else(default_worker_name);
    let dir = home::subdir("worker")?;
    let keys = key_cache(home::subdir("keys")?, a.worker.redis.as_deref())?;
    let engine = a.worker.engine.resolve()?;
    let tee = a.worker.tee.as_deref().map(|p| tee::provider(p, a.allow_insecure_tee)).transpose()?;
    let memory_bytes = engine.memory_bytes();
    let ready = Arc::new(AtomicBool::new(false));
    let cfg = WorkerConfig {
        coordinator: a.coordinator.clone(),
        tls_ca: a.tls_ca.clone(),
        token,
        name: name.clone(),
        prover: Arc::new(Prover::new(srs, keys, engine)),
        identity_path: dir.join(format!("{name}.key")),
        tee,
        memory_bytes,
        cheap_lanes: a.worker.cheap_lanes,
        drain_timeout: Duration::from_secs(a.worker.drain_timeout),
        ready: ready.clone(),
    };
    let rt = runtime()?;
    let result = rt.block_on(async {
        if let Some(m) = a.metrics {
            telemetry::install(m, ready, None)?;
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        eprintln!("worker {name} ({}) serving {}", cfg.prover.engine.describe(), cfg.coordinator);
        zkfarm_worker::run(cfg, rx).await
    });
    // A proof the drain gave up on still runs on a blocking thread; its
    // task is handed back, so the process need not wait for it.
    rt.shutdown_background();
    result
}

/// `HOST-PID`, or `worker-PID` where the host name cannot be read.
fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = match host.trim() {
        "" => "worker",
        h => h,
    };
    format!("{host}-{}", std::process::id())
}

#[derive(Args)]
pub struct ServeArgs {
    /// Local workers to run in this process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

pub fn cmd_serve(out: &Output, a: &ServeArgs) -> Result<()> {
    if a.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let c = &a.coordinator;
    let srs = match c.srs.as_deref() {
        Some(p) => srs::open(p)?,
        None => crate::local::default_srs_or_generate(out, 17)?,
    };
    let rt = runtime()?;
    let result = rt.block_on(async {
        let coordinator = start_coordinator(out, c, srs).await?;
        if let Some(m) = c.metrics {
            telemetry::install(m, coordinator.ready.clone(), Some(status_page(&coordinator)))?;
        }
        let data = coordinator.farm.cfg.data_dir.clone();
        // One engine for all local workers: one GPU context, and each (SRS, k)'s
        // bases uploaded once and shared.
        let keys = key_cache(data.join("worker-keys"), a.worker.redis.as_deref())?;
        let prover = Arc::new(Prover::new(coordinator.farm.srs.clone(), keys, a.worker.engine.resolve()?));
        let spec = LocalSpec {
            coordinator: coordinator.url()?,
            tls_ca: coordinator.tls_ca(),
            token: coordinator.worker_token.clone(),
            prover,
            identity_dir: data.clone(),
            tee: a.worker.tee.clone(),
            allow_insecure_tee: c.allow_insecure_tee,
            cheap_lanes: a.worker.cheap_lanes,
            drain_timeout: Duration::from_secs(a.worker.drain_timeout),
        };
        let workers = LocalWorkers::spawn(a.workers, &spec)?;
        eprintln!("serving with {} local worker(s); API key in {}", a.workers, coordinator.api_key_path().display());
        // The workers drain first, while the coordinator still takes their
        // reports and hand-backs; then the coordinator drains.
        coordinator
            .serve(async move {
                shutdown_signal().await;
                eprintln!("shutting down: local workers finish or hand back their tasks");
                workers.drain().await;
            })
            .await
    });
    rt.shutdown_background();
    result
}

/// Where a farm keeps its jobs, for the commands that open its store.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The farm's data directory; default `$ZKFARM_HOME/farm`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The farm's PostgreSQL job store (`postgres://…`), when it has one.
    #[arg(long, env = "ZKFARM_STORE", hide_env_values = true)]
    pub store: Option<String>,
}

impl StoreArgs {
    fn data(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(default_data_dir)
    }

    fn postgres(&self) -> Option<&str> {
        self.store.as_deref().filter(|s| *s != "sqlite")
    }

    /// The store, made if it does not exist yet.
    fn open(&self) -> Result<Box<dyn store::JobStore>> {
        let data = self.data();
        if self.postgres().is_none() {
            std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        }
        store::open(self.postgres(), &data)
    }

    /// The store of a farm that has been started at least once.
    fn existing(&self) -> Result<Box<dyn store::JobStore>> {
        let data = self.data();
        if self.postgres().is_none() && !data.join("farm.sqlite").exists() {
            bail!(
                "no farm at {}: start `zkfarm coordinator` or `zkfarm serve` there first (or pass --data or --store)",
                data.display()
            );
        }
        store::open(self.postgres(), &data)
    }
}

pub fn cmd_apikey_create(out: &Output, name: &str, at: &StoreArgs) -> Result<()> {
    if name.trim().is_empty() {
        bail!("an API key needs a client name");
    }
    let store = at.open()?;
    let key = auth::create_api_key(&*store, name)?;
    out.emit(json!({ "ok": true, "name": name, "api_key": key }), || {
        format!("{key}\n(API key `{name}`; a running coordinator accepts it within {:?})", auth::KEY_RELOAD)
    });
    Ok(())
}

pub fn cmd_apikey_list(out: &Output, at: &StoreArgs) -> Result<()> {
    let store = at.existing()?;
    let clients = store.api_key_names()?;
    let rows: Vec<serde_json::Value> = clients
        .iter()
        .map(|(name, keys, created)| json!({ "name": name, "keys": keys, "newest_ms": created }))
        .collect();
    out.emit(json!({ "clients": rows }), || {
        if clients.is_empty() {
            return "no API keys".into();
        }
        clients.iter().map(|(name, keys, _)| format!("{name}\t{keys} key(s)")).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}

pub fn cmd_apikey_revoke(out: &Output, name: &str, at: &StoreArgs) -> Result<()> {
    let store = at.existing()?;
    let removed = store.remove_api_keys(name)?;
    if removed == 0 {
        bail!("no API key belongs to client `{name}` (see `zkfarm apikey list`)");
    }
    out.emit(json!({ "ok": true, "name": name, "revoked": removed }), || {
        format!(
            "revoked {removed} API key(s) of `{name}`; a running coordinator refuses them within {:?}",
            auth::KEY_RELOAD
        )
    });
    Ok(())
}

pub fn read_secret(path: &Path, what: &str, flag: &str) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => bail!(
            "no {what}: pass {flag}, or start `zkfarm serve`/`zkfarm coordinator` here first to create {}",
            path.display()
        ),
    }
}
