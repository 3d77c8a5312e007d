#!/usr/bin/env bash
# Runs every test of the workspace. Needs a Rust toolchain; installs
# redis-server (through apt) when it is missing, since the farm tests start
# their own Redis servers on free loopback ports. The example models are
# committed, and proofs use throwaway insecure SRSs made by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust from https://rustup.rs" >&2
    exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server not found; installing it with apt" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y --no-install-recommends redis-server >/dev/null; }
fi
export ZKFARM_REDIS_SERVER="${ZKFARM_REDIS_SERVER:-$(command -v redis-server)}"
# Tests keep their key caches in temporary directories; nothing touches ~/.zkfarm.
export ZKFARM_HOME="${ZKFARM_HOME:-$(mktemp -d)}"
cargo test --workspace --all-targets "$@"
