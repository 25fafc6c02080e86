#!/usr/bin/env bash
# Reproduces every figure of docs/PERFORMANCE.md: builds the tool with all backends and
# measures them side by side, writing tables, JSON and plots into docs/perf/.
# Needs MPICH (see scripts/test-all.sh); takes about five minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/perf
mkdir -p "$out"
cargo build --release -p cobre-comm-cli --features mpi
cargo build --release -p cobre-comm --features mpi --example mpi_overhead
B=target/release/cobre-comm

run() { # name, then bench arguments
    local name=$1
    shift
    echo "== cobre-comm bench $*" | tee "$out/$name.txt"
    "$B" bench "$@" --json "$out/$name.json" | tee -a "$out/$name.txt"
}

# shm against MPICH (default transport), 2 ranks, every size.
run shm-mpi-2 -n 2 --backend shm,mpi --iters 2000 --plot "$out/shm-mpi-2.svg"
# 4 ranks on 2 cores (oversubscribed): MPICH busy-polls, so few iterations and sizes.
run shm-mpi-4-small -n 4 --backend shm,mpi --op allreduce,barrier --max-bytes 8 --iters 100
run shm-mpi-4-large -n 4 --backend shm,mpi --op allgatherv --min-bytes 1048576 --max-bytes 1048576 --iters 10
run shm-mpi-4-16m -n 4 --backend shm,mpi --op allgatherv --min-bytes 16777216 --max-bytes 16777216 --iters 10
# The memcpy floor: local's allgatherv is one copy of the same bytes.
run shm-memcpy -n 2 --backend shm,local --op allgatherv --min-bytes 1048576 --iters 200
# tcp against MPICH forced onto TCP (UCX_TLS=tcp,self).
run tcp-mpitcp-2 -n 2 --backend tcp,mpi-tcp --iters 1000 --plot "$out/tcp-mpitcp-2.svg"
# At 4 ranks on 2 cores MPICH over UCX's TCP transport did not finish an 8-byte
# allreduce sweep within minutes (one rank spinning, the others starved), so tcp runs alone.
run tcp-4 -n 4 --backend tcp --op allreduce,barrier,allgatherv --iters 200
# The SDDP workload on every backend.
run sddp-2 -n 2 --backend shm,tcp,mpi --workload sddp
run sddp-4 -n 4 --backend shm,tcp --workload sddp
# The MPI wrapper against ferrompi itself.
echo "== mpiexec -n 2 mpi_overhead" | tee "$out/mpi-overhead.txt"
mpiexec -n 2 target/release/examples/mpi_overhead | tee -a "$out/mpi-overhead.txt"
