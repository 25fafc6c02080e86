#!/usr/bin/env bash
# Runs cobre-comm under a real one-node Slurm (started by scripts/slurm-up.sh):
#   1. `srun -n 4` of a tcp-only build: the ranks configure themselves from the step and
#      pass the conformance suite, with the same bits for the rank-order sum on every rank;
#   2. `srun --mpi=pmi2 -n 4` of an mpi build passes the suite;
#   3. `srun -n 2` of a build with neither backend fails fast with the error that names
#      srun, the compiled backends and the fix, and no task prints a result;
#   4. the host-list expansion agrees with `scontrol show hostnames` on real Slurm strings.
# Called by scripts/test-all.sh; needs root for slurm-up.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/slurm-up.sh
out=target/slurm
mkdir -p "$out"
for features in tcp mpi none; do
    if [ "$features" = none ]; then
        cargo build -q -p cobre-comm --example conformance_rank
    else
        cargo build -q -p cobre-comm --example conformance_rank --features "$features"
    fi
    cp target/debug/examples/conformance_rank "$out/rank-$features"
done

fail() {
    echo "test-slurm: FAILED: $*" >&2
    exit 1
}

passed_ranks() { # log, ranks
    local n
    n=$(grep -c "checks passed" "$1" || true)
    [ "$n" = "$2" ] || fail "expected $2 ranks to report, got $n: $(cat "$1")"
    grep "checks passed" "$1" | grep -v " of $2 " && fail "a rank saw another size: $(cat "$1")"
    local bits
    bits=$(sed -n 's/.*sum bits \([0-9a-f]*\)$/\1/p' "$1" | sort -u | wc -l)
    [ "$bits" = 1 ] || fail "the ranks disagree on the sum's bits: $(cat "$1")"
    if grep "checks passed" "$1" | awk '{ if ($6 != $8) exit 1 }'; then :; else
        fail "a check failed: $(cat "$1")"
    fi
}

echo "== srun -n 4 of a tcp-only build (no variable set by hand)"
timeout 300 srun -n 4 --kill-on-bad-exit=1 env -u COBRE_COMM_BACKEND "$out/rank-tcp" >"$out/tcp.log" 2>"$out/tcp.err" \
    || fail "srun -n 4 rank-tcp: $(cat "$out/tcp.log" "$out/tcp.err")"
passed_ranks "$out/tcp.log" 4
grep -q "(tcp)" "$out/tcp.log" || fail "the tasks did not run on tcp: $(cat "$out/tcp.log")"
cat "$out/tcp.log"

echo "== srun --mpi=pmi2 -n 4 of an mpi build"
timeout 600 srun --mpi=pmi2 -n 4 --kill-on-bad-exit=1 "$out/rank-mpi" >"$out/mpi.log" 2>"$out/mpi.err" \
    || fail "srun --mpi=pmi2 -n 4 rank-mpi: $(cat "$out/mpi.log" "$out/mpi.err")"
passed_ranks "$out/mpi.log" 4
grep -q "(mpi)" "$out/mpi.log" || fail "the tasks did not run on mpi: $(cat "$out/mpi.log")"
cat "$out/mpi.log"

echo "== srun -n 2 of a build with neither tcp nor mpi: fails fast, no task prints a result"
start=$(date +%s%N)
if timeout 60 srun -n 2 "$out/rank-none" >"$out/none.log" 2>"$out/none.err"; then
    fail "a build without tcp or mpi ran under srun -n 2: $(cat "$out/none.log")"
fi
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[ -s "$out/none.log" ] && fail "a task printed a result: $(cat "$out/none.log")"
for needle in "srun (SLURM_STEP_NUM_TASKS=2)" "this binary has: local" "--features tcp" "single-process copies"; do
    grep -qF -- "$needle" "$out/none.err" || fail "the error does not say '$needle': $(cat "$out/none.err")"
done
head -1 "$out/none.err"
echo "failed in ${elapsed_ms} ms (srun included)"

echo "== host lists: ours against scontrol show hostnames"
COBRE_SLURM_HOSTLISTS=1 cargo test -q -p cobre-comm --test slurm_hostlists

echo
echo "== slurm: all passed"
