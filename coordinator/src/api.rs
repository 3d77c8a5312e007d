//! The gRPC services: `ProverFarm` for clients, `WorkerLink` for workers.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use zkfarm_proto::v1::prover_farm_server::ProverFarm;
use zkfarm_proto::v1::worker_link_server::WorkerLink;
use zkfarm_proto::v1::*;
use zkfarm_prover::Tier;

use crate::auth::Client;
use crate::error::FarmError;
use crate::farm::{Caps, Farm};
use crate::store::{JobRow, JobState, TaskRow, TaskState};

/// The one place where the coordinator's errors become gRPC statuses.
impl From<FarmError> for Status {
    fn from(e: FarmError) -> Self {
        match e {
            FarmError::Invalid(m) => Status::invalid_argument(m),
            FarmError::NotFound(m) => Status::not_found(m),
            FarmError::OverLimit(m) => Status::resource_exhausted(m),
            FarmError::Refused(m) => Status::failed_precondition(m),
            FarmError::Forbidden(m) => Status::permission_denied(m),
            FarmError::Unavailable(m) => Status::unavailable(m),
            FarmError::Internal(e) => {
                tracing::error!("internal error: {e:#}");
                Status::internal(format!("{e:#}"))
            }
        }
    }
}

fn internal(e: anyhow::Error) -> Status {
    FarmError::Internal(e).into()
}

fn client_of<T>(req: &Request<T>) -> Result<String, Status> {
    req.extensions().get::<Client>().map(|c| c.0.clone()).ok_or_else(|| Status::unauthenticated("no client"))
}

/// Tiers and states on the wire: the gRPC enums spell them as receipts and
/// the store do.
fn wire_tier(t: Tier) -> i32 {
    zkfarm_proto::Tier::parse(t.as_str()).map_or(zkfarm_proto::Tier::Unspecified, |w| w) as i32
}

fn tier_from_wire(t: i32) -> Option<Tier> {
    zkfarm_proto::Tier::try_from(t).ok().and_then(|w| w.name().parse().ok())
}

fn wire_task_state(s: TaskState) -> i32 {
    zkfarm_proto::TaskState::parse(s.as_str()) as i32
}

fn wire_job_state(s: JobState) -> i32 {
    zkfarm_proto::JobState::parse(s.as_str()) as i32
}

/// A task on the wire; `waiting` says why a queued one waits.
pub fn task_proto(t: &TaskRow, waiting: String) -> Task {
    Task {
        task_id: t.task_id.clone(),
        index: t.idx,
        tier: wire_tier(t.tier),
        state: wire_task_state(t.state),
        attempt: t.attempt,
        retries: t.retries,
        worker_id: t.worker_id.clone(),
        error: t.error.clone(),
        created_ms: t.created_ms,
        finished_ms: t.finished_ms,
        waiting,
    }
}

pub struct ClientApi {
    pub farm: Arc<Farm>,
}

impl ClientApi {
    /// The job with its counters (and tasks), if the caller owns it.
    fn job(&self, client: &str, job_id: &str, with_tasks: bool) -> Result<Job, Status> {
        let (row, c, rows) = {
            let store = self.farm.store();
            let row: JobRow = match store.job(job_id).map_err(internal)? {
                Some(r) if r.client == client => r,
                _ => return Err(Status::not_found(format!("unknown job {job_id:?}"))),
            };
            let c = store.counts(job_id).map_err(internal)?;
            let rows = if with_tasks { store.tasks_of(job_id).map_err(internal)? } else { vec![] };
            (row, c, rows)
        };
        let waiting = self.farm.waiting(&rows)?;
        let tasks = rows.iter().zip(waiting).map(|(t, w)| task_proto(t, w)).collect();
        Ok(Job {
            job_id: row.job_id,
            model_id: row.model_id,
            state: wire_job_state(row.state),
            priority: row.priority,
            total: c.total(),
            queued: c.queued,
            running: c.running,
            done: c.done,
            failed: c.failed,
            cancelled: c.cancelled,
            created_ms: row.created_ms,
            finished_ms: row.finished_ms,
            tasks,
        })
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<JobEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ProverFarm for ClientApi {
    async fn register_model(
        &self,
        req: Request<RegisterModelRequest>,
    ) -> Result<Response<RegisterModelResponse>, Status> {
        let r = req.into_inner();
        let row = self.farm.register_model(r.onnx, r.settings_json, r.name).await?;
        let loaded = self.farm.loaded(&row.model_id).await?;
        let input_shapes = loaded
            .model
            .program
            .input_shapes
            .iter()
            .map(|s| Shape { dims: s.iter().map(|&d| d as u64).collect() })
            .collect();
        Ok(Response::new(RegisterModelResponse {
            model_id: row.model_id,
            model_hash: row.model_hash,
            k: row.k,
            vk_hash: row.vk_hash,
            input_shapes,
        }))
    }

    async fn submit_job(&self, req: Request<SubmitJobRequest>) -> Result<Response<SubmitJobResponse>, Status> {
        let client = client_of(&req)?;
        let r = req.into_inner();
        let mut requests = Vec::with_capacity(r.requests.len());
        for (i, q) in r.requests.into_iter().enumerate() {
            let tier = tier_from_wire(q.tier)
                .ok_or_else(|| Status::invalid_argument(format!("request {i}: tier must be zk, tee or signed")))?;
            requests.push((q.input_json, tier));
        }
        let s =
            self.farm.submit(&client, &r.model_id, requests, r.priority, &r.idempotency_key, r.fail_unservable).await?;
        Ok(Response::new(SubmitJobResponse { job_id: s.job_id, existing: s.existing, warnings: s.warnings }))
    }

    async fn get_job(&self, req: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        let client = client_of(&req)?;
        let r = req.into_inner();
        Ok(Response::new(self.job(&client, &r.job_id, r.include_tasks)?))
    }

    type WatchJobStream = EventStream;

    async fn watch_job(&self, req: Request<WatchJobRequest>) -> Result<Response<EventStream>, Status> {
        let client = client_of(&req)?;
        let job_id = req.into_inner().job_id;
        // The client follows the job on another coordinator, or here once
        // this one is back.
        self.farm.refuse_when_draining()?;
        // Subscribe before the snapshot so no change falls between them.
        let mut changes = self.farm.changes.subscribe();
        let first = self.job(&client, &job_id, false)?;
        let farm = self.farm.clone();
        let api = ClientApi { farm: farm.clone() };
        let stream = async_stream(move |tx| async move {
            let done = zkfarm_proto::JobState::try_from(first.state).is_ok_and(|s| s.is_final());
            if tx.send(Ok(JobEvent { job: Some(first), task: None })).await.is_err() || done {
                return;
            }
            loop {
                let change = changes.recv().await;
                if farm.is_draining() {
                    // The client reconnects, to this coordinator once it is
                    // back or to another.
                    let _ = tx.send(Err(Status::unavailable("the coordinator is shutting down"))).await;
                    return;
                }
                let task = match change {
                    Ok(c) if c.job_id == job_id => c.task_id,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return,
                };
                let job = match api.job(&client, &job_id, false) {
                    Ok(j) => j,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let task = task.and_then(|id| farm.store().task(&id).ok().flatten()).map(|t| {
                    let waiting = farm.waiting(std::slice::from_ref(&t)).ok().and_then(|w| w.into_iter().next());
                    task_proto(&t, waiting.unwrap_or_default())
                });
                let done = zkfarm_proto::JobState::try_from(job.state).is_ok_and(|s| s.is_final());
                if tx.send(Ok(JobEvent { job: Some(job), task })).await.is_err() || done {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn cancel_job(&self, req: Request<CancelJobRequest>) -> Result<Response<Job>, Status> {
        let client = client_of(&req)?;
        let job_id = req.into_inner().job_id;
        self.job(&client, &job_id, false)?;
        self.farm.cancel(&job_id)?;
        Ok(Response::new(self.job(&client, &job_id, false)?))
    }

    async fn list_jobs(&self, req: Request<ListJobsRequest>) -> Result<Response<ListJobsResponse>, Status> {
        let client = client_of(&req)?;
        let limit = match req.into_inner().limit {
            0 => 50,
            n => n.min(1000),
        };
        let rows = self.farm.store().list_jobs(&client, limit).map_err(internal)?;
        let jobs = rows.iter().map(|r| self.job(&client, &r.job_id, false)).collect::<Result<_, _>>()?;
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn get_receipts(&self, req: Request<GetReceiptsRequest>) -> Result<Response<GetReceiptsResponse>, Status> {
        let client = client_of(&req)?;
        let job_id = req.into_inner().job_id;
        self.job(&client, &job_id, false)?;
        let rows = self.farm.store().receipts(&job_id).map_err(internal)?;
        let receipts = rows
            .into_iter()
            .map(|(index, task_id, tier, receipt_json)| ReceiptEntry {
                index,
                task_id,
                tier: wire_tier(tier),
                receipt_json,
            })
            .collect();
        Ok(Response::new(GetReceiptsResponse { receipts }))
    }

    async fn get_stats(&self, req: Request<GetStatsRequest>) -> Result<Response<Stats>, Status> {
        client_of(&req)?;
        let s = crate::status::stats(&**self.farm.store(), crate::farm::now_ms()).map_err(internal)?;
        let tiers = s
            .tiers
            .iter()
            .map(|t| TierStats {
                tier: wire_tier(t.tier),
                done: t.done,
                failed: t.failed,
                p50_ms: t.p50_ms,
                p95_ms: t.p95_ms,
            })
            .collect();
        Ok(Response::new(Stats {
            tiers,
            queue_depth: s.queue_depth,
            oldest_waiting_s: s.oldest_waiting_s,
            live_workers: s.live_workers,
            jobs: s.jobs,
        }))
    }

    async fn get_trust(&self, req: Request<GetTrustRequest>) -> Result<Response<Trust>, Status> {
        client_of(&req)?;
        let r = req.into_inner();
        let mut vk_json = Vec::new();
        for h in &r.vk_hashes {
            let vk = self.farm.find_vk(h)?.ok_or_else(|| Status::not_found(format!("unknown verifying key {h}")))?;
            vk_json.push(vk.to_json());
        }
        let worker_keys = self
            .farm
            .worker_keys()?
            .into_iter()
            .map(|(worker_id, public_key)| WorkerKey { worker_id, public_key })
            .collect();
        let srs = if r.srs_k == 0 {
            vec![]
        } else {
            self.farm.srs.verifier_bytes(r.srs_k).map_err(|e| Status::invalid_argument(format!("{e:#}")))?
        };
        Ok(Response::new(Trust {
            srs_id: self.farm.srs.id.clone(),
            vk_json,
            worker_keys,
            srs,
            allow_insecure_tee: self.farm.cfg.tee.allow_insecure,
            tdx_collateral_json: self.farm.cfg.tee.tdx_collateral.clone().unwrap_or_default(),
            tdx_root_ca_der: self.farm.cfg.tee.tdx_root_ca.clone().unwrap_or_default(),
            tdx_mrtd: self.farm.cfg.tee.tdx_mrtd.clone(),
            snp_measurements: self.farm.cfg.tee.snp_measurements.clone(),
        }))
    }
}

/// A stream fed by a task writing into a channel.
fn async_stream<F, Fut>(f: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<JobEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

pub struct WorkerApi {
    pub farm: Arc<Farm>,
}

#[tonic::async_trait]
impl WorkerLink for WorkerApi {
    async fn register(&self, req: Request<RegisterWorkerRequest>) -> Result<Response<RegisterWorkerResponse>, Status> {
        let r = req.into_inner();
        let c = r.capabilities.unwrap_or_default();
        let caps = Caps {
            engine: c.engine,
            gpu_name: c.gpu_name,
            memory_bytes: c.memory_bytes,
            tiers: c.tiers.iter().filter_map(|t| tier_from_wire(*t)).collect(),
            tee_provider: c.tee_provider,
            loaded_keys: c.loaded_keys,
        };
        if caps.tiers.contains(&Tier::Tee) && caps.tee_provider == "dev" && !self.farm.cfg.tee.allow_insecure {
            return Err(FarmError::Forbidden(
                "this farm refuses the insecure dev TEE provider (start the coordinator with --allow-insecure-tee)"
                    .into(),
            )
            .into());
        }
        let worker_id = self.farm.register_worker(&r.worker_id, &r.name, r.public_key, &caps)?;
        tracing::info!(worker = %worker_id, name = %r.name, engine = %caps.engine, "worker registered");
        self.farm.work.notify_waiters();
        let lease_ms = self.farm.cfg.lease.as_millis() as u32;
        Ok(Response::new(RegisterWorkerResponse {
            worker_id,
            srs_id: self.farm.srs.id.clone(),
            lease_ms,
            heartbeat_ms: lease_ms / 3,
        }))
    }

    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let running: Vec<(String, u32)> = r.running.into_iter().map(|t| (t.task_id, t.attempt)).collect();
        let lost = self.farm.heartbeat(&r.worker_id, &running, r.loaded_keys)?;
        Ok(Response::new(HeartbeatResponse {
            drop: lost.into_iter().map(|(task_id, attempt)| TaskRef { task_id, attempt }).collect(),
        }))
    }

    async fn poll_task(&self, req: Request<PollTaskRequest>) -> Result<Response<PollTaskResponse>, Status> {
        let r = req.into_inner();
        let wait = Duration::from_millis(r.wait_ms.min(30_000) as u64);
        let mut lane = Vec::with_capacity(r.tiers.len());
        for t in r.tiers {
            lane.push(
                tier_from_wire(t).ok_or_else(|| Status::invalid_argument(format!("unknown tier {t} in the lane")))?,
            );
        }
        let task = self.farm.poll(&r.worker_id, wait, &lane).await?.map(|(t, vk_hash)| TaskAssignment {
            task_id: t.task_id,
            job_id: t.job_id,
            attempt: t.attempt,
            model_id: t.model_id,
            tier: wire_tier(t.tier),
            input_json: t.input,
            lease_expires_ms: t.lease_expires_ms,
            vk_hash,
        });
        Ok(Response::new(PollTaskResponse { task }))
    }

    async fn report_result(&self, req: Request<ReportResultRequest>) -> Result<Response<ReportResultResponse>, Status> {
        let r = req.into_inner();
        let (accepted, reason) =
            self.farm.report_result(&r.worker_id, &r.task_id, r.attempt, r.receipt_json, r.duration_ms).await?;
        Ok(Response::new(ReportResultResponse { accepted, reason }))
    }

    async fn report_failure(
        &self,
        req: Request<ReportFailureRequest>,
    ) -> Result<Response<ReportFailureResponse>, Status> {
        let r = req.into_inner();
        self.farm.worker_caps(&r.worker_id)?;
        tracing::warn!(task = %r.task_id, retryable = r.retryable, "task failed: {}", r.reason);
        self.farm.report_failure(&r.task_id, r.attempt, r.retryable, &r.reason)?;
        Ok(Response::new(ReportFailureResponse {}))
    }

    async fn leave(&self, req: Request<LeaveRequest>) -> Result<Response<LeaveResponse>, Status> {
        let r = req.into_inner();
        let requeued = self.farm.leave(&r.worker_id)?;
        tracing::info!(worker = %r.worker_id, requeued, "worker left");
        Ok(Response::new(LeaveResponse { requeued: requeued as u32 }))
    }

    async fn fetch_model(&self, req: Request<FetchModelRequest>) -> Result<Response<FetchModelResponse>, Status> {
        let id = req.into_inner().model_id;
        let row = self
            .farm
            .store()
            .model(&id)
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("unknown model {id:?}")))?;
        Ok(Response::new(FetchModelResponse { onnx: row.onnx, settings_json: row.settings }))
    }
}
