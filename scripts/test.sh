#!/usr/bin/env bash
# Runs every test of the workspace. Needs only a Rust toolchain: the example
# models are committed, and proofs use a throwaway insecure SRS made in-process.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust from https://rustup.rs" >&2
    exit 1
fi
# Tests keep their key caches in temporary directories; nothing touches ~/.zkfarm.
export ZKFARM_HOME="${ZKFARM_HOME:-$(mktemp -d)}"
cargo test --workspace --all-targets "$@"
