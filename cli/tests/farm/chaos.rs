//! Chaos: a mixed-tier job on a coordinator and three worker processes
//! while workers are SIGKILLed and restarted every few seconds, the
//! coordinator is SIGKILLed and restarted, and the proving key in Redis is
//! corrupted. Every receipt must arrive, once, and verify offline. Then the
//! same on two coordinators sharing PostgreSQL, one of which is SIGKILLed
//! for good.
//!
//! CI runs them small (`ZKFARM_CHAOS_REQUESTS`, default 30); the full run
//! docs/FARM.md describes is 200 requests.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::{assert_every_receipt_once_and_verified, JOB_TIMEOUT};

fn requests() -> usize {
    std::env::var("ZKFARM_CHAOS_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(30)
}

#[test]
fn a_mixed_job_survives_worker_kills_a_coordinator_kill_and_a_corrupt_key() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(home.path(), "coordinator", &["--allow-insecure-tee", "--lease-ms", "3000"]);
    chaos(home.path(), requests(), coord, None);
}

#[test]
fn a_mixed_job_on_two_coordinators_survives_worker_kills_and_losing_a_coordinator() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let db = Postgres::database();
    let shared = ["--allow-insecure-tee", "--lease-ms", "3000", "--store", db.url.as_str()];
    let a = Coordinator::start(home.path(), "coordinator", &shared);
    let b = a.peer("farm-b", &shared);
    chaos(home.path(), requests(), a, Some(b));
}

/// Runs the chaos on `coord`, or with `peer` on both: workers list both,
/// the job goes to the peer, and the peer is killed for good instead of
/// `coord` being killed and restarted.
fn chaos(home: &std::path::Path, n: usize, mut coord: Coordinator, mut peer: Option<Coordinator>) {
    let redis = Redis::start(home);
    let args = ["--redis", &redis.url(), "--tee", "dev", "--allow-insecure-tee", "--drain-timeout", "5"];
    let names = ["w1", "w2", "w3"];
    let urls: Vec<String> = match &peer {
        None => vec![coord.url(); 3],
        // Two of the three start on the coordinator that dies.
        Some(p) => vec![format!("{},{}", coord.url(), p.url()), format!("{},{}", p.url(), coord.url())]
            .into_iter()
            .cycle()
            .skip(1)
            .take(3)
            .collect(),
    };
    let start_worker = |c: &Coordinator, i: usize| c.worker_of(&urls[i], names[i], &args);
    let mut workers: Vec<Proc> = (0..names.len()).map(|i| start_worker(&coord, i)).collect();
    // One zk request in five, the rest signed and tee.
    let tiers: Vec<&str> = (0..n).map(|i| ["zk", "signed", "tee", "signed", "tee"][i % 5]).collect();
    let batch = write_batch(home, &tiers);
    let submit = ["--json", "submit", batch.to_str().unwrap(), "--idempotency-key", "chaos"];
    let submitted_to = peer.as_ref().unwrap_or(&coord);
    let out = coord.client_command(&submitted_to.url(), &submit).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_string();

    let start = Instant::now();
    let (mut kills, mut next_kill) = (0usize, Instant::now() + Duration::from_secs(8));
    let (mut coordinator_killed, mut corrupted) = (false, false);
    let mut fresh: Option<Proc> = None;
    loop {
        let status = coord.job(&job_id);
        if status["state"] != "running" {
            assert_eq!(status["state"], "done", "{status}\n{}", tail(&coord.log()));
            break;
        }
        assert!(start.elapsed() < JOB_TIMEOUT, "the chaos job did not finish: {status}");
        let done = status["done"].as_u64().unwrap() as usize;
        // A worker dies and comes back every 8 s, in turn: long enough for
        // a proof on a free worker, short enough to kill some mid-proof.
        if Instant::now() >= next_kill {
            let i = kills % workers.len();
            workers[i].kill();
            workers[i] = start_worker(&coord, i);
            kills += 1;
            next_kill = Instant::now() + Duration::from_secs(8);
        }
        if !coordinator_killed && done >= n / 3 {
            match &mut peer {
                Some(p) => p.kill(),
                None => coord.kill_and_restart(),
            }
            coordinator_killed = true;
        }
        if !corrupted && done >= n / 2 {
            // Tamper with the shared proving key, then bring in a worker
            // with an empty disk cache: it must find the entry corrupt.
            corrupted = corrupt_shared_key(&redis);
            if corrupted {
                fresh = Some(coord.worker_of(&urls[0], "fresh", &args));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(kills >= 1 && coordinator_killed, "the chaos happened: {kills} worker kills");

    let dir = home.join("receipts");
    coord.cli_json(&["job", "receipts", &job_id, "--out", dir.to_str().unwrap()]);
    assert_every_receipt_once_and_verified(&coord, &dir, &tiers);
    // Whether a worker met the corrupt entry depends on who proves what
    // after it (detection itself is tested on its own, in main.rs); the
    // run reports it.
    let detected = fresh.is_some_and(|f| f.log_text().contains("dropped corrupt redis key entry"));
    let store = if peer.is_some() { "two coordinators on PostgreSQL, one killed for good" } else { "SQLite" };
    eprintln!(
        "chaos ({store}): {n} requests, {kills} worker kills, 1 coordinator kill, key corrupted: {corrupted} \
         (seen by the fresh worker: {detected}), {:?}",
        start.elapsed()
    );
}

/// Overwrites a chunk of every shared proving-key entry; false while there
/// is none yet.
fn corrupt_shared_key(redis: &Redis) -> bool {
    let mut conn = redis.conn().unwrap();
    let names: Vec<String> = redis::cmd("KEYS").arg("zkfarm:keys:v1:*").query(&mut conn).unwrap();
    let names: Vec<String> = names.into_iter().filter(|k| !k.contains("staging")).collect();
    for name in &names {
        let _: redis::RedisResult<()> = redis::cmd("LSET").arg(name).arg(2).arg("tampered").query(&mut conn);
    }
    !names.is_empty()
}
