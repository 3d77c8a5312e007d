//! The client commands: `submit`, `job` and `stats`, and the trust inputs
//! `verify --coordinator` fetches. They talk to a coordinator through
//! `zkfarm-client`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::json;
use zkfarm_client::{ClientConfig, FarmClient, FollowEvent};
use zkfarm_proto::v1::*;
use zkfarm_proto::{JobState, TaskState, Tier};

use crate::farm::{default_data_dir, read_secret, runtime};
use crate::output::Output;
use crate::DEFAULT_URL;

#[derive(Args, Clone)]
pub struct ClientArgs {
    /// The coordinator's URL; for coordinators sharing a PostgreSQL store,
    /// several URLs separated by commas (the next is used when one dies).
    #[arg(long, global = true, env = "ZKFARM_COORDINATOR", default_value = DEFAULT_URL)]
    pub coordinator: String,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// How a client authenticates to a coordinator.
#[derive(Args, Clone)]
pub struct AuthArgs {
    /// API key; read from `$ZKFARM_HOME/farm/api-key` when not given.
    #[arg(long, global = true, env = "ZKFARM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// CA certificate (PEM) for an https:// coordinator.
    #[arg(long, global = true)]
    pub tls_ca: Option<PathBuf>,
}

impl AuthArgs {
    /// The client configuration for `coordinator`.
    pub fn config(&self, coordinator: &str) -> Result<ClientConfig> {
        let api_key = match &self.api_key {
            Some(k) => k.clone(),
            None => read_secret(&default_data_dir().join("api-key"), "API key", "--api-key or ZKFARM_API_KEY")?,
        };
        Ok(ClientConfig { coordinator: coordinator.to_string(), api_key, tls_ca: self.tls_ca.clone() })
    }
}

impl ClientArgs {
    async fn connect(&self) -> Result<FarmClient> {
        FarmClient::connect(&self.auth.config(&self.coordinator)?).await
    }
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
    pub fail_unservable: bool,
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
    let idem = s.idempotency_key.map(str::to_string).unwrap_or_else(|| zkfarm_coordinator::auth::new_secret("submit-"));
    runtime()?.block_on(async {
        let mut farm = c.connect().await?;
        let name = model_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let model = farm.register_model(onnx, settings_json, name).await?;
        let req = SubmitJobRequest {
            model_id: model.model_id.clone(),
            requests,
            priority: s.priority,
            idempotency_key: idem,
            fail_unservable: s.fail_unservable,
        };
        let job = farm.submit(req).await?;
        for w in &job.warnings {
            out.warn(w);
        }
        if !s.wait {
            out.emit(
                json!({ "ok": true, "job_id": job.job_id, "model_id": model.model_id, "existing": job.existing,
                        "warnings": job.warnings }),
                || format!("submitted job {} (model {}, k = {})", job.job_id, &model.model_id[..16], model.k),
            );
            return Ok(());
        }
        let fin = follow(out, &mut farm, &job.job_id).await?;
        let written = match s.out_dir {
            Some(dir) => farm.write_receipts(&job.job_id, dir).await?,
            None => 0,
        };
        report_job(out, &fin, written, s.out_dir)
    })
}

/// Follows a job to its end with a progress bar.
async fn follow(out: &Output, farm: &mut FarmClient, job_id: &str) -> Result<Job> {
    let bar = out.progress("{spinner} {pos}/{len} inferences [{bar:30}] {elapsed} {msg}", Some(0));
    let job = farm
        .follow(job_id, |ev| match ev {
            FollowEvent::Progress(job) => {
                bar.set_length(job.total as u64);
                bar.set_position((job.done + job.failed + job.cancelled) as u64);
                bar.set_message(format!("{} running, {} failed", job.running, job.failed));
            }
            FollowEvent::Reconnecting(why) => bar.set_message(why.to_string()),
        })
        .await;
    bar.finish_and_clear();
    job
}

fn job_json(job: &Job) -> serde_json::Value {
    let tasks: Vec<_> = job
        .tasks
        .iter()
        .map(|t| {
            json!({ "index": t.index, "task_id": t.task_id, "tier": Tier::try_from(t.tier).map_or("?", |x| x.name()),
                    "state": TaskState::try_from(t.state).map_or("?", |x| x.name()), "attempt": t.attempt,
                    "retries": t.retries, "worker_id": t.worker_id, "error": t.error, "waiting": t.waiting })
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
        if !t.waiting.is_empty() {
            s += &format!("  waiting: {}", t.waiting);
        } else if !t.error.is_empty() {
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
        let mut farm = c.connect().await?;
        match cmd {
            JobCommand::Status { job_id } => {
                let job = farm.job(job_id, true).await?;
                out.emit(job_json(&job), || job_text(&job));
            }
            JobCommand::Watch { job_id } => {
                let job = follow(out, &mut farm, job_id).await?;
                report_job(out, &job, 0, None)?;
            }
            JobCommand::Cancel { job_id } => {
                let job = farm.cancel(job_id).await?;
                out.emit(job_json(&job), || job_text(&job));
            }
            JobCommand::Receipts { job_id, out: dir } => {
                let n = farm.write_receipts(job_id, dir).await?;
                out.emit(json!({ "ok": true, "receipts_written": n }), || {
                    format!("{n} receipt(s) written to {}", dir.display())
                });
            }
            JobCommand::List { limit } => {
                let jobs = farm.list_jobs(*limit).await?;
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
        let s = c.connect().await?.stats().await?;
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
pub fn fetch_trust(cfg: &ClientConfig, vk_hashes: Vec<String>, srs_k: u32) -> Result<Trust> {
    runtime()?.block_on(async { FarmClient::connect(cfg).await?.trust(vk_hashes, srs_k).await })
}
