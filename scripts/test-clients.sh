#!/usr/bin/env bash
# The first real users of cobre-comm, built against this checkout.
#
# 1. Fetches cobre-sddp 0.18.0 and cobre-cli 0.18.0 from crates.io and builds them
#    unmodified with this checkout's cobre-comm patched in ([patch.crates-io]); the only
#    change is cobre-cli's cobre-comm dependency gaining `features = ["shm", "tcp"]`, as a
#    user building `cobre` with our backends would write it (its own `mpi` feature adds mpi).
# 2. Runs cobre-sddp's own test suite (with its `test-support` feature; dependencies in
#    release, cobre-sddp itself at opt-level 0) on our crate and on upstream's cobre-comm
#    0.18.0, and fails when a test fails on ours that passes on upstream's. Tests that
#    fail on upstream's crate as well are listed, with the reason, in
#    scripts/clients/sddp-excluded.txt; the list must match exactly.
# 3. Trains and simulates the bundled 1dtoy case with `cobre run`: one process,
#    `cobre-comm launch -n 2` and `-n 4` on shm and on tcp, and `mpiexec -n 2`; the policy,
#    bounds and simulation outputs must be identical bit for bit across local/shm/tcp, and
#    within a relative 1e-9 on mpi (MPI's own reduction order).
#
# Usage: scripts/test-clients.sh [all|sddp|run]   (default: all)
# Environment: COBRE_CLIENTS_DIR (work directory, default ~/.cache/cobre-comm/clients, kept
# between checkouts so the clients' dependencies (HiGHS, Arrow, ...) are built once per
# machine: 15-20 minutes the first time on two cores, a few the next), COBRE_CLIENTS_JOBS (cargo -j), MPIEXEC (default mpiexec), COBRE_CLIENTS_REPEAT
# (runs of each `cobre run` case; the median wall time is reported; default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PHASE=${1:-all}
WORK=${COBRE_CLIENTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cobre-comm/clients}
MPIEXEC=${MPIEXEC:-mpiexec}
VERSION=0.18.0
JOBS=()
[ -n "${COBRE_CLIENTS_JOBS:-}" ] && JOBS=(-j "$COBRE_CLIENTS_JOBS")
EXCLUDED="$ROOT/scripts/clients/sddp-excluded.txt"

log() { printf '\n== %s\n' "$*"; }
die() { printf 'test-clients: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- tools: HiGHS (vendored by cobre-solver) builds with cmake and a C++ compiler ----------
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v mpicc >/dev/null 2>&1 || need+=(mpich libmpich-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        die "missing tools: ${need[*]} (install them, e.g. apt-get install ${need[*]})"
    fi
fi

# --- sources: the published crates, copied out of cargo's registry cache --------------------
mkdir -p "$WORK"
fetch_sources() {
    local fetch="$WORK/fetch"
    mkdir -p "$fetch/src"
    cat >"$fetch/Cargo.toml" <<EOF
[package]
name = "cobre-clients-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
cobre-comm = "=$VERSION"
cobre-sddp = "=$VERSION"
cobre-cli = "=$VERSION"

[workspace]
EOF
    echo 'fn main() {}' >"$fetch/src/main.rs"
    (cd "$fetch" && cargo fetch -q)
    local registry
    registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cobre-sddp-$VERSION | head -1)
    [ -d "$registry" ] || die "cobre-sddp $VERSION not found in cargo's registry cache"
    REGISTRY=$(dirname "$registry")
}

# Copies a published crate to $WORK/<name>-<flavour>, a workspace of its own that shares
# $WORK/target. `ours` patches this checkout's cobre-comm in; `upstream` leaves the
# registry's 0.18.0. The copy's sources are the registry's, byte for byte (checked).
prepare() {
    local name=$1 flavour=$2 dest="$WORK/$1-$2"
    local src="$REGISTRY/$name-$VERSION"
    if [ ! -f "$dest/.prepared" ]; then
        rm -rf "$dest"
        cp -r "$src" "$dest"
        rm -f "$dest/Cargo.lock"
        if [ "$name" = cobre-cli ]; then
            # The one change: our backends as features of cobre-comm.
            sed -i '/^\[dependencies.cobre-comm\]$/,/^$/ s/^version = "0.18.0"$/version = "0.18.0"\nfeatures = ["shm", "tcp"]/' "$dest/Cargo.toml"
            grep -q '^features = \["shm", "tcp"\]$' "$dest/Cargo.toml" || die "could not add features to $name's cobre-comm dependency"
        fi
        {
            echo
            echo '[workspace]'
            if [ "$flavour" = ours ]; then
                echo
                echo '[patch.crates-io]'
                echo "cobre-comm = { path = \"$ROOT/crates/cobre-comm\" }"
            fi
        } >>"$dest/Cargo.toml"
        touch "$dest/.prepared"
    fi
    if [ "$flavour" = ours ]; then
        # The work directory outlives checkouts: always patch in this one.
        sed -i "s|^cobre-comm = { path = \".*\" }$|cobre-comm = { path = \"$ROOT/crates/cobre-comm\" }|" "$dest/Cargo.toml"
        grep -qF "cobre-comm = { path = \"$ROOT/crates/cobre-comm\" }" "$dest/Cargo.toml" \
            || die "could not patch this checkout into $dest/Cargo.toml"
    fi
    if ! diff -r -q -x Cargo.toml -x Cargo.lock -x .prepared -x target -x output "$src" "$dest" >/dev/null; then
        die "$dest differs from the published $name $VERSION"
    fi
}

# The cobre-comm the copy resolved to: a path into this checkout, or the registry's.
resolved_comm() {
    (cd "$1" && cargo tree -q -e normal -i cobre-comm --depth 0 --target all 2>/dev/null | head -1)
}

# --- cobre-sddp's own test suite, on ours and on upstream's ---------------------------------
# Runs `cargo test --release --features test-support --no-fail-fast` and writes one line
# per test, "<test binary> :: <test name> :: <ok|FAILED|ignored>", sorted, to $2.
# cobre-sddp itself (its library and its 56 test programs) builds at opt-level 0, the same
# for both flavours; its dependencies (HiGHS, Arrow, ...) keep the release profile. On two
# cores that builds in about 2 minutes instead of 9 at opt-level 3, and the suite runs in
# 9 s instead of 7 with the same results.
run_sddp_tests() {
    local dir=$1 out=$2 logfile=$2.log
    (cd "$dir" && CARGO_TARGET_DIR="$WORK/target" cargo test "${JOBS[@]}" --release --features test-support \
        --config 'profile.release.package.cobre-sddp.opt-level=0' --no-fail-fast 2>&1) >"$logfile" || true
    awk '
        /^     Running / { bin = ($2 == "unittests") ? $3 : $2; next }
        /^   Doc-tests / { bin = "doc-tests:" $2; next }
        /^test .* \.\.\. (ok|FAILED|ignored)/ {
            line = $0; sub(/^test /, "", line)
            i = index(line, " ... ")
            name = substr(line, 1, i - 1)
            status = substr(line, i + 5); sub(/[ ,].*$/, "", status)
            print bin " :: " name " :: " status
        }' "$logfile" | LC_ALL=C sort -u >"$out"
    if ! grep -q . "$out"; then
        tail -40 "$logfile" >&2
        die "no test results in $logfile (did the build fail?)"
    fi
}

# "<binary> :: <name>" of the tests of $1 with status $2.
with_status() { grep " :: $2\$" "$1" | sed "s/ :: $2\$//" | LC_ALL=C sort; }

sddp_phase() {
    prepare cobre-sddp ours
    prepare cobre-sddp upstream
    local ours_comm upstream_comm
    ours_comm=$(resolved_comm "$WORK/cobre-sddp-ours")
    upstream_comm=$(resolved_comm "$WORK/cobre-sddp-upstream")
    echo "cobre-sddp (ours) uses:     $ours_comm"
    echo "cobre-sddp (upstream) uses: $upstream_comm"
    case "$ours_comm" in *"($ROOT/crates/cobre-comm)"*) ;; *) die "the patch did not apply: $ours_comm" ;; esac
    case "$upstream_comm" in *"cobre-comm v$VERSION" | *"cobre-comm v$VERSION "*) ;; *) die "upstream copy resolved $upstream_comm" ;; esac

    log "cobre-sddp $VERSION test suite on this cobre-comm"
    local t0
    t0=$(now)
    run_sddp_tests "$WORK/cobre-sddp-ours" "$WORK/sddp-ours.txt"
    echo "   $(elapsed "$t0") s"
    log "cobre-sddp $VERSION test suite on upstream cobre-comm $VERSION"
    t0=$(now)
    run_sddp_tests "$WORK/cobre-sddp-upstream" "$WORK/sddp-upstream.txt"
    echo "   $(elapsed "$t0") s"

    local total
    total=$(grep -cv ' :: ignored$' "$WORK/sddp-upstream.txt" || true)
    with_status "$WORK/sddp-ours.txt" FAILED >"$WORK/failed-ours.txt"
    with_status "$WORK/sddp-upstream.txt" FAILED >"$WORK/failed-upstream.txt"
    printf '%-26s %8s %8s\n' "" "ours" "upstream"
    printf '%-26s %8s %8s\n' "tests run (not ignored)" "$(grep -cv ' :: ignored$' "$WORK/sddp-ours.txt")" "$total"
    printf '%-26s %8s %8s\n' "passed" "$(grep -c ' :: ok$' "$WORK/sddp-ours.txt")" "$(grep -c ' :: ok$' "$WORK/sddp-upstream.txt")"
    printf '%-26s %8s %8s\n' "failed" "$(wc -l <"$WORK/failed-ours.txt")" "$(wc -l <"$WORK/failed-upstream.txt")"
    printf '%-26s %8s %8s\n' "ignored" "$(grep -c ' :: ignored$' "$WORK/sddp-ours.txt")" "$(grep -c ' :: ignored$' "$WORK/sddp-upstream.txt")"

    local status=0
    # Both runs must have run the same tests.
    if ! diff <(sed 's/ :: [a-zA-Z]*$//' "$WORK/sddp-ours.txt") <(sed 's/ :: [a-zA-Z]*$//' "$WORK/sddp-upstream.txt") >"$WORK/names.diff"; then
        echo "FAIL: the two runs do not have the same tests (< ours, > upstream):"; head -20 "$WORK/names.diff"; status=1
    fi
    # No test may fail on ours that passes on upstream's.
    LC_ALL=C comm -23 "$WORK/failed-ours.txt" "$WORK/failed-upstream.txt" >"$WORK/regressions.txt"
    if [ -s "$WORK/regressions.txt" ]; then
        echo "FAIL: tests that fail on this cobre-comm but pass on upstream's:"; cat "$WORK/regressions.txt"; status=1
    fi
    # The upstream failures are exactly the documented exclusions ("<binary> :: <name> :: <reason>").
    { grep -v '^#' "$EXCLUDED" || true; } | awk -F ' :: ' 'NF >= 2 { print $1 " :: " $2 }' | LC_ALL=C sort >"$WORK/excluded.txt"
    if ! diff "$WORK/excluded.txt" "$WORK/failed-upstream.txt" >"$WORK/excluded.diff"; then
        echo "FAIL: $EXCLUDED does not list exactly the tests that fail on upstream's crate (< listed only, > failing only):"
        head -30 "$WORK/excluded.diff"; status=1
    fi
    local excluded
    excluded=$(wc -l <"$WORK/excluded.txt")
    echo "excluded (fail on upstream's crate too): $excluded of $total ($(awk -v e="$excluded" -v t="$total" 'BEGIN { printf "%.1f", 100 * e / t }')%)"
    if [ $((excluded * 20)) -ge "$total" ]; then
        echo "FAIL: exclusions are 5% or more of the suite"; status=1
    fi
    [ $status = 0 ] || die "cobre-sddp comparison failed (logs: $WORK/sddp-*.txt.log)"
    echo "cobre-sddp: no test fails on this cobre-comm that passes on upstream's"
}

# --- cobre run on the 1dtoy case, on every backend -----------------------------------------
# The outputs compared: the policy (cuts and states), the bounds (convergence) and the
# simulation. Timing, metadata and logs differ from run to run by nature.
compared_files() {
    (cd "$1" && find . -type f \( -path './policy/*' -o -path './training/convergence.parquet' \
        -o -path './training/dictionaries/bounds.parquet' -o -path './simulation/*' \) \
        ! -path './simulation/solver/*' ! -name 'metadata.json' ! -name '_SUCCESS' | LC_ALL=C sort)
}

run_phase() {
    prepare cobre-cli ours
    local cli="$WORK/cobre-cli-ours"
    local comm_tool="$ROOT/target/release/cobre-comm"
    log "building cobre $VERSION (features mpi; cobre-comm with shm, tcp, mpi) and the cobre-comm tool"
    local t0
    t0=$(now)
    # cobre-sddp and cobre-cli at opt-level 0, as for the test suite (their dependencies,
    # HiGHS among them, keep the release profile): rebuilding the two against a changed
    # cobre-comm takes about 20 s, and the 1dtoy runs stay bit-identical.
    (cd "$cli" && CARGO_TARGET_DIR="$WORK/target" cargo build "${JOBS[@]}" -q --release --features mpi --bin cobre \
        --config 'profile.release.package.cobre-sddp.opt-level=0' \
        --config 'profile.release.package.cobre-cli.opt-level=0')
    (cd "$ROOT" && cargo build "${JOBS[@]}" -q --release -p cobre-comm-cli --features shm,tcp)
    # The outputs reader in the dev profile: its Arrow and Parquet differ from cobre's in
    # features anyway (nothing to share), and it reads a few small files (cold: about 1
    # minute to build instead of 3.5).
    (cd "$ROOT/scripts/clients/outputs" && CARGO_TARGET_DIR="$WORK/target" cargo build "${JOBS[@]}" -q)
    local outputs="$WORK/target/debug/cobre-outputs"
    echo "   built in $(elapsed "$t0") s"
    local cobre="$WORK/target/release/cobre"
    local comm
    comm=$(resolved_comm "$cli")
    echo "cobre uses: $comm"
    case "$comm" in *"($ROOT/crates/cobre-comm)"*) ;; *) die "the patch did not apply to cobre-cli: $comm" ;; esac

    local case_dir="$cli/templates/1dtoy" out="$WORK/runs"
    rm -rf "$out"
    mkdir -p "$out"
    local runs=(local shm-2 shm-4 tcp-2 tcp-4 mpi-2)
    : >"$out/times.txt"
    for run in "${runs[@]}"; do
        local dest="$out/$run" backend=${run%-*} n=${run#*-}
        local cmd
        case $backend in
            local) cmd=("$cobre" run "$case_dir" --output "$dest" --quiet) ;;
            shm | tcp) cmd=("$comm_tool" launch -n "$n" --backend "$backend" -- "$cobre" run "$case_dir" --output "$dest" --quiet) ;;
            mpi) cmd=("$MPIEXEC" -n "$n" "$cobre" run "$case_dir" --output "$dest" --quiet) ;;
        esac
        # COBRE_CLIENTS_REPEAT=N runs each case N times and reports the median wall time
        # (the outputs of the last run are compared).
        local times=() i secs
        for ((i = 0; i < ${COBRE_CLIENTS_REPEAT:-1}; i++)); do
            rm -rf "$dest"
            t0=$(now)
            if ! env -u COBRE_COMM_BACKEND "${cmd[@]}" >"$out/$run.log" 2>&1; then
                tail -30 "$out/$run.log" >&2
                die "cobre run failed on $run (log: $out/$run.log)"
            fi
            times+=("$(elapsed "$t0")")
        done
        secs=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
        echo "$run $secs" >>"$out/times.txt"
        printf '%-8s %8s s   (runs: %s)\n' "$run" "$secs" "${times[*]}"
    done

    compared_files "$out/local" >"$out/files.txt"
    grep -q . "$out/files.txt" || die "cobre run wrote none of the compared outputs under $out/local"
    echo "compared: $(wc -l <"$out/files.txt") files (policy/, training/convergence.parquet," \
        "training/dictionaries/bounds.parquet, simulation/ but its solver statistics);" \
        "timing columns and the manifest's creation time are not compared"
    local status=0
    for run in shm-2 shm-4 tcp-2 tcp-4 mpi-2; do
        if ! diff <(compared_files "$out/$run") "$out/files.txt" >/dev/null; then
            echo "FAIL: $run wrote a different set of outputs"; status=1; continue
        fi
        # local/shm/tcp: bit for bit (the rank-order Sum). mpi: MPI folds sums in its own
        # order, so within a relative 1e-9 (scaled by max(1, |x|)); reported when exact.
        local tol=0
        [ "${run%-*}" = mpi ] && tol=1e-9
        # shellcheck disable=SC2046
        if "$outputs" compare --rel "$tol" "$out/local" "$out/$run" $(cat "$out/files.txt"); then
            if [ "$tol" = 0 ]; then
                echo "$run: identical to local, bit for bit"
            elif "$outputs" compare --rel 0 "$out/local" "$out/$run" $(cat "$out/files.txt") 2>/dev/null; then
                echo "$run: identical to local, bit for bit (tolerance: relative 1e-9)"
            else
                echo "$run: equal to local within a relative 1e-9"
            fi
        else
            echo "FAIL: $run differs from the one-process run (tolerance $tol)"; status=1
        fi
    done
    [ $status = 0 ] || die "cobre run outputs differ between backends"

    log "wall time of cobre run, and the communication time the solver records (ms, largest rank)"
    printf '%-8s %10s  %s\n' run "wall (s)" "training timings (training/timing/iterations.parquet)"
    while read -r run secs; do
        printf '%-8s %10s  %s\n' "$run" "$secs" "$("$outputs" comm-time "$out/$run")"
    done <"$out/times.txt" | tee "$out/summary.txt"
}

if [ "$PHASE" = all ] || [ "$PHASE" = sddp ] || [ "$PHASE" = run ]; then
    fetch_sources
fi
case "$PHASE" in
    all) sddp_phase; run_phase ;;
    sddp) sddp_phase ;;
    run) run_phase ;;
    *) die "unknown phase $PHASE (expected all, sddp or run)" ;;
esac
log "clients: all checks passed"
