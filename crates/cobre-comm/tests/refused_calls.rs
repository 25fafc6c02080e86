//! A call that fails its preconditions on one rank fails on every rank, and never pairs
//! with another call: on `shm` and `tcp`, with real processes (this test binary re-executes
//! itself as the ranks through the launcher).
//!
//! The scenario is the careless caller: one rank passes a wrong argument, gets an error,
//! ignores it and goes on with a valid call. Its peers must not take that next call for
//! the one it refused.

use std::time::Duration;

use cobre_comm::{BackendKind, CommError, Communicator, ReduceOp, create_communicator};
use cobre_comm_launcher::{Launcher, shm_env, tcp_env};

const CASE: &str = "COBRE_REFUSED_TEST_CASE";
const CULPRIT: &str = "COBRE_REFUSED_TEST_CULPRIT";

/// Makes `op` on this rank, with a wrong argument when `bad`.
fn call<C: Communicator>(comm: &C, op: &str, bad: bool) -> Result<Vec<f64>, CommError> {
    let (rank, size) = (comm.rank(), comm.size());
    let mine = 1.0 + rank as f64;
    match op {
        "allreduce" => {
            let mut out = vec![0.0; if bad { 1 } else { 2 }];
            comm.allreduce(&[mine, mine], &mut out, ReduceOp::Sum)?;
            Ok(out)
        }
        "allgatherv" => {
            let counts = vec![1; size];
            let displs: Vec<usize> = (0..size).collect();
            let mut out = vec![0.0; size];
            let send = if bad { vec![mine; 2] } else { vec![mine] };
            comm.allgatherv(&send, &mut out, &counts, &displs)?;
            Ok(out)
        }
        "broadcast" => {
            let mut buf = vec![mine; 3];
            comm.broadcast(&mut buf, if bad { size } else { 0 })?;
            Ok(buf)
        }
        other => panic!("unknown collective {other}"),
    }
}

/// The rank's side; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    let comm = create_communicator(BackendKind::Auto).expect("communicator");
    let culprit: usize = std::env::var(CULPRIT).unwrap().parse().unwrap();
    let me = comm.rank();
    match case.as_str() {
        // One rank refuses `op` and goes on with a valid `op`; the others make `op` once.
        "one" | "one-allgatherv" | "one-broadcast" => {
            let op = case.strip_prefix("one-").unwrap_or("allreduce");
            if me == culprit {
                let refused = call(&comm, op, true);
                println!("refused: {refused:?}");
                println!("next: {:?}", call(&comm, op, false));
            } else {
                println!("call: {:?}", call(&comm, op, false));
            }
            println!("then: {:?}", comm.barrier());
        }
        // Every rank refuses the call, each for its own reason: the communicator goes on.
        "all" => {
            let op = if me.is_multiple_of(2) {
                "broadcast"
            } else {
                "allreduce"
            };
            println!("refused: {:?}", call(&comm, op, true));
            println!("next: {:?}", call(&comm, "allgatherv", false));
        }
        other => panic!("unknown case {other}"),
    }
}

fn run(backend: &str, case: &str, ranks: usize, culprit: usize) -> Vec<String> {
    let timeout = Some(Duration::from_secs(20));
    let env = if backend == "shm" {
        shm_env(ranks, timeout)
    } else {
        tcp_env(ranks, timeout).expect("a free port")
    };
    let report = Launcher::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .ranks(ranks)
        .rank_env(env)
        .env(CASE, case)
        .env(CULPRIT, culprit.to_string())
        .capture_stdout(true)
        .timeout(Duration::from_secs(60))
        .run()
        .expect("launch");
    assert!(
        report.success(),
        "{backend} {case} on {ranks} ranks: {:?}",
        report.failure
    );
    report.ranks.into_iter().map(|r| r.stdout).collect()
}

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    // The test harness may print its own words before ours on the same line.
    out.lines()
        .find_map(|l| l.find(key).map(|at| &l[at + key.len()..]))
        .unwrap_or_else(|| panic!("no line {key:?} in {out}"))
}

#[test]
fn a_call_refused_on_one_rank_fails_on_every_rank_and_is_never_paired_with_the_next() {
    for backend in ["shm", "tcp"] {
        for (case, ranks, culprit) in [
            ("one", 2, 1),
            ("one", 3, 0),
            ("one-allgatherv", 3, 2),
            ("one-broadcast", 4, 1),
            ("one", 4, 3),
            // On tcp, ranks 1 and 7 are not connected to rank 4: they hear of the
            // refusal from the ranks that are.
            ("one", 9, 4),
        ] {
            let outputs = run(backend, case, ranks, culprit);
            let what = format!("{backend} {case} on {ranks} ranks, culprit {culprit}");
            for (rank, out) in outputs.iter().enumerate() {
                if rank == culprit {
                    let refused = line(out, "refused: ");
                    assert!(
                        refused.starts_with("Err(InvalidBufferSize")
                            || refused.starts_with("Err(InvalidRoot"),
                        "{what}: the culprit's own error: {refused}"
                    );
                    let next = line(out, "next: ");
                    assert!(
                        next.starts_with("Err(CollectiveMismatch") && next.contains("refused"),
                        "{what}: the culprit's next call must fail: {next}"
                    );
                } else {
                    let got = line(out, "call: ");
                    let failed = got.starts_with("Err(CollectiveMismatch")
                        && got.contains(&format!("rank {culprit} refused"));
                    // A broadcast rank that hears only from the root may complete with the
                    // root's data of this very call; nothing else is acceptable.
                    let roots_data = case == "one-broadcast" && got == "Ok([1.0, 1.0, 1.0])";
                    assert!(
                        failed || roots_data,
                        "{what}: rank {rank} must fail naming rank {culprit}: {got}"
                    );
                }
                let then = line(out, "then: ");
                assert!(
                    then.starts_with("Err("),
                    "{what}: rank {rank}'s communicator must stay broken: {then}"
                );
            }
        }
    }
}

#[test]
fn a_call_every_rank_refuses_leaves_the_communicator_working() {
    for backend in ["shm", "tcp"] {
        for ranks in [1, 2, 3, 4, 9] {
            let outputs = run(backend, "all", ranks, usize::MAX);
            let expected: Vec<f64> = (1..=ranks).map(|r| r as f64).collect();
            for (rank, out) in outputs.iter().enumerate() {
                let refused = line(out, "refused: ");
                assert!(
                    refused.starts_with("Err(InvalidRoot")
                        || refused.starts_with("Err(InvalidBufferSize"),
                    "{backend} on {ranks}: rank {rank}: {refused}"
                );
                assert_eq!(
                    line(out, "next: "),
                    format!("Ok({expected:?})"),
                    "{backend} on {ranks}: rank {rank}"
                );
            }
        }
    }
}
