//! What only a shared store does: several coordinators (here, several
//! `PgStore`s on one database, on threads of their own) claiming, settling,
//! submitting and sweeping at once, telling each other of changes, and
//! surviving restarts of each other and of their connections.

use std::collections::HashSet;
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use zkfarm_prover::Tier;

use super::super::postgres::{MIGRATIONS, SWEEP_LOCK};
use super::super::*;
use super::pg::TestDb;
use super::{job, model, tiers, ALL};

const COORDINATORS: usize = 4;

#[test]
fn coordinators_claiming_at_once_never_share_a_task_and_the_job_settles_once() {
    let db = TestDb::new();
    let mut first = db.open();
    model(&first, "m", 1);
    let n = 300;
    job(&mut first, "j", "m", 0, &vec!["signed"; n], 1);
    let start = Arc::new(Barrier::new(COORDINATORS));
    let runs: Vec<_> = (0..COORDINATORS)
        .map(|c| {
            let (mut s, start) = (db.open(), start.clone());
            std::thread::spawn(move || {
                let all = tiers(&["signed"]);
                let fit = Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL };
                let (mut mine, mut settled) = (Vec::new(), Vec::new());
                start.wait();
                while let Some(t) = s.claim(&format!("w{c}"), &fit, 2, 60_000).unwrap() {
                    let (done, state) = s.complete(&t.task_id, "r", 1, 3).unwrap();
                    assert_eq!(done, Completion::Done);
                    settled.extend(state);
                    mine.push(t.task_id);
                }
                (mine, settled)
            })
        })
        .collect();
    let (mut claimed, mut settled) = (Vec::new(), Vec::new());
    for r in runs {
        let (mine, s) = r.join().unwrap();
        claimed.extend(mine);
        settled.extend(s);
    }
    let distinct: HashSet<_> = claimed.iter().collect();
    assert_eq!((claimed.len(), distinct.len()), (n, n), "every task claimed exactly once");
    assert_eq!(settled, vec![JobState::Done], "exactly one completion settled the job");
    assert_eq!(first.counts("j").unwrap().done, n as u32);
}

#[test]
fn an_idempotency_key_names_one_job_across_coordinators() {
    let db = TestDb::new();
    model(&db.open(), "m", 1);
    let start = Arc::new(Barrier::new(COORDINATORS));
    let runs: Vec<_> = (0..COORDINATORS)
        .map(|c| {
            let (mut s, start) = (db.open(), start.clone());
            std::thread::spawn(move || {
                let id = format!("j{c}");
                let j = NewJob { job_id: &id, client: "alice", idem_key: Some("retry-7"), model_id: "m", priority: 0 };
                let tasks = [NewTask { tier: Tier::Signed, input: "{}".into(), fail: None }];
                start.wait();
                s.create_job(&j, &tasks, 1).unwrap()
            })
        })
        .collect();
    let results: Vec<(String, bool)> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let made: Vec<_> = results.iter().filter(|(_, existing)| !existing).collect();
    assert_eq!(made.len(), 1, "one submission made the job: {results:?}");
    assert!(results.iter().all(|(id, _)| *id == made[0].0), "every submission got its id: {results:?}");
    assert_eq!(db.open().job_count().unwrap(), 1);
}

#[test]
fn one_coordinator_sweeps_at_a_time() {
    let db = TestDb::new();
    let (mut a, mut b) = (db.open(), db.open());
    model(&a, "m", 1);
    job(&mut a, "j", "m", 0, &["signed"], 1);
    let all = tiers(&["signed"]);
    a.claim("w", &Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL }, 2, 10).unwrap().unwrap();
    // A coordinator in the middle of its sweep holds the lock.
    let mut sweeping = db.client();
    let mut tx = sweeping.transaction().unwrap();
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SWEEP_LOCK]).unwrap();
    assert!(b.sweep(100, 0, 60).unwrap().is_none(), "b stands aside while another sweeps");
    assert_eq!(b.task("j-00000").unwrap().unwrap().state, TaskState::Running);
    tx.commit().unwrap();
    let swept = b.sweep(100, 0, 60).unwrap().expect("b sweeps once the lock is free");
    assert_eq!(swept.expired.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(), ["j-00000"]);
    assert_eq!(a.task("j-00000").unwrap().unwrap().state, TaskState::Queued);
}

#[test]
fn changes_reach_the_other_coordinators_and_not_the_sender() {
    let db = TestDb::new();
    let (a, b) = (db.open(), db.open());
    let (to_a, at_a) = mpsc::channel();
    let (to_b, at_b) = mpsc::channel();
    let sink = |tx: mpsc::Sender<Note>| {
        let tx = std::sync::Mutex::new(tx);
        Box::new(move |n: Note| {
            let _ = tx.lock().unwrap().send(n);
        })
    };
    a.listen(sink(to_a)).unwrap();
    b.listen(sink(to_b)).unwrap();
    let note = Note { job_id: "j".into(), task_id: Some("j-00003".into()), work: true };
    // The listeners connect on their own threads; publish until b hears.
    let heard = (0..50).find_map(|_| {
        a.publisher().unwrap().publish(&note).unwrap();
        at_b.recv_timeout(Duration::from_millis(200)).ok()
    });
    assert_eq!(heard, Some(note));
    assert!(at_a.recv_timeout(Duration::from_millis(500)).is_err(), "a does not hear itself");
}

#[test]
fn migrations_run_once_even_when_coordinators_start_together() {
    let db = TestDb::new();
    let start = Arc::new(Barrier::new(COORDINATORS));
    let opens: Vec<_> = (0..COORDINATORS)
        .map(|_| {
            let (url, start) = (db.url.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                PgStore::open(&url).map(|_| ())
            })
        })
        .collect();
    for o in opens {
        o.join().unwrap().unwrap();
    }
    let mut c = db.client();
    assert_eq!(super::super::postgres::schema_version(&mut c).unwrap(), MIGRATIONS.len());
    c.execute("UPDATE zkfarm_schema SET version = $1", &[&(MIGRATIONS.len() as i32 + 1)]).unwrap();
    let err = PgStore::open(&db.url).err().expect("a newer schema is refused").to_string();
    assert!(err.contains("newer than this zkfarm knows"), "{err}");
}

#[test]
fn state_survives_a_reopen_and_a_lost_connection() {
    let db = TestDb::new();
    {
        let mut s = db.open();
        model(&s, "m", 1);
        job(&mut s, "j", "m", 0, &["zk", "tee"], 1);
        s.cancel("j", 2).unwrap();
    }
    let s = db.open();
    assert_eq!(s.job("j").unwrap().unwrap().state, JobState::Cancelled);
    // The server ends the store's session (a failover, a restart): the call
    // that finds the connection gone fails, and the next one reconnects.
    db.client()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'zkfarm-coordinator'",
            &[&db.name],
        )
        .unwrap();
    let tries: Vec<bool> = (0..2).map(|_| s.counts("j").is_ok()).collect();
    assert!(tries[1], "the store reconnected: {tries:?}");
    assert_eq!(s.counts("j").unwrap().cancelled, 2);
}

#[test]
fn an_unreachable_or_malformed_store_gets_one_clear_error() {
    let err = format!("{:#}", PgStore::open("postgres://zkfarm@127.0.0.1:1/farm").err().unwrap());
    assert!(err.contains("connecting to the job store at PostgreSQL 127.0.0.1:1/farm"), "{err}");
    let err = format!("{:#}", PgStore::open("postgres://h:notaport/x").err().unwrap());
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = format!("{:#}", open(Some("mysql://x"), dir.path()).err().unwrap());
    assert!(err.contains("postgres://"), "{err}");
}

#[test]
fn tls_is_used_and_verified_when_the_url_asks_for_it() {
    let db = TestDb::new();
    let ca = std::env::var("ZKFARM_POSTGRES_CA")
        .expect("ZKFARM_POSTGRES_CA names the test server's CA certificate (scripts/postgres.sh)");
    let url = format!("{}?sslmode=verify-full&sslrootcert={ca}&application_name=zkfarm-tls", db.url);
    let s = PgStore::open(&url).unwrap();
    assert!(s.describe().ends_with("(TLS)"), "{}", s.describe());
    model(&s, "m", 1);
    let encrypted: Vec<bool> = db
        .client()
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.application_name = 'zkfarm-tls'",
            &[&db.name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!encrypted.is_empty() && encrypted.iter().all(|&e| e), "the store's sessions use TLS: {encrypted:?}");
    // The server's certificate chains to no CA the system trusts: refused.
    let err = format!("{:#}", PgStore::open(&format!("{}?sslmode=require", db.url)).err().unwrap());
    assert!(err.contains("connecting to the job store") && err.contains("certificate"), "{err}");
}
