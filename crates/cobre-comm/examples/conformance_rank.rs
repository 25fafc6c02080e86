//! One rank of a conformance run, for launchers that start the ranks themselves (`srun`,
//! `mpiexec`, `cobre-comm launch`): creates the communicator the environment points to
//! (`create_communicator(BackendKind::Auto)`), runs the conformance suite, and prints one
//! line per rank. Exit status: 0 when every check passed, 1 when one failed, 2 when the
//! communicator could not be created.
//!
//! ```sh
//! cargo build --release -p cobre-comm --example conformance_rank --features tcp
//! srun -n 4 target/release/examples/conformance_rank
//! ```

use std::process::ExitCode;

use cobre_comm::{BackendKind, Communicator, ReduceOp, create_communicator};
use cobre_comm_conformance::{Options, options_for, run_suite};

fn main() -> ExitCode {
    let comm = match create_communicator(BackendKind::Auto) {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("cannot create the communicator: {e}");
            return ExitCode::from(2);
        }
    };
    #[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
    let backend = comm.backend();
    #[cfg(not(any(feature = "mpi", feature = "tcp", feature = "shm")))]
    let backend = cobre_comm::Backend::Local;
    let options = Options {
        max_len: 1 << 16,
        sequence_len: 500,
        ..options_for(backend)
    };
    let report = run_suite(&comm, &options);
    // The rank-order sum, bit for bit: every rank prints the same bits.
    let mut total = [0.0_f64];
    let mine = [1.0 / (3.0 + comm.rank() as f64)];
    let sum = comm
        .allreduce(&mine, &mut total, ReduceOp::Sum)
        .map(|()| format!("{:016x}", total[0].to_bits()));
    for failure in report.failures() {
        eprintln!("rank {}: {failure}", comm.rank());
    }
    println!(
        "rank {} of {} ({backend}): {} of {} checks passed; sum bits {}",
        comm.rank(),
        comm.size(),
        report.results.iter().filter(|r| r.passed).count(),
        report.results.len(),
        sum.unwrap_or_else(|e| e.to_string())
    );
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
