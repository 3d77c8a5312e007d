# Shared by the scripts: installing what a fresh machine lacks.

# apt_install PACKAGE: installs a Debian package, refreshing the index if needed.
apt_install() {
    local SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends "$1" >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y --no-install-recommends "$1" >/dev/null; }
}

# require_cargo: fails with a clear message when there is no Rust toolchain.
require_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust from https://rustup.rs" >&2
        exit 1
    fi
}

# require_cxx: the kernel emulator compiles the CUDA sources as C++.
require_cxx() {
    if ! command -v c++ >/dev/null 2>&1; then
        echo "no C++ compiler found; installing g++ with apt" >&2
        apt_install g++
    fi
}
