//! The farm commands: `coordinator`, `worker`, `serve`, `submit`, `job`,
//! `stats` and `apikey`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tonic::Code;
use zkfarm_coordinator::auth::{self, Auth};
use zkfarm_coordinator::server::{self, TlsFiles};
use zkfarm_coordinator::store::Store;
use zkfarm_coordinator::{telemetry, Farm, FarmConfig, Limits};
use zkfarm_proto::net::{self, AuthChannel, Bearer, MAX_MESSAGE_BYTES};
use zkfarm_proto::v1::prover_farm_client::ProverFarmClient;
use zkfarm_proto::v1::*;
use zkfarm_proto::{JobState, TaskState, Tier};
use zkfarm_prover::engine::EngineChoice;
use zkfarm_prover::redis_keys::RedisKeys;
use zkfarm_prover::tee::TeePolicy;
use zkfarm_prover::worker::{self, WorkerConfig};
use zkfarm_prover::{home, srs, tee, KeyCache, Srs};

use crate::Output;

pub const DEFAULT_URL: &str = "http://127.0.0.1:7700";

/// The farm's data directory: job store, keys, API key and worker token.
fn default_data_dir() -> PathBuf {
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
}

#[derive(Args, Clone)]
pub struct ClientArgs {
    /// The coordinator's URL.
    #[arg(long, global = true, env = "ZKFARM_COORDINATOR", default_value = DEFAULT_URL)]
    pub coordinator: String,
    /// API key; read from `$ZKFARM_HOME/farm/api-key` when not given.
    #[arg(long, global = true, env = "ZKFARM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// CA certificate (PEM) for an https:// coordinator.
    #[arg(long, global = true)]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// Show a job's state and its tasks.
    Status { job_id: String },
    /// Follow a job until it finishes.
    Watch { job_id: String },
    /// Cancel a job's unfinished tasks.
    Cancel { job_id: String },
    /// Write a job's finished receipts into a directory.
    Receipts {
        job_id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// List recent jobs.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
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

/// A started coordinator: the farm, its auth and its bound listener.
struct Started {
    farm: Arc<Farm>,
    auth: Arc<Auth>,
    listener: tokio::net::TcpListener,
    worker_token: String,
    tls: Option<TlsFiles>,
}

async fn start_coordinator(out: &Output, a: &CoordinatorArgs, srs: Srs) -> Result<Started> {
    let data = a.data.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    if srs.insecure {
        out.warn(&format!("the farm proves against the INSECURE development SRS {}", srs.id));
    }
    let farm = Arc::new(Farm::open(farm_config(a, data.clone())?, Arc::new(srs))?);
    if auth::ensure_first_api_key(&farm.store(), &data)? {
        eprintln!("created an API key for local use in {}", data.join("api-key").display());
    }
    let worker_token = auth::worker_token(&data, a.worker_token.as_deref())?;
    let auth = Arc::new(Auth::new(&farm.store(), &worker_token)?);
    let listener = server::bind(a.listen).await?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
        _ => None,
    };
    eprintln!(
        "coordinator listening on {}://{} (data {}, SRS {})",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        data.display(),
        farm.srs.id
    );
    Ok(Started { farm, auth, listener, worker_token, tls })
}

pub fn cmd_coordinator(out: &Output, a: &CoordinatorArgs) -> Result<()> {
    let srs = srs::resolve(a.srs.as_deref())?;
    runtime()?.block_on(async {
        if let Some(m) = a.metrics {
            telemetry::install(m)?;
        }
        let s = start_coordinator(out, a, srs).await?;
        server::serve(s.farm, s.auth, s.listener, s.tls, shutdown_signal()).await
    })
}

/// The TEE provider a worker asked for, if any.
fn tee_provider(w: &WorkerArgs, allow_insecure_tee: bool) -> Result<Option<Box<dyn tee::Provider>>> {
    w.tee.as_deref().map(|p| tee::provider(p, allow_insecure_tee)).transpose()
}

fn key_cache(dir: PathBuf, redis: Option<&str>) -> Result<Arc<KeyCache>> {
    let mut cache = KeyCache::new(dir)?;
    if let Some(url) = redis {
        cache = cache.with_redis(RedisKeys::open(url)?);
    }
    Ok(Arc::new(cache))
}

#[derive(Args, Clone)]
pub struct WorkerCmdArgs {
    /// The coordinator's URL.
    #[arg(long, env = "ZKFARM_COORDINATOR", default_value = DEFAULT_URL)]
    pub coordinator: String,
    /// The worker token; read from `$ZKFARM_HOME/farm/worker-token` when not given.
    #[arg(long, env = "ZKFARM_WORKER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) for an https:// coordinator.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// A name for logs and `zkfarm job status`.
    #[arg(long)]
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
    let name = a.name.clone().unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let dir = home::subdir("worker")?;
    let keys = key_cache(home::subdir("keys")?, a.worker.redis.as_deref())?;
    let engine = a.worker.engine.resolve()?;
    let tee = tee_provider(&a.worker, a.allow_insecure_tee)?;
    let memory_bytes = engine.memory_bytes();
    let cfg = WorkerConfig {
        coordinator: a.coordinator.clone(),
        tls_ca: a.tls_ca.clone(),
        token,
        name: name.clone(),
        engine,
        identity_path: dir.join(format!("{name}.key")),
        keys,
        srs,
        tee,
        memory_bytes,
    };
    runtime()?.block_on(async {
        if let Some(m) = a.metrics {
            telemetry::install(m)?;
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        eprintln!("worker {name} ({}) serving {}", cfg.engine.describe(), cfg.coordinator);
        worker::run(cfg, rx).await
    })
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
        Some(p) => Srs::load(p)?,
        None => crate::default_srs_or_generate(out, 17)?,
    };
    runtime()?.block_on(async {
        if let Some(m) = c.metrics {
            telemetry::install(m)?;
        }
        let s = start_coordinator(out, c, srs).await?;
        let addr = s.listener.local_addr()?;
        let (url, tls_ca) = match &s.tls {
            Some(t) => (format!("https://localhost:{}", addr.port()), Some(t.cert.clone())),
            None => (format!("http://{addr}"), None),
        };
        let data = s.farm.cfg.data_dir.clone();
        let keys = key_cache(data.join("worker-keys"), a.worker.redis.as_deref())?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = Vec::new();
        // One engine for all local workers: one GPU context, and each (SRS, k)'s
        // bases uploaded once and shared.
        let engine = a.worker.engine.resolve()?;
        for i in 0..a.workers {
            let tee = tee_provider(&a.worker, c.allow_insecure_tee)?;
            let cfg = WorkerConfig {
                coordinator: url.clone(),
                tls_ca: tls_ca.clone(),
                token: s.worker_token.clone(),
                name: format!("local-{i}"),
                engine: engine.clone(),
                identity_path: data.join(format!("local-worker-{i}.key")),
                keys: keys.clone(),
                srs: s.farm.srs.clone(),
                tee,
                memory_bytes: engine.memory_bytes() / a.workers as u64,
            };
            let rx = stop_rx.clone();
            workers.push(tokio::spawn(async move {
                if let Err(e) = worker::run(cfg, rx).await {
                    tracing::error!("local worker {i} stopped: {e:#}");
                }
            }));
        }
        eprintln!("serving with {} local worker(s); API key in {}", a.workers, data.join("api-key").display());
        let served = server::serve(s.farm, s.auth, s.listener, s.tls, async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        })
        .await;
        for w in workers {
            w.abort();
        }
        served
    })
}

pub fn cmd_apikey_create(out: &Output, name: &str, data: Option<&Path>) -> Result<()> {
    if name.trim().is_empty() {
        bail!("an API key needs a client name");
    }
    let data = data.map(Path::to_path_buf).unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let store = Store::open(&data.join("farm.sqlite"))?;
    let key = auth::create_api_key(&store, name)?;
    out.emit(json!({ "ok": true, "name": name, "api_key": key }), || {
        format!("{key}\n(API key `{name}`; a running coordinator accepts it within {:?})", auth::KEY_RELOAD)
    });
    Ok(())
}

pub fn cmd_apikey_list(out: &Output, data: Option<&Path>) -> Result<()> {
    let store = existing_store(data)?;
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

pub fn cmd_apikey_revoke(out: &Output, name: &str, data: Option<&Path>) -> Result<()> {
    let store = existing_store(data)?;
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

/// The job store of a farm that has been started at least once.
fn existing_store(data: Option<&Path>) -> Result<Store> {
    let data = data.map(Path::to_path_buf).unwrap_or_else(default_data_dir);
    let path = data.join("farm.sqlite");
    if !path.exists() {
        bail!(
            "no farm at {}: start `zkfarm coordinator` or `zkfarm serve` there first (or pass --data)",
            data.display()
        );
    }
    Store::open(&path)
}

fn read_secret(path: &Path, what: &str, flag: &str) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => bail!(
            "no {what}: pass {flag}, or start `zkfarm serve`/`zkfarm coordinator` here first to create {}",
            path.display()
        ),
    }
}

// Client side.

pub type Farmc = ProverFarmClient<AuthChannel>;

pub async fn client(a: &ClientArgs) -> Result<Farmc> {
    let key = match &a.api_key {
        Some(k) => k.clone(),
        None => read_secret(&default_data_dir().join("api-key"), "API key", "--api-key or ZKFARM_API_KEY")?,
    };
    let channel = net::connect(&a.coordinator, a.tls_ca.as_deref()).await?;
    Ok(ProverFarmClient::with_interceptor(channel, Bearer::new(&key)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES + (64 << 20)))
}

/// A gRPC error as one clear line.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    let what = match s.code() {
        Code::Unauthenticated => "authentication failed",
        Code::NotFound => "not found",
        Code::InvalidArgument => "invalid request",
        Code::ResourceExhausted => "over a limit",
        Code::Unavailable => "coordinator unavailable",
        Code::FailedPrecondition => "refused",
        _ => "coordinator error",
    };
    anyhow!("{what}: {}", s.message())
}

#[derive(Deserialize)]
struct Batch {
    model: PathBuf,
    #[serde(default)]
    settings: Option<PathBuf>,
    requests: Vec<BatchRequest>,
}

#[derive(Deserialize)]
struct BatchRequest {
    input: serde_json::Value,
    tier: String,
}

pub struct SubmitArgs<'a> {
    pub batch: &'a Path,
    pub wait: bool,
    pub out_dir: Option<&'a Path>,
    pub priority: i32,
    pub idempotency_key: Option<&'a str>,
}

pub fn cmd_submit(out: &Output, c: &ClientArgs, s: &SubmitArgs<'_>) -> Result<()> {
    let text = std::fs::read_to_string(s.batch).with_context(|| format!("reading {}", s.batch.display()))?;
    let batch: Batch = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a batch file ({{\"model\": ..., \"requests\": [{{\"input\": ..., \"tier\": ...}}]}})",
            s.batch.display()
        )
    })?;
    let base = s.batch.parent().unwrap_or(Path::new("."));
    let model_path = base.join(&batch.model);
    let onnx = std::fs::read(&model_path).with_context(|| format!("reading model {}", model_path.display()))?;
    let settings_json = match &batch.settings {
        Some(p) => {
            std::fs::read_to_string(base.join(p)).with_context(|| format!("reading settings {}", p.display()))?
        }
        None => String::new(),
    };
    let mut requests = Vec::with_capacity(batch.requests.len());
    for (i, r) in batch.requests.iter().enumerate() {
        let tier = Tier::parse(&r.tier).with_context(|| format!("request {i}"))?;
        requests.push(InferenceRequest { input_json: r.input.to_string(), tier: tier as i32 });
    }
    // One key per invocation unless given: a retried submit never makes a
    // second job.
    let idem = s.idempotency_key.map(str::to_string).unwrap_or_else(|| auth::new_secret("submit-"));
    runtime()?.block_on(async {
        let mut farm = client(c).await?;
        let model = farm
            .register_model(RegisterModelRequest {
                onnx,
                settings_json,
                name: model_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        let req = SubmitJobRequest {
            model_id: model.model_id.clone(),
            requests,
            priority: s.priority,
            idempotency_key: idem,
        };
        let job = retry_transient(|| {
            let mut f = farm.clone();
            let r = req.clone();
            async move { f.submit_job(r).await }
        })
        .await?
        .into_inner();
        if !s.wait {
            out.emit(
                json!({ "ok": true, "job_id": job.job_id, "model_id": model.model_id, "existing": job.existing }),
                || format!("submitted job {} (model {}, k = {})", job.job_id, &model.model_id[..16], model.k),
            );
            return Ok(());
        }
        let fin = follow(out, &mut farm, &job.job_id).await?;
        let written = match s.out_dir {
            Some(dir) => write_receipts(&mut farm, &job.job_id, dir).await?,
            None => 0,
        };
        report_job(out, &fin, written, s.out_dir)
    })
}

/// Retries a call while the coordinator is unreachable (a restart).
async fn retry_transient<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut backoff = Duration::from_millis(200);
    for _ in 0..60 {
        match call().await {
            Ok(v) => return Ok(v),
            Err(s) if s.code() == Code::Unavailable => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(s) => return Err(status_error(s)),
        }
    }
    bail!("the coordinator stayed unreachable")
}

/// Follows a job to its end with a progress bar, reconnecting if the
/// coordinator restarts.
async fn follow(out: &Output, farm: &mut Farmc, job_id: &str) -> Result<Job> {
    let bar = if out.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{spinner} {pos}/{len} inferences [{bar:30}] {elapsed} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.enable_steady_tick(Duration::from_millis(100));
        b
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let stream = farm.watch_job(WatchJobRequest { job_id: job_id.to_string() }).await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == Code::Unavailable => {
                bar.set_message("coordinator unreachable, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(s) => return Err(status_error(s)),
        };
        loop {
            match stream.message().await {
                Ok(Some(ev)) => {
                    backoff = Duration::from_millis(200);
                    let Some(job) = ev.job else { continue };
                    bar.set_length(job.total as u64);
                    bar.set_position((job.done + job.failed + job.cancelled) as u64);
                    bar.set_message(format!("{} running, {} failed", job.running, job.failed));
                    if JobState::try_from(job.state).is_ok_and(|s| s.is_final()) {
                        bar.finish_and_clear();
                        let full = farm
                            .get_job(GetJobRequest { job_id: job_id.to_string(), include_tasks: true })
                            .await
                            .map_err(status_error)?;
                        return Ok(full.into_inner());
                    }
                }
                Ok(None) => break,
                Err(s) if matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled) => {
                    break
                }
                Err(s) => return Err(status_error(s)),
            }
        }
        bar.set_message("reconnecting");
        tokio::time::sleep(backoff).await;
    }
}

async fn write_receipts(farm: &mut Farmc, job_id: &str, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let receipts =
        farm.get_receipts(GetReceiptsRequest { job_id: job_id.to_string() }).await.map_err(status_error)?.into_inner();
    for r in &receipts.receipts {
        let path = dir.join(format!("request-{:05}.json", r.index));
        std::fs::write(&path, &r.receipt_json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(receipts.receipts.len())
}

fn job_json(job: &Job) -> serde_json::Value {
    let tasks: Vec<_> = job
        .tasks
        .iter()
        .map(|t| {
            json!({ "index": t.index, "task_id": t.task_id, "tier": Tier::try_from(t.tier).map_or("?", |x| x.name()),
                    "state": TaskState::try_from(t.state).map_or("?", |x| x.name()), "attempt": t.attempt,
                    "retries": t.retries, "worker_id": t.worker_id, "error": t.error })
        })
        .collect();
    json!({ "job_id": job.job_id, "model_id": job.model_id, "state": JobState::try_from(job.state).map_or("?", |x| x.name()),
            "total": job.total, "queued": job.queued, "running": job.running, "done": job.done, "failed": job.failed,
            "cancelled": job.cancelled, "tasks": tasks })
}

fn job_text(job: &Job) -> String {
    let state = JobState::try_from(job.state).map_or("?", |x| x.name());
    let mut s = format!(
        "job {} {state}: {} done, {} failed, {} cancelled, {} running, {} queued (of {})\n",
        job.job_id, job.done, job.failed, job.cancelled, job.running, job.queued, job.total
    );
    for t in &job.tasks {
        let st = TaskState::try_from(t.state).map_or("?", |x| x.name());
        let tier = Tier::try_from(t.tier).map_or("?", |x| x.name());
        s += &format!("  {:>5} {tier:<6} {st:<9} attempt {} {}", t.index, t.attempt, t.worker_id);
        if !t.error.is_empty() {
            s += &format!("  {}", t.error);
        }
        s += "\n";
    }
    s
}

fn report_job(out: &Output, job: &Job, written: usize, dir: Option<&Path>) -> Result<()> {
    let mut v = job_json(job);
    v["ok"] = json!(job.state == JobState::Done as i32);
    v["receipts_written"] = json!(written);
    out.emit(v, || {
        let mut s = job_text(job);
        if let Some(d) = dir {
            s += &format!("{written} receipt(s) written to {}", d.display());
        }
        s
    });
    if job.state != JobState::Done as i32 {
        bail!("job {} finished {}", job.job_id, JobState::try_from(job.state).map_or("?", |x| x.name()));
    }
    Ok(())
}

pub fn cmd_job(out: &Output, c: &ClientArgs, cmd: &JobCommand) -> Result<()> {
    runtime()?.block_on(async {
        let mut farm = client(c).await?;
        match cmd {
            JobCommand::Status { job_id } => {
                let job = farm
                    .get_job(GetJobRequest { job_id: job_id.clone(), include_tasks: true })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                out.emit(job_json(&job), || job_text(&job));
            }
            JobCommand::Watch { job_id } => {
                let job = follow(out, &mut farm, job_id).await?;
                report_job(out, &job, 0, None)?;
            }
            JobCommand::Cancel { job_id } => {
                let job = farm.cancel_job(CancelJobRequest { job_id: job_id.clone() }).await.map_err(status_error)?;
                let job = job.into_inner();
                out.emit(job_json(&job), || job_text(&job));
            }
            JobCommand::Receipts { job_id, out: dir } => {
                let n = write_receipts(&mut farm, job_id, dir).await?;
                out.emit(json!({ "ok": true, "receipts_written": n }), || {
                    format!("{n} receipt(s) written to {}", dir.display())
                });
            }
            JobCommand::List { limit } => {
                let jobs =
                    farm.list_jobs(ListJobsRequest { limit: *limit }).await.map_err(status_error)?.into_inner().jobs;
                out.emit(json!({ "ok": true, "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() }), || {
                    jobs.iter().map(job_text).collect::<String>()
                });
            }
        }
        Ok(())
    })
}

pub fn cmd_stats(out: &Output, c: &ClientArgs) -> Result<()> {
    runtime()?.block_on(async {
        let mut farm = client(c).await?;
        let s = farm.get_stats(GetStatsRequest {}).await.map_err(status_error)?.into_inner();
        let total: u64 = s.tiers.iter().map(|t| t.done).sum();
        let rows: Vec<_> = s
            .tiers
            .iter()
            .map(|t| {
                let tier = Tier::try_from(t.tier).map_or("?", |x| x.name());
                let share = if total == 0 { 0.0 } else { 100.0 * t.done as f64 / total as f64 };
                (tier, t, share)
            })
            .collect();
        out.emit(
            json!({ "ok": true, "queue_depth": s.queue_depth, "oldest_waiting_s": s.oldest_waiting_s,
                    "live_workers": s.live_workers, "jobs": s.jobs,
                    "tiers": rows.iter().map(|(tier, t, share)| json!({ "tier": tier, "count": t.done, "failed": t.failed,
                        "share_percent": share, "p50_ms": t.p50_ms, "p95_ms": t.p95_ms })).collect::<Vec<_>>() }),
            || {
                let mut text = String::from("tier     count   share   failed     p50 ms     p95 ms\n");
                for (tier, t, share) in &rows {
                    text += &format!(
                        "{tier:<7} {:>6} {:>6.1}% {:>8} {:>10.1} {:>10.1}\n",
                        t.done, share, t.failed, t.p50_ms, t.p95_ms
                    );
                }
                text + &format!(
                    "jobs {}, queue depth {}, oldest waiting {:.1}s, live workers {}",
                    s.jobs, s.queue_depth, s.oldest_waiting_s, s.live_workers
                )
            },
        );
        Ok(())
    })
}

/// Trust inputs from a coordinator, for `zkfarm verify --coordinator`.
pub fn fetch_trust(c: &ClientArgs, vk_hashes: Vec<String>, srs_k: u32) -> Result<zkfarm_proto::v1::Trust> {
    runtime()?.block_on(async {
        let mut farm = client(c).await?;
        Ok(farm.get_trust(GetTrustRequest { vk_hashes, srs_k }).await.map_err(status_error)?.into_inner())
    })
}
