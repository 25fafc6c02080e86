//! The cost of the `FerrompiBackend` wrapper over calling ferrompi directly: allreduce of
//! 8 B and allgatherv of 1 MiB, timed alternately in the same job.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_overhead
//! mpiexec -n 2 target/release/examples/mpi_overhead
//! ```

use std::time::Instant;

use cobre_comm::{Communicator, FerrompiBackend, ReduceOp};

const ROUNDS: usize = 10;

/// Average microseconds per call of `f` over `iters` calls, after a barrier.
fn time(comm: &FerrompiBackend, iters: usize, mut f: impl FnMut()) -> f64 {
    comm.barrier().expect("barrier");
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / iters as f64
}

fn main() {
    let comm = FerrompiBackend::new().expect("MPI initialisation failed");
    let world = comm.mpi_world();
    let size = comm.size();
    let send8 = [comm.rank() as f64];
    let mut recv8 = [0.0_f64];
    let per_rank = (1 << 20) / 8 / size;
    let counts = vec![per_rank; size];
    let displs: Vec<usize> = (0..size).map(|r| r * per_rank).collect();
    let counts_i32: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
    let displs_i32: Vec<i32> = displs.iter().map(|&d| d as i32).collect();
    let send = vec![1.0_f64; per_rank];
    let mut recv = vec![0.0_f64; per_rank * size];

    let mut rows = [(0.0, 0.0), (0.0, 0.0)];
    for _ in 0..ROUNDS {
        rows[0].0 += time(&comm, 20_000, || {
            world
                .allreduce(&send8, &mut recv8, ferrompi::ReduceOp::Sum)
                .unwrap();
        });
        rows[0].1 += time(&comm, 20_000, || {
            comm.allreduce(&send8, &mut recv8, ReduceOp::Sum).unwrap();
        });
        rows[1].0 += time(&comm, 200, || {
            world
                .allgatherv(&send, &mut recv, &counts_i32, &displs_i32)
                .unwrap();
        });
        rows[1].1 += time(&comm, 200, || {
            comm.allgatherv(&send, &mut recv, &counts, &displs).unwrap();
        });
    }
    if comm.rank() == 0 {
        println!("{size} ranks, {ROUNDS} alternating rounds (us per call, mean of rounds)");
        println!(
            "{:<18} {:>10} {:>12} {:>8}",
            "collective", "ferrompi", "cobre-comm", "ratio"
        );
        for (name, (direct, wrapped)) in ["allreduce 8 B", "allgatherv 1 MiB"].iter().zip(rows) {
            let (direct, wrapped) = (direct / ROUNDS as f64, wrapped / ROUNDS as f64);
            println!(
                "{name:<18} {direct:>10.3} {wrapped:>12.3} {:>8.3}",
                wrapped / direct
            );
        }
    }
}
