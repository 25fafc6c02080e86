//! The shm backend on real processes: this test binary re-executes itself as the ranks
//! (`child_rank` does the rank's work when `COBRE_SHM_TEST_CASE` is set).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cobre_comm::{
    Backend, BackendError, CommError, Communicator, ReduceOp, ShmBackend, ShmConfig,
    create_communicator_with,
};
use cobre_comm_conformance::{options_for, run_suite};

const CASE: &str = "COBRE_SHM_TEST_CASE";
const VICTIM: &str = "COBRE_SHM_TEST_VICTIM";

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
        "kill" => {
            let comm = ShmBackend::from_env().expect("shm communicator");
            let victim: usize = std::env::var(VICTIM).unwrap().parse().unwrap();
            let mut out = [0.0_f64; 64];
            for i in 0.. {
                if comm.rank() == victim && i == 200 {
                    println!("dying at {}", now_ns());
                    let me = rustix::process::getpid();
                    let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
                }
                if let Err(e) = comm.allreduce(&[f64::from(i); 64], &mut out, ReduceOp::Sum) {
                    println!("error at {}: {e}", now_ns());
                    // The communicator stays broken: the next call fails fast, the same way.
                    assert_eq!(comm.barrier(), Err(e));
                    return;
                }
            }
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
        other => panic!("unknown case {other}"),
    }
}

struct Job {
    name: String,
    children: Vec<Child>,
}

fn start(case: &str, ranks: usize, timeout_secs: &str, extra: &[(&str, String)]) -> Job {
    let name = format!(
        "/cobre-test-{}-{}",
        std::process::id(),
        cobre_comm_launcher::unique_token()
    );
    let exe = std::env::current_exe().unwrap();
    let children = (0..ranks)
        .map(|rank| {
            let mut command = Command::new(&exe);
            command
                .args([
                    "--exact",
                    "child_rank",
                    "--nocapture",
                    "--test-threads=1",
                    "--quiet",
                ])
                .env(CASE, case)
                .env("COBRE_COMM_BACKEND", "shm")
                .env("COBRE_SHM_NAME", &name)
                .env("COBRE_SHM_RANK", rank.to_string())
                .env("COBRE_SHM_SIZE", ranks.to_string())
                .env("COBRE_SHM_TIMEOUT_SECS", timeout_secs)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in extra {
                command.env(k, v);
            }
            command.spawn().unwrap()
        })
        .collect();
    Job { name, children }
}

impl Job {
    /// Waits for every rank (at most `limit`, then kills them all); returns each rank's
    /// success and stdout.
    fn finish(mut self, limit: Duration) -> Vec<(bool, String)> {
        let deadline = Instant::now() + limit;
        let mut results = Vec::new();
        for child in &mut self.children {
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10)); // polling a child process
            };
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            results.push((status.is_some_and(|s| s.success()), format!("{out}{err}")));
        }
        assert!(
            leftovers(&self.name).is_empty(),
            "left in /dev/shm: {:?}",
            leftovers(&self.name)
        );
        results
    }
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
        let results = start("suite", ranks, "60", &[]).finish(Duration::from_secs(120));
        for (rank, (ok, out)) in results.iter().enumerate() {
            assert!(ok, "{ranks} ranks, rank {rank} failed:\n{out}");
            assert!(out.contains("suite ok"), "{out}");
        }
    }
}

#[test]
fn kill_minus_9_is_reported_by_every_survivor_within_2_s() {
    for (ranks, victim) in [(2, 1), (4, 2), (3, 0)] {
        let results = start("kill", ranks, "30", &[(VICTIM, victim.to_string())])
            .finish(Duration::from_secs(30));
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

#[test]
fn ranks_calling_different_collectives_all_get_a_mismatch() {
    let results = start("mismatch", 2, "20", &[]).finish(Duration::from_secs(30));
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
fn a_bad_call_on_one_rank_does_not_leave_the_other_waiting() {
    let results = start("bad-call", 2, "20", &[]).finish(Duration::from_secs(30));
    for (ok, out) in &results {
        assert!(ok, "{out}");
        assert!(out.contains("CollectiveMismatch"), "{out}");
    }
}

#[test]
fn a_silent_peer_is_reported_at_the_timeout() {
    let results = start("silent", 2, "1", &[]).finish(Duration::from_secs(5));
    let (ok, out) = &results[0];
    assert!(ok, "{out}");
    assert!(
        out.contains("Timeout") && out.contains("rank(s) 1"),
        "{out}"
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

#[test]
fn stale_and_foreign_segments_are_clear_errors() {
    let name = format!("/cobre-test-stale-{}", std::process::id());
    std::fs::write(format!("/dev/shm{name}"), vec![0xAB_u8; 8192]).unwrap();
    let err = ShmBackend::new(&ShmConfig::new(&name, 0, 1)).unwrap_err();
    assert!(matches!(err, BackendError::InitializationFailed { .. }));
    assert!(err.to_string().contains("already exists"), "{err}");
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
