//! The shm backend on real processes: this test binary re-executes itself as the ranks
//! (`child_rank` does the rank's work when `COBRE_SHM_TEST_CASE` is set).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cobre_comm::algorithm::Forced;
use cobre_comm::{
    Backend, BackendError, CommError, Communicator, ReduceOp, SharedMemoryProvider, ShmBackend,
    ShmConfig, create_communicator_with,
};
use cobre_comm_conformance::{options_for, run_suite};
use cobre_comm_launcher::{Launcher, Outcome, RunningJob, Signal, shm_env};

const CASE: &str = "COBRE_SHM_TEST_CASE";
const VICTIM: &str = "COBRE_SHM_TEST_VICTIM";
/// Set: the `kill` case runs single-copy allgathervs and broadcasts instead of allreduces.
const SINGLE_COPY: &str = "COBRE_SHM_TEST_SINGLE_COPY";

/// The `kill` case: collectives in a loop until the victim kills itself with SIGKILL on
/// its 200th call; the survivors print the error and check that it sticks.
fn kill_case() {
    let comm = ShmBackend::from_env().expect("shm communicator");
    let victim: usize = std::env::var(VICTIM).unwrap().parse().unwrap();
    let single_copy = std::env::var_os(SINGLE_COPY).is_some();
    let n = comm.size();
    // Single-copy sizes: 256 KiB from each rank, a 1 MiB broadcast.
    let part = vec![1.0_f64; 1 << 15];
    let mut gathered = vec![0.0_f64; n << 15];
    let counts = vec![1 << 15; n];
    let displs: Vec<usize> = (0..n).map(|r| r << 15).collect();
    let mut broadcast = vec![0.0_f64; 1 << 17];
    let mut out = [0.0_f64; 64];
    for i in 0.. {
        if comm.rank() == victim && i == 200 {
            println!("dying at {}", now_ns());
            let me = rustix::process::getpid();
            let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        }
        let call = if single_copy && i % 2 == 0 {
            comm.allgatherv(&part, &mut gathered, &counts, &displs)
        } else if single_copy {
            comm.broadcast(&mut broadcast, usize::try_from(i).unwrap_or(0) % n)
        } else {
            comm.allreduce(&[f64::from(i); 64], &mut out, ReduceOp::Sum)
        };
        if let Err(e) = call {
            println!("error at {}: {e}", now_ns());
            // The communicator stays broken: the next call fails fast, the same way.
            assert_eq!(comm.barrier(), Err(e));
            return;
        }
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The rank's side of every case; does nothing in a normal test run.
#[test]
fn child_rank() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    match case.as_str() {
        "suite" => {
            let comm = create_communicator_with(Backend::Shm).expect("shm communicator");
            let report = run_suite(&comm, &options_for(Backend::Shm));
            assert!(
                report.passed(),
                "rank {}: {:#?}",
                report.rank,
                report.failures()
            );
            println!("suite ok");
        }
        "kill" => kill_case(),
        "algorithm-mismatch" => {
            // Rank 0 forces one allreduce algorithm, the others another.
            let mut config = ShmConfig::from_env().expect("shm configuration");
            let name = if config.rank == 0 {
                "direct"
            } else {
                "reduce-scatter-allgather"
            };
            config.algorithms =
                Forced::parse(&format!("allreduce={name}"), cobre_comm::shm::ALGORITHMS)
                    .expect("a known algorithm");
            let comm = ShmBackend::new(&config).expect("shm communicator");
            let mut out = vec![0.0_f64; 1 << 16];
            let result = comm.allreduce(&vec![1.0; 1 << 16], &mut out, ReduceOp::Sum);
            println!("result: {result:?}");
        }
        "mismatch" => {
            let comm = ShmBackend::from_env().expect("shm communicator");
            let mut buf = [1.0_f64; 4];
            let result = if comm.rank() == 0 {
                comm.allreduce(&[1.0; 4], &mut buf, ReduceOp::Sum)
            } else {
                comm.broadcast(&mut buf, 0)
            };
            println!("result: {result:?}");
        }
        "bad-call" => {
            let comm = ShmBackend::from_env().expect("shm communicator");
            let mut out = [0.0_f64; 4];
            if comm.rank() == 1 {
                let local = comm.allreduce(&[1.0; 3], &mut out, ReduceOp::Sum);
                assert!(
                    matches!(local, Err(CommError::InvalidBufferSize { .. })),
                    "{local:?}"
                );
                println!("result: {:?}", comm.barrier());
            } else {
                println!(
                    "result: {:?}",
                    comm.allreduce(&[1.0; 4], &mut out, ReduceOp::Sum)
                );
            }
        }
        "silent" => {
            let comm = ShmBackend::from_env().expect("shm communicator");
            if comm.rank() == 1 {
                // Stopped, and silent even before the stop takes effect.
                let me = rustix::process::getpid();
                let _ = rustix::process::kill_process(me, rustix::process::Signal::STOP);
                loop {
                    std::thread::park();
                }
            }
            let start = Instant::now();
            let result = comm.barrier();
            println!(
                "result after {:.2} s: {result:?}",
                start.elapsed().as_secs_f64()
            );
        }
        other => assert!(hardening_rank(other), "unknown case {other}"),
    }
}

/// The rank's side of the start-up, shared-region and corruption cases; `false` for a
/// case it does not know.
fn hardening_rank(case: &str) -> bool {
    match case {
        "startup" => match ShmBackend::from_env() {
            Err(e) => println!("error at {}: {e}", now_ns()),
            Ok(comm) => {
                let mut out = [0.0_f64];
                comm.allreduce(&[1.0], &mut out, ReduceOp::Sum)
                    .expect("allreduce");
                assert_eq!(out[0], comm.size() as f64);
                comm.barrier().expect("barrier");
                println!("collectives ok");
            }
        },
        "region-fail" => {
            let comm = ShmBackend::from_env().expect("shm communicator");
            // 1 PiB: more than any /dev/shm holds.
            let huge = comm.create_shared_region::<u8>(1 << 50).map(|_| ());
            println!("huge: {huge:?}");
            let mismatched = comm
                .create_shared_region::<f64>(1000 + comm.rank())
                .map(|_| ());
            println!("mismatched: {mismatched:?}");
        }
        "region-peer-dies" => {
            let comm = ShmBackend::from_env().expect("shm communicator");
            comm.barrier().expect("barrier");
            if comm.rank() == 1 {
                let me = rustix::process::getpid();
                let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
            }
            let result = comm.create_shared_region::<f64>(1 << 16).map(|_| ());
            println!("result: {result:?}");
        }
        "region-after-go" => {
            // Rank 1 waits for the test's go before allocating; rank 0 allocates at once.
            let comm = ShmBackend::from_env().expect("shm communicator");
            if comm.rank() == 1 {
                wait_for_go();
            }
            let result = comm.create_shared_region::<f64>(1 << 16).map(|_| ());
            println!("result: {result:?}");
        }
        "barrier-after-go" => {
            // The others wait in a barrier; rank 1 joins it after the test's go.
            let comm = ShmBackend::from_env().expect("shm communicator");
            println!("ready");
            if comm.rank() == 1 {
                wait_for_go();
            }
            match comm.barrier() {
                Ok(()) => println!("result: Ok(())"),
                Err(e) => println!("error at {}: {e:?}", now_ns()),
            }
        }
        _ => return false,
    }
    true
}

/// Blocks until the test writes a line to this rank's stdin.
fn wait_for_go() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

/// A job of `case` on `ranks` ranks of this test binary, none started yet (start them
/// with `start_rank`; each has a pipe as stdin), and its segment name.
fn job(
    case: &str,
    ranks: usize,
    timeout_secs: u64,
    extra: &[(&str, String)],
) -> (RunningJob, String) {
    let env = shm_env(ranks, Some(Duration::from_secs(timeout_secs)));
    let name = env[0]
        .iter()
        .find(|(k, _)| k == cobre_comm::shm::ENV_NAME)
        .map(|(_, v)| v.clone())
        .expect("the job's segment name");
    job_named(case, ranks, timeout_secs, extra, Some(&name), |_| vec![])
}

/// As [`job`], for the job whose segment is `name` (a new one when `None`; another job's
/// for ranks given other settings), each rank `r` also given `rank_extra(r)`.
fn job_named(
    case: &str,
    ranks: usize,
    timeout_secs: u64,
    extra: &[(&str, String)],
    name: Option<&str>,
    rank_extra: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> (RunningJob, String) {
    let timeout = Some(Duration::from_secs(timeout_secs));
    let name = name.map_or_else(
        || format!("/cobre-test-{}-{}", std::process::id(), now_ns()),
        str::to_string,
    );
    let env: Vec<Vec<(String, String)>> = (0..ranks)
        .map(|rank| {
            cobre_comm::shm::rank_env(&name, rank, ranks, timeout)
                .into_iter()
                .chain(rank_extra(rank))
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .collect();
    let mut launcher = Launcher::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_rank",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .ranks(ranks)
        .env(CASE, case)
        .rank_env(env)
        .piped_stdin(true)
        .capture_stdout(true)
        .capture_stderr(true)
        .stop_on_failure(false);
    for (k, v) in extra {
        launcher = launcher.env(*k, v.clone());
    }
    (launcher.prepare().unwrap(), name)
}

/// A job of `case` with every rank started, in rank order.
fn start(
    case: &str,
    ranks: usize,
    timeout_secs: u64,
    extra: &[(&str, String)],
) -> (RunningJob, String) {
    let (mut job, name) = job(case, ranks, timeout_secs, extra);
    for rank in 0..ranks {
        job.start_rank(rank).unwrap();
    }
    (job, name)
}

/// Waits for every started rank (at most `limit`, then stops them all); returns the
/// success and output (stdout, then stderr) of each rank that was started, and checks that nothing of the job is left
/// in /dev/shm.
fn finish(job: RunningJob, name: &str, limit: Duration) -> Vec<(bool, String)> {
    let report = job.finish(limit);
    assert!(
        leftovers(name).is_empty(),
        "left in /dev/shm: {:?}",
        leftovers(name)
    );
    report
        .ranks
        .iter()
        .filter(|r| r.outcome != Outcome::NotStarted)
        .map(|r| (r.outcome.is_success(), r.output()))
        .collect()
}

/// `kill -9` of `rank`; returns the time of the kill.
fn kill(job: &mut RunningJob, rank: usize) -> u128 {
    let at = now_ns();
    job.kill(rank, Signal::KILL).unwrap();
    at
}

fn leftovers(name: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| f.starts_with(&name[1..]))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn conformance_on_1_to_4_processes() {
    for ranks in 1..=4 {
        let (job, name) = start("suite", ranks, 60, &[]);
        suite_passed(job, &name, &format!("{ranks} ranks"));
    }
}

/// Waits for a job of the `suite` case and checks that every rank ran the whole suite
/// and passed.
fn suite_passed(job: RunningJob, name: &str, what: &str) {
    for (rank, (ok, out)) in finish(job, name, Duration::from_secs(120))
        .iter()
        .enumerate()
    {
        assert!(ok, "{what}, rank {rank} failed:\n{out}");
        assert!(out.contains("suite ok"), "{what}, rank {rank}:\n{out}");
    }
}

/// Forcing texts that together run every algorithm of the backend's table.
fn every_algorithm() -> Vec<String> {
    cobre_comm::algorithm::every_algorithm(cobre_comm::shm::ALGORITHMS)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn conformance_on_every_algorithm_on_1_to_4_processes() {
    let specs = every_algorithm();
    assert!(specs.len() >= 2, "{specs:?}");
    for spec in specs {
        for ranks in 1..=4 {
            let extra = [(cobre_comm::shm::ENV_ALGORITHMS, spec.clone())];
            let (job, name) = start("suite", ranks, 60, &extra);
            suite_passed(job, &name, &format!("{spec}, {ranks} ranks"));
        }
    }
}

/// `COBRE_SHM_SIGNALLING` forcing `signalling`.
fn signalling(signalling: cobre_comm::shm::Signalling) -> (&'static str, String) {
    (cobre_comm::shm::ENV_SIGNALLING, signalling.to_string())
}

#[test]
fn conformance_with_dissemination_signalling_on_every_algorithm_on_1_to_5_processes() {
    // 1 to 4 ranks would use flat signalling unless forced; 5 takes three rounds, the last
    // one past the job's end (distance 4 of 5).
    let dissemination = signalling(cobre_comm::shm::Signalling::Dissemination);
    for spec in every_algorithm() {
        for ranks in 1..=5 {
            let extra = [
                (cobre_comm::shm::ENV_ALGORITHMS, spec.clone()),
                dissemination.clone(),
            ];
            let (job, name) = start("suite", ranks, 60, &extra);
            suite_passed(job, &name, &format!("{spec}, {ranks} ranks"));
        }
    }
}

#[test]
fn the_other_ranks_follow_the_signalling_of_rank_0() {
    // Only rank 0 is told; on 5 ranks the others would use flat signalling by themselves
    // (5 is at most `FLAT_MAX_RANKS`).
    // A rank that did not follow would never pass on the dissemination rounds rank 0
    // waits for: rank 0 would time out.
    const { assert!(5 <= cobre_comm::shm::FLAT_MAX_RANKS) };
    let told = signalling(cobre_comm::shm::Signalling::Dissemination);
    let (mut job, name) = job_named("suite", 5, 20, &[], None, |rank| {
        if rank == 0 {
            vec![told.clone()]
        } else {
            vec![]
        }
    });
    for rank in 0..5 {
        job.start_rank(rank).unwrap();
    }
    suite_passed(job, &name, "5 ranks, only rank 0 told");
}

#[test]
fn ranks_given_different_signalling_are_refused_at_start_up() {
    // Rank 0 creates the job with flat signalling; rank 1 was given dissemination.
    let (mut job, name) = job("startup", 2, 2, &[]);
    job.start_rank(0).unwrap();
    wait_for_segment(&name);
    let (mut other, _) = job_named(
        "startup",
        2,
        2,
        &[signalling(cobre_comm::shm::Signalling::Dissemination)],
        Some(&name),
        |_| vec![],
    );
    other.start_rank(1).unwrap();
    let refused = other.finish(Duration::from_secs(20));
    let out = refused.ranks[1].output();
    assert!(
        out.contains("its job uses flat signalling, this rank was given dissemination signalling (COBRE_SHM_SIGNALLING): every rank must use the same"),
        "{out}"
    );
    let results = finish(job, &name, Duration::from_secs(20));
    let (ok, out) = &results[0];
    assert!(ok, "{out}");
    assert!(out.contains("rank(s) 1 did not join"), "{out}");
}

#[test]
fn ranks_forcing_different_algorithms_get_a_mismatch_naming_both() {
    let (job, name) = start("algorithm-mismatch", 3, 20, &[]);
    for (rank, (ok, out)) in finish(job, &name, Duration::from_secs(30))
        .iter()
        .enumerate()
    {
        assert!(ok, "{out}");
        assert!(out.contains("CollectiveMismatch"), "rank {rank}: {out}");
        assert!(
            out.contains("different algorithms: direct here, reduce-scatter-allgather there")
                || out
                    .contains("different algorithms: reduce-scatter-allgather here, direct there"),
            "rank {rank}: {out}"
        );
    }
}

#[test]
fn an_unknown_algorithm_is_a_configuration_error() {
    let (job, name) = start(
        "suite",
        1,
        20,
        &[(cobre_comm::shm::ENV_ALGORITHMS, "allreduce=ring".into())],
    );
    let results = finish(job, &name, Duration::from_secs(30));
    let (ok, out) = &results[0];
    assert!(!ok);
    assert!(
        out.contains("COBRE_SHM_ALGORITHMS")
            && out.contains(
                "one of direct, reduce-scatter-allgather, single-copy for allreduce (`ring` is not one)"
            ),
        "{out}"
    );
}

#[test]
fn kill_minus_9_is_reported_by_every_survivor_within_2_s() {
    kill_minus_9_is_reported(&[]);
}

#[test]
fn kill_minus_9_is_reported_within_2_s_with_dissemination_signalling() {
    kill_minus_9_is_reported(&[signalling(cobre_comm::shm::Signalling::Dissemination)]);
}

#[test]
fn kill_minus_9_during_single_copy_collectives_is_reported_within_2_s() {
    kill_minus_9_is_reported(&[
        (SINGLE_COPY, "1".into()),
        (
            cobre_comm::shm::ENV_ALGORITHMS,
            "allgatherv=single-copy,broadcast=single-copy".into(),
        ),
    ]);
}

fn kill_minus_9_is_reported(extra: &[(&str, String)]) {
    for (ranks, victim) in [(2, 1), (4, 2), (3, 0), (5, 3)] {
        let results = {
            let mut extra = extra.to_vec();
            extra.push((VICTIM, victim.to_string()));
            let (job, name) = start("kill", ranks, 30, &extra);
            finish(job, &name, Duration::from_secs(30))
        };
        let died: u128 = results[victim]
            .1
            .lines()
            .find_map(|l| l.strip_prefix("dying at ")?.parse().ok())
            .unwrap_or_else(|| panic!("the victim did not report: {}", results[victim].1));
        for (rank, (ok, out)) in results.iter().enumerate().filter(|(r, _)| *r != victim) {
            assert!(ok, "survivor {rank}: {out}");
            let line = out
                .lines()
                .find(|l| l.starts_with("error at "))
                .unwrap_or_else(|| panic!("survivor {rank}: {out}"));
            let at: u128 = line["error at ".len()..]
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let delay = Duration::from_nanos((at.saturating_sub(died)) as u64);
            assert!(
                delay < Duration::from_secs(2),
                "survivor {rank} took {delay:?}: {line}"
            );
            assert!(line.contains(&format!("lost rank {victim}")), "{line}");
        }
    }
}

/// Flat signalling on 2 ranks (the default), and dissemination on 3.
fn both_signallings() -> [(usize, Vec<(&'static str, String)>); 2] {
    [
        (2, vec![]),
        (
            3,
            vec![signalling(cobre_comm::shm::Signalling::Dissemination)],
        ),
    ]
}

#[test]
fn ranks_calling_different_collectives_all_get_a_mismatch() {
    for (ranks, extra) in both_signallings() {
        ranks_calling_different_collectives_get_a_mismatch(ranks, &extra);
    }
}

fn ranks_calling_different_collectives_get_a_mismatch(ranks: usize, extra: &[(&str, String)]) {
    let results = {
        let (job, name) = start("mismatch", ranks, 20, extra);
        finish(job, &name, Duration::from_secs(30))
    };
    assert_eq!(results.len(), ranks);
    for (rank, (ok, out)) in results.iter().enumerate() {
        assert!(ok, "{out}");
        assert!(out.contains("CollectiveMismatch"), "rank {rank}: {out}");
        assert!(
            out.contains("rank 0 called allreduce") || out.contains("rank 1 called broadcast"),
            "{out}"
        );
        assert!(out.contains("different collectives"), "{out}");
    }
}

#[test]
fn a_bad_call_on_one_rank_does_not_leave_the_others_waiting() {
    for (ranks, extra) in both_signallings() {
        let results = {
            let (job, name) = start("bad-call", ranks, 20, &extra);
            finish(job, &name, Duration::from_secs(30))
        };
        assert_eq!(results.len(), ranks);
        for (ok, out) in &results {
            assert!(ok, "{ranks} ranks: {out}");
            assert!(out.contains("CollectiveMismatch"), "{ranks} ranks: {out}");
        }
    }
}

#[test]
fn a_silent_peer_is_reported_at_the_timeout() {
    for (ranks, extra) in both_signallings() {
        let results = {
            let (job, name) = start("silent", ranks, 1, &extra);
            finish(job, &name, Duration::from_secs(5))
        };
        // Rank 1 is stopped; with dissemination on 3 ranks rank 2 waits for it in the
        // first round and rank 0 in the second: both name it.
        for (rank, (ok, out)) in results.iter().enumerate().filter(|(r, _)| *r != 1) {
            assert!(ok, "{ranks} ranks, rank {rank}: {out}");
            assert!(
                out.contains("Timeout") && out.contains("waited for rank(s) 1, which"),
                "{ranks} ranks, rank {rank}: {out}"
            );
            let secs: f64 = out
                .split("result after ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!((0.9..5.0).contains(&secs), "reported after {secs} s");
        }
    }
}

#[test]
fn stale_and_foreign_segments_are_clear_errors() {
    let name = format!("/cobre-test-stale-{}", std::process::id());
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        // Ours by owner and mode, but not made by cobre-comm.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(format!("/dev/shm{name}"))
            .unwrap();
        file.write_all(&[0xAB_u8; 8192]).unwrap();
    }
    let err = ShmBackend::new(&ShmConfig::new(&name, 0, 1)).unwrap_err();
    assert!(matches!(err, BackendError::InitializationFailed { .. }));
    assert!(
        err.to_string()
            .contains("already exists (yours, mode 0600)"),
        "{err}"
    );
    let mut config = ShmConfig::new(&name, 1, 2);
    config.timeout = Duration::from_secs(2);
    let err = ShmBackend::new(&config).unwrap_err().to_string();
    assert!(err.contains("was not made by cobre-comm"), "{err}");
    std::fs::remove_file(format!("/dev/shm{name}")).unwrap();
}

#[test]
fn a_missing_rank_0_is_reported_at_the_timeout() {
    let mut config = ShmConfig::new(format!("/cobre-test-absent-{}", std::process::id()), 1, 2);
    config.timeout = Duration::from_millis(300);
    let err = ShmBackend::new(&config).unwrap_err().to_string();
    assert!(err.contains("rank 0 did not create segment"), "{err}");
}

// Where things are in a job's segment (mirrors the library's `shm/layout.rs`).
const MAGIC: u64 = 0x636F_6272_6563_6F6D;
const H_VERSION: u64 = 8;
const H_SIZE: u64 = 12;
const H_CHUNK: u64 = 16;
const H_LEN: u64 = 24;
const H_ATTACHED: u64 = 32;
const H_FAILED: u64 = 36;
const H_CREATOR: u64 = 48;

fn pid_word(rank: usize) -> u64 {
    4096 + 128 * rank as u64 + 64
}

fn shm_path(name: &str) -> String {
    format!("/dev/shm{name}")
}

fn read_u64(path: &str, offset: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt as _;
    let mut bytes = [0_u8; 8];
    let file = std::fs::File::open(path).ok()?;
    file.read_exact_at(&mut bytes, offset).ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn write_at(path: &str, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

/// Polls `done` until it holds, at most `limit` (another process is writing a file).
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until rank 0 of the job `name` has created and initialised its segment.
fn wait_for_segment(name: &str) {
    let path = shm_path(name);
    wait_until(
        Duration::from_secs(20),
        &format!("{path} is initialised"),
        || read_u64(&path, 0) == Some(MAGIC),
    );
}

/// Waits until every rank of `ranks` has claimed its line in the job's segment.
fn wait_for_claims(name: &str, ranks: &[usize]) {
    let path = shm_path(name);
    wait_until(
        Duration::from_secs(20),
        &format!("ranks {ranks:?} joined {path}"),
        || {
            ranks
                .iter()
                .all(|&r| read_u64(&path, pid_word(r)).is_some_and(|w| w as u32 != 0))
        },
    );
}

/// The time a rank printed `error at <ns>: ...`.
fn error_time(out: &str) -> u128 {
    out.lines()
        .find_map(|l| l.strip_prefix("error at ")?.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no error reported: {out}"))
}

fn am_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn a_segment_of_another_user_or_with_another_mode_is_refused() {
    // (what is done to rank 0's segment, what the refusal must say)
    let mut cases = vec![("mode 0644", "mode 0644")];
    if am_root() {
        cases.push(("owner 65534", "owned by uid 65534"));
    } else {
        println!("skipping the other-owner case: only root can give a segment to another user");
    }
    for (change, expected) in cases {
        let (mut job, name) = job("startup", 2, 2, &[]);
        job.start_rank(0).unwrap();
        wait_for_segment(&name);
        let path = shm_path(&name);
        let file = std::fs::File::open(&path).unwrap();
        if change == "mode 0644" {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o644))
                .unwrap();
        } else {
            std::os::unix::fs::fchown(&file, Some(65534), Some(65534)).unwrap();
        }
        let mut config = ShmConfig::new(&name, 1, 2);
        config.timeout = Duration::from_secs(2);
        let err = ShmBackend::new(&config)
            .map(|_| ())
            .expect_err("a segment that is not ours must be refused")
            .to_string();
        assert!(
            err.contains(&name) && err.contains(expected),
            "{change}: {err}"
        );
        assert!(
            err.contains("expected owner uid") && err.contains("mode 0600"),
            "{err}"
        );
        // Refused, it leaves the segment to its creator, which removes it at its timeout.
        assert!(
            std::path::Path::new(&path).exists(),
            "{change}: the refused rank removed it"
        );
        let results = finish(job, &name, Duration::from_secs(10));
        assert!(results[0].0, "{}", results[0].1);
        assert!(results[0].1.contains("error at"), "{}", results[0].1);
    }
}

#[test]
fn a_shared_region_segment_that_is_not_ours_is_refused() {
    let (mut job, name) = start("region-after-go", 2, 20, &[]);
    let region = format!("{name}.r0");
    // Rank 0 has created the region's segment (its size, a header page and the elements,
    // is set after its mode) and waits for rank 1.
    wait_until(
        Duration::from_secs(20),
        "the region segment is sized",
        || std::fs::metadata(shm_path(&region)).is_ok_and(|m| m.len() >= 8 << 16),
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(shm_path(&region), std::fs::Permissions::from_mode(0o666))
            .unwrap();
    }
    job.send_line(1, "go").unwrap();
    let results = finish(job, &name, Duration::from_secs(20));
    for (rank, (ok, out)) in results.iter().enumerate() {
        assert!(ok, "rank {rank}: {out}");
        assert!(out.contains("AllocationFailed"), "rank {rank}: {out}");
        assert!(
            out.contains("rank 1 could not map the region") && out.contains("mode 0666"),
            "rank {rank}: {out}"
        );
    }
}

#[test]
fn a_failed_create_shared_region_leaves_nothing_in_dev_shm() {
    let results = {
        let (job, name) = start("region-fail", 2, 20, &[]);
        finish(job, &name, Duration::from_secs(30))
    };
    for (rank, (ok, out)) in results.iter().enumerate() {
        assert!(ok, "rank {rank}: {out}");
        assert!(
            out.contains("huge: Err(AllocationFailed"),
            "rank {rank}: {out}"
        );
        assert!(
            out.contains("mismatched: Err(CollectiveMismatch"),
            "rank {rank}: {out}"
        );
    }
    // `finish` asserted that /dev/shm holds nothing of the job.
}

#[test]
fn a_peer_dying_during_create_shared_region_leaves_nothing_in_dev_shm() {
    let results = {
        let (job, name) = start("region-peer-dies", 2, 20, &[]);
        finish(job, &name, Duration::from_secs(30))
    };
    let (ok, out) = &results[0];
    assert!(ok, "{out}");
    assert!(
        out.contains("PeerLost") && out.contains("rank: 1,"),
        "{out}"
    );
}

#[test]
fn rank_0_dying_during_create_shared_region_leaves_nothing_in_dev_shm() {
    let (mut job, name) = start("region-after-go", 2, 20, &[]);
    let region = shm_path(&format!("{name}.r0"));
    wait_until(Duration::from_secs(20), "the region segment exists", || {
        std::path::Path::new(&region).exists()
    });
    kill(&mut job, 0);
    job.send_line(1, "go").unwrap();
    let results = finish(job, &name, Duration::from_secs(20));
    let (ok, out) = &results[1];
    assert!(ok, "{out}");
    assert!(
        out.contains("PeerLost") && out.contains("rank: 0,"),
        "{out}"
    );
}

#[test]
fn kill_minus_9_during_start_up_is_reported_and_leaves_nothing() {
    // 3 ranks, ranks 0 and 1 have joined and wait for rank 2; one of them is killed.
    for victim in [1, 0] {
        let (mut job, name) = job("startup", 3, 30, &[]);
        job.start_rank(0).unwrap();
        job.start_rank(1).unwrap();
        wait_for_claims(&name, &[0, 1]);
        let killed = kill(&mut job, victim);
        let results = finish(job, &name, Duration::from_secs(10));
        let survivor = 1 - victim;
        let (ok, out) = &results[survivor];
        assert!(ok, "{out}");
        assert!(out.contains(&format!("lost rank {victim}")), "{out}");
        let delay = Duration::from_nanos(error_time(out).saturating_sub(killed) as u64);
        assert!(
            delay < Duration::from_secs(2),
            "reported after {delay:?}: {out}"
        );
    }
}

#[test]
fn rank_0_killed_before_anyone_joined_leaves_nothing() {
    let (mut job, name) = job("startup", 2, 30, &[]);
    job.start_rank(0).unwrap();
    wait_for_segment(&name);
    kill(&mut job, 0);
    assert!(
        job.wait_rank(0, Instant::now() + Duration::from_secs(10))
            .is_some(),
        "rank 0 still runs after kill -9"
    );
    // Rank 1 finds the segment of a creator that is gone: refused, and removed.
    job.start_rank(1).unwrap();
    let results = finish(job, &name, Duration::from_secs(10));
    let (ok, out) = &results[1];
    assert!(ok, "{out}");
    assert!(
        out.contains("is stale") && out.contains("has been removed"),
        "{out}"
    );
}

#[test]
fn a_duplicate_rank_is_refused_and_leaves_the_job_alone() {
    let (mut job, name) = job("startup", 3, 30, &[]);
    job.start_rank(0).unwrap();
    job.start_rank(1).unwrap();
    wait_for_claims(&name, &[0, 1]);
    let mut config = ShmConfig::new(&name, 1, 3);
    config.timeout = Duration::from_secs(5);
    let err = ShmBackend::new(&config)
        .map(|_| ())
        .expect_err("a second rank 1 must be refused")
        .to_string();
    assert!(
        err.contains("rank 1 of segment") && err.contains("already taken"),
        "{err}"
    );
    assert!(
        std::path::Path::new(&shm_path(&name)).exists(),
        "the refused process removed the job's segment"
    );
    job.start_rank(2).unwrap();
    let results = finish(job, &name, Duration::from_secs(20));
    for (rank, (ok, out)) in results.iter().enumerate() {
        assert!(*ok && out.contains("collectives ok"), "rank {rank}: {out}");
    }
}

#[test]
fn a_corrupt_header_is_a_clear_error_for_a_joining_rank() {
    // (field, offset, bytes written, what the error says)
    let cases: [(&str, u64, Vec<u8>, &str); 6] = [
        (
            "version",
            H_VERSION,
            99_u32.to_le_bytes().to_vec(),
            "layout version 99",
        ),
        (
            "size",
            H_SIZE,
            u32::MAX.to_le_bytes().to_vec(),
            "job of 4294967295 ranks",
        ),
        (
            "chunk",
            H_CHUNK,
            u64::MAX.to_le_bytes().to_vec(),
            "chunk 18446744073709551615",
        ),
        (
            "length",
            H_LEN,
            u64::MAX.to_le_bytes().to_vec(),
            "length 18446744073709551615",
        ),
        (
            "attached",
            H_ATTACHED,
            u32::MAX.to_le_bytes().to_vec(),
            "ranks attached word holds 4294967295",
        ),
        (
            "creator",
            H_CREATOR,
            u32::MAX.to_le_bytes().to_vec(),
            "process id word holds 4294967295",
        ),
    ];
    let mut jobs = Vec::new();
    for (field, offset, bytes, _) in &cases {
        let (mut job, name) = job("startup", 2, 2, &[]);
        job.start_rank(0).unwrap();
        wait_for_segment(&name);
        write_at(&shm_path(&name), *offset, bytes);
        let mut config = ShmConfig::new(&name, 1, 2);
        config.timeout = Duration::from_secs(2);
        let err = std::panic::catch_unwind(|| ShmBackend::new(&config).map(|_| ()))
            .unwrap_or_else(|_| panic!("joining with a corrupt {field} panicked"))
            .expect_err("a corrupt header must be refused")
            .to_string();
        jobs.push((job, name, *field, err));
    }
    for ((job, name, field, err), (_, _, _, expected)) in jobs.into_iter().zip(&cases) {
        assert!(
            err.contains(&name) && err.contains(expected),
            "{field}: {err}"
        );
        let results = finish(job, &name, Duration::from_secs(10));
        assert!(results[0].0, "{field}: rank 0: {}", results[0].1);
    }
}

#[test]
fn a_header_corrupted_during_start_up_is_a_clear_error() {
    // Ranks 0 and 1 of 3 wait for rank 2 when a word they read is overwritten.
    let cases = [
        (H_FAILED, "failed-rank word holds 4294967295"),
        (pid_word(1), "rank 1's process id word holds 4294967295"),
    ];
    for (offset, expected) in cases {
        let (mut job, name) = job("startup", 3, 30, &[]);
        job.start_rank(0).unwrap();
        job.start_rank(1).unwrap();
        wait_for_claims(&name, &[0, 1]);
        write_at(&shm_path(&name), offset, &u32::MAX.to_le_bytes());
        let results = finish(job, &name, Duration::from_secs(10));
        for (rank, (ok, out)) in results.iter().enumerate() {
            assert!(ok, "rank {rank}: {out}");
            assert!(
                out.contains("error at") && out.contains(expected),
                "rank {rank}: {out}"
            );
        }
    }
}

/// The path through which the test reaches the segment of the job that rank `rank` of
/// `job` has mapped (its name is gone once every rank has joined).
fn mapped_segment(job: &RunningJob, rank: usize, name: &str) -> String {
    let pid = job.pid(rank).unwrap();
    let marker = format!("/dev/shm{name} (deleted)");
    let mapping = || {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let line = maps.lines().find(|l| l.ends_with(&marker))?;
        line.split_whitespace().next().map(str::to_string)
    };
    wait_until(
        Duration::from_secs(20),
        &format!("rank {rank} has mapped the segment"),
        || mapping().is_some(),
    );
    format!("/proc/{pid}/map_files/{}", mapping().unwrap())
}

/// The offset of rank `rank`'s arrival word (mirrors `L_ARRIVE` of `shm/layout.rs`).
fn arrive_word(rank: usize) -> u64 {
    4096 + 128 * rank as u64
}

#[test]
fn a_rank_dying_between_dissemination_rounds_is_reported_within_2_s() {
    if !am_root() {
        println!("skipping: writing into another process's mapping needs root");
        return;
    }
    // Ranks 0 and 2 enter a barrier; rank 1 waits for a go that never comes. The test
    // publishes rank 1's arrival for it, then kills it: every rank has arrived, but rank
    // 1 never passes on round 1, so only rank 0, which waits for exactly that, can
    // notice, by checking its partner's process (without that check it would wait for
    // the 30 s timeout).
    let extra = [signalling(cobre_comm::shm::Signalling::Dissemination)];
    let (mut job, name) = start("barrier-after-go", 3, 30, &extra);
    let deadline = Instant::now() + Duration::from_secs(20);
    for rank in 0..3 {
        job.read_until(rank, "ready", deadline);
    }
    let path = mapped_segment(&job, 0, &name);
    let before = read_u64(&path, arrive_word(1)).unwrap();
    wait_until(
        Duration::from_secs(20),
        "ranks 0 and 2 have arrived at the barrier",
        || {
            [0, 2]
                .iter()
                .all(|&r| read_u64(&path, arrive_word(r)) == Some(before + 1))
        },
    );
    // Rank 1's part as the others' (the same call, so the same fingerprint digest), then
    // its arrival word.
    let generation = before + 1;
    let digest = |rank: usize| arrive_word(rank) + 8 + (generation % 2) * 8;
    let theirs = read_u64(&path, digest(0)).unwrap();
    write_at(&path, digest(1), &theirs.to_le_bytes());
    write_at(&path, arrive_word(1), &generation.to_le_bytes());
    let died = kill(&mut job, 1);
    let results = finish(job, &name, Duration::from_secs(20));
    let (ok, out) = &results[0];
    assert!(ok, "{out}");
    assert!(
        out.contains("PeerLost") && out.contains("rank: 1,"),
        "{out}"
    );
    let delay = Duration::from_nanos(error_time(out).saturating_sub(died) as u64);
    assert!(delay < Duration::from_secs(2), "rank 0 took {delay:?}");
    // Rank 2 heard from everyone (rank 1 through rank 0) before rank 1 died: its barrier
    // may complete; if it does not, it reports the same loss.
    let (ok, out) = &results[2];
    assert!(ok, "{out}");
    assert!(
        out.contains("result: Ok(())") || (out.contains("PeerLost") && out.contains("rank: 1,")),
        "{out}"
    );
}

#[test]
fn a_live_segment_corrupted_while_a_rank_waits_is_a_clear_error() {
    if !am_root() {
        println!("skipping: writing into another process's mapping needs root");
        return;
    }
    let (mut job, name) = start("barrier-after-go", 2, 30, &[]);
    // Both ranks have started (the rank exits, ending the read, if it cannot).
    let deadline = Instant::now() + Duration::from_secs(20);
    job.read_until(0, "ready", deadline);
    job.read_until(1, "ready", deadline);
    // Rank 0 waits in a barrier for rank 1; the segment's name is gone, so it is reached
    // through rank 0's mapping of it.
    let path = mapped_segment(&job, 0, &name);
    write_at(&path, H_FAILED, &u32::MAX.to_le_bytes());
    let started = Instant::now();
    assert!(
        job.wait_rank(0, started + Duration::from_secs(5)).is_some(),
        "timed out waiting until rank 0 reports the corruption"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    job.send_line(1, "go").unwrap();
    let results = finish(job, &name, Duration::from_secs(20));
    let (ok, out) = &results[0];
    assert!(ok, "{out}");
    assert!(
        out.contains("Protocol") && out.contains("failed-rank word holds 4294967295"),
        "{out}"
    );
}
