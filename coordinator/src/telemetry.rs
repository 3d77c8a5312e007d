//! Prometheus metrics and health: the HTTP endpoint (`/metrics`, `/healthz`,
//! `/readyz`) and the gauges read from the job store.
//!
//! Counters and histograms are recorded where things happen (`farm.rs`, the
//! worker loop, the key cache); gauges are refreshed from the store on every
//! sweep.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::JobStore;

/// Buckets for task durations: a signed receipt takes microseconds, a large
/// proof minutes.
const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// A page rendered on request (blocking: it may read the store).
pub type Page = Arc<dyn Fn() -> Result<String> + Send + Sync>;

/// What the HTTP endpoint serves from.
#[derive(Clone)]
struct Endpoint {
    metrics: PrometheusHandle,
    ready: Arc<AtomicBool>,
    status: Option<Page>,
}

/// Installs the metrics recorder and serves, on `addr`:
/// - `/metrics`, Prometheus' text format;
/// - `/healthz`, liveness: 200 while the process serves HTTP at all;
/// - `/readyz`, readiness: 200 while `ready` holds (a coordinator serving
///   and not draining, a worker registered and not draining), else 503;
/// - `/`, the `status` page where there is one (the coordinator's).
///
/// Call once per process, inside a Tokio runtime.
pub fn install(addr: SocketAddr, ready: Arc<AtomicBool>, status: Option<Page>) -> Result<()> {
    // Bound here, so a taken port is an error of this call, not of a task.
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot serve metrics on {addr}"))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .context("metric buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readiness))
        .route("/", get(status_page))
        .with_state(Endpoint { metrics, ready, status });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(())
}

async fn render_metrics(State(e): State<Endpoint>) -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], e.metrics.render())
}

async fn status_page(State(e): State<Endpoint>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(page) = e.status else {
        return (StatusCode::NOT_FOUND, "no status page here; see /metrics\n").into_response();
    };
    match tokio::task::spawn_blocking(move || page()).await {
        Ok(Ok(html)) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Ok(Err(e)) => {
            tracing::error!("rendering the status page: {e:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("the status page failed: {e:#}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("the status page panicked: {e}\n")).into_response(),
    }
}

async fn readiness(State(e): State<Endpoint>) -> (StatusCode, &'static str) {
    if e.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("zkfarm_jobs", "Jobs by state.");
    describe_gauge!("zkfarm_tasks", "Tasks (one per inference) by state.");
    describe_gauge!("zkfarm_queue_depth", "Tasks waiting for a worker.");
    describe_gauge!("zkfarm_queue_oldest_wait_seconds", "How long the oldest queued task has waited.");
    describe_gauge!("zkfarm_workers_live", "Workers with a recent heartbeat.");
    describe_counter!("zkfarm_inferences_total", "Verified inferences by tier.");
    describe_counter!("zkfarm_jobs_submitted_total", "Jobs accepted.");
    describe_counter!("zkfarm_jobs_finished_total", "Jobs finished, by final state.");
    describe_counter!("zkfarm_engine_fallbacks_total", "Commitments the GPU engine handed to the CPU, by engine.");
    describe_histogram!("zkfarm_task_duration_seconds", "Worker time per task, by tier and engine.");
    describe_histogram!("zkfarm_task_latency_seconds", "Submission to verified receipt, by tier.");
    describe_counter!("zkfarm_task_retries_total", "Retryable failures that re-queued a task.");
    describe_counter!("zkfarm_lease_expiries_total", "Leases that ran out and were re-queued.");
    describe_counter!("zkfarm_dead_workers_total", "Workers declared dead after missing heartbeats.");
    describe_counter!("zkfarm_receipts_rejected_total", "Worker receipts that failed verification.");
    describe_counter!("zkfarm_key_cache_hits_total", "Proving-key lookups served, by layer.");
    describe_counter!("zkfarm_key_cache_misses_total", "Proving-key lookups missed, by layer.");
    describe_counter!("zkfarm_key_cache_errors_total", "Key cache failures by layer and kind.");
    describe_histogram!(
        "zkfarm_prove_duration_seconds",
        "Proof generation time by engine; the sum is the engine's busy time (GPU busy time for cuda)."
    );
    describe_counter!("zkfarm_worker_tasks_total", "Tasks a worker finished, by tier and outcome.");
    describe_counter!("zkfarm_tasks_handed_back_total", "Tasks leaving workers handed back, queued again.");
}

pub fn update_gauges(store: &dyn JobStore, now_ms: i64) -> Result<()> {
    let (jobs, tasks) = store.state_counts()?;
    for state in ["running", "done", "failed", "cancelled"] {
        let n = jobs.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
        metrics::gauge!("zkfarm_jobs", "state" => state).set(n as f64);
    }
    for state in ["queued", "running", "done", "failed", "cancelled"] {
        let n = tasks.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
        metrics::gauge!("zkfarm_tasks", "state" => state).set(n as f64);
    }
    let (depth, oldest) = store.queue()?;
    metrics::gauge!("zkfarm_queue_depth").set(depth as f64);
    let wait = oldest.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
    metrics::gauge!("zkfarm_queue_oldest_wait_seconds").set(wait);
    metrics::gauge!("zkfarm_workers_live").set(store.live_workers()? as f64);
    Ok(())
}
