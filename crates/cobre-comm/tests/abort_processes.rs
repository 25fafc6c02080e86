//! `Communicator::abort` (cobre-comm 0.18) on real processes of the shm and tcp backends:
//! one rank aborts with a code, and every rank of the job exits with that code, whether it
//! waits in a collective or computes. The ranks are this test binary re-executed
//! (`child_rank` does a rank's work when `COBRE_ABORT_TEST` is set); they reach their
//! backend through `create_communicator(BackendKind::Auto)` and the launcher's environment,
//! as a program written for 0.18 does under `cobre-comm launch`.
#![cfg(any(feature = "shm", feature = "tcp"))]

use std::time::{Duration, Instant};

use cobre_comm::{BackendKind, Communicator, ReduceOp, TopologyProvider, create_communicator};

const CASE: &str = "COBRE_ABORT_TEST";
const CODE: i32 = 7;
/// How long the busy rank would compute if nothing stopped it.
const BUSY: Duration = Duration::from_secs(30);

/// The rank's side; does nothing in a normal test run.
///
/// Rank 1 aborts after a barrier; rank 0 waits in an allreduce that can never complete;
/// the other ranks compute without calling the communicator.
#[test]
fn child_rank() {
    if std::env::var(CASE).is_err() {
        return;
    }
    let comm = create_communicator(BackendKind::Auto).expect("communicator from the environment");
    let topology = comm.topology();
    assert_eq!(topology.world_size, comm.size());
    assert_eq!(
        topology.backend,
        BackendKind::Auto,
        "shm and tcp report Auto"
    );
    let ranks: Vec<usize> = topology
        .hosts
        .iter()
        .flat_map(|h| h.ranks.clone())
        .collect();
    assert_eq!(ranks, (0..comm.size()).collect::<Vec<_>>(), "{topology:?}");
    comm.barrier().expect("barrier");
    match comm.rank() {
        1 => {
            println!("aborting");
            comm.abort(CODE);
        }
        0 => {
            let mut out = [0.0_f64];
            let result = comm.allreduce(&[1.0], &mut out, ReduceOp::Sum);
            // Rank 1 never joins: only the abort may end this wait.
            println!("allreduce returned {result:?}");
        }
        _ => {
            let start = Instant::now();
            let mut x = 1_u64;
            while start.elapsed() < BUSY {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
            println!("computed for {BUSY:?} without being stopped ({x})");
        }
    }
}

/// Starts `ranks` ranks with `env` and returns each rank's exit code and the time from the
/// start to the last exit (every rank is stopped after a minute).
fn run_job(env: Vec<Vec<(String, String)>>) -> (Vec<Option<i32>>, Duration) {
    let start = Instant::now();
    let report = cobre_comm_launcher::Launcher::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_rank", "--nocapture", "--test-threads=1"])
        .ranks(env.len())
        .env(CASE, "1")
        .rank_env(env)
        .capture_stdout(true)
        .stop_on_failure(false)
        .spawn()
        .expect("spawn the ranks")
        .finish(Duration::from_secs(60));
    let codes = report
        .ranks
        .iter()
        .map(|r| match r.outcome {
            cobre_comm_launcher::Outcome::Exited(code) => Some(code),
            _ => None,
        })
        .collect();
    let last = report
        .ranks
        .iter()
        .filter_map(|r| r.ended_at)
        .max()
        .unwrap_or_else(Instant::now);
    (codes, last - start)
}

fn check(backend: &str, env: Vec<Vec<(String, String)>>) {
    let ranks = env.len();
    let (codes, elapsed) = run_job(env);
    assert_eq!(
        codes,
        vec![Some(CODE); ranks],
        "{backend}: every rank must exit with the abort code {CODE}"
    );
    // The busy rank would compute for 30 s: it was ended by the abort, not by finishing.
    assert!(
        elapsed < Duration::from_secs(10),
        "{backend}: the job took {elapsed:?}, expected the abort to end every rank promptly"
    );
}

#[cfg(feature = "shm")]
#[test]
fn shm_abort_ends_every_rank_with_its_code() {
    check(
        "shm",
        cobre_comm_launcher::shm_env(4, Some(Duration::from_secs(20))),
    );
}

#[cfg(feature = "tcp")]
#[test]
fn tcp_abort_ends_every_rank_with_its_code() {
    let env = cobre_comm_launcher::tcp_env(4, Some(Duration::from_secs(20))).unwrap();
    check("tcp", env);
}

/// A tcp rank connects only to its neighbours (distance 1, 2, 4, ... round the ring): in
/// a job of 8, rank 1 has no connection to ranks 4 and 6, which compute. The abort must
/// still reach them, passed on by the ranks it reached, and no rank may take a rank that
/// exits with the code for a dead one.
#[cfg(feature = "tcp")]
#[test]
fn tcp_abort_reaches_the_ranks_the_aborting_rank_is_not_connected_to() {
    let env = cobre_comm_launcher::tcp_env(8, Some(Duration::from_secs(20))).unwrap();
    check("tcp", env);
}

/// Under the launcher (what `cobre-comm launch` runs), the job's exit code is the abort's.
#[cfg(feature = "shm")]
#[test]
fn launcher_exits_with_the_abort_code() {
    let exe = std::env::current_exe().unwrap();
    let report = cobre_comm_launcher::Launcher::new(exe)
        .args(["--exact", "child_rank", "--nocapture", "--test-threads=1"])
        .ranks(3)
        .env(CASE, "1")
        .rank_env(cobre_comm_launcher::shm_env(
            3,
            Some(Duration::from_secs(20)),
        ))
        .timeout(Duration::from_secs(60))
        .run()
        .expect("launch");
    assert_eq!(report.exit_code(), CODE, "{:?}", report.failure);
}
