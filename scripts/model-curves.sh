#!/usr/bin/env bash
# The tcp model's curves for docs/PERFORMANCE.md: 8 B allreduce, barrier, 1 MiB allreduce
# and 1 MiB allgatherv on 2 to 4096 simulated ranks of a 25 GbE cluster (one rank per
# host) and of 16-core hosts, as a table and as JSON files in docs/perf/model/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p cobre-comm-cli --features tcp
B=target/release/cobre-comm
out=docs/perf/model
mkdir -p "$out"
cells=("allreduce 8" "barrier 0" "allreduce 1048576" "allgatherv 1048576")
for layout in one-per-host 16-per-host; do
    printf '\n%s: us per call (t(P) / t(64) in brackets)\n' "$layout"
    printf '%6s' ranks
    for cell in "${cells[@]}"; do
        read -r op bytes <<<"$cell"
        printf '%26s' "$op $bytes B"
    done
    printf '\n'
    declare -A base=()
    for p in 2 4 8 16 32 64 128 256 512 1024 2048 4096; do
        hosts=$p
        [ "$layout" = 16-per-host ] && hosts=$(((p + 15) / 16))
        printf '%6s' "$p"
        for cell in "${cells[@]}"; do
            read -r op bytes <<<"$cell"
            json="$out/$layout-$op-$bytes-$p.json"
            "$B" model -n "$p" --hosts "$hosts" --op "$op" --min-bytes "$bytes" \
                --max-bytes "$(( bytes > 8 ? bytes : 8 ))" --json "$json" >/dev/null
            t=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["avg_us"])' "$json")
            [ "$p" = 64 ] && base[$cell]=$t
            if [ -n "${base[$cell]:-}" ]; then
                printf '%26s' "$(python3 -c 'import sys; t,b=map(float,sys.argv[1:]); print(f"{t:.1f} [{t/b:.2f}]")' "$t" "${base[$cell]}")"
            else
                printf '%26s' "$(printf '%.1f' "$t")"
            fi
        done
        printf '\n'
    done
done
