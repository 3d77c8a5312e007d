//! Authentication: clients present an API key, workers the worker token,
//! both as `authorization: Bearer <secret>`. Only hashes of API keys are
//! stored; there is no anonymous or default user.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::Rng;
use tonic::{Request, Status};
use zkfarm_circuits::model::hash_hex;

use crate::store::ApiKeys;

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

/// How often a serving coordinator rereads the API keys, so that keys made
/// or revoked with `zkfarm apikey` take effect without a restart.
pub const KEY_RELOAD: Duration = Duration::from_secs(2);

impl Auth {
    pub fn new(store: &dyn ApiKeys, worker_token: &str) -> Result<Self> {
        let clients = store.api_keys()?.into_iter().collect();
        Ok(Auth { clients: RwLock::new(clients), worker_token_hash: hash_secret(worker_token) })
    }

    /// Replaces the accepted keys with the store's; returns whether they changed.
    pub fn reload(&self, store: &dyn ApiKeys) -> Result<bool> {
        let fresh: HashMap<String, String> = store.api_keys()?.into_iter().collect();
        let mut clients = self.clients.write().unwrap_or_else(|p| p.into_inner());
        if *clients == fresh {
            return Ok(false);
        }
        *clients = fresh;
        Ok(true)
    }

    /// Checks a client call and tags it with the client's name.
    pub fn client(self: &Arc<Self>) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
        let auth = self.clone();
        move |mut req: Request<()>| {
            let secret =
                bearer(&req).ok_or_else(|| Status::unauthenticated("missing API key (authorization: Bearer <key>)"))?;
            let name = auth.clients.read().unwrap_or_else(|p| p.into_inner()).get(&hash_secret(&secret)).cloned();
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
pub fn create_api_key(store: &dyn ApiKeys, name: &str) -> Result<String> {
    let key = new_secret("zkf_");
    store.add_api_key(&hash_secret(&key), name, crate::farm::now_ms())?;
    Ok(key)
}

/// Adds the API keys of a file of `name:key` lines (blank lines and `#`
/// comments skipped), e.g. a mounted Kubernetes Secret; returns how many.
/// Keys already present are kept; a malformed line is an error naming it.
pub fn import_api_keys(store: &dyn ApiKeys, path: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading API keys from {}", path.display()))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let Some((name, key)) = line.split_once(':') else {
            anyhow::bail!("{}: expected `name:key`", at());
        };
        let (name, key) = (name.trim(), key.trim());
        if name.is_empty() {
            anyhow::bail!("{}: the client name is empty", at());
        }
        if key.len() < MIN_SECRET_LEN {
            anyhow::bail!("{}: the key of `{name}` is shorter than {MIN_SECRET_LEN} characters", at());
        }
        keys.push((name.to_string(), hash_secret(key)));
    }
    let known: std::collections::HashSet<String> = store.api_keys()?.into_iter().map(|(h, _)| h).collect();
    let now = crate::farm::now_ms();
    for (name, hash) in &keys {
        if !known.contains(hash) {
            store.add_api_key(hash, name, now)?;
        }
    }
    Ok(keys.len())
}

/// The first start of a farm: with no API key yet, one named `local` is
/// made and written to `<data>/api-key` (mode 0600) for local commands.
pub fn ensure_first_api_key(store: &dyn ApiKeys, data_dir: &Path) -> Result<bool> {
    if !store.api_keys()?.is_empty() {
        return Ok(false);
    }
    let key = create_api_key(store, "local")?;
    write_secret(&data_dir.join("api-key"), &key)?;
    Ok(true)
}

/// The shortest API key or worker token accepted: anything shorter could
/// be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// The worker token: given, or read from `<data>/worker-token`, or made there.
/// A given or stored token shorter than [`MIN_SECRET_LEN`] is refused.
pub fn worker_token(data_dir: &Path, given: Option<&str>) -> Result<String> {
    let path = data_dir.join("worker-token");
    let (token, from) = match given {
        Some(t) => (t.trim().to_string(), "--worker-token (ZKFARM_WORKER_TOKEN)".to_string()),
        None if path.exists() => (
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?.trim().to_string(),
            path.display().to_string(),
        ),
        None => {
            let token = new_secret("zkw_");
            write_secret(&path, &token)?;
            return Ok(token);
        }
    };
    if token.len() < MIN_SECRET_LEN {
        anyhow::bail!(
            "the worker token from {from} is {} characters; use at least {MIN_SECRET_LEN} (e.g. openssl rand -hex 32)",
            token.len()
        );
    }
    Ok(token)
}

fn write_secret(path: &Path, secret: &str) -> Result<()> {
    zkfarm_prover::home::write_private(path, format!("{secret}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(auth: &Arc<Auth>, key: &str) -> Result<String, tonic::Code> {
        let mut req = Request::new(());
        req.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        auth.client()(req).map(|r| r.extensions().get::<Client>().unwrap().0.clone()).map_err(|s| s.code())
    }

    #[test]
    fn keys_made_or_revoked_after_start_count_once_reloaded() {
        let store = crate::store::SqliteStore::open_in_memory().unwrap();
        let alice = create_api_key(&store, "alice").unwrap();
        let auth = Arc::new(Auth::new(&store, "zkw_token").unwrap());
        assert_eq!(call(&auth, &alice), Ok("alice".into()));

        let bob = create_api_key(&store, "bob").unwrap();
        assert_eq!(call(&auth, &bob), Err(tonic::Code::Unauthenticated), "not before a reload");
        assert!(auth.reload(&store).unwrap());
        assert_eq!(call(&auth, &bob), Ok("bob".into()));
        assert!(!auth.reload(&store).unwrap(), "nothing changed");

        store.remove_api_keys("alice").unwrap();
        assert!(auth.reload(&store).unwrap());
        assert_eq!(call(&auth, &alice), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(&auth, &bob), Ok("bob".into()));
    }

    #[test]
    fn a_keys_file_adds_its_keys_once_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-keys");
        std::fs::write(&path, "# clients\nalice: zkf_alice_0123456789\n\nbob:zkf_bob_0123456789abcdef\n").unwrap();
        let store = crate::store::SqliteStore::open_in_memory().unwrap();
        assert_eq!(import_api_keys(&store, &path).unwrap(), 2);
        assert_eq!(import_api_keys(&store, &path).unwrap(), 2, "a restart reads the same file");
        assert_eq!(store.api_keys().unwrap().len(), 2, "no key is stored twice");
        let auth = Arc::new(Auth::new(&store, "zkw_token").unwrap());
        assert_eq!(call(&auth, "zkf_alice_0123456789"), Ok("alice".into()));
        assert_eq!(call(&auth, "zkf_bob_0123456789abcdef"), Ok("bob".into()));
        assert!(!ensure_first_api_key(&store, dir.path()).unwrap(), "no local key when keys were given");

        for (text, needle) in [
            ("alice zkf_alice_0123456789\n", "line 1: expected `name:key`"),
            ("ok:zkf_ok_0123456789\n:zkf_anon_0123456789\n", "line 2: the client name is empty"),
            ("carol:short\n", "the key of `carol` is shorter than 16 characters"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = import_api_keys(&store, &path).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let missing = import_api_keys(&store, &dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("reading API keys from"), "{missing}");
    }

    #[test]
    fn a_worker_token_is_made_once_and_a_short_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let made = worker_token(dir.path(), None).unwrap();
        assert!(made.len() >= MIN_SECRET_LEN);
        assert_eq!(worker_token(dir.path(), None).unwrap(), made, "a restart reads the same token");
        assert_eq!(
            worker_token(dir.path(), Some(" a-given-token-of-enough-length ")).unwrap(),
            "a-given-token-of-enough-length"
        );
        let err = worker_token(dir.path(), Some("secret")).unwrap_err().to_string();
        assert!(err.contains("--worker-token") && err.contains("is 6 characters"), "{err}");
        std::fs::write(dir.path().join("worker-token"), "short\n").unwrap();
        let err = worker_token(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("worker-token is 5 characters"), "{err}");
    }
}
