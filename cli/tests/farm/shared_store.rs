//! Two coordinators sharing one PostgreSQL store: workers and a client that
//! know both, and one coordinator SIGKILLed mid-job. Every receipt must
//! arrive, once, and verify offline.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::{assert_every_receipt_once_and_verified, JOB_TIMEOUT};

#[test]
fn a_job_survives_losing_one_of_two_coordinators_on_one_postgres() {
    let _g = serial();
    let n = 24;
    let home = tempfile::tempdir().unwrap();
    let redis = Redis::start(home.path());
    let db = Postgres::database();
    let shared = ["--allow-insecure-tee", "--lease-ms", "3000", "--store", db.url.as_str()];
    let a = Coordinator::start(home.path(), "coordinator", &shared);
    let mut b = a.peer("farm-b", &shared);
    let (ab, ba) = (format!("{},{}", a.url(), b.url()), format!("{},{}", b.url(), a.url()));
    // Workers start on different coordinators: both hand out tasks.
    let args = ["--redis", &redis.url(), "--tee", "dev", "--allow-insecure-tee", "--drain-timeout", "5"];
    let _w1 = a.worker_of(&ab, "w1", &args);
    let w2 = a.worker_of(&ba, "w2", &args);
    let _w3 = a.worker_of(&ba, "w3", &args);

    // One zk request in six, the rest signed and tee; the client submits
    // to b and follows the job there until b dies.
    let tiers: Vec<&str> = (0..n).map(|i| ["zk", "signed", "tee", "signed", "tee", "signed"][i % 6]).collect();
    let batch = write_batch(home.path(), &tiers);
    let out = home.path().join("receipts");
    let submit = ["--json", "submit", batch.to_str().unwrap(), "--wait", "--out", out.to_str().unwrap()];
    let client = a
        .client_command(&ba, &submit)
        .args(["--idempotency-key", "shared-1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Kill b once a third is done: its watchers, workers and the client
    // move to a.
    let start = Instant::now();
    let job_id = loop {
        assert!(start.elapsed() < JOB_TIMEOUT, "the job never got a third done");
        let jobs = a.cli_json(&["job", "list"]);
        if let Some(j) = jobs["jobs"].as_array().and_then(|j| j.first()) {
            if j["done"].as_u64().unwrap_or(0) as usize >= n / 3 {
                break j["job_id"].as_str().unwrap().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(b.log().contains("worker registered"), "workers served by b: {}", tail(&b.log()));
    b.kill();
    let done_at_kill = a.job(&job_id)["done"].as_u64().unwrap() as usize;
    assert!(done_at_kill < n, "the kill came mid-job");

    let status = a.wait_job(&job_id, JOB_TIMEOUT);
    assert_eq!(status["state"], "done", "{status}\n{}", tail(&a.log()));
    let result = client.wait_with_output().unwrap();
    assert!(
        result.status.success(),
        "the client did not follow the job to a: {}\n{}",
        String::from_utf8_lossy(&result.stderr),
        tail(&a.log())
    );
    assert!(w2.log_text().contains("is unavailable; moving to"), "w2 moved to a: {}", tail(&w2.log_text()));
    assert_every_receipt_once_and_verified(&a, &out, &tiers);
    eprintln!("shared store: {n} requests, coordinator b killed at {done_at_kill} done, {:?}", start.elapsed());
}
