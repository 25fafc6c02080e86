#!/usr/bin/env bash
# Runs the code behind the library's `unsafe` blocks under Rust's dynamic checkers.
# Needs a nightly toolchain with the miri and rust-src components:
#   rustup toolchain install nightly --component miri,rust-src
#
# 1. Miri: the shm exchange protocol on ranks run as threads sharing one segment in this
#    process's memory (src/shm/algorithm_tests.rs: every algorithm but single-copy, which
#    needs process_vm_readv; flat and dissemination signalling; 1-3 ranks; payloads of
#    several chunks; a mismatch), and the unit tests of the copy and reduction kernels.
#    Miri reports data races between the ranks' plain copies and the atomics that
#    order them, out-of-bounds and misaligned accesses, invalid values and leaks.
# 2. AddressSanitizer: the library's unit tests and the shm tests with real processes
#    and shared regions (tests/shm_processes.rs, tests/region_access.rs: every rank an
#    instrumented process), with the shm feature.
# 3. ThreadSanitizer, with the standard library rebuilt instrumented (-Zbuild-std): the
#    thread-rank tests of shm (here with single-copy, the streaming stores and the futex
#    waits Miri cannot run, at full sizes and up to 5 ranks) and of tcp. Any data race
#    stops the run.
#
# Usage: bash scripts/check-unsafe.sh [--miri-only | --asan-only | --tsan-only]
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain=${COBRE_NIGHTLY:-nightly}
miri=true
asan=true
tsan=true
case "${1:-}" in
--miri-only) asan=false tsan=false ;;
--asan-only) miri=false tsan=false ;;
--tsan-only) miri=false asan=false ;;
"") ;;
*)
    echo "usage: $0 [--miri-only | --asan-only | --tsan-only]" >&2
    exit 2
    ;;
esac

if ! cargo "+$toolchain" miri --version >/dev/null 2>&1; then
    echo "check-unsafe: needs the $toolchain toolchain with miri and rust-src:" >&2
    echo "  rustup toolchain install $toolchain --component miri,rust-src" >&2
    exit 2
fi

if $miri; then
    echo "== Miri: the shm exchange on thread ranks, and the kernels"
    # rustix's futex wrapper turns an integer into a pointer; that is its business, and
    # permissive provenance keeps Miri from warning about it on every call. Files (the
    # cache size in sysfs) cannot be opened in Miri's isolation: the opens fail, and the
    # code takes its defaults, as it does on a machine without them.
    export MIRIFLAGS="${MIRIFLAGS:--Zmiri-permissive-provenance -Zmiri-isolation-error=warn-nobacktrace}"
    cargo "+$toolchain" miri test -p cobre-comm --features shm --lib -- \
        shm::algorithm_tests copy:: reduce::
fi

if $asan; then
    echo "== AddressSanitizer: unit tests and shm processes"
    target=$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')
    RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
        CARGO_TARGET_DIR=target/asan \
        cargo "+$toolchain" test -p cobre-comm --features shm --target "$target" \
        --lib --test shm_processes --test region_access
fi
if $tsan; then
    echo "== ThreadSanitizer: the shm and tcp thread-rank tests"
    target=$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')
    TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" \
        RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread" \
        CARGO_TARGET_DIR=target/tsan \
        cargo "+$toolchain" test -Zbuild-std -p cobre-comm --features shm,tcp \
        --target "$target" --lib -- shm::algorithm_tests tcp::algorithm_tests
fi
echo "check-unsafe: all checks passed"
