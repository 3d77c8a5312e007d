#!/usr/bin/env bash
# The GPU checks, for a GPU machine that has no Rust toolchain.
#
#   scripts/gpu.sh stage        on a build machine: builds the GPU test binaries
#                               and the benchmarks, stripped, into
#                               .gpu/bin.tar.gz (git-ignored; about 55 MiB), the
#                               one file to take to the GPU machine
#   scripts/gpu.sh tests        on the GPU machine, from the repository root: the
#                               GPU halves of the kernel, device-backend, device-
#                               prover and engine tests, with a GPU required; a
#                               failing MSM or NTT test is rerun with the portable
#                               field arithmetic to tell a PTX fault from a logic
#                               fault
#   scripts/gpu.sh sanitize     compute-sanitizer's memcheck, racecheck and
#                               initcheck over a small kernel benchmark run (2^12),
#                               and memcheck and racecheck over one small proof on
#                               the device backend (k = 10)
#   scripts/gpu.sh bench [ARGS] the kernel benchmark (default: --proofs), table last
#   scripts/gpu.sh provers [ARGS]
#                               the whole-proof benchmark (default: --runs 1
#                               --large): halo2-axiom and ours on the host, ours
#                               on the GPU, steps and device memory; add --k20
#   scripts/gpu.sh variants [ARGS]
#                               the whole-proof benchmark's GPU rows (default:
#                               --runs 1 --large) with the kernel variants not yet
#                               measured: generated program kernels and MSM tables
#   scripts/gpu.sh sweep [N]    the MSM's tuning at 2^N points (default 20): window
#                               widths, segment lengths and table widths, timed
#   scripts/gpu.sh all          tests, sanitize, the two benchmarks and the
#                               variants, each step under its own limit, and a
#                               summary of verdicts last
#
# Logs go to $OUT (or .gpu/out); each step prints a one-line verdict per
# binary and ends non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.gpu/bin
ARCHIVE=.gpu/bin.tar.gz
LOGS="${OUT:-.gpu/out}"
mkdir -p "$LOGS"
export ZKFARM_EXAMPLES="$PWD/examples"

stage() {
    set -e
    command -v cargo >/dev/null || { echo "stage needs cargo" >&2; exit 1; }
    rm -rf "$BIN"
    mkdir -p "$BIN"
    cargo build --release -p zkfarm-benches --bin zkfarm-bench-kernels --bin zkfarm-bench-provers
    cp target/release/zkfarm-bench-kernels target/release/zkfarm-bench-provers "$BIN/"
    # Test binaries are named by hash; cargo's JSON says which is which.
    cargo test --release -p zkfarm-kernels -p zkfarm-prover -p zkfarm-plonk-device \
        --test msm --test ntt --test elementwise --test nvrtc --test engine_scheme \
        --test emulated --test device_prover \
        --no-run --message-format=json |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do cp "$exe" "$BIN/$name"; done
    strip "$BIN"/*
    tar -czf "$ARCHIVE" -C .gpu bin
    ls -l "$BIN" "$ARCHIVE"
}

# The binaries, unpacked from the archive on first use.
unpack() {
    [ -x "$BIN/zkfarm-bench-kernels" ] && return
    [ -f "$ARCHIVE" ] || { echo "no $ARCHIVE: run scripts/gpu.sh stage on a build machine" >&2; exit 1; }
    tar -xzf "$ARCHIVE" -C .gpu
}

# run NAME LOG CMD...: runs CMD with a time limit, logging to LOG, and says how it went.
run() {
    local name=$1 log=$2
    shift 2
    local start=$SECONDS
    timeout 540 "$@" >"$LOGS/$log" 2>&1
    local rc=$?
    local verdict=ok
    [ $rc -eq 0 ] || verdict="FAILED (exit $rc)"
    printf '%-44s %-16s %4ds  %s\n' "$name" "$verdict" $((SECONDS - start)) "$LOGS/$log" | tee -a "$LOGS/verdicts.txt"
    return $rc
}

tests() {
    export ZKFARM_REQUIRE_GPU=1 RUST_BACKTRACE=1
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$LOGS/gpu.txt" 2>&1
    local failed=0
    run "nvrtc: every unit compiles" nvrtc.log "$BIN/nvrtc" --test-threads=1 || failed=1
    run "elementwise" elementwise.log "$BIN/elementwise" on_the_gpu --nocapture || failed=1
    for t in msm ntt; do
        if ! run "$t" "$t.log" "$BIN/$t" on_the_gpu --nocapture; then
            failed=1
            ZKFARM_PORTABLE_FIELD=1 run "$t, portable field arithmetic" "$t.portable.log" \
                "$BIN/$t" on_the_gpu --nocapture
        fi
    done
    run "engine: a whole proof's MSMs on the GPU" engine.log "$BIN/engine_scheme" cuda_kernels --nocapture || failed=1
    run "device backend: every step = cpu" device.log "$BIN/emulated" on_the_gpu --nocapture || failed=1
    run "device prover: proofs = cpu proofs" prover.log "$BIN/device_prover" gpu_proofs --nocapture || failed=1
    return $failed
}

sanitize() {
    local failed=0
    for tool in memcheck racecheck initcheck; do
        run "compute-sanitizer $tool" "sanitize.$tool.log" \
            compute-sanitizer --tool "$tool" --error-exitcode 9 \
            "$BIN/zkfarm-bench-kernels" --min-log 12 --max-log 12 --runs 1 || failed=1
    done
    for tool in memcheck racecheck; do
        ZKFARM_REQUIRE_GPU=1 run "compute-sanitizer $tool, one proof" "sanitize.proof.$tool.log" \
            compute-sanitizer --tool "$tool" --error-exitcode 9 \
            "$BIN/device_prover" gpu_proofs_equal_cpu_proofs --exact --test-threads=1 || failed=1
    done
    return $failed
}

bench() {
    [ $# -gt 0 ] || set -- --proofs
    run "kernel benchmark $*" bench.log "$BIN/zkfarm-bench-kernels" "$@"
    local rc=$?
    grep -v '^\s*$' "$LOGS/bench.log" | tail -40
    return $rc
}

provers() {
    [ $# -gt 0 ] || set -- --runs 1 --large
    run "prover benchmark $*" provers.log "$BIN/zkfarm-bench-provers" "$@"
    local rc=$?
    grep -v '^\s*$' "$LOGS/provers.log" | tail -40
    return $rc
}

# The cuda engine's other kernel choices (docs/ENGINE.md), to set against
# the provers step's GPU rows.
variants() {
    [ $# -gt 0 ] || set -- --runs 1 --large
    ZKFARM_PROGRAM_KERNEL=generated ZKFARM_MSM_TABLES=1 \
        run "prover benchmark, generated programs + MSM tables $*" variants.log \
        "$BIN/zkfarm-bench-provers" --gpu-only "$@"
    local rc=$?
    grep -v '^\s*$' "$LOGS/variants.log" | tail -30
    return $rc
}

sweep() {
    run "MSM tuning sweep at 2^${1:-20}" sweep.log "$BIN/zkfarm-bench-kernels" --sweep "${1:-20}"
    local rc=$?
    grep -v '^\s*$' "$LOGS/sweep.log" | tail -50
    return $rc
}

# Everything, with the verdict lines gathered at the end.
all() {
    local failed=0 start=$SECONDS
    : >"$LOGS/verdicts.txt"
    tests || failed=1
    sanitize || failed=1
    bench || failed=1
    provers || failed=1
    variants || failed=1
    echo
    echo "summary, $((SECONDS - start)) s in all:"
    cat "$LOGS/verdicts.txt"
    return $failed
}

case "${1:-}" in
    stage) stage ;;
    tests) unpack; tests ;;
    sanitize) unpack; sanitize ;;
    bench) shift; unpack; bench "$@" ;;
    provers) shift; unpack; provers "$@" ;;
    variants) shift; unpack; variants "$@" ;;
    sweep) shift; unpack; sweep "$@" ;;
    all) unpack; all ;;
    *) sed -n '2,34p' "$0" >&2; exit 2 ;;
esac
