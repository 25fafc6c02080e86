//! The MPI backend under a real `mpiexec` (MPICH): the conformance suite on 1 to 4 ranks,
//! the shared-window lifecycle at 3 ranks, a second initialisation, the factory, and
//! `abort` with the topology at 2 ranks (mpiexec exits with the abort code).
//!
//! Without launcher variables this binary is the driver: it starts itself through
//! `mpiexec -n N` for each case and checks the outcome. Under `mpiexec` it is a rank.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use cobre_comm::{
    Backend, BackendError, BackendKind, Communicator, FerrompiBackend, ReduceOp,
    SharedMemoryProvider, SharedRegion, TopologyProvider, create_communicator_with,
};
use cobre_comm_conformance::{Options, options_for, run_suite};
use cobre_comm_launcher::{Launcher, Outcome};

const CASE_VAR: &str = "COBRE_MPI_TEST_CASE";
const DEADLINE: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    match std::env::var(CASE_VAR) {
        Ok(case) => rank(&case),
        Err(_) => driver(),
    }
}

/// Options for `ranks` ranks: MPICH busy-polls, so with more ranks than cores every
/// collective costs milliseconds; the suite keeps every check but with shorter runs.
fn options(ranks: usize) -> Options {
    let mut options = options_for(Backend::Mpi);
    if ranks > 2 {
        options.max_len = 1 << 16;
        options.sequence_len = 300;
    }
    options
}

fn rank(case: &str) -> ExitCode {
    let comm = match create_communicator_with(Backend::Mpi) {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("cannot create the MPI communicator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ok = match case {
        "suite" => {
            let report = run_suite(&comm, &options(comm.size()));
            for failure in report.failures() {
                eprintln!("rank {}: {failure}", report.rank);
            }
            report.passed()
        }
        "region" => region(&comm),
        "abort" => abort(&comm),
        "second-init" => {
            let again = FerrompiBackend::new();
            match again {
                Err(BackendError::InitializationFailed { source, .. })
                    if source.to_string().contains("only once per process") =>
                {
                    true
                }
                other => {
                    eprintln!(
                        "a second initialisation gave {other:?}, expected InitializationFailed"
                    );
                    false
                }
            }
        }
        "other-thread" => other_thread(&comm),
        other => {
            eprintln!("unknown case {other}");
            false
        }
    };
    if ok {
        println!("rank {} of {}: {case} ok", comm.rank(), comm.size());
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Leader writes, fence, followers read the leader's data (true shared memory), twice.
/// MPI was initialised at `Funneled`: a call from another thread is a clear error (and
/// makes no MPI call), after which the initialising thread goes on normally.
fn other_thread<C: Communicator + SharedMemoryProvider>(comm: &C) -> bool {
    let refused = std::thread::scope(|s| {
        s.spawn(|| {
            let mut total = [0_u64];
            let reduce = comm.allreduce(&[1], &mut total, cobre_comm::ReduceOp::Sum);
            let node = comm.split_local().map(|_| ());
            (reduce, node, comm.barrier())
        })
        .join()
        .unwrap()
    });
    let all_refused = [&refused.0, &refused.1, &refused.2].iter().all(|r| {
        matches!(r, Err(cobre_comm::CommError::CollectiveFailed { message, .. })
            if message.contains("only that thread may call MPI"))
    });
    if !all_refused {
        eprintln!(
            "calls from another thread gave {refused:?}, expected CollectiveFailed naming the thread rule"
        );
        return false;
    }
    let mut total = [0_u64];
    let here = comm.allreduce(&[1], &mut total, cobre_comm::ReduceOp::Sum);
    if here.is_err() || total[0] != comm.size() as u64 {
        eprintln!("the initialising thread's allreduce gave {here:?} and {total:?}");
        return false;
    }
    true
}

fn region<C: Communicator + SharedMemoryProvider>(comm: &C) -> bool {
    let node = comm.split_local().expect("split_local");
    let mut region = comm
        .create_shared_region::<u64>(100_000)
        .expect("allocation");
    let mut ok = node.size() == comm.size() && comm.is_leader() == (node.rank() == 0);
    for round in 0..2_u64 {
        if comm.is_leader() {
            for (i, x) in region.as_mut_slice().iter_mut().enumerate() {
                *x = i as u64 * 3 + round;
            }
        }
        region.fence().expect("fence");
        let seen = region.as_slice();
        let good = seen.len() == 100_000
            && seen
                .iter()
                .enumerate()
                .all(|(i, &x)| x == i as u64 * 3 + round);
        if !good {
            eprintln!(
                "rank {} does not see the leader's round {round}: {:?}",
                comm.rank(),
                &seen[..4.min(seen.len())]
            );
        }
        ok &= good;
        region.fence().expect("fence");
    }
    ok
}

fn mpiexec() -> Option<String> {
    std::env::var("MPIEXEC").ok().or_else(|| {
        std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("mpiexec"))
                    .find(|c| c.is_file())
            })
            .map(|p| p.display().to_string())
    })
}

/// Runs `mpiexec -n ranks <this binary>` for `case`; returns an error description.
fn run_case(mpiexec: &str, ranks: usize, case: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let rank = mpiexec_job(mpiexec, ranks, case)?;
    let (status, out, err) = (rank.outcome, &rank.stdout, &rank.stderr);
    let oks = out
        .lines()
        .filter(|l| l.ends_with(&format!("{case} ok")))
        .count();
    if status.is_success() && oks == ranks {
        Ok(start.elapsed())
    } else {
        Err(format!(
            "{status}, {oks} of {ranks} ranks reported success\nstdout:\n{out}\nstderr:\n{err}"
        ))
    }
}

/// Runs `mpiexec -n ranks <this binary>` for `case` through the launcher (one unprefixed
/// "rank": mpiexec itself), with its output captured and the deadline applied.
fn mpiexec_job(
    mpiexec: &str,
    ranks: usize,
    case: &str,
) -> Result<cobre_comm_launcher::RankReport, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let report = Launcher::new(mpiexec)
        .args(["-n", &ranks.to_string()])
        .args([&exe])
        .env(CASE_VAR, case)
        .prefix_output(false)
        .capture_stdout(true)
        .capture_stderr(true)
        .spawn()
        .map_err(|e| format!("cannot start {mpiexec}: {e}"))?
        .finish(DEADLINE);
    let rank = report
        .ranks
        .into_iter()
        .next()
        .expect("one launched process");
    if rank.outcome == Outcome::Stopped {
        return Err(format!("did not finish within {DEADLINE:?}"));
    }
    Ok(rank)
}

/// The abort case's exit code: every rank ends with it (`MPI_Abort`), and so does `mpiexec`.
const ABORT_CODE: i32 = 7;

/// Checks the topology, then rank 1 aborts while rank 0 waits in an allreduce that rank 1
/// never joins; only the abort can end the job. Returns only on a failed check.
fn abort(comm: &cobre_comm::CommBackend) -> bool {
    let topology = comm.topology();
    let ranks: Vec<usize> = topology
        .hosts
        .iter()
        .flat_map(|h| h.ranks.clone())
        .collect();
    if topology.backend != BackendKind::Mpi
        || topology.world_size != comm.size()
        || ranks.len() != comm.size()
        || topology
            .mpi
            .as_ref()
            .is_none_or(|m| m.thread_level != "Funneled")
    {
        eprintln!("unexpected topology: {topology:?}");
        return false;
    }
    if comm.barrier().is_err() {
        return false;
    }
    if comm.rank() == 1 {
        comm.abort(ABORT_CODE);
    }
    let mut out = [0.0_f64];
    let result = comm.allreduce(&[1.0], &mut out, ReduceOp::Sum);
    eprintln!(
        "rank {}: the allreduce returned {result:?} instead of the job ending",
        comm.rank()
    );
    false
}

/// `mpiexec -n 2` of the abort case must exit with the abort's code, within the deadline.
fn run_abort_case(mpiexec: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let rank = mpiexec_job(mpiexec, 2, "abort")?;
    if rank.outcome == Outcome::Exited(ABORT_CODE) {
        Ok(start.elapsed())
    } else {
        Err(format!(
            "{}, expected exit code {ABORT_CODE}\nstderr:\n{}",
            rank.outcome, rank.stderr
        ))
    }
}

fn driver() -> ExitCode {
    let Some(mpiexec) = mpiexec() else {
        eprintln!("mpiexec is not on PATH: install MPICH (apt-get install mpich libmpich-dev)");
        println!("0 passed, 1 failed");
        return ExitCode::FAILURE;
    };
    let cases = [
        (1, "suite"),
        (2, "suite"),
        (3, "suite"),
        (4, "suite"),
        (3, "region"),
        (1, "second-init"),
        (2, "other-thread"),
    ];
    let (mut passed, mut failed) = (0, 0);
    let mut record = |ranks: usize, case: &str, result: Result<Duration, String>| match result {
        Ok(elapsed) => {
            passed += 1;
            println!(
                "mpi {case} on {ranks} rank(s) ... ok ({:.1} s)",
                elapsed.as_secs_f64()
            );
        }
        Err(e) => {
            failed += 1;
            println!("mpi {case} on {ranks} rank(s) ... FAILED: {e}");
        }
    };
    for (ranks, case) in cases {
        record(ranks, case, run_case(&mpiexec, ranks, case));
    }
    record(2, "abort", run_abort_case(&mpiexec));
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
