//! Scheduling around proofs, with real processes: cheap tiers on lanes of
//! their own, requests no live worker can serve, health endpoints, and
//! shutdown by SIGTERM (workers drain or hand back their tasks, the
//! coordinator drains).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::{receipts_in, tasks, JOB_TIMEOUT};

fn submit(coord: &Coordinator, batch: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["submit", batch.to_str().unwrap()];
    args.extend_from_slice(extra);
    coord.cli_json(&args)
}

fn job_id(v: &Value) -> String {
    v["job_id"].as_str().unwrap().to_string()
}

/// Waits until one of the job's tasks runs a zk proof; returns its task and
/// worker ids.
fn proving(coord: &Coordinator, job: &str) -> (String, String) {
    let mut found = None;
    wait_until("a zk task to be running", Duration::from_secs(120), || {
        let j = coord.job(job);
        found = tasks(&j)
            .iter()
            .find(|t| t["state"] == "running" && t["tier"] == "zk")
            .map(|t| (t["task_id"].as_str().unwrap().to_string(), t["worker_id"].as_str().unwrap().to_string()));
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn signed_and_tee_tasks_run_while_the_only_worker_proves() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(home.path(), "coordinator", &["--allow-insecure-tee"]);
    let w = coord.worker("w1", &["--tee", "dev", "--allow-insecure-tee"]);
    wait_until("the worker to register", Duration::from_secs(30), || worker_id(&w).is_some());

    // Three proofs keep the worker's proving lane busy for a while; the
    // cheap job comes after them in the queue.
    let proofs = job_id(&submit(&coord, &write_batch(home.path(), &["zk", "zk", "zk"]), &[]));
    proving(&coord, &proofs);
    let submitted = Instant::now();
    let cheap = job_id(&submit(&coord, &write_batch(home.path(), &["signed", "tee", "signed", "tee"]), &[]));
    let done = coord.wait_job(&cheap, JOB_TIMEOUT);
    let waited = submitted.elapsed();
    assert_eq!(done["state"], "done", "{done}");
    // Taken in queue order by one lane, the cheap job would finish only
    // after all three proofs.
    let behind = coord.job(&proofs);
    assert!(
        behind["done"].as_u64().unwrap() < 3,
        "the cheap job finished only after the proofs: {behind}\n{}",
        tail(&w.log_text())
    );
    eprintln!("4 signed/tee requests done {waited:?} after submission, while a proof ran");

    let proofs = coord.wait_job(&proofs, JOB_TIMEOUT);
    assert_eq!(proofs["state"], "done", "{proofs}");
    let dir = home.path().join("receipts");
    coord.cli_json(&["job", "receipts", &cheap, "--out", dir.to_str().unwrap()]);
    for (path, _) in receipts_in(&dir) {
        coord.cli_json(&["verify", &path, "--coordinator", &coord.url(), "--allow-insecure-tee"]);
    }
}

#[test]
fn requests_no_live_worker_can_serve_are_named_and_can_fail_at_once() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start(home.path(), "coordinator", &[]);
    let worker_metrics = free_port();
    let w = coord.worker("w1", &["--metrics", &format!("127.0.0.1:{worker_metrics}")]);
    wait_until("the worker to be ready", Duration::from_secs(30), || http_get(worker_metrics, "/readyz").0 == 200);
    assert_eq!(http_get(worker_metrics, "/healthz").0, 200);
    assert_eq!(http_get(coord.metrics_port, "/healthz").0, 200);
    assert_eq!(http_get(coord.metrics_port, "/readyz").0, 200);
    wait_until("the gauges of the first sweep", Duration::from_secs(10), || {
        metric(&http_get(coord.metrics_port, "/metrics").1, "zkfarm_workers_live", &[]) == 1.0
    });

    // No worker offers tee: the submission says so, and the task says why
    // it waits.
    let batch = write_batch(home.path(), &["signed", "tee"]);
    let out = coord.cli(&["submit", batch.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 request(s) of tier tee wait: no live worker offers tier tee"), "{stderr}");
    let waiting = coord.cli_json(&["job", "list"])["jobs"][0]["job_id"].as_str().unwrap().to_string();
    wait_until("the signed request", Duration::from_secs(60), || coord.job(&waiting)["done"] == 1);
    let job = coord.job(&waiting);
    let tee = &tasks(&job)[1];
    assert_eq!(
        (tee["state"].as_str(), tee["waiting"].as_str()),
        (Some("queued"), Some("no live worker offers tier tee"))
    );
    let text = String::from_utf8_lossy(&coord.cli(&["job", "status", &waiting]).stdout).into_owned();
    assert!(text.contains("waiting: no live worker offers tier tee"), "{text}");

    // --fail-unservable fails them at once; the job ends.
    let failed = submit(&coord, &batch, &["--fail-unservable"]);
    assert_eq!(failed["warnings"][0], "1 request(s) of tier tee failed: no live worker offers tier tee");
    let job = coord.wait_job(&job_id(&failed), Duration::from_secs(60));
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(tasks(&job)[0]["state"], "done");
    assert_eq!(tasks(&job)[1]["error"], "no live worker offers tier tee");

    // SIGTERM with a client following the job that cannot finish and a
    // worker long-polling: the coordinator drains and exits cleanly.
    let mut watch = std::process::Command::new(BIN);
    watch
        .args(["job", "watch", &waiting])
        .env("ZKFARM_HOME", home.path())
        .env("ZKFARM_COORDINATOR", coord.url())
        .env("ZKFARM_API_KEY", coord.api_key());
    let _watcher = Proc::spawn(watch, home.path().join("watch.log"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(coord.terminate(Duration::from_secs(30)), "the coordinator exits 0 on SIGTERM");
    drop(w);
}

#[test]
fn a_stopped_worker_finishes_its_proof_or_hands_it_back() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    // Leases far longer than the test: a task that comes back early was
    // handed back, not expired.
    let coord = Coordinator::start(home.path(), "coordinator", &["--lease-ms", "600000"]);
    let mut quick = coord.worker("quick", &["--drain-timeout", "0"]);
    wait_until("the worker to register", Duration::from_secs(30), || worker_id(&quick).is_some());
    let job = job_id(&submit(&coord, &write_batch(home.path(), &["zk"]), &[]));
    let (task, first) = proving(&coord, &job);
    assert_eq!(worker_id(&quick).as_deref(), Some(first.as_str()));

    // No drain time: the proof is abandoned and the task handed back.
    assert!(quick.terminate(Duration::from_secs(30)), "the worker exits 0 on SIGTERM");
    let back = coord.job(&job);
    let t = &tasks(&back)[0];
    assert_eq!((t["state"].as_str(), t["attempt"].as_u64(), t["retries"].as_u64()), (Some("queued"), Some(1), Some(0)));
    let m = coord.metrics();
    assert_eq!(metric(&m, "zkfarm_tasks_handed_back_total", &[]), 1.0, "{}", tail(&coord.log()));
    assert_eq!(metric(&m, "zkfarm_lease_expiries_total", &[]), 0.0);

    // Drain time enough for the proof: it finishes, is reported, and the
    // worker then leaves.
    let mut patient = coord.worker("patient", &["--drain-timeout", "300"]);
    wait_until("the second worker to register", Duration::from_secs(30), || worker_id(&patient).is_some());
    let (again, second) = proving(&coord, &job);
    assert_eq!((again.as_str(), worker_id(&patient)), (task.as_str(), Some(second.clone())));
    assert!(patient.terminate(Duration::from_secs(300)), "the worker exits 0 after its proof");
    let done = coord.job(&job);
    let t = &tasks(&done)[0];
    assert_eq!(done["state"], "done", "{done}\n{}", tail(&patient.log_text()));
    assert_eq!(
        (t["attempt"].as_u64(), t["retries"].as_u64(), t["worker_id"].as_str()),
        (Some(2), Some(0), Some(second.as_str()))
    );
    wait_until("no live workers", Duration::from_secs(10), || {
        metric(&coord.metrics(), "zkfarm_workers_live", &[]) == 0.0
    });

    let dir = home.path().join("receipts");
    coord.cli_json(&["job", "receipts", &job, "--out", dir.to_str().unwrap()]);
    let receipts = receipts_in(&dir);
    assert_eq!(receipts.len(), 1);
    coord.cli_json(&["verify", &receipts[0].0, "--coordinator", &coord.url()]);
}
