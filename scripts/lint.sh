#!/usr/bin/env bash
# Formatting and lints, as CI runs them before the tests: `cargo fmt --check`
# and clippy on every target with warnings as errors (the lint settings live
# in the workspace's [workspace.lints]).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
require_cargo
require_cxx
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        echo "installing the $component component" >&2
        rustup component add "$component"
    fi
done
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
