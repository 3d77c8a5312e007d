//! The client side of a zkfarm farm: one connection to a coordinator's
//! `ProverFarm` service with an API key, calls that ride out a coordinator
//! restart, following a job to its end, and writing its receipts.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tonic::Code;
use zkfarm_proto::net::{self, is_transient, AuthChannel, Bearer, MAX_MESSAGE_BYTES};
use zkfarm_proto::v1::prover_farm_client::ProverFarmClient;
use zkfarm_proto::v1::*;
use zkfarm_proto::JobState;

/// The coordinator's address when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7700";

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub coordinator: String,
    pub api_key: String,
    /// CA certificate (PEM) for an https:// coordinator.
    pub tls_ca: Option<PathBuf>,
}

/// What [`FarmClient::follow`] reports while it waits.
pub enum FollowEvent<'a> {
    /// The job's counters changed.
    Progress(&'a Job),
    /// The stream broke (a coordinator restart); the client reconnects.
    Reconnecting(&'a str),
}

/// A connected client of the `ProverFarm` service.
#[derive(Clone)]
pub struct FarmClient {
    rpc: ProverFarmClient<AuthChannel>,
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
        Code::PermissionDenied => "permission denied",
        _ => "coordinator error",
    };
    anyhow!("{what}: {}", s.message())
}

/// Retries a call while the coordinator is unreachable or restarting, for
/// up to about two minutes.
pub async fn retry_transient<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut backoff = Duration::from_millis(200);
    for _ in 0..60 {
        match call().await {
            Ok(v) => return Ok(v),
            Err(s) if is_transient(&s) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(s) => return Err(status_error(s)),
        }
    }
    bail!("the coordinator stayed unreachable")
}

impl FarmClient {
    pub async fn connect(cfg: &ClientConfig) -> Result<Self> {
        let channel = net::connect(&cfg.coordinator, cfg.tls_ca.as_deref()).await?;
        // Models are uploaded whole, so requests may exceed the usual limit.
        let rpc = ProverFarmClient::with_interceptor(channel, Bearer::new(&cfg.api_key)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES + (64 << 20));
        Ok(FarmClient { rpc })
    }

    /// The generated client, for calls this type does not wrap.
    pub fn rpc(&mut self) -> &mut ProverFarmClient<AuthChannel> {
        &mut self.rpc
    }

    pub async fn register_model(
        &mut self,
        onnx: Vec<u8>,
        settings_json: String,
        name: String,
    ) -> Result<RegisterModelResponse> {
        let req = RegisterModelRequest { onnx, settings_json, name };
        Ok(self.rpc.register_model(req).await.map_err(status_error)?.into_inner())
    }

    /// Submits a job, retrying through a coordinator restart; the request's
    /// idempotency key keeps a retried submission from making a second job.
    pub async fn submit(&mut self, req: SubmitJobRequest) -> Result<SubmitJobResponse> {
        let rpc = self.rpc.clone();
        let resp = retry_transient(|| {
            let (mut rpc, req) = (rpc.clone(), req.clone());
            async move { rpc.submit_job(req).await }
        })
        .await?;
        Ok(resp.into_inner())
    }

    pub async fn job(&mut self, job_id: &str, include_tasks: bool) -> Result<Job> {
        let req = GetJobRequest { job_id: job_id.to_string(), include_tasks };
        Ok(self.rpc.get_job(req).await.map_err(status_error)?.into_inner())
    }

    pub async fn cancel(&mut self, job_id: &str) -> Result<Job> {
        Ok(self
            .rpc
            .cancel_job(CancelJobRequest { job_id: job_id.to_string() })
            .await
            .map_err(status_error)?
            .into_inner())
    }

    pub async fn list_jobs(&mut self, limit: u32) -> Result<Vec<Job>> {
        Ok(self.rpc.list_jobs(ListJobsRequest { limit }).await.map_err(status_error)?.into_inner().jobs)
    }

    pub async fn stats(&mut self) -> Result<Stats> {
        Ok(self.rpc.get_stats(GetStatsRequest {}).await.map_err(status_error)?.into_inner())
    }

    /// Trust inputs for offline verification: the named verifying keys,
    /// every registered worker key, the farm's TEE policy, and what verifying
    /// circuits of 2^`srs_k` rows needs of the SRS: g[0], g2 and s·g2 (none
    /// when 0).
    pub async fn trust(&mut self, vk_hashes: Vec<String>, srs_k: u32) -> Result<Trust> {
        Ok(self.rpc.get_trust(GetTrustRequest { vk_hashes, srs_k }).await.map_err(status_error)?.into_inner())
    }

    /// Follows a job to its end, reconnecting if the coordinator restarts;
    /// returns the finished job with its tasks.
    pub async fn follow(&mut self, job_id: &str, mut on: impl FnMut(FollowEvent<'_>)) -> Result<Job> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut stream = match self.rpc.watch_job(WatchJobRequest { job_id: job_id.to_string() }).await {
                Ok(s) => s.into_inner(),
                Err(s) if is_transient(&s) => {
                    on(FollowEvent::Reconnecting("coordinator unreachable, retrying"));
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
                        on(FollowEvent::Progress(&job));
                        if JobState::try_from(job.state).is_ok_and(|s| s.is_final()) {
                            return self.job(job_id, true).await;
                        }
                    }
                    Ok(None) => break,
                    Err(s) if is_transient(&s) => break,
                    Err(s) => return Err(status_error(s)),
                }
            }
            on(FollowEvent::Reconnecting("reconnecting"));
            tokio::time::sleep(backoff).await;
        }
    }

    /// Writes a job's finished receipts into `dir` as
    /// `request-NNNNN.json`, by request index; returns how many.
    pub async fn write_receipts(&mut self, job_id: &str, dir: &Path) -> Result<usize> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let receipts = self
            .rpc
            .get_receipts(GetReceiptsRequest { job_id: job_id.to_string() })
            .await
            .map_err(status_error)?
            .into_inner();
        for r in &receipts.receipts {
            let path = dir.join(format!("request-{:05}.json", r.index));
            std::fs::write(&path, &r.receipt_json).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(receipts.receipts.len())
    }
}
