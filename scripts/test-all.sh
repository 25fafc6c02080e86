#!/usr/bin/env bash
# Runs every check of the project, as CI does: formatting, lints, every test (without
# features, then with every backend), the documentation, the package, and the real clients
# (scripts/test-clients.sh: cobre-sddp and cobre-cli 0.18 built against this checkout).
# Installs MPICH first when it is missing (needs root and apt-get; otherwise says what to
# install). COBRE_SKIP_CLIENTS=1 skips the clients (a local shortcut; CI runs them).
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
    local started=$SECONDS
    "$@"
    echo "== took $((SECONDS - started)) s: $*"
}

export RUSTDOCFLAGS="-D warnings"
# The library alone, with no feature: only the local backend.
lib_crates=(-p cobre-comm -p cobre-comm-conformance -p cobre-comm-bench -p cobre-comm-launcher)

step cargo fmt --all --check
step cargo clippy "${lib_crates[@]}" --all-targets -- -D warnings
for feature in mpi tcp shm; do
    step cargo clippy -p cobre-comm --all-targets --features "$feature" -- -D warnings
done
step cargo clippy --workspace --all-targets --all-features -- -D warnings
step cargo test "${lib_crates[@]}"
step cargo test --workspace --all-features
step cargo doc --workspace --no-deps --all-features
step cargo publish --dry-run -p cobre-comm --allow-dirty
# A real one-node Slurm: srun of tcp-only, mpi and neither builds (needs root).
if [ "$(id -u)" = 0 ] && [ "${COBRE_SKIP_SLURM:-0}" != 1 ]; then
    step bash scripts/test-slurm.sh
else
    echo "== skipping the Slurm tests: they need root to start Slurm (set COBRE_SKIP_SLURM=1 to silence)"
fi
if [ "${COBRE_SKIP_CLIENTS:-0}" != 1 ]; then
    step bash scripts/test-clients.sh
fi
echo
echo "== all checks passed in $SECONDS s"
