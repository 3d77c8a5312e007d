//! Throwaway databases on the PostgreSQL server the store tests use.

use postgres::{Client, NoTls};
use rand::Rng;

use super::super::postgres::with_database;
use super::super::PgStore;

/// The server's URL: scripts/test.sh starts a server and sets it.
pub fn server_url() -> String {
    std::env::var("ZKFARM_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "ZKFARM_POSTGRES_URL is not set: the store tests need a PostgreSQL server \
             (scripts/test.sh starts one; by hand: eval \"$(scripts/postgres.sh start)\")"
        )
    })
}

/// A database of its own for one test, dropped with it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let server = server_url();
        let name = format!("zkfarm_test_{:016x}", rand::thread_rng().gen::<u64>());
        admin(&server).batch_execute(&format!("CREATE DATABASE {name}")).expect("creating a test database");
        let url = with_database(&server, &name);
        TestDb { name, url }
    }

    /// A store on this database, as one coordinator would open it.
    pub fn open(&self) -> PgStore {
        PgStore::open(&self.url).expect("opening the test database")
    }

    /// A plain client of this database, to look behind the store's back.
    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connecting to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&server_url(), NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn admin(server: &str) -> Client {
    Client::connect(server, NoTls).unwrap_or_else(|e| panic!("connecting to ZKFARM_POSTGRES_URL: {e}"))
}
