//! The store's behaviour across concerns: claims, leases, retries,
//! completion and durability. Every test runs against both backends: SQLite
//! in memory, and a fresh database on the PostgreSQL server that
//! `ZKFARM_POSTGRES_URL` names (scripts/test.sh starts one). Tests of what
//! only a shared store does are in `shared.rs`.

mod pg;
mod shared;

use zkfarm_prover::Tier;

use super::*;

/// Runs a test of a store against each backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&mut super::SqliteStore::open_in_memory().unwrap());
            }

            #[test]
            fn postgres() {
                let db = super::pg::TestDb::new();
                super::$name(&mut db.open());
            }
        }
    )*};
}

on_both_backends!(
    claims_by_priority_then_held_key_then_age,
    claims_respect_tiers_and_memory,
    tasks_no_worker_can_take_do_not_starve_the_rest,
    expired_leases_requeue_without_spending_retries,
    failures_retry_then_fail_and_settle_the_job,
    a_task_completes_once_and_jobs_are_idempotent,
    a_leaving_worker_hands_back_its_tasks_without_spending_retries,
    tasks_failed_on_arrival_are_final_and_settle_the_job,
    finished_inferences_are_counted_per_minute_and_tier,
    api_keys_are_listed_and_revoked_by_client_name,
    models_and_workers_are_stored_and_read_back,
);

fn model(store: &dyn JobStore, id: &str, mem: u64) {
    let m = ModelRow {
        model_id: id.into(),
        name: id.into(),
        model_hash: "h".into(),
        onnx: vec![1],
        settings: "{}".into(),
        k: 10,
        vk_hash: "v".into(),
        mem_bytes: mem,
    };
    store.put_model(&m, 0).unwrap();
}

fn job(store: &mut dyn JobStore, id: &str, model: &str, priority: i32, tiers: &[&str], now: i64) -> String {
    let tiers = self::tiers(tiers);
    let tasks: Vec<NewTask> = tiers.iter().map(|&tier| NewTask { tier, input: "{}".into(), fail: None }).collect();
    let j = NewJob { job_id: id, client: "c", idem_key: None, model_id: model, priority };
    store.create_job(&j, &tasks, now).unwrap().0
}

const ALL: &[String] = &[];

fn tiers(t: &[&str]) -> Vec<Tier> {
    t.iter().map(|s| s.parse().unwrap()).collect()
}

fn claims_by_priority_then_held_key_then_age(s: &mut dyn JobStore) {
    model(s, "m1", 100);
    model(s, "m2", 100);
    job(s, "old", "m1", 0, &["zk"], 1);
    job(s, "keyed", "m2", 0, &["zk"], 2);
    job(s, "urgent", "m1", 5, &["signed"], 3);
    let all = tiers(&["zk", "signed"]);
    let held = vec!["m2".to_string()];
    let fit = Fit { tiers: &all, memory_bytes: 0, loaded_keys: &held };
    assert_eq!(s.claim("w", &fit, 10, 1000).unwrap().unwrap().job_id, "urgent");
    assert_eq!(s.claim("w", &fit, 10, 1000).unwrap().unwrap().job_id, "keyed", "a held key wins over age");
    let t = s.claim("w", &fit, 10, 1000).unwrap().unwrap();
    assert_eq!((t.job_id.as_str(), t.attempt, t.lease_expires_ms), ("old", 1, 1010));
    assert!(s.claim("w", &fit, 10, 1000).unwrap().is_none());
}

fn claims_respect_tiers_and_memory(s: &mut dyn JobStore) {
    model(s, "big", 1 << 40);
    job(s, "j", "big", 0, &["zk", "tee"], 1);
    let zk_only = tiers(&["zk", "signed"]);
    let small = Fit { tiers: &zk_only, memory_bytes: 1 << 30, loaded_keys: ALL };
    assert!(s.claim("w", &small, 5, 100).unwrap().is_none(), "too little memory for the zk task, no TEE");
    let tee = tiers(&["tee"]);
    let t = s.claim("w", &Fit { tiers: &tee, memory_bytes: 1, loaded_keys: ALL }, 5, 100).unwrap().unwrap();
    assert_eq!(t.tier, Tier::Tee);
    let big = Fit { tiers: &zk_only, memory_bytes: 1 << 41, loaded_keys: ALL };
    assert_eq!(s.claim("w", &big, 5, 100).unwrap().unwrap().tier, Tier::Zk);
}

fn tasks_no_worker_can_take_do_not_starve_the_rest(s: &mut dyn JobStore) {
    model(s, "m", 1);
    job(s, "tee-only", "m", 0, &vec!["tee"; 600], 1);
    job(s, "late", "m", 0, &["signed"], 2);
    let signed = tiers(&["signed"]);
    let t = s.claim("w", &Fit { tiers: &signed, memory_bytes: 0, loaded_keys: ALL }, 3, 100).unwrap();
    assert_eq!(t.unwrap().job_id, "late");
}

fn expired_leases_requeue_without_spending_retries(s: &mut dyn JobStore) {
    model(s, "m", 1);
    job(s, "j", "m", 0, &["signed"], 1);
    let all = tiers(&["signed"]);
    let fit = Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL };
    let t = s.claim("w1", &fit, 10, 100).unwrap().unwrap();
    assert!(s.renew("w1", &[(t.task_id.clone(), 1)], 50, 100).unwrap().is_empty());
    assert!(s.expire_leases(149).unwrap().is_empty(), "the heartbeat extended the lease to 150");
    assert_eq!(s.expire_leases(151).unwrap().len(), 1);
    let again = s.claim("w2", &fit, 160, 100).unwrap().unwrap();
    assert_eq!((again.attempt, again.retries), (2, 0));
    assert_eq!(s.renew("w1", &[(t.task_id.clone(), 1)], 170, 100).unwrap().len(), 1, "w1 lost the task");
    // The stale attempt's failure report changes nothing.
    assert_eq!(s.fail(&t.task_id, 1, false, "late", 3, 170).unwrap(), (None, None));
    assert_eq!(s.task(&t.task_id).unwrap().unwrap().state, TaskState::Running);
}

fn failures_retry_then_fail_and_settle_the_job(s: &mut dyn JobStore) {
    model(s, "m", 1);
    job(s, "j", "m", 0, &["signed", "signed"], 1);
    let all = tiers(&["signed"]);
    let fit = Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL };
    let a = s.claim("w", &fit, 2, 100).unwrap().unwrap();
    assert_eq!(s.fail(&a.task_id, 1, false, "bad input", 3, 3).unwrap().0, Some(TaskState::Failed));
    let b = s.claim("w", &fit, 4, 100).unwrap().unwrap();
    assert_eq!(s.fail(&b.task_id, 1, true, "flaky", 1, 5).unwrap().0, Some(TaskState::Queued));
    let b = s.claim("w", &fit, 6, 100).unwrap().unwrap();
    let (state, settled) = s.fail(&b.task_id, 2, true, "flaky", 1, 7).unwrap();
    assert_eq!(state, Some(TaskState::Failed), "the retry budget is spent");
    assert_eq!(settled, Some(JobState::Failed));
    let t = s.task(&b.task_id).unwrap().unwrap();
    assert_eq!((t.retries, t.error.as_str()), (2, "flaky"), "both retryable failures are counted");
    assert_eq!(s.job("j").unwrap().unwrap().finished_ms, 7);
}

fn a_task_completes_once_and_jobs_are_idempotent(s: &mut dyn JobStore) {
    model(s, "m", 1);
    let j = NewJob { job_id: "j1", client: "c", idem_key: Some("k"), model_id: "m", priority: 0 };
    let tasks = [NewTask { tier: Tier::Signed, input: "{}".into(), fail: None }];
    assert_eq!(s.create_job(&j, &tasks, 1).unwrap(), ("j1".to_string(), false));
    let j2 = NewJob { job_id: "j2", ..j };
    assert_eq!(s.create_job(&j2, &tasks, 2).unwrap(), ("j1".to_string(), true));
    let other_client = NewJob { job_id: "j3", client: "d", ..j };
    assert_eq!(s.create_job(&other_client, &tasks, 2).unwrap().0, "j3", "keys are per client");
    let all = tiers(&["signed"]);
    let t = s.claim("w", &Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL }, 3, 100).unwrap().unwrap();
    assert_eq!(s.complete(&t.task_id, "r1", 1, 4).unwrap(), (Completion::Done, Some(JobState::Done)));
    assert_eq!(s.complete(&t.task_id, "r2", 1, 5).unwrap().0, Completion::AlreadyFinal(TaskState::Done));
    assert_eq!(s.receipts(&t.job_id).unwrap()[0].3, "r1");
}

fn a_leaving_worker_hands_back_its_tasks_without_spending_retries(s: &mut dyn JobStore) {
    model(s, "m", 1);
    let caps = WorkerRow {
        worker_id: "w".into(),
        name: "w".into(),
        public_key: vec![0; 32],
        caps: "{}".into(),
        last_seen_ms: 1,
        alive: true,
    };
    s.upsert_worker(&caps).unwrap();
    job(s, "j", "m", 0, &["zk", "zk"], 1);
    let all = tiers(&["zk"]);
    let fit = Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL };
    let a = s.claim("w", &fit, 2, 100).unwrap().unwrap();
    let b = s.claim("other", &fit, 2, 100).unwrap().unwrap();
    let back = s.release("w").unwrap();
    assert_eq!(back.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(), [a.task_id.as_str()]);
    let a = s.task(&a.task_id).unwrap().unwrap();
    assert_eq!((a.state, a.retries, a.worker_id.as_str()), (TaskState::Queued, 0, ""));
    assert_eq!(s.task(&b.task_id).unwrap().unwrap().state, TaskState::Running, "another worker's task is kept");
    assert_eq!(s.live_workers().unwrap(), 0, "the worker that left counts as dead");
    let again = s.claim("w2", &fit, 3, 100).unwrap().unwrap();
    assert_eq!((again.task_id, again.attempt), (a.task_id, 2));
}

fn tasks_failed_on_arrival_are_final_and_settle_the_job(s: &mut dyn JobStore) {
    model(s, "m", 1);
    let unservable = || NewTask { tier: Tier::Tee, input: "{}".into(), fail: Some("no tee".into()) };
    let j = NewJob { job_id: "j", client: "c", idem_key: None, model_id: "m", priority: 0 };
    s.create_job(&j, &[unservable(), NewTask { tier: Tier::Signed, input: "{}".into(), fail: None }], 5).unwrap();
    let c = s.counts("j").unwrap();
    assert_eq!((c.failed, c.queued), (1, 1));
    let t = &s.tasks_of("j").unwrap()[0];
    assert_eq!((t.state, t.error.as_str(), t.finished_ms), (TaskState::Failed, "no tee", 5));
    assert_eq!(s.job("j").unwrap().unwrap().state, JobState::Running, "one task still runs");
    let all_failed = NewJob { job_id: "k", ..j };
    s.create_job(&all_failed, &[unservable(), unservable()], 6).unwrap();
    let k = s.job("k").unwrap().unwrap();
    assert_eq!((k.state, k.finished_ms), (JobState::Failed, 6));
}

fn finished_inferences_are_counted_per_minute_and_tier(s: &mut dyn JobStore) {
    model(s, "m", 1);
    let minute = 60_000;
    job(s, "j", "m", 0, &["signed", "signed", "zk"], 0);
    let all = tiers(&["signed", "zk"]);
    let fit = Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL };
    let a = s.claim("w", &fit, 1, 1000).unwrap().unwrap();
    s.complete(&a.task_id, "r", 1, 10 * minute + 5).unwrap();
    let b = s.claim("w", &fit, 1, 1000).unwrap().unwrap();
    s.complete(&b.task_id, "r", 1, 12 * minute).unwrap();
    let c = s.claim("w", &fit, 1, 1000).unwrap().unwrap();
    s.fail(&c.task_id, c.attempt, false, "bad", 3, 12 * minute + 1).unwrap();
    let unservable = NewTask { tier: Tier::Tee, input: "{}".into(), fail: Some("no tee".into()) };
    let k = NewJob { job_id: "k", client: "c", idem_key: None, model_id: "m", priority: 0 };
    s.create_job(&k, &[unservable], 12 * minute).unwrap();

    // Three buckets of two minutes ending with minute 12: 8-9, 10-11, 12.
    let series = s.tier_series(12 * minute + 30_000, 2, 3).unwrap();
    let of = |t: Tier| series.iter().find(|e| e.tier == t).unwrap();
    assert_eq!((of(Tier::Signed).done.clone(), of(Tier::Signed).failed.clone()), (vec![0, 1, 1], vec![0, 0, 0]));
    assert_eq!((of(Tier::Zk).done.clone(), of(Tier::Zk).failed.clone()), (vec![0, 0, 0], vec![0, 0, 1]));
    assert_eq!(of(Tier::Tee).failed, vec![0, 0, 1], "failed on arrival counts too");
    assert_eq!(s.prune_tier_minutes(12 * minute, 1).unwrap(), 1, "minute 10 is older than a minute");
    assert_eq!(s.tier_series(12 * minute, 2, 3).unwrap().iter().map(|e| e.done.iter().sum::<u64>()).sum::<u64>(), 1);
}

fn api_keys_are_listed_and_revoked_by_client_name(s: &mut dyn JobStore) {
    s.add_api_key("h1", "alice", 10).unwrap();
    s.add_api_key("h2", "alice", 20).unwrap();
    s.add_api_key("h3", "bob", 30).unwrap();
    assert_eq!(s.api_key_names().unwrap(), vec![("alice".into(), 2, 20), ("bob".into(), 1, 30)]);
    assert_eq!(s.remove_api_keys("alice").unwrap(), 2);
    assert_eq!(s.remove_api_keys("alice").unwrap(), 0);
    assert_eq!(s.api_keys().unwrap(), vec![("h3".into(), "bob".into())]);
}

fn models_and_workers_are_stored_and_read_back(s: &mut dyn JobStore) {
    let m = ModelRow {
        model_id: "m".into(),
        name: "mlp".into(),
        model_hash: "mh".into(),
        onnx: vec![0, 1, 255],
        settings: "{\"scale\":7}".into(),
        k: 15,
        vk_hash: "vk".into(),
        mem_bytes: 5 << 30,
    };
    s.put_model(&m, 1).unwrap();
    s.put_model(&ModelRow { name: "renamed".into(), ..m.clone() }, 2).unwrap();
    let back = s.model("m").unwrap().unwrap();
    assert_eq!((back.name.as_str(), back.onnx, back.k, back.mem_bytes), ("mlp", m.onnx.clone(), 15, 5 << 30));
    assert_eq!(s.vk_hash("m").unwrap().as_deref(), Some("vk"));
    assert_eq!(s.model_mem_bytes("m").unwrap(), Some(5 << 30));
    assert!(s.model("nope").unwrap().is_none() && s.vk_hash("nope").unwrap().is_none());

    let w = |id: &str, seen: i64| WorkerRow {
        worker_id: id.into(),
        name: format!("{id}-host"),
        public_key: vec![7; 32],
        caps: "{}".into(),
        last_seen_ms: seen,
        alive: true,
    };
    s.upsert_worker(&w("w1", 100)).unwrap();
    s.upsert_worker(&w("w2", 500)).unwrap();
    s.set_worker_caps("w2", "{\"engine\":\"cpu\"}").unwrap();
    assert_eq!(s.worker("w2").unwrap().unwrap().caps, "{\"engine\":\"cpu\"}");
    assert_eq!(s.live_workers().unwrap(), 2);
    assert_eq!(s.mark_dead(200).unwrap(), 1, "w1 was last seen before the cutoff");
    assert_eq!(s.live_worker_caps().unwrap(), vec!["{\"engine\":\"cpu\"}".to_string()]);
    assert!(!s.worker("w1").unwrap().unwrap().alive);
    assert!(s.renew("w1", &[], 600, 100).unwrap().is_empty());
    assert!(s.worker("w1").unwrap().unwrap().alive, "a heartbeat brings a worker back");
    let keys = s.worker_keys().unwrap();
    assert_eq!(keys.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["w1", "w2"]);
    assert_eq!(keys[0].1, vec![7; 32], "dead workers' keys stay, for old receipts");
}

#[test]
fn state_survives_a_reopen_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("farm.sqlite");
    {
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.journal_mode().unwrap(), "wal");
        model(&s, "m", 1);
        job(&mut s, "j", "m", 0, &["zk", "tee"], 1);
        s.cancel("j", 2).unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let c = s.counts("j").unwrap();
    assert_eq!((c.cancelled, c.total()), (2, 2));
    assert_eq!(s.job("j").unwrap().unwrap().state, JobState::Cancelled);
}
