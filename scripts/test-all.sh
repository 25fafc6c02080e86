#!/usr/bin/env bash
# Runs every check of the project, as CI does: formatting, lints, every test (without
# features, then with every backend) and the documentation. Installs MPICH first when it
# is missing (needs root and apt-get; otherwise says what to install).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpiexec >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing MPICH (mpich, libmpich-dev)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mpich libmpich-dev >/dev/null
    else
        echo "error: MPICH is needed for the mpi backend's tests: install the packages mpich and libmpich-dev" >&2
        exit 1
    fi
fi

step() {
    echo
    echo "== $*"
    "$@"
}

export RUSTDOCFLAGS="-D warnings"
step cargo fmt --all --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo clippy --workspace --all-targets --all-features -- -D warnings
step cargo test --workspace
step cargo test --workspace --all-features
step cargo doc --workspace --no-deps --all-features
echo
echo "== all checks passed"
