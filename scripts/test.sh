#!/usr/bin/env bash
# Runs every test of the workspace. Needs a Rust toolchain and Python's pip;
# installs redis-server and chromium (through apt) when they are missing,
# since the farm tests start their own Redis servers on free loopback ports
# and load the status page in headless Chromium; starts a throwaway
# PostgreSQL server (scripts/postgres.sh, installing Debian's postgresql when
# it is missing) for the job store's tests and the shared-store farm tests;
# g++ when there
# is no C++ compiler (the kernel tests run the CUDA sources on the CPU), and
# NVRTC (through pip, into .nvrtc/) for the CUDA kernel tests. The example models are
# committed, and proofs use throwaway insecure SRSs made by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
require_cargo
if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server not found; installing it with apt" >&2
    apt_install redis-server
fi
# The kernel tests run the CUDA sources on the CPU, compiled as C++.
require_cxx
export ZKFARM_REDIS_SERVER="${ZKFARM_REDIS_SERVER:-$(command -v redis-server)}"
# The status page is tested in a real headless browser.
if ! command -v chromium >/dev/null 2>&1; then
    echo "chromium not found; installing it with apt" >&2
    apt_install chromium
fi
export ZKFARM_CHROMIUM="${ZKFARM_CHROMIUM:-$(command -v chromium)}"
# The job store's tests run against SQLite and a real PostgreSQL server.
if [ -z "${ZKFARM_POSTGRES_URL:-}" ]; then
    pg_env="$(scripts/postgres.sh start)"   # a failed start stops the script here
    eval "$pg_env"
    trap 'scripts/postgres.sh stop "$ZKFARM_POSTGRES_DIR"' EXIT
fi
# NVRTC compiles the CUDA kernels to PTX without a GPU; the kernel tests
# require it, so every kernel source is proven to compile for sm_80 and sm_90.
NVRTC_DIR="$PWD/.nvrtc"
if [ ! -e "$NVRTC_DIR/nvidia/cu13/lib/libnvrtc.so.13" ]; then
    echo "installing NVRTC (nvidia-cuda-nvrtc 13.0.88) into $NVRTC_DIR" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$NVRTC_DIR" nvidia-cuda-nvrtc==13.0.88
fi
export LD_LIBRARY_PATH="$NVRTC_DIR/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ZKFARM_REQUIRE_NVRTC=1
# Tests keep their key caches in temporary directories; nothing touches ~/.zkfarm.
export ZKFARM_HOME="${ZKFARM_HOME:-$(mktemp -d)}"
cargo test --workspace --all-targets "$@"
