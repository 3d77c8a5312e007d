//! The farm end to end: real coordinator, worker and Redis processes.

mod chaos;
mod grpc;
mod harness;
mod in_process;
mod lanes;
mod shared_store;
mod status_page;

use std::collections::HashSet;
use std::time::Duration;

use harness::*;
use serde_json::Value;
use zkfarm_circuits::input::parse_input;
use zkfarm_prover::receipt::input_hash;
use zkfarm_prover::Receipt;

const JOB_TIMEOUT: Duration = Duration::from_secs(600);

fn receipts_in(dir: &std::path::Path) -> Vec<(String, Receipt)> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| (p.display().to_string(), Receipt::load(p).unwrap())).collect()
}

/// The receipts in `dir`: one per request of `tiers` (nothing lost), each
/// for its own task (no duplicate), each of its request's tier and verified
/// offline against `coord`.
fn assert_every_receipt_once_and_verified(coord: &Coordinator, dir: &std::path::Path, tiers: &[&str]) {
    let receipts = receipts_in(dir);
    assert_eq!(receipts.len(), tiers.len(), "nothing lost");
    let ids: HashSet<_> = receipts.iter().map(|(_, r)| r.task_id.clone().unwrap()).collect();
    assert_eq!(ids.len(), tiers.len(), "no duplicate receipt");
    for ((path, r), tier) in receipts.iter().zip(tiers) {
        assert_eq!(r.tier.as_str(), *tier);
        coord.cli_json(&["verify", path, "--coordinator", &coord.url(), "--allow-insecure-tee"]);
    }
}

fn batch_inputs(batch: &std::path::Path) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(batch).unwrap()).unwrap();
    v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let values = parse_input(&r["input"].to_string()).unwrap();
            (r["tier"].as_str().unwrap().to_string(), input_hash(&values))
        })
        .collect()
}

fn tasks(job: &Value) -> &Vec<Value> {
    job["tasks"].as_array().unwrap()
}

#[test]
fn mixed_tier_job_on_two_workers_with_every_receipt_verified() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let redis = Redis::start(home.path());
    let coord = Coordinator::start(home.path(), "coordinator", &["--allow-insecure-tee"]);
    let worker_args = ["--redis", &redis.url(), "--tee", "dev", "--allow-insecure-tee"];
    let _w1 = coord.worker("w1", &worker_args);
    let _w2 = coord.worker("w2", &worker_args);
    let tiers: Vec<&str> = (0..20).map(|i| ["zk", "signed", "tee", "signed", "tee"][i % 5]).collect();
    let batch = write_batch(home.path(), &tiers);
    let out_dir = home.path().join("receipts");
    let job = coord.cli_json(&[
        "submit",
        batch.to_str().unwrap(),
        "--wait",
        "--out",
        out_dir.to_str().unwrap(),
        "--idempotency-key",
        "mixed-1",
    ]);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["done"], 20);
    let job_id = job["job_id"].as_str().unwrap();
    let workers: HashSet<_> = tasks(&job).iter().map(|t| t["worker_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(workers.len(), 2, "both workers took tasks: {workers:?}");

    // One receipt per request, each for its own request, each verified offline.
    let expected = batch_inputs(&batch);
    let receipts = receipts_in(&out_dir);
    assert_eq!(receipts.len(), 20);
    for (i, (path, r)) in receipts.iter().enumerate() {
        assert_eq!(r.tier.as_str(), expected[i].0);
        assert_eq!(r.input_hash.as_deref(), Some(expected[i].1.as_str()), "receipt {i} is for its own input");
        assert_eq!(r.job_id.as_deref(), Some(job_id));
        let v = coord.cli_json(&["verify", path, "--coordinator", &coord.url(), "--allow-insecure-tee"]);
        assert_eq!(v["valid"], true);
    }

    // A changed output is caught offline, for every tier.
    for (path, r) in receipts.iter().take(3) {
        let mut bad = r.clone();
        bad.outputs[0][0] += 0.5;
        let bad_path = format!("{path}.tampered");
        bad.save(std::path::Path::new(&bad_path)).unwrap();
        let out = coord.cli(&["verify", &bad_path, "--coordinator", &coord.url(), "--allow-insecure-tee"]);
        assert!(!out.status.success(), "a tampered {} receipt must not verify", r.tier);
    }
    // Dev TEE receipts are refused unless explicitly allowed.
    let tee = receipts.iter().find(|(_, r)| r.tier == zkfarm_prover::Tier::Tee).unwrap();
    let out = coord.cli(&["verify", &tee.0, "--coordinator", &coord.url()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("insecure dev provider"));

    // The same idempotency key returns the first job.
    let again = coord.cli_json(&["submit", batch.to_str().unwrap(), "--idempotency-key", "mixed-1"]);
    assert_eq!(again["job_id"], job_id);
    assert_eq!(again["existing"], true);

    let stats = coord.cli_json(&["stats"]);
    let count = |tier: &str| {
        stats["tiers"].as_array().unwrap().iter().find(|t| t["tier"] == tier).unwrap()["count"].as_u64().unwrap()
    };
    assert_eq!((count("zk"), count("signed"), count("tee")), (4, 8, 8));
    let m = coord.metrics();
    assert_eq!(metric(&m, "zkfarm_inferences_total", &["tier=\"zk\""]), 4.0, "{m}");
    // Gauges follow the store on the coordinator's next sweep.
    wait_until("the task gauge", Duration::from_secs(10), || {
        metric(&coord.metrics(), "zkfarm_tasks", &["state=\"done\""]) == 20.0
    });
}

#[test]
fn a_worker_killed_mid_task_loses_nothing() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(home.path(), "coordinator", &["--lease-ms", "3000"]);
    let mut w1 = coord.worker("w1", &[]);
    let mut w2 = coord.worker("w2", &[]);
    wait_until("workers to register", Duration::from_secs(30), || worker_id(&w1).is_some() && worker_id(&w2).is_some());
    let batch = write_batch(home.path(), &["zk", "signed", "zk", "signed", "zk", "signed"]);
    let job_id = coord.cli_json(&["submit", batch.to_str().unwrap()])["job_id"].as_str().unwrap().to_string();

    // Kill whichever worker is proving a zk task, mid-proof.
    let mut victim = (String::new(), String::new());
    wait_until("a zk task to be running", Duration::from_secs(120), || {
        let job = coord.job(&job_id);
        let running = tasks(&job).iter().find(|t| t["state"] == "running" && t["tier"] == "zk").cloned();
        if let Some(t) = running {
            victim = (t["task_id"].as_str().unwrap().into(), t["worker_id"].as_str().unwrap().into());
            true
        } else {
            false
        }
    });
    if worker_id(&w1).as_deref() == Some(victim.1.as_str()) {
        w1.kill();
    } else {
        w2.kill();
    }

    let job = coord.wait_job(&job_id, JOB_TIMEOUT);
    assert_eq!(job["state"], "done", "{job}\n{}", tail(&coord.log()));
    let t = tasks(&job).iter().find(|t| t["task_id"] == victim.0.as_str()).unwrap();
    assert!(t["attempt"].as_u64().unwrap() >= 2, "the killed task was re-leased: {t}");
    assert_eq!(t["retries"], 0, "a dead worker spends no retry budget: {t}");
    assert_ne!(t["worker_id"], victim.1.as_str());

    let dir = home.path().join("receipts");
    coord.cli_json(&["job", "receipts", &job_id, "--out", dir.to_str().unwrap()]);
    let receipts = receipts_in(&dir);
    assert_eq!(receipts.len(), 6, "nothing lost");
    let ids: HashSet<_> = receipts.iter().map(|(_, r)| r.task_id.clone().unwrap()).collect();
    assert_eq!(ids.len(), 6, "no duplicate receipt");
    for (path, _) in &receipts {
        coord.cli_json(&["verify", path, "--coordinator", &coord.url()]);
    }
    assert!(metric(&coord.metrics(), "zkfarm_lease_expiries_total", &[]) >= 1.0);
}

#[test]
fn a_coordinator_restarted_mid_job_finishes_the_job() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start(home.path(), "coordinator", &["--lease-ms", "5000"]);
    let _w = coord.worker("w1", &[]);
    let batch = write_batch(home.path(), &["zk", "signed", "zk", "signed", "zk"]);
    let out_dir = home.path().join("receipts");
    // The client waits across the restart.
    let mut submit = std::process::Command::new(BIN);
    submit
        .args(["--json", "submit", batch.to_str().unwrap(), "--wait", "--out", out_dir.to_str().unwrap()])
        .env("ZKFARM_HOME", home.path())
        .env("ZKFARM_COORDINATOR", coord.url())
        .env("ZKFARM_API_KEY", coord.api_key());
    let mut client = Proc::spawn(submit, home.path().join("submit.log"));
    let mut job_id = String::new();
    wait_until("the first receipt", Duration::from_secs(300), || {
        let jobs = coord.cli_json(&["job", "list"]);
        match jobs["jobs"].as_array().unwrap().first() {
            Some(j) if j["done"].as_u64().unwrap() >= 1 => {
                job_id = j["job_id"].as_str().unwrap().to_string();
                true
            }
            _ => false,
        }
    });
    coord.kill_and_restart();
    let status = loop {
        if let Some(s) = client.child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(status.success(), "submit --wait failed:\n{}\n{}", client.log_text(), tail(&coord.log()));
    let job = coord.job(&job_id);
    assert_eq!(job["state"], "done");
    let receipts = receipts_in(&out_dir);
    assert_eq!(receipts.len(), 5);
    for (path, _) in &receipts {
        coord.cli_json(&["verify", path, "--coordinator", &coord.url()]);
    }
}

#[test]
fn proving_keys_are_shared_through_redis_and_survive_its_loss() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(home.path());
    let url = redis.url();
    let serve = |name: &str| {
        let h = home.path().join(name);
        std::fs::create_dir_all(&h).unwrap();
        Coordinator::start(&h, "serve", &["--workers", "1", "--engine", "cpu", "--redis", &url])
    };
    let run_one = |c: &Coordinator| {
        let batch = write_batch(home.path(), &["zk"]);
        let job = c.cli_json(&["submit", batch.to_str().unwrap(), "--wait"]);
        assert_eq!(job["state"], "done");
    };

    // The first farm generates the key and publishes it.
    let a = serve("a");
    run_one(&a);
    let keys: Vec<String> = redis::cmd("KEYS").arg("zkfarm:keys:v1:*").query(&mut redis.conn().unwrap()).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    drop(a);

    // A second farm with an empty disk cache takes it from Redis.
    let b = serve("b");
    run_one(&b);
    assert!(metric(&b.metrics(), "zkfarm_key_cache_hits_total", &["layer=\"redis\""]) >= 1.0, "{}", b.metrics());
    drop(b);

    // With Redis gone, proving goes on and the failure shows in the metrics.
    redis.stop();
    let c = serve("c");
    run_one(&c);
    let m = c.metrics();
    assert!(metric(&m, "zkfarm_key_cache_errors_total", &["layer=\"redis\"", "kind=\"unavailable\""]) >= 1.0, "{m}");
}

#[test]
fn a_corrupt_redis_key_entry_is_detected_dropped_and_regenerated() {
    use zkfarm_circuits::{CompiledModel, Settings};
    use zkfarm_prover::keys::{Fetched, KeySource, SharedKeys};
    use zkfarm_prover::{KeyCache, Srs};
    use zkfarm_worker::RedisKeys;

    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let redis = Redis::start(home.path());
    let onnx = std::fs::read(examples().join("mlp.onnx")).unwrap();
    let model = CompiledModel::compile(&onnx, &Settings::default()).unwrap();
    let srs = Srs::load(srs()).unwrap();
    let cache =
        |name: &str| KeyCache::new(home.path().join(name)).unwrap().with_shared(RedisKeys::open(&redis.url()).unwrap());

    let (keys, source) = cache("a").get_or_create(&model, &srs).unwrap();
    assert_eq!(source, KeySource::Generated);
    let (_, source) = cache("b").get_or_create(&model, &srs).unwrap();
    assert_eq!(source, KeySource::Shared);

    // Flip bytes inside one proving-key chunk.
    let remote = RedisKeys::open(&redis.url()).unwrap();
    let name = remote.key_name(&KeyCache::remote_id(&model, &srs));
    let mut conn = redis.conn().unwrap();
    let mut chunk: Vec<u8> = redis::cmd("LINDEX").arg(&name).arg(2).query(&mut conn).unwrap();
    chunk[1000] ^= 0xff;
    let _: () = redis::cmd("LSET").arg(&name).arg(2).arg(chunk).query(&mut conn).unwrap();
    assert!(matches!(remote.get(&KeyCache::remote_id(&model, &srs)).unwrap(), Fetched::Corrupt(_)));
    let gone: bool = redis::cmd("EXISTS").arg(&name).query(&mut conn).unwrap();
    assert!(!gone, "a corrupt entry is deleted");

    // Corrupt again, then read through a cache: it regenerates and republishes.
    remote.put(&KeyCache::remote_id(&model, &srs), &keys.vk.to_json(), b"not a proving key").unwrap();
    let _: () = redis::cmd("LSET").arg(&name).arg(2).arg("tampered").query(&mut conn).unwrap();
    let (regenerated, source) = cache("c").get_or_create(&model, &srs).unwrap();
    assert_eq!(source, KeySource::Generated);
    assert_eq!(regenerated.vk.hash, keys.vk.hash);
    let (_, source) = cache("d").get_or_create(&model, &srs).unwrap();
    assert_eq!(source, KeySource::Shared, "the regenerated key was published again");

    // A well-formed entry for the wrong circuit is refused too.
    remote.put(&KeyCache::remote_id(&model, &srs), &keys.vk.to_json(), b"garbage with a valid checksum").unwrap();
    let (_, source) = cache("e").get_checked(&model, &srs, Some(&keys.vk.hash)).unwrap();
    assert_eq!(source, KeySource::Generated);
}

#[test]
fn tls_serves_clients_and_workers() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (home.path().join("cert.pem"), home.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let c = Coordinator::start(
        home.path(),
        "serve",
        &[
            "--workers",
            "1",
            "--engine",
            "cpu",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let https = format!("https://localhost:{}", c.port);
    let batch = write_batch(home.path(), &["signed", "signed"]);
    let job = c.cli_json(&[
        "submit",
        batch.to_str().unwrap(),
        "--wait",
        "--coordinator",
        &https,
        "--tls-ca",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(job["state"], "done", "the local worker reached the coordinator over TLS");
    let over_tls = c.cli(&["job", "list", "--coordinator", &https, "--tls-ca", cert.to_str().unwrap()]);
    assert!(over_tls.status.success(), "{}", String::from_utf8_lossy(&over_tls.stderr));
    let plain = c.cli(&["job", "list", "--coordinator", &c.url()]);
    assert!(!plain.status.success(), "plain HTTP/2 to a TLS port fails");
    let no_ca = c.cli(&["job", "list", "--coordinator", &https]);
    assert!(!no_ca.status.success());
    assert!(String::from_utf8_lossy(&no_ca.stderr).contains("--tls-ca"));
}
