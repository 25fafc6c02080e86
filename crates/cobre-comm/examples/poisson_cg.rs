//! A distributed conjugate-gradient solve of the 1-D Poisson problem `-u'' = f` on (0, 1)
//! with `u(0) = u(1) = 0` and exact solution `u = x (1 - x) e^x`, written once against
//! `C: Communicator`.
//!
//! Each rank owns a block of rows (blocks of uneven length when the rank count does not
//! divide the grid). Every iteration gathers the search direction with `allgatherv` and
//! computes dot products with `allreduce`; rank 0 chooses the grid size and broadcasts it.
//! The same program runs on every backend:
//!
//! ```sh
//! cargo run --release --example poisson_cg                          # local, 1 rank
//! cargo build --release --example poisson_cg --features shm,tcp
//! cobre-comm launch -n 4 --backend shm -- target/release/examples/poisson_cg
//! cobre-comm launch -n 4 --backend tcp -- target/release/examples/poisson_cg
//! cargo build --release --example poisson_cg --features mpi
//! mpiexec -n 4 target/release/examples/poisson_cg
//! ```
//!
//! An optional argument sets the number of grid points (default 2000).

use cobre_comm::{CommError, Communicator, ReduceOp, create_communicator};

/// The rows `[start, end)` owned by `rank` when `n` rows are split over `size` ranks.
fn block(n: usize, rank: usize, size: usize) -> (usize, usize) {
    let base = n / size;
    let extra = n % size;
    let start = rank * base + rank.min(extra);
    (start, start + base + usize::from(rank < extra))
}

/// The global dot product of two distributed vectors.
fn dot<C: Communicator>(comm: &C, a: &[f64], b: &[f64]) -> Result<f64, CommError> {
    let local: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let mut global = [0.0];
    comm.allreduce(&[local], &mut global, ReduceOp::Sum)?;
    Ok(global[0])
}

/// What a solve reports.
struct Solution {
    iterations: usize,
    max_error: f64,
}

#[allow(clippy::many_single_char_names)] // the textbook names of CG
fn solve<C: Communicator>(comm: &C, requested_n: usize) -> Result<Solution, CommError> {
    let (rank, size) = (comm.rank(), comm.size());
    // Rank 0 decides the problem size; everyone else learns it.
    let mut n = [if rank == 0 { requested_n as u64 } else { 0 }];
    comm.broadcast(&mut n, 0)?;
    let n = n[0] as usize;
    let h = 1.0 / (n + 1) as f64;

    let blocks: Vec<(usize, usize)> = (0..size).map(|r| block(n, r, size)).collect();
    let counts: Vec<usize> = blocks.iter().map(|(s, e)| e - s).collect();
    let displs: Vec<usize> = blocks.iter().map(|(s, _)| *s).collect();
    let (start, end) = blocks[rank];

    // f = x (3 + x) e^x, exact solution u = x (1 - x) e^x.
    let x = |i: usize| (i + 1) as f64 * h;
    let exact = |x: f64| x * (1.0 - x) * x.exp();
    let b: Vec<f64> = (start..end)
        .map(|i| x(i) * (3.0 + x(i)) * x(i).exp() * h * h)
        .collect();

    // A = tridiag(-1, 2, -1); A p needs the neighbours of our block: gather p.
    let mut p_full = vec![0.0; n];
    let apply = |p_full: &[f64], out: &mut Vec<f64>| {
        out.clear();
        out.extend((start..end).map(|i| {
            let left = if i > 0 { p_full[i - 1] } else { 0.0 };
            let right = if i + 1 < n { p_full[i + 1] } else { 0.0 };
            2.0 * p_full[i] - left - right
        }));
    };

    let mut u = vec![0.0; end - start];
    let mut r = b.clone();
    let mut p = r.clone();
    let mut ap = Vec::with_capacity(end - start);
    let mut rr = dot(comm, &r, &r)?;
    let tolerance = 1e-20 * dot(comm, &b, &b)?;
    let mut iterations = 0;
    while rr > tolerance && iterations < 10 * n {
        comm.allgatherv(&p, &mut p_full, &counts, &displs)?;
        apply(&p_full, &mut ap);
        let alpha = rr / dot(comm, &p, &ap)?;
        for i in 0..u.len() {
            u[i] += alpha * p[i];
            r[i] -= alpha * ap[i];
        }
        let rr_next = dot(comm, &r, &r)?;
        let beta = rr_next / rr;
        for i in 0..p.len() {
            p[i] = r[i] + beta * p[i];
        }
        rr = rr_next;
        iterations += 1;
    }

    let local_error = (start..end)
        .map(|i| (u[i - start] - exact(x(i))).abs())
        .fold(0.0, f64::max);
    let mut max_error = [0.0];
    comm.allreduce(&[local_error], &mut max_error, ReduceOp::Max)?;
    comm.barrier()?;
    Ok(Solution {
        iterations,
        max_error: max_error[0],
    })
}

fn main() {
    let n = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 2000,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => {
            eprintln!(
                "poisson_cg: the argument must be the number of grid points, a positive integer"
            );
            std::process::exit(2);
        }
    };
    let comm = match create_communicator(cobre_comm::BackendKind::Auto) {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("poisson_cg: {e}");
            std::process::exit(1);
        }
    };
    match solve(&comm, n) {
        Ok(solution) if comm.rank() == 0 => println!(
            "poisson_cg: {} ranks, {n} points: {} iterations, max error {:.4e}",
            comm.size(),
            solution.iterations,
            solution.max_error
        ),
        Ok(_) => {}
        Err(e) => {
            eprintln!("poisson_cg: rank {}: {e}", comm.rank());
            std::process::exit(1);
        }
    }
}
