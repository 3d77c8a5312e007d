//! Authentication: clients present an API key, workers the worker token,
//! both as `authorization: Bearer <secret>`. Only hashes of API keys are
//! stored; there is no anonymous or default user.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use rand::Rng;
use tonic::{Request, Status};
use zkfarm_circuits::model::hash_hex;

use crate::store::Store;

/// The client an API key belongs to, put in each request's extensions.
#[derive(Clone, Debug)]
pub struct Client(pub String);

pub struct Auth {
    clients: RwLock<HashMap<String, String>>,
    worker_token_hash: String,
}

pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::thread_rng().gen::<[u8; 24]>()))
}

pub fn hash_secret(secret: &str) -> String {
    hash_hex(secret.trim().as_bytes())
}

fn bearer<T>(req: &Request<T>) -> Option<String> {
    let v = req.metadata().get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(|s| s.trim().to_string())
}

impl Auth {
    pub fn new(store: &Store, worker_token: &str) -> Result<Self> {
        let clients = store.api_keys()?.into_iter().collect();
        Ok(Auth { clients: RwLock::new(clients), worker_token_hash: hash_secret(worker_token) })
    }

    /// Checks a client call and tags it with the client's name.
    pub fn client(self: &Arc<Self>) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
        let auth = self.clone();
        move |mut req: Request<()>| {
            let secret =
                bearer(&req).ok_or_else(|| Status::unauthenticated("missing API key (authorization: Bearer <key>)"))?;
            let name = auth.clients.read().unwrap().get(&hash_secret(&secret)).cloned();
            let name = name.ok_or_else(|| Status::unauthenticated("invalid API key"))?;
            req.extensions_mut().insert(Client(name));
            Ok(req)
        }
    }

    /// Checks a worker call against the worker token.
    pub fn worker(self: &Arc<Self>) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
        let auth = self.clone();
        move |req: Request<()>| {
            let secret = bearer(&req).ok_or_else(|| Status::unauthenticated("missing worker token"))?;
            if hash_secret(&secret) != auth.worker_token_hash {
                return Err(Status::unauthenticated("invalid worker token"));
            }
            Ok(req)
        }
    }
}

/// Creates an API key named `name`, stores its hash and returns the key.
pub fn create_api_key(store: &Store, name: &str) -> Result<String> {
    let key = new_secret("zkf_");
    store.add_api_key(&hash_secret(&key), name, crate::farm::now_ms())?;
    Ok(key)
}

/// The first start of a farm: with no API key yet, one named `local` is
/// made and written to `<data>/api-key` (mode 0600) for local commands.
pub fn ensure_first_api_key(store: &Store, data_dir: &Path) -> Result<bool> {
    if !store.api_keys()?.is_empty() {
        return Ok(false);
    }
    let key = create_api_key(store, "local")?;
    write_secret(&data_dir.join("api-key"), &key)?;
    Ok(true)
}

/// The worker token: given, or read from `<data>/worker-token`, or made there.
pub fn worker_token(data_dir: &Path, given: Option<&str>) -> Result<String> {
    if let Some(t) = given {
        return Ok(t.trim().to_string());
    }
    let path = data_dir.join("worker-token");
    if path.exists() {
        return Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string());
    }
    let token = new_secret("zkw_");
    write_secret(&path, &token)?;
    Ok(token)
}

fn write_secret(path: &Path, secret: &str) -> Result<()> {
    zkfarm_prover::home::write_private(path, format!("{secret}\n").as_bytes())
}
