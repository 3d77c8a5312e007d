//! The shared store: PostgreSQL, for several coordinators at once.
//!
//! Any coordinator accepts submissions and serves workers. Claims lock the
//! task they take (`FOR UPDATE SKIP LOCKED`), so no task goes to two workers;
//! changes to a task lock its job's row first, so the last task to finish
//! settles the job however the reports are spread; the sweep runs on one
//! coordinator at a time under an advisory lock; and coordinators tell each
//! other of changes with `NOTIFY`, so a worker long-polling one coordinator
//! hears of a job submitted to another at once.
//!
//! The client library is the blocking `postgres` crate, which runs its own
//! small runtime and must not be called on the farm's async threads: each
//! call runs on a short-lived scoped thread. TLS follows the URL's
//! `sslmode` and `sslrootcert` ([`tls`]).

mod jobs;
mod registry;
mod schema;
mod stats;
mod tls;

#[cfg(test)]
pub(crate) use schema::{version as schema_version, MIGRATIONS};

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use postgres::config::Host;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls, Transaction};
use rand::Rng;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Coordination, Note, Publish, Swept};

/// The NOTIFY channel coordinators share.
const CHANNEL: &str = "zkfarm";
/// Advisory lock keys ("zkfarm" in ASCII, then a number per use).
const MIGRATE_LOCK: i64 = 0x7a6b_6661_726d_0001;
pub(crate) const SWEEP_LOCK: i64 = 0x7a6b_6661_726d_0002;
/// A transaction that lost a deadlock or a serialization conflict is run
/// again, up to this many times.
const RETRIES: u32 = 5;

pub struct PgStore {
    conn: Conn,
    /// Sends this coordinator's notes, on a connection of its own so that a
    /// note never waits for the store's lock.
    publisher: Arc<Publisher>,
    /// Set on drop: stops the listener thread.
    stop: Arc<AtomicBool>,
}

/// One connection, made on first use and again after it broke.
struct Conn {
    config: Config,
    /// TLS to the server, or None for plain TCP.
    tls: Option<MakeRustlsConnect>,
    /// Where it leads, for messages.
    place: String,
    client: Mutex<Option<Client>>,
}

impl Conn {
    fn new(config: Config, tls: Option<MakeRustlsConnect>) -> Self {
        let place = describe(&config, tls.is_some());
        Conn { config, tls, place, client: Mutex::new(None) }
    }

    /// Runs `f` with the connection, connecting first if there is none. A
    /// deadlock or serialization failure runs it again.
    fn with<T: Send>(&self, mut f: impl FnMut(&mut Client) -> Result<T> + Send) -> Result<T> {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let slot: &mut Option<Client> = &mut guard;
        let (config, tls, place) = (&self.config, &self.tls, self.place.as_str());
        std::thread::scope(|s| {
            s.spawn(move || -> Result<T> {
                let mut tries = 0;
                loop {
                    if slot.as_ref().is_none_or(Client::is_closed) {
                        *slot = None;
                        *slot = Some(connect(config, tls, place)?);
                    }
                    let Some(client) = slot.as_mut() else { bail!("no connection to {place}") };
                    match f(client) {
                        Err(e) if tries < RETRIES && is_conflict(&e) => tries += 1,
                        r => return r,
                    }
                }
            })
            .join()
            .map_err(|_| anyhow!("a call to the job store panicked"))?
        })
    }
}

/// Publishes this coordinator's notes with `NOTIFY`.
struct Publisher {
    conn: Conn,
    /// This coordinator's name in its notes.
    origin: String,
}

impl Publish for Publisher {
    fn publish(&self, note: &Note) -> Result<()> {
        let payload = note.encode(&self.origin);
        self.conn.with(|c| {
            c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])?;
            Ok(())
        })
    }
}

impl PgStore {
    /// Whether `spec` is a PostgreSQL URL.
    pub fn accepts(spec: &str) -> bool {
        spec.starts_with("postgres://") || spec.starts_with("postgresql://")
    }

    /// Connects to the database `url` names and brings its schema up to
    /// date.
    pub fn open(url: &str) -> Result<Self> {
        let choice = tls::choose(url)?;
        let mut config = Config::from_str(&choice.url).map_err(|e| anyhow!("--store: not a PostgreSQL URL ({e})"))?;
        config.ssl_mode(choice.mode());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("zkfarm-coordinator");
        }
        let origin = format!("{:016x}", rand::thread_rng().gen::<u64>());
        let publisher = Arc::new(Publisher { conn: Conn::new(config.clone(), choice.tls.clone()), origin });
        let conn = Conn::new(config, choice.tls);
        let store = PgStore { conn, publisher, stop: Arc::new(AtomicBool::new(false)) };
        store.with(schema::migrate)?;
        Ok(store)
    }

    fn with<T: Send>(&self, f: impl FnMut(&mut Client) -> Result<T> + Send) -> Result<T> {
        self.conn.with(f)
    }

    /// Runs `f` in one transaction, committed when it returns Ok.
    fn tx<T: Send>(&self, mut f: impl FnMut(&mut Transaction<'_>) -> Result<T> + Send) -> Result<T> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let out = f(&mut tx)?;
            tx.commit()?;
            Ok(out)
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `url` with its database replaced by `db`: for tools and tests that make
/// a database of their own on a server.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    match query {
        Some(q) => format!("{}/{db}?{q}", &base[..host_end]),
        None => format!("{}/{db}", &base[..host_end]),
    }
}

/// Opens a connection. Called off the async threads (see the module).
fn connect(config: &Config, tls: &Option<MakeRustlsConnect>, place: &str) -> Result<Client> {
    let connected = match tls {
        Some(tls) => config.connect(tls.clone()),
        None => config.connect(NoTls),
    };
    connected.map_err(|e| anyhow!("connecting to the job store at {place}: {}", pg_error(&e)))
}

/// A PostgreSQL error with the server's message, which the error's own
/// `Display` leaves out.
fn pg_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// A deadlock or a serialization failure: running the transaction again
/// is right.
fn is_conflict(e: &anyhow::Error) -> bool {
    let code = e.downcast_ref::<postgres::Error>().and_then(|e| e.code());
    code == Some(&SqlState::T_R_DEADLOCK_DETECTED) || code == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
}

/// Where a configuration leads, for messages (no password).
fn describe(config: &Config, tls: bool) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("PostgreSQL {host}:{port}/{db}{}", if tls { " (TLS)" } else { "" })
}

impl Coordination for PgStore {
    fn describe(&self) -> String {
        self.conn.place.clone()
    }

    fn sweep(&mut self, now: i64, dead_before: i64, keep_minutes: i64) -> Result<Option<Swept>> {
        self.tx(|tx| {
            let lock: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_LOCK])?.get(0);
            if !lock {
                return Ok(None);
            }
            let expired = jobs::expire(tx, now)?;
            let dead =
                tx.execute("UPDATE workers SET alive = false WHERE alive AND last_seen_ms < $1", &[&dead_before])?;
            tx.execute("DELETE FROM tier_minutes WHERE minute < $1", &[&(now / 60_000 - keep_minutes)])?;
            Ok(Some(Swept { expired, dead: dead as usize }))
        })
    }

    fn publisher(&self) -> Option<Arc<dyn Publish>> {
        Some(self.publisher.clone())
    }

    fn listen(&self, sink: Box<dyn Fn(Note) + Send + Sync>) -> Result<()> {
        let (config, tls, origin, stop, place) = (
            self.conn.config.clone(),
            self.conn.tls.clone(),
            self.publisher.origin.clone(),
            self.stop.clone(),
            self.describe(),
        );
        std::thread::Builder::new()
            .name("zkfarm-store-listen".into())
            .spawn(move || listen_loop(&config, &tls, &place, &origin, &stop, &*sink))
            .context("starting the job store's listener")?;
        Ok(())
    }
}

/// Passes other coordinators' notes to `sink` until `stop` is set,
/// reconnecting when the connection breaks. After a reconnect it passes a
/// note that wakes every waiting worker, since notes sent meanwhile are lost.
fn listen_loop(
    config: &Config,
    tls: &Option<MakeRustlsConnect>,
    place: &str,
    origin: &str,
    stop: &AtomicBool,
    sink: &(dyn Fn(Note) + Send + Sync),
) {
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        let mut client = match connect(config, tls, place).and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("listening for other coordinators' changes: {e:#}; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if !first {
            sink(Note { job_id: String::new(), task_id: None, work: true });
        }
        first = false;
        while !stop.load(Ordering::SeqCst) {
            let next = client.notifications().timeout_iter(Duration::from_millis(500)).next();
            match next {
                Ok(Some(n)) => match Note::decode(n.payload()) {
                    Some((from, note)) if from != origin => sink(note),
                    Some(_) => {}
                    None => tracing::warn!("an unreadable note on channel {CHANNEL}: {:?}", n.payload()),
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("the job store's listener lost its connection: {}", pg_error(&e));
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_another_database() {
        assert_eq!(with_database("postgres://u@127.0.0.1:5/postgres", "t"), "postgres://u@127.0.0.1:5/t");
        assert_eq!(with_database("postgres://u@h:5", "t"), "postgres://u@h:5/t");
        assert_eq!(with_database("postgresql://u:p@h/x?sslmode=disable", "t"), "postgresql://u:p@h/t?sslmode=disable");
    }
}
