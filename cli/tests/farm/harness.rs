//! Processes for the farm tests: Redis servers, coordinators and workers
//! started from the real `zkfarm` binary, each logging to a file.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_zkfarm");

/// The farm tests prove on every core; they run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// One insecure SRS (k = 15, enough for the MLP) for every test here.
pub fn srs() -> &'static Path {
    static SRS: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SRS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k15.srs");
        let out = Command::new(BIN)
            .args(["srs", "gen", "--k", "15", "--insecure-dev", "--output"])
            .arg(&path)
            .env("ZKFARM_HOME", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (dir, path)
    })
    .1
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file).stdin(Stdio::null());
        Proc { child: cmd.spawn().expect("starting a process"), log }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as an orchestrator stops a process; then waits up to
    /// `timeout` for it to exit and returns whether it exited successfully.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                start.elapsed() < timeout,
                "no exit within {timeout:?} of SIGTERM; log:\n{}",
                tail(&self.log_text())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Redis {
    proc: Proc,
    pub port: u16,
}

impl Redis {
    /// A throwaway redis-server on a free loopback port, without persistence.
    pub fn start(dir: &Path) -> Redis {
        let bin = std::env::var("ZKFARM_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(dir);
        let log = dir.join(format!("redis-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}): run scripts/test.sh, which installs redis-server"));
        let redis = Redis { proc: Proc { child, log }, port };
        wait_until("redis to answer", Duration::from_secs(10), || redis.conn().is_ok());
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> redis::RedisResult<redis::Connection> {
        let mut c = redis::Client::open(self.url())?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut c)?;
        Ok(c)
    }

    pub fn stop(&mut self) {
        self.proc.kill();
    }
}

/// A database of its own on the PostgreSQL server `ZKFARM_POSTGRES_URL`
/// names (scripts/test.sh starts one), dropped with it.
pub struct Postgres {
    name: String,
    server: String,
    pub url: String,
}

impl Postgres {
    pub fn database() -> Postgres {
        let server = std::env::var("ZKFARM_POSTGRES_URL")
            .expect("ZKFARM_POSTGRES_URL names no PostgreSQL server (scripts/test.sh starts one)");
        let name = format!("zkfarm_farm_{}_{}", std::process::id(), free_port());
        let mut admin = postgres::Client::connect(&server, postgres::NoTls).expect("connecting to PostgreSQL");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = zkfarm_coordinator::store::with_database(&server, &name);
        Postgres { name, server, url }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// The arguments every coordinator of the tests starts with: `command`,
/// its gRPC and metrics ports, and the tests' SRS.
fn listen_args(command: &str, port: u16, metrics_port: u16) -> Vec<String> {
    vec![
        command.into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--metrics".into(),
        format!("127.0.0.1:{metrics_port}"),
        "--srs".into(),
        srs().display().to_string(),
    ]
}

/// A coordinator process and what a client needs to reach it.
pub struct Coordinator {
    proc: Option<Proc>,
    pub port: u16,
    pub metrics_port: u16,
    pub data: PathBuf,
    /// The data directory holding the API key and worker token: its own,
    /// or for a peer sharing a PostgreSQL store, the first coordinator's.
    secrets: PathBuf,
    home: PathBuf,
    args: Vec<String>,
    restarts: usize,
}

impl Coordinator {
    /// `zkfarm coordinator` or `zkfarm serve` (when `args` start with serve
    /// arguments such as --workers), on fresh ports.
    pub fn start(home: &Path, command: &str, extra: &[&str]) -> Coordinator {
        let port = free_port();
        let metrics_port = free_port();
        let data = home.join("farm");
        let mut args = listen_args(command, port, metrics_port);
        args.extend(extra.iter().map(|s| s.to_string()));
        let secrets = data.clone();
        let mut c =
            Coordinator { proc: None, port, metrics_port, data, secrets, home: home.to_path_buf(), args, restarts: 0 };
        c.launch();
        c
    }

    /// A second coordinator beside this one, with a data directory of its
    /// own and this one's worker token: for coordinators sharing a
    /// PostgreSQL store (`extra` names it), where the API key this one made
    /// is valid on both.
    pub fn peer(&self, name: &str, extra: &[&str]) -> Coordinator {
        let port = free_port();
        let metrics_port = free_port();
        let data = self.home.join(name);
        let mut args = listen_args("coordinator", port, metrics_port);
        args.extend(["--data".into(), data.display().to_string(), "--worker-token".into(), self.worker_token()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let (secrets, home) = (self.secrets.clone(), self.home.clone());
        let mut c = Coordinator { proc: None, port, metrics_port, data, secrets, home, args, restarts: 0 };
        c.launch();
        c
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args).env("ZKFARM_HOME", &self.home).env("ZKFARM_LOG", "info");
        let log = self.home.join(format!("coordinator-{}-{}.log", self.port, self.restarts));
        let mut proc = Proc::spawn(cmd, log);
        let port = self.port;
        let key = self.secrets.join("api-key");
        // A coordinator that exits before it listens (a port taken between
        // free_port and its bind, say) fails the test at once, and one that
        // does not listen in time fails it; both with its log.
        let start = Instant::now();
        while !(key.exists() && TcpStream::connect(("127.0.0.1", port)).is_ok()) {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("the coordinator exited ({status}) before listening; its log:\n{}", proc.log_text());
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("the coordinator did not listen within 60 s; its log:\n{}", proc.log_text());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.proc = Some(proc);
    }

    /// SIGKILL, then start again on the same port and data.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restarts += 1;
        self.launch();
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM; whether it exited successfully within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.proc.as_mut().is_some_and(|p| p.terminate(timeout))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn api_key(&self) -> String {
        std::fs::read_to_string(self.secrets.join("api-key")).unwrap().trim().to_string()
    }

    pub fn worker_token(&self) -> String {
        std::fs::read_to_string(self.secrets.join("worker-token")).unwrap().trim().to_string()
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }

    /// Runs a zkfarm client command against this coordinator.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.client_command(&self.url(), args).output().unwrap()
    }

    /// A zkfarm client command against `coordinators` (URLs separated by
    /// commas), with this coordinator's API key.
    pub fn client_command(&self, coordinators: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("ZKFARM_HOME", &self.home)
            .env("ZKFARM_COORDINATOR", coordinators)
            .env("ZKFARM_API_KEY", self.api_key());
        cmd
    }

    /// Runs a `--json` client command that must succeed; returns its JSON.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "zkfarm {args:?} failed:\n{}\n{}\ncoordinator log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log())
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn job(&self, job_id: &str) -> Value {
        self.cli_json(&["job", "status", job_id])
    }

    /// Waits for a job to finish and returns its final status.
    pub fn wait_job(&self, job_id: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        wait_until(&format!("job {job_id} to finish"), timeout, || {
            last = self.job(job_id);
            last["state"] != "running"
        });
        last
    }

    /// The Prometheus exposition text.
    pub fn metrics(&self) -> String {
        scrape(self.metrics_port)
    }

    /// A worker process for this coordinator with its own data directory.
    pub fn worker(&self, name: &str, extra: &[&str]) -> Proc {
        self.worker_of(&self.url(), name, extra)
    }

    /// A worker process for `coordinators` (URLs separated by commas) with
    /// this coordinator's worker token.
    pub fn worker_of(&self, coordinators: &str, name: &str, extra: &[&str]) -> Proc {
        let home = self.home.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["worker", "--engine", "cpu", "--name", name, "--coordinator", coordinators, "--srs"])
            .arg(srs())
            .args(extra)
            .env("ZKFARM_HOME", &home)
            .env("ZKFARM_WORKER_TOKEN", self.worker_token())
            .env("ZKFARM_LOG", "info");
        Proc::spawn(cmd, self.home.join(format!("{name}.log")))
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn scrape(port: u16) -> String {
    http_get(port, "/metrics").1
}

/// The status code and body of `GET path` on a loopback port; code 0 when
/// nothing listens there (yet).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    (code, body)
}

/// The sum of the samples of metric `name` whose labels include all of
/// `labels` (each written `key="value"`).
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A batch file of MLP requests with the given tiers; inputs are the example
/// input shifted a little per request so that every request differs.
pub fn write_batch(dir: &Path, tiers: &[&str]) -> PathBuf {
    let text = std::fs::read_to_string(examples().join("mlp.input.json")).unwrap();
    let base: Value = serde_json::from_str(&text).unwrap();
    let values: Vec<f64> = base["input_data"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let requests: Vec<Value> = tiers
        .iter()
        .enumerate()
        .map(|(i, tier)| {
            let shifted: Vec<f64> = values
                .iter()
                .enumerate()
                .map(|(j, x)| ((x + 0.01 * ((i + j) % 7) as f64) * 1e4).round() / 1e4)
                .collect();
            serde_json::json!({ "input": { "input_data": [shifted] }, "tier": tier })
        })
        .collect();
    let batch = serde_json::json!({ "model": examples().join("mlp.onnx"), "requests": requests });
    let path = dir.join(format!("batch-{}.json", free_port()));
    std::fs::write(&path, batch.to_string()).unwrap();
    path
}

/// The worker id a worker process registered under, from its log.
pub fn worker_id(p: &Proc) -> Option<String> {
    let log = p.log_text();
    let at = log.find("registered with")?;
    let rest = &log[at..];
    let w = rest.find("worker=")?;
    Some(rest[w + 7..].split_whitespace().next()?.to_string())
}
