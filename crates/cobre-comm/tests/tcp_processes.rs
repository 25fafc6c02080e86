//! The TCP backend on real processes over loopback: the conformance suite on 1 to 4 ranks,
//! hostile peers during the rendezvous, collective mismatches and `kill -9` of a rank.
//!
//! Each test re-runs this test binary as the ranks of a job (`child_rank` with
//! `TCP_TEST_ROLE` set), with a deadline after which every child is killed.
#![cfg(feature = "tcp")]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use cobre_comm::{CommError, Communicator, ReduceOp, TcpBackend};
use cobre_comm_conformance::{Options, run_suite};
use cobre_comm_launcher::{Launcher, Outcome, RankReport, RunningJob, Signal};

const ROLE: &str = "TCP_TEST_ROLE";

/// A free loopback port (the kernel picks it; we release it for rank 0 to bind).
/// A free port below the ephemeral range, so that no outgoing connection of a test
/// running in parallel can take it before rank 0 binds it.
fn free_port() -> u16 {
    cobre_comm_launcher::free_port().expect("a free port")
}

/// The environment of rank `rank` of a job of `size` ranks whose rank 0 listens on `port`,
/// with `extra` last (it wins).
fn rank_env(rank: usize, size: usize, port: u16, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("COBRE_TCP_RANK", rank.to_string()),
        ("COBRE_TCP_SIZE", size.to_string()),
        ("COBRE_TCP_COORDINATOR", "127.0.0.1".to_string()),
        ("COBRE_TCP_BIND", "127.0.0.1".to_string()),
        ("COBRE_TCP_PORT", port.to_string()),
        ("COBRE_TCP_TIMEOUT_SECS", "20".to_string()),
        ("COBRE_TCP_TOKEN", "test-token".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
    );
    vars
}

/// This test binary running `role` in every rank, each rank's output captured; a rank
/// that fails does not stop the others.
fn ranks_of(launcher: Launcher, role: &str) -> Launcher {
    launcher
        .args(["--exact", "child_rank", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .capture_stdout(true)
        .capture_stderr(true)
        .stop_on_failure(false)
}

/// Starts one process, rank `rank` of a job of `size` ranks, as a job of its own.
fn spawn(role: &str, rank: usize, size: usize, port: u16, extra: &[(&str, &str)]) -> RunningJob {
    spawn_in(None, role, rank, size, port, extra)
}

/// As [`spawn`], inside the network namespace `netns` when given.
fn spawn_in(
    netns: Option<&str>,
    role: &str,
    rank: usize,
    size: usize,
    port: u16,
    extra: &[(&str, &str)],
) -> RunningJob {
    let exe = std::env::current_exe().expect("test binary");
    let launcher = match netns {
        Some(ns) => Launcher::new("ip").args([
            std::ffi::OsStr::new("netns"),
            "exec".as_ref(),
            ns.as_ref(),
            exe.as_os_str(),
        ]),
        None => Launcher::new(exe),
    };
    ranks_of(launcher, role)
        .rank_env(vec![rank_env(rank, size, port, extra)])
        .spawn()
        .expect("spawn a rank")
}

/// The report on the one process of `job` once it has ended, or at `deadline` (then it is
/// stopped).
fn finish(job: RunningJob, deadline: Instant) -> RankReport {
    job.finish(deadline.saturating_duration_since(Instant::now()))
        .ranks
        .remove(0)
}

/// Whether a rank succeeded; `None` when it was still running at its deadline.
fn passed(rank: &RankReport) -> Option<bool> {
    match rank.outcome {
        Outcome::Stopped | Outcome::NotStarted => None,
        outcome => Some(outcome.is_success()),
    }
}

/// Starts `role` on ranks `0..size` of one job, rank 0 listening on a free port.
fn job_of(role: &str, size: usize, extra: &[(&str, &str)]) -> RunningJob {
    job_at(role, size, free_port(), extra)
}

/// Starts `role` on ranks `0..size` of one job, rank 0 listening on `port`.
fn job_at(role: &str, size: usize, port: u16, extra: &[(&str, &str)]) -> RunningJob {
    ranks_of(
        Launcher::new(std::env::current_exe().expect("test binary")),
        role,
    )
    .ranks(size)
    .rank_env((0..size).map(|r| rank_env(r, size, port, extra)).collect())
    .spawn()
    .expect("spawn the ranks")
}

/// Runs `role` on ranks `0..size` and expects every one to succeed within `limit`.
fn run_job(role: &str, size: usize, limit: Duration) -> Vec<RankReport> {
    run_job_with(role, size, &[], limit)
}

/// As [`run_job`], with `extra` variables for every rank.
fn run_job_with(
    role: &str,
    size: usize,
    extra: &[(&str, &str)],
    limit: Duration,
) -> Vec<RankReport> {
    let report = job_of(role, size, extra).finish(limit);
    for (r, rank) in report.ranks.iter().enumerate() {
        assert_eq!(
            passed(rank),
            Some(true),
            "rank {r} of {size} ({role}) failed or timed out:\n{}",
            rank.output()
        );
    }
    report.ranks
}

#[test]
fn conformance_on_1_to_4_processes() {
    for size in 1..=4 {
        let ranks = run_job("conformance", size, Duration::from_secs(120));
        for rank in &ranks {
            assert!(
                rank.output().contains("CONFORMANCE PASSED"),
                "{}",
                rank.output()
            );
        }
    }
}

/// Forcing texts that together run every algorithm of the backend's table.
fn every_algorithm() -> Vec<String> {
    cobre_comm::algorithm::every_algorithm(cobre_comm::tcp_config::ALGORITHMS)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn conformance_on_every_algorithm_on_1_to_4_processes() {
    let specs = every_algorithm();
    assert!(specs.len() >= 2, "{specs:?}");
    for spec in &specs {
        for size in 1..=4 {
            let extra = [(cobre_comm::tcp_config::ENV_ALGORITHMS, spec.as_str())];
            for rank in run_job_with("conformance", size, &extra, Duration::from_secs(120)) {
                assert!(
                    rank.output().contains("CONFORMANCE PASSED"),
                    "{spec}, {size} ranks:\n{}",
                    rank.output()
                );
            }
        }
    }
}

#[test]
fn conformance_on_8_processes_sharing_few_cores() {
    let ranks = run_job("conformance", 8, Duration::from_secs(120));
    for rank in &ranks {
        assert!(
            rank.output().contains("CONFORMANCE PASSED"),
            "{}",
            rank.output()
        );
    }
}

/// The algorithms whose latency grows as log p, and the rings, on more ranks than cores:
/// 8 ranks, where every round of Bruck's allgather and of the binomial tree is full.
#[test]
fn conformance_on_8_processes_with_the_log_p_algorithms_forced() {
    for spec in [
        "allreduce=bruck,allgatherv=bruck,broadcast=binomial,barrier=dissemination",
        "allgatherv=ring,allreduce=ring",
    ] {
        let extra = [(cobre_comm::tcp_config::ENV_ALGORITHMS, spec)];
        for rank in run_job_with("conformance", 8, &extra, Duration::from_secs(180)) {
            assert!(
                rank.output().contains("CONFORMANCE PASSED"),
                "{spec}:\n{}",
                rank.output()
            );
        }
    }
}

/// A job starts with a connection to each rank at distance 1, 2, 4, ... either way
/// (`O(log p)`), keeps to them through small collectives, and opens the others the first
/// time an algorithm needs them; the large allreduce is still the exact rank-order fold.
#[test]
fn a_job_starts_with_log_p_connections_and_opens_the_rest_when_needed() {
    let size = 12;
    let neighbours = |r: usize| {
        (0..size)
            .filter(|&q| {
                let d = (q + size - r) % size;
                q != r && (d.is_power_of_two() || (size - d).is_power_of_two())
            })
            .count()
    };
    for (r, rank) in run_job("connections", size, Duration::from_secs(120))
        .iter()
        .enumerate()
    {
        // Every rank but 0 also keeps the listener the lower ranks dial.
        let listener = usize::from(r > 0);
        let start = neighbours(r) + listener;
        let all = size - 1 + listener;
        let expected = format!("SOCKETS rank {r}: start {start} small {start} large {all}");
        assert!(
            rank.stdout.contains(&expected),
            "expected {expected}:\n{}",
            rank.output()
        );
    }
}

/// Every algorithm, forced, on 6 and 9 ranks: jobs where some ranks are not neighbours, so
/// the one-round and large-buffer algorithms open connections during the calls.
#[test]
fn conformance_on_every_algorithm_on_6_and_9_processes() {
    for spec in every_algorithm() {
        for size in [6, 9] {
            let extra = [(cobre_comm::tcp_config::ENV_ALGORITHMS, spec.as_str())];
            for rank in run_job_with("conformance", size, &extra, Duration::from_secs(240)) {
                assert!(
                    rank.output().contains("CONFORMANCE PASSED"),
                    "{spec}, {size} ranks:\n{}",
                    rank.output()
                );
            }
        }
    }
}

#[test]
fn mismatched_collectives_fail_on_every_rank() {
    let ranks = run_job("mismatch", 3, Duration::from_secs(60));
    for rank in &ranks {
        assert!(rank.output().contains("MISMATCH SEEN"), "{}", rank.output());
    }
}

#[test]
fn ranks_forcing_different_algorithms_get_a_mismatch_naming_both() {
    for rank in run_job("algorithm_mismatch", 3, Duration::from_secs(60)) {
        let out = rank.output();
        assert!(out.contains("ALGORITHM MISMATCH SEEN"), "{out}");
        assert!(
            out.contains("different algorithms: direct here, bruck there")
                || out.contains("different algorithms: bruck here, direct there"),
            "{out}"
        );
    }
}

#[test]
fn ranks_that_disagree_on_the_root_fail_instead_of_waiting() {
    // Each rank believes the other is the root: both would wait forever for data.
    let ranks = run_job("root_mismatch", 2, Duration::from_secs(60));
    for rank in &ranks {
        assert!(rank.output().contains("MISMATCH SEEN"), "{}", rank.output());
        assert!(
            rank.output().contains("different roots"),
            "{}",
            rank.output()
        );
    }
}

#[test]
fn hostile_peers_are_refused_and_the_job_completes() {
    let size = 3;
    let port = free_port();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ranks = vec![spawn("small", 0, size, port, &[])];
    // Random bytes, a silent connection and a truncated hello while rank 0 waits.
    let mut garbage = Vec::new();
    while garbage.is_empty() {
        assert!(Instant::now() < deadline, "rank 0 never listened");
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let noise: Vec<u8> = (0..4096_u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let _ = s.write_all(&noise);
            garbage.push(s);
        } else {
            thread::sleep(Duration::from_millis(20));
        }
    }
    garbage.push(TcpStream::connect(("127.0.0.1", port)).expect("silent peer"));
    let mut partial = TcpStream::connect(("127.0.0.1", port)).expect("partial peer");
    let _ = partial.write_all(b"CBHS\x01\x02\0\0");
    garbage.push(partial);
    // A peer with the wrong token claiming rank 2 is refused before the real rank 2 exists.
    let wrong = spawn(
        "expect_refused",
        2,
        size,
        port,
        &[("COBRE_TCP_TOKEN", "wrong")],
    );
    let wrong = finish(wrong, deadline);
    assert_eq!(passed(&wrong), Some(true), "{}", wrong.output());
    assert!(wrong.output().contains("token"), "{}", wrong.output());
    // Two processes claim rank 1: exactly one is refused as a duplicate.
    let mut first = spawn("small_or_refused", 1, size, port, &[]);
    let mut second = spawn("small_or_refused", 1, size, port, &[]);
    // The refused claimant ends while the job still waits for rank 2; rank 2 starts only
    // then, so a slow start of either claimant cannot find the job already over.
    while first.ended_at(0).is_none() && second.ended_at(0).is_none() {
        assert!(
            Instant::now() < deadline,
            "neither rank-1 claimant was refused"
        );
        first.wait_rank(0, Instant::now() + Duration::from_millis(20));
    }
    // A peer claiming a rank out of range, or a different size, is refused too.
    let out_of_range = finish(spawn("expect_refused", 1, size + 1, port, &[]), deadline);
    assert_eq!(
        passed(&out_of_range),
        Some(true),
        "{}",
        out_of_range.output()
    );
    ranks.push(spawn("small", 2, size, port, &[]));
    let ranks: Vec<RankReport> = ranks.into_iter().map(|r| finish(r, deadline)).collect();
    for (r, rank) in ranks.iter().enumerate() {
        assert_eq!(passed(rank), Some(true), "rank {r}:\n{}", rank.output());
        assert!(rank.output().contains("SMALL PASSED"), "{}", rank.output());
    }
    let first = finish(first, deadline);
    assert_eq!(passed(&first), Some(true), "{}", first.output());
    let second = finish(second, deadline);
    assert_eq!(passed(&second), Some(true), "{}", second.output());
    let refused = [&first, &second]
        .iter()
        .filter(|r| r.output().contains("REFUSED") && r.output().contains("already taken"))
        .count();
    let small_passed = [&first, &second]
        .iter()
        .filter(|r| r.output().contains("SMALL PASSED"))
        .count();
    assert_eq!(
        (refused, small_passed),
        (1, 1),
        "{}\n---\n{}",
        first.output(),
        second.output()
    );
    let log = ranks[0].output();
    for reason in [
        "bad handshake magic",
        "did not prove the shared token",
        "already taken",
        "expected 3 (COBRE_TCP_SIZE differs)",
    ] {
        assert!(
            log.contains(reason),
            "rank 0 did not log {reason:?}:\n{log}"
        );
    }
    drop(garbage);
}

#[test]
fn kill_minus_9_is_reported_by_every_survivor_within_2_s() {
    // On 9 ranks with small collectives only, ranks 1 and 7 have no connection to rank 4:
    // they learn of its loss from the ranks that do.
    for (role, size, victim) in [
        ("forever", 2, 1),
        ("forever", 4, 2),
        ("forever", 3, 0),
        ("forever_small", 9, 4),
    ] {
        let mut job = job_of(role, size, &[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        for r in 0..size {
            assert!(
                job.read_until(r, "RUNNING", deadline).is_some(),
                "{}",
                job.output(r)
            );
        }
        job.kill(victim, Signal::KILL).expect("kill -9");
        let killed = Instant::now();
        let report = job.finish(Duration::from_secs(5));
        for (r, rank) in report.ranks.iter().enumerate() {
            if r == victim {
                continue;
            }
            let outcome = passed(rank);
            let text = rank.output();
            assert_eq!(
                outcome,
                Some(true),
                "rank {r} did not report the loss:\n{text}"
            );
            let line = text
                .lines()
                .find(|l| l.contains("FAILED AFTER"))
                .unwrap_or_else(|| panic!("rank {r}: no failure line:\n{text}"));
            assert!(
                line.contains(&format!("lost rank {victim}")),
                "rank {r} of {size} does not name rank {victim}: {line}"
            );
            let took = rank.ended_at.expect("exited") - killed;
            assert!(
                took < Duration::from_secs(2),
                "rank {r} of {size} took {took:?} to report the loss: {line}"
            );
        }
    }
}

#[test]
fn a_stopped_peer_is_reported_when_the_timeout_expires() {
    let (size, victim) = (3, 2);
    let timeout = [("COBRE_TCP_TIMEOUT_SECS", "1")];
    let mut job = job_of("forever", size, &timeout);
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in 0..size {
        assert!(
            job.read_until(r, "RUNNING", deadline).is_some(),
            "{}",
            job.output(r)
        );
    }
    assert!(
        job.kill(victim, Signal::STOP).is_ok(),
        "cannot stop rank {victim}"
    );
    let since = Instant::now();
    for r in (0..size).filter(|&r| r != victim) {
        // Checked below: a rank still running at its deadline is stopped by `finish`.
        let _ = job.wait_rank(r, since + Duration::from_secs(10));
    }
    let _ = job.kill(victim, Signal::KILL);
    let report = job.finish(Duration::from_secs(10));
    for (r, rank) in report.ranks.iter().enumerate() {
        if r == victim {
            continue;
        }
        let outcome = passed(rank);
        let text = rank.output();
        assert_eq!(
            outcome,
            Some(true),
            "rank {r} did not report the silence:\n{text}"
        );
        let line = text
            .lines()
            .find(|l| l.contains("FAILED AFTER"))
            .expect("a failure line");
        assert!(
            names_silent(line, victim) || line.contains(&format!("lost rank {victim}")),
            "rank {r} does not name rank {victim}: {line}"
        );
        let took = rank.ended_at.expect("exited") - since;
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "rank {r} reported after {took:?}, expected about the 1 s timeout: {line}"
        );
    }
}

#[test]
fn ipv6_loopback_job() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; nothing to test");
        return;
    }
    let port = free_port();
    let v6 = [("COBRE_TCP_COORDINATOR", "::1"), ("COBRE_TCP_BIND", "::1")];
    let report = job_at("small", 3, port, &v6).finish(Duration::from_secs(60));
    for (r, rank) in report.ranks.iter().enumerate() {
        assert_eq!(passed(rank), Some(true), "rank {r}:\n{}", rank.output());
        assert!(rank.output().contains("SMALL PASSED"), "{}", rank.output());
    }
}

#[test]
fn the_factory_builds_the_tcp_backend_from_the_environment() {
    let ranks = run_job("factory", 2, Duration::from_secs(60));
    for rank in &ranks {
        assert!(rank.output().contains("SMALL PASSED"), "{}", rank.output());
    }
}

#[test]
fn dropping_is_graceful_and_an_early_drop_is_reported() {
    // Every rank drops at its own pace after the same calls: nobody sees an error.
    let ranks = run_job("staggered_drop", 3, Duration::from_secs(60));
    for rank in &ranks {
        assert!(
            rank.output().contains("DROPPED CLEANLY"),
            "{}",
            rank.output()
        );
        assert!(
            !rank.output().contains("cobre-comm tcp:"),
            "{}",
            rank.output()
        );
    }
    // Rank 1 leaves after one barrier; the others' second barrier names it.
    let ranks = run_job("early_drop", 3, Duration::from_secs(60));
    for (r, rank) in ranks.iter().enumerate() {
        if r != 1 {
            let text = rank.output();
            assert!(text.contains("EARLY DROP SEEN"), "{text}");
            assert!(
                text.contains("lost rank 1") && text.contains("shut down"),
                "{text}"
            );
        }
    }
}

/// Whether a timeout message lists `rank` among the ranks it waited for ("... for rank(s)
/// 1, 2 without progress"): a rank blocked behind the silent one may be listed too.
fn names_silent(line: &str, rank: usize) -> bool {
    line.split("for rank(s) ")
        .nth(1)
        .and_then(|rest| rest.split(" without").next())
        .is_some_and(|list| list.split(", ").any(|r| r == rank.to_string()))
}

/// Two network namespaces joined by a veth pair, removed on drop.
struct Namespaces {
    names: [String; 2],
}

impl Namespaces {
    /// `None` when this machine cannot create them (not root, no iproute2, a sandbox).
    fn create() -> Option<Namespaces> {
        let id = std::process::id();
        let names = [format!("cobre-tcp-{id}-a"), format!("cobre-tcp-{id}-b")];
        let ns = Namespaces { names };
        let [a, b] = &ns.names;
        let (va, vb) = (format!("cta{id}"), format!("ctb{id}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", a],
            vec!["netns", "add", b],
            vec![
                "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b,
            ],
            vec!["-n", a, "addr", "add", "192.0.2.1/24", "dev", &va],
            vec!["-n", b, "addr", "add", "192.0.2.2/24", "dev", &vb],
            vec!["-n", a, "link", "set", &va, "up"],
            vec!["-n", b, "link", "set", &vb, "up"],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let ok = Command::new("ip")
                .args(&step)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "cannot run `ip {}`: skipping the namespace test",
                    step.join(" ")
                );
                return None;
            }
        }
        Some(ns)
    }

    /// Cuts the link: the interface of namespace `a` goes down.
    fn cut(&self) -> bool {
        let va = format!("cta{}", std::process::id());
        Command::new("ip")
            .args(["-n", &self.names[0], "link", "set", &va, "down"])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

#[test]
fn a_cut_link_between_namespaces_is_reported_at_the_timeout() {
    let Some(ns) = Namespaces::create() else {
        return;
    };
    let port = 29_500;
    let env = [
        ("COBRE_TCP_COORDINATOR", "192.0.2.1"),
        ("COBRE_TCP_BIND", "192.0.2.1"),
        ("COBRE_TCP_TIMEOUT_SECS", "1"),
    ];
    let mut ranks = vec![
        spawn_in(Some(&ns.names[0]), "forever", 0, 2, port, &env),
        spawn_in(Some(&ns.names[1]), "forever", 1, 2, port, &env),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    for rank in &mut ranks {
        assert!(
            rank.read_until(0, "RUNNING", deadline).is_some(),
            "{}",
            rank.output(0)
        );
    }
    assert!(ns.cut(), "cannot cut the link");
    let since = Instant::now();
    for (r, rank) in ranks.into_iter().enumerate() {
        let rank = finish(rank, since + Duration::from_secs(10));
        let outcome = passed(&rank);
        let text = rank.output();
        assert_eq!(
            outcome,
            Some(true),
            "rank {r} did not report the cut:\n{text}"
        );
        let other = 1 - r;
        let line = text
            .lines()
            .find(|l| l.contains("FAILED AFTER"))
            .expect("a failure line");
        assert!(
            names_silent(line, other) || line.contains(&format!("lost rank {other}")),
            "rank {r} does not name rank {other}: {line}"
        );
        let took = rank.ended_at.expect("exited") - since;
        assert!(
            took < Duration::from_secs(4),
            "rank {r} took {took:?}: {line}"
        );
        eprintln!("rank {r} after {took:?}: {line}");
    }
}

// ---------------------------------------------------------------------------------------
// Start-up under attack and under loss (docs/RELIABILITY.md, "tcp start-up").

/// One row of the kernel's TCP tables (`/proc/net/tcp`, `/proc/net/tcp6`).
struct Socket {
    /// The local address in the kernel's hex form (`0100007F` is 127.0.0.1).
    local_ip: String,
    local_port: u16,
    listening: bool,
    inode: u64,
}

fn tcp_table() -> Vec<Socket> {
    let mut rows = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some((ip, port)) = fields.get(1).and_then(|a| a.split_once(':')) else {
                continue;
            };
            rows.push(Socket {
                local_ip: ip.to_string(),
                local_port: u16::from_str_radix(port, 16).unwrap_or(0),
                listening: fields.get(3) == Some(&"0A"),
                inode: fields.get(9).and_then(|i| i.parse().ok()).unwrap_or(0),
            });
        }
    }
    rows
}

/// The addresses (kernel hex form) listening on `port` on this machine.
fn listen_addresses(port: u16) -> Vec<String> {
    tcp_table()
        .into_iter()
        .filter(|s| s.listening && s.local_port == port)
        .map(|s| s.local_ip)
        .collect()
}

/// The ports process `pid` listens on.
fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<u64> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    tcp_table()
        .into_iter()
        .filter(|s| s.listening && inodes.contains(&s.inode))
        .map(|s| s.local_port)
        .collect()
}

/// Bytes process `pid` has received on its connection to `port` (rank 0's), as `ss`
/// reports them; `None` without such a connection or without `ss`.
fn bytes_received(pid: u32, port: u16) -> Option<u64> {
    let out = Command::new("ss")
        .args(["-tinpH", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.contains(&format!("pid={pid},")) {
            let info = lines.next().unwrap_or_default();
            return Some(
                info.split_whitespace()
                    .find_map(|f| f.strip_prefix("bytes_received:"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            );
        }
    }
    None
}

/// Polls `condition` every 10 ms until it holds (true) or `deadline` passes (false).
fn wait_until(deadline: Instant, mut condition: impl FnMut() -> bool) -> bool {
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Bytes rank 0 sends a rank up to the moment it accepts its hello: the challenge (40
/// bytes) and the "joined" notice (8 bytes).
const JOINED_BYTES: u64 = 48;

/// Waits until the rank `rank` (process `pid`) is admitted by rank 0 on `port`.
fn wait_joined(pid: u32, port: u16, deadline: Instant) -> bool {
    wait_until(deadline, || {
        bytes_received(pid, port).is_some_and(|n| n >= JOINED_BYTES)
    })
}

/// A slow-loris attacker: keeps `conns` connections open to `addr` (opening a new one
/// for each the server drops), writing one byte a second on each when `trickle`, until
/// stopped or `limit` has passed. At most `20 * conns` connections in all.
struct Attack {
    stop: mpsc::Sender<()>,
    handle: Option<thread::JoinHandle<usize>>,
}

impl Attack {
    fn start(addr: std::net::SocketAddr, conns: usize, trickle: bool, limit: Duration) -> Attack {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = thread::spawn(move || {
            let end = Instant::now() + limit;
            let mut opened = 0;
            let mut open: Vec<TcpStream> = Vec::new();
            loop {
                open.retain_mut(|s| {
                    let mut probe = [0_u8; 64];
                    // Closed by the server (end or error): replaced below.
                    let open = match std::io::Read::read(s, &mut probe) {
                        Ok(n) => n > 0,
                        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                    };
                    open && (!trickle || s.write_all(b"C").is_ok())
                });
                while open.len() < conns && opened < 20 * conns {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                        Ok(s) => {
                            let _ = s.set_nonblocking(true);
                            open.push(s);
                            opened += 1;
                        }
                        Err(_) => break,
                    }
                }
                let left = end.saturating_duration_since(Instant::now());
                match stopped.recv_timeout(left.min(Duration::from_secs(1))) {
                    Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                    _ => return opened,
                }
            }
        });
        Attack {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the attack and returns how many connections it opened.
    fn stop(mut self) -> usize {
        let _ = self.stop.send(());
        self.handle.take().map_or(0, |h| h.join().unwrap_or(0))
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

/// Spawns ranks `from..size` (role `small`) and expects every rank of `ranks` and of
/// the new ones to pass by `deadline`.
fn finish_small_job(
    mut ranks: Vec<RunningJob>,
    from: usize,
    size: usize,
    port: u16,
    env: &[(&str, &str)],
    deadline: Instant,
) -> Vec<RankReport> {
    ranks.extend((from..size).map(|r| spawn("small", r, size, port, env)));
    let ranks: Vec<RankReport> = ranks.into_iter().map(|r| finish(r, deadline)).collect();
    for (r, rank) in ranks.iter().enumerate() {
        assert_eq!(
            passed(rank),
            Some(true),
            "rank {r} did not complete the job:\n{}",
            rank.output()
        );
        assert!(rank.output().contains("SMALL PASSED"), "{}", rank.output());
    }
    ranks
}

fn wait_listening(port: u16, deadline: Instant) {
    assert!(
        wait_until(deadline, || !listen_addresses(port).is_empty()),
        "rank 0 never listened on port {port}"
    );
}

#[test]
fn slow_loris_connections_do_not_keep_the_job_from_forming() {
    // 64 connections to rank 0's port, each writing one byte a second (and replaced as
    // soon as rank 0 drops it), while the real ranks join.
    let (size, port) = (4, free_port());
    let start = Instant::now();
    let ranks = vec![spawn("small", 0, size, port, &[])];
    wait_listening(port, start + Duration::from_secs(20));
    let attack = Attack::start(
        ([127, 0, 0, 1], port).into(),
        64,
        true,
        Duration::from_secs(30),
    );
    let ranks = finish_small_job(
        ranks,
        1,
        size,
        port,
        &[],
        Instant::now() + Duration::from_secs(12),
    );
    let opened = attack.stop();
    assert!(opened >= 64, "the attack opened only {opened} connections");
    drop(ranks);
}

#[test]
fn a_flood_beyond_the_pending_bound_drops_the_oldest_and_the_job_forms() {
    // More silent connections than rank 0 keeps pending handshakes for: the oldest are
    // dropped, and the real ranks, which answer at once, get in.
    let (size, port) = (3, free_port());
    let start = Instant::now();
    let ranks = vec![spawn("small", 0, size, port, &[])];
    wait_listening(port, start + Duration::from_secs(20));
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert_eq!(flood.len(), 300, "the flood could not connect");
    let ranks = finish_small_job(
        ranks,
        1,
        size,
        port,
        &[],
        Instant::now() + Duration::from_secs(12),
    );
    let log = ranks[0].output();
    assert!(
        log.contains("oldest"),
        "rank 0 did not report dropping the oldest connections:\n{log}"
    );
    drop(flood);
}

/// Connects to the mesh listener at `mesh` and sends a well-formed mesh hello (magic,
/// version 3, kind 5) of rank `from` to rank `to`, with a session and a tag this job never
/// issued.
fn send_forged_mesh_hello(mesh: std::net::SocketAddr, from: u32, to: u32) -> TcpStream {
    let mut forged =
        TcpStream::connect_timeout(&mesh, Duration::from_secs(2)).expect("forged peer");
    let mut hello = b"CBHS\x03\x05\0\0".to_vec();
    hello.extend_from_slice(&[0x5a; 16]);
    hello.extend_from_slice(&from.to_le_bytes());
    hello.extend_from_slice(&to.to_le_bytes());
    hello.extend_from_slice(&[0xa5; 32]);
    forged.write_all(&hello).expect("write forged hello");
    forged
}

/// Asserts that the rank behind `forged` never answered it (it closed or stayed silent
/// for 5 s).
fn assert_unanswered(mut forged: TcpStream, who: &str) {
    forged
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut reply = [0_u8; 8];
    let got = std::io::Read::read(&mut forged, &mut reply).unwrap_or(0);
    assert_eq!(
        got,
        0,
        "{who} answered a forged mesh hello: {:?}",
        &reply[..got]
    );
}

/// A mesh listener stays open for the whole job (lower ranks dial it when an algorithm
/// first needs them): strangers flooding it once the job runs, with more silent
/// connections than the pending bound, garbage and a forged mesh hello, keep neither
/// ranks 2 nor 5 from connecting to rank 8 during the 1 MiB allreduce (on 9 ranks they are
/// not its neighbours), and the forged hello is never taken.
#[test]
fn strangers_on_a_mesh_listener_do_not_keep_ranks_from_connecting_during_the_job() {
    let (size, victim) = (9, 8);
    let port = free_port();
    let env = [("COBRE_TCP_TIMEOUT_SECS", "10")];
    let mut job = ranks_of(
        Launcher::new(std::env::current_exe().expect("test binary")),
        "connections_on_go",
    )
    .piped_stdin(true)
    .ranks(size)
    .rank_env((0..size).map(|r| rank_env(r, size, port, &env)).collect())
    .spawn()
    .expect("spawn the ranks");
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in 0..size {
        assert!(
            job.read_until(r, "JOINED", deadline).is_some(),
            "rank {r}:\n{}",
            job.output(r)
        );
    }
    let pid = job.pid(victim).expect("rank 8 runs");
    let mesh_port = listening_ports(pid)
        .into_iter()
        .next()
        .expect("a mesh listener");
    let mesh = ([127, 0, 0, 1], mesh_port).into();
    let silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect_timeout(&mesh, Duration::from_secs(2)).expect("silent peer"))
        .collect();
    let mut garbage =
        TcpStream::connect_timeout(&mesh, Duration::from_secs(2)).expect("garbage peer");
    garbage.write_all(&[0xee; 300]).expect("write garbage");
    let forged = send_forged_mesh_hello(mesh, 5, 8);
    for r in 0..size {
        job.send_line(r, "go").expect("tell the rank to go on");
    }
    let report = job.finish(Duration::from_secs(30));
    for (r, rank) in report.ranks.iter().enumerate() {
        assert_eq!(passed(rank), Some(true), "rank {r}:\n{}", rank.output());
        assert!(
            rank.stdout.contains(&format!("SOCKETS rank {r}:")),
            "{}",
            rank.output()
        );
    }
    assert_unanswered(forged, "rank 8");
    drop((silent, garbage));
}

#[test]
fn a_flood_on_a_mesh_listener_does_not_keep_the_job_from_forming() {
    // Six silent connections, random bytes and a forged mesh hello on rank 1's mesh
    // listener before rank 2 exists; the job still forms well within its 10 s timeout,
    // and the forged hello is never acknowledged.
    let (size, port) = (3, free_port());
    let env = [("COBRE_TCP_TIMEOUT_SECS", "10")];
    let start = Instant::now();
    let mut ranks = vec![
        spawn("small", 0, size, port, &env),
        spawn("small", 1, size, port, &env),
    ];
    let pid = ranks[1].pid(0).unwrap();
    let mut mesh_port = None;
    assert!(
        wait_until(start + Duration::from_secs(20), || {
            mesh_port = listening_ports(pid).into_iter().next();
            mesh_port.is_some()
        }),
        "rank 1 never listened:\n{}",
        ranks[1].output(0)
    );
    let mesh = ([127, 0, 0, 1], mesh_port.unwrap()).into();
    let silent: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect_timeout(&mesh, Duration::from_secs(2)).expect("silent peer"))
        .collect();
    let mut garbage =
        TcpStream::connect_timeout(&mesh, Duration::from_secs(2)).expect("garbage peer");
    let noise: Vec<u8> = (0..256_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    garbage.write_all(&noise).expect("write garbage");
    let forged = send_forged_mesh_hello(mesh, 2, 1);
    let deadline = Instant::now() + Duration::from_secs(8);
    let ranks_done = finish_small_job(std::mem::take(&mut ranks), 2, size, port, &env, deadline);
    assert_unanswered(forged, "rank 1");
    drop((silent, garbage, ranks_done));
}

/// Asserts that rank `r` (its own job) failed its start-up naming rank `victim`, within
/// 2 s of `killed`.
fn assert_start_loss_reported(job: &mut RunningJob, r: usize, victim: usize, killed: Instant) {
    let line = start_failure(job, killed + Duration::from_secs(5), r);
    assert!(
        line.contains(&format!("rank {victim}")),
        "rank {r} does not name rank {victim}: {line}"
    );
    let took = job.ended_at(0).expect("exited") - killed;
    assert!(
        took < Duration::from_secs(2),
        "rank {r} took {took:?}: {line}"
    );
}

/// The start-up error line of a rank that was expected to fail.
fn start_failure(rank: &mut RunningJob, deadline: Instant, who: usize) -> String {
    assert_eq!(
        rank.wait_rank(0, deadline).map(Outcome::is_success),
        Some(true),
        "rank {who} did not fail its start-up in time:\n{}",
        rank.output(0)
    );
    rank.read_until(0, "START FAILED", deadline)
        .unwrap_or_else(|| {
            panic!(
                "rank {who} started or failed otherwise:\n{}",
                rank.output(0)
            )
        })
}

#[test]
fn a_rank_lost_during_start_up_is_reported_by_every_other_within_2_s() {
    if Command::new("ss").arg("-V").output().is_err() {
        eprintln!("no `ss` on this machine: cannot see when a rank has joined; skipping");
        return;
    }
    let env = [("COBRE_TCP_TIMEOUT_SECS", "30")];
    // 1. Rank 2 of 4 joins rank 0 and is killed while rank 3 is still missing.
    {
        let (size, port) = (4, free_port());
        let mut ranks: Vec<RunningJob> = (0..3)
            .map(|r| spawn("start_fails", r, size, port, &env))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        for (r, rank) in ranks.iter().enumerate().skip(1) {
            assert!(
                wait_joined(rank.pid(0).unwrap(), port, deadline),
                "rank {r} never joined:\n{}",
                rank.output(0)
            );
        }
        ranks[2].kill(0, Signal::KILL).expect("kill -9");
        let killed = Instant::now();
        for r in [0, 1] {
            assert_start_loss_reported(&mut ranks[r], r, 2, killed);
        }
    }
    // 2. Rank 0 of 3 is killed after rank 1 joined, before rank 2 exists.
    {
        let (size, port) = (3, free_port());
        let mut ranks: Vec<RunningJob> = (0..2)
            .map(|r| spawn("start_fails", r, size, port, &env))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = ranks[1].pid(0).unwrap();
        assert!(
            wait_joined(pid, port, deadline),
            "rank 1 never joined:\n{}",
            ranks[1].output(0)
        );
        ranks[0].kill(0, Signal::KILL).expect("kill -9");
        let killed = Instant::now();
        assert_start_loss_reported(&mut ranks[1], 1, 0, killed);
    }
    // 3. While the mesh forms: rank 1 of 3 is stopped after joining, rank 2 joins (the
    //    welcome goes out, rank 2 waits for rank 1 to accept it), then rank 1 is killed.
    {
        let (size, port) = (3, free_port());
        let mut ranks: Vec<RunningJob> = (0..2)
            .map(|r| spawn("start_fails", r, size, port, &env))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid1 = ranks[1].pid(0).unwrap();
        assert!(
            wait_joined(pid1, port, deadline),
            "rank 1 never joined:\n{}",
            ranks[1].output(0)
        );
        assert!(ranks[1].kill(0, Signal::STOP).is_ok(), "cannot stop rank 1");
        ranks.push(spawn("start_fails", 2, size, port, &env));
        let pid2 = ranks[2].pid(0).unwrap();
        // More than the joined notice: the welcome has arrived.
        assert!(
            wait_until(deadline, || bytes_received(pid2, port)
                .is_some_and(|n| n > JOINED_BYTES)),
            "rank 2 never got the welcome:\n{}",
            ranks[2].output(0)
        );
        ranks[1].kill(0, Signal::KILL).expect("kill -9");
        let killed = Instant::now();
        for r in [0, 2] {
            assert_start_loss_reported(&mut ranks[r], r, 1, killed);
        }
    }
}

#[test]
fn rank_0_listens_on_loopback_unless_told_otherwise() {
    // No COBRE_TCP_BIND, no token, the coordinator on this machine: loopback only.
    let (size, port) = (2, free_port());
    let open = [("COBRE_TCP_BIND", ""), ("COBRE_TCP_TOKEN", "")];
    let start = Instant::now();
    let ranks = vec![spawn("small", 0, size, port, &open)];
    wait_listening(port, start + Duration::from_secs(20));
    let addrs = listen_addresses(port);
    assert!(
        addrs
            .iter()
            .all(|a| a == "0100007F" || a == "00000000000000000000000001000000"),
        "rank 0 listens beyond loopback: {addrs:?}"
    );
    let ranks = finish_small_job(
        ranks,
        1,
        size,
        port,
        &open,
        Instant::now() + Duration::from_secs(20),
    );
    assert!(
        !ranks[0].output().contains("WARNING"),
        "{}",
        ranks[0].output()
    );
    // The coordinator names another host (a documentation address nobody contacts): rank 0
    // must be reachable from it, so it listens on every interface and, without a token,
    // says loudly that anyone who reaches the port can join.
    let port = free_port();
    let remote = [
        ("COBRE_TCP_BIND", ""),
        ("COBRE_TCP_TOKEN", ""),
        ("COBRE_TCP_COORDINATOR", "192.0.2.1"),
    ];
    let start = Instant::now();
    let ranks = vec![spawn("small", 0, size, port, &remote)];
    wait_listening(port, start + Duration::from_secs(20));
    let addrs = listen_addresses(port);
    assert!(
        addrs.iter().any(|a| a.chars().all(|c| c == '0')),
        "rank 0 does not listen on every interface: {addrs:?}"
    );
    let ranks = finish_small_job(
        ranks,
        1,
        size,
        port,
        &open,
        Instant::now() + Duration::from_secs(20),
    );
    let log = ranks[0].output();
    assert!(
        log.contains("WARNING")
            && log.contains("COBRE_TCP_TOKEN")
            && log.contains(&port.to_string()),
        "rank 0 did not warn about listening without a token:\n{log}"
    );
}

/// A rank that has used up its descriptors when a call needs a new connection gets an
/// error naming the limit and the fix, and every other rank fails instead of waiting.
#[test]
fn running_out_of_descriptors_during_a_call_names_the_limit() {
    // On 6 ranks rank 0 and rank 3 are not neighbours: the 1 MiB allreduce makes rank 0
    // dial rank 3, after rank 0 has filled its descriptor table.
    let report = job_of("descriptors_exhausted", 6, &[]).finish(Duration::from_secs(60));
    for (r, rank) in report.ranks.iter().enumerate() {
        assert_eq!(passed(rank), Some(true), "rank {r}:\n{}", rank.output());
        let line = rank
            .stdout
            .lines()
            .find(|l| l.contains("FAILED:"))
            .unwrap_or_else(|| panic!("rank {r}: no failure:\n{}", rank.output()));
        // Rank 0 drops out of the job: every rank names it, none blames rank 3.
        assert!(line.contains("lost rank 0"), "rank {r}: {line}");
        assert!(
            line.contains("cannot connect to rank 3")
                && line.contains("RLIMIT_NOFILE")
                && line.contains("ulimit -n 32"),
            "rank {r}: {line}"
        );
    }
}

/// The body of every child process; does nothing in a normal test run.
/// A rank whose hard descriptor limit is below what its job needs stops before joining,
/// naming the limit and the fix; a rank whose soft limit is too low raises it and joins.
#[test]
fn the_descriptor_limit_is_raised_when_it_can_be_and_named_when_it_cannot() {
    let job = job_of("descriptor_hard_limit", 1, &[("COBRE_TCP_SIZE", "2000")]);
    let report = job.finish(Duration::from_secs(30));
    let out = &report.ranks[0].stdout;
    assert!(
        out.contains("REFUSED:")
            && out.contains("2000 ranks")
            && out.contains("RLIMIT_NOFILE")
            && out.contains("ulimit"),
        "{out}"
    );
    let ranks = run_job("descriptor_soft_limit", 3, Duration::from_secs(60));
    for (r, rank) in ranks.iter().enumerate() {
        assert!(
            rank.stdout.contains("RAISED from 24"),
            "rank {r}: {}",
            rank.stdout
        );
    }
}

#[test]
fn child_rank() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "conformance" => role_conformance(),
        "small" => small(&TcpBackend::from_env().expect("join")),
        "factory" => role_factory(),
        "staggered_drop" => {
            let comm = TcpBackend::from_env().expect("join");
            small(&comm);
            // Uneven amounts of local work before the drop.
            let mut x = 0_u64;
            for i in 0..(comm.rank() as u64 * 20_000_000) {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            drop(comm);
            println!("DROPPED CLEANLY");
        }
        "early_drop" => {
            let comm = TcpBackend::from_env().expect("join");
            comm.barrier().unwrap();
            if comm.rank() == 1 {
                return;
            }
            let err = comm.barrier().expect_err("rank 1 is gone");
            println!("EARLY DROP SEEN: {err}");
        }
        "small_or_refused" => match TcpBackend::from_env() {
            Ok(comm) => small(&comm),
            Err(e) => println!("REFUSED: {e}"),
        },
        "start_fails" => match TcpBackend::from_env() {
            Ok(comm) => println!("STARTED rank {}", comm.rank()),
            Err(e) => println!("START FAILED: {e}"),
        },
        "expect_refused" => {
            let err = TcpBackend::from_env().expect_err("must be refused");
            println!("REFUSED: {err}");
        }
        "descriptor_hard_limit" => {
            // Rank 0 of 2000 (nobody else starts) with at most 64 descriptors.
            set_descriptor_limit(64, 64);
            let err = TcpBackend::from_env().expect_err("too few descriptors");
            println!("REFUSED: {err}");
        }
        "descriptors_exhausted" => role_descriptors_exhausted(),
        "descriptor_soft_limit" => {
            set_descriptor_limit(24, u64::MAX);
            let comm = TcpBackend::from_env().expect("join");
            small(&comm);
            let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
            assert!(soft.is_some_and(|s| s > 24), "{soft:?}");
            println!("RAISED from 24 to {soft:?}");
        }
        "mismatch" => role_mismatch(),
        "algorithm_mismatch" => {
            // Rank 0 forces one allreduce algorithm, the others another.
            let mut config = cobre_comm::TcpConfig::from_env().expect("tcp configuration");
            let name = if config.rank == 0 { "direct" } else { "bruck" };
            config.algorithms = cobre_comm::algorithm::Forced::parse(
                &format!("allreduce={name}"),
                cobre_comm::tcp_config::ALGORITHMS,
            )
            .expect("a known algorithm");
            // Joining runs collectives too (the ranks' hosts are gathered): the mismatch
            // may surface there or at the first call.
            let err = match TcpBackend::new(&config) {
                Err(e) => e.to_string(),
                Ok(comm) => {
                    let mut out = [0.0_f64; 4];
                    comm.allreduce(&[1.0; 4], &mut out, ReduceOp::Sum)
                        .expect_err("a mismatch")
                        .to_string()
                }
            };
            println!("ALGORITHM MISMATCH SEEN: {err}");
        }
        "root_mismatch" => {
            let comm = TcpBackend::from_env().expect("join");
            let mut buf = vec![7_u32; 1000];
            let err = comm
                .broadcast(&mut buf, 1 - comm.rank())
                .expect_err("a mismatch");
            assert!(
                matches!(err, CommError::CollectiveMismatch { .. }),
                "rank {}: {err}",
                comm.rank()
            );
            println!("MISMATCH SEEN rank {}: {err}", comm.rank());
        }
        "forever" => role_forever(true),
        "forever_small" => role_forever(false),
        "connections" => role_connections(false),
        "connections_on_go" => role_connections(true),
        other => panic!("unknown role {other}"),
    }
}

/// Role `descriptors_exhausted`: rank 0 takes every descriptor its (lowered) limit leaves,
/// then every rank makes a 1 MiB allreduce, which needs new connections.
fn role_descriptors_exhausted() {
    let comm = TcpBackend::from_env().expect("join");
    small(&comm);
    let mut held = Vec::new();
    if comm.rank() == 0 {
        // Lowering a limit is always allowed; then take every descriptor left.
        set_descriptor_limit(256, u64::MAX);
        while let Ok(file) = std::fs::File::open("/dev/null") {
            held.push(file);
        }
    }
    let send = vec![1.0_f64; 1 << 17];
    let mut recv = vec![0.0; 1 << 17];
    let err = comm
        .allreduce(&send, &mut recv, ReduceOp::Sum)
        .expect_err("rank 0 cannot connect to rank 3");
    println!("FAILED: {err}");
    drop(held);
}

/// Role `conformance`: the whole suite.
/// Sets this process's descriptor limits (`u64::MAX` for the hard one: keep it).
fn set_descriptor_limit(soft: u64, hard: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let maximum = if hard == u64::MAX {
        now.maximum
    } else {
        Some(hard)
    };
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum,
        },
    )
    .expect("lowering a limit is always allowed");
}

fn role_conformance() {
    let comm = TcpBackend::from_env().expect("join");
    let options: Options = cobre_comm_conformance::options_for(cobre_comm::Backend::Tcp);
    assert!(options.bit_exact_sum);
    let report = run_suite(&comm, &options);
    assert!(
        report.results.len() > 40,
        "only {} checks ran",
        report.results.len()
    );
    assert!(
        report.passed(),
        "rank {}: {:#?}",
        report.rank,
        report.failures()
    );
    println!("CONFORMANCE PASSED rank {} of {}", report.rank, report.size);
}

/// Role `factory`: the backend built through auto-detection.
fn role_factory() {
    let selection = cobre_comm::select_backend(cobre_comm::Backend::Auto).unwrap();
    assert_eq!(
        selection.backend,
        cobre_comm::Backend::Tcp,
        "{}",
        selection.reason
    );
    let comm = cobre_comm::create_communicator(cobre_comm::BackendKind::Auto).expect("join");
    assert!(matches!(comm, cobre_comm::CommBackend::Tcp(_)), "{comm:?}");
    let cobre_comm::CommBackend::Tcp(tcp) = &comm else {
        unreachable!()
    };
    small(tcp);
}

/// Role `mismatch`: rank 1 broadcasts while the others reduce.
fn role_mismatch() {
    let comm = TcpBackend::from_env().expect("join");
    comm.barrier().unwrap();
    let mut buf = [1.0_f64; 4];
    let result = if comm.rank() == 1 {
        comm.broadcast(&mut buf, 0)
    } else {
        let send = buf;
        comm.allreduce(&send, &mut buf, ReduceOp::Sum)
    };
    let err = result.expect_err("a mismatch");
    assert!(
        matches!(err, CommError::CollectiveMismatch { .. }),
        "rank {}: {err}",
        comm.rank()
    );
    // Poisoned: the next call fails fast with the same error.
    assert_eq!(comm.barrier().unwrap_err(), err);
    println!("MISMATCH SEEN rank {}: {err}", comm.rank());
}

/// Role `forever`: collectives until one fails (a rank is killed or stopped); `large`
/// adds a 100 kB broadcast (an algorithm that connects every rank to every other).
fn role_forever(large: bool) {
    let comm = TcpBackend::from_env().expect("join");
    let start = Instant::now();
    let mut i = 0_u64;
    loop {
        let send = [i as f64, 1.0];
        let mut recv = [0.0; 2];
        let result = comm
            .allreduce(&send, &mut recv, ReduceOp::Sum)
            .and_then(|()| {
                if i.is_multiple_of(3) || !large {
                    comm.barrier()
                } else {
                    let mut big = vec![comm.rank() as u8; 100_000];
                    comm.broadcast(&mut big, (i as usize) % comm.size())
                }
            });
        if i == 20 {
            println!("RUNNING");
        }
        if let Err(e) = result {
            println!("FAILED AFTER {i} calls: {e}");
            // Later calls fail fast with the same error.
            assert_eq!(comm.barrier().unwrap_err(), e);
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nobody was killed"
        );
        i += 1;
    }
}

/// The sockets this process holds (connections and listeners).
fn sockets_open() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|link| link.to_string_lossy().starts_with("socket:"))
        .count()
}

/// A value of rank `r` at index `i` whose sums round differently in different orders.
fn uneven(r: usize, i: usize) -> f64 {
    let magnitude = [1e16, 1.0, -1e16, 3.5, 1e-3][(r + i) % 5];
    magnitude * (1.0 + (r * 31 + i * 7) as f64 / 97.0)
}

/// Role `connections`: the sockets held at the start, after small collectives, and after
/// a 1 MiB allreduce (which talks to every rank), whose result is the rank-order fold.
/// With `on_go`, the rank says `JOINED` after the small collectives and waits for a line
/// on its standard input before the allreduce.
fn role_connections(on_go: bool) {
    let comm = TcpBackend::from_env().expect("join");
    let (rank, size) = (comm.rank(), comm.size());
    let at_start = sockets_open();
    small(&comm);
    let after_small = sockets_open();
    // Nobody dials for the large call before every rank has counted (a rank accepts the
    // connections of lower ranks during any call, so it may take an early one in this
    // barrier: that is why the count comes first).
    comm.barrier().unwrap();
    if on_go {
        println!("JOINED");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).expect("the go line");
    }
    let n = 1 << 17;
    let send: Vec<f64> = (0..n).map(|i| uneven(rank, i)).collect();
    let mut recv = vec![0.0; n];
    comm.allreduce(&send, &mut recv, ReduceOp::Sum).unwrap();
    for (i, got) in recv.iter().enumerate() {
        let folded = (1..size).fold(uneven(0, i), |acc, r| acc + uneven(r, i));
        assert_eq!(got.to_bits(), folded.to_bits(), "element {i}");
    }
    comm.barrier().unwrap();
    let after_large = sockets_open();
    println!("SOCKETS rank {rank}: start {at_start} small {after_small} large {after_large}");
}

/// A few collectives whose results are known.
fn small(comm: &TcpBackend) {
    let (rank, size) = (comm.rank(), comm.size());
    let mut sum = [0_u64];
    comm.allreduce(&[rank as u64 + 1], &mut sum, ReduceOp::Sum)
        .unwrap();
    assert_eq!(sum[0] as usize, size * (size + 1) / 2);
    let counts: Vec<usize> = (0..size).map(|r| r + 1).collect();
    let displs: Vec<usize> = counts
        .iter()
        .scan(0, |acc, &c| {
            let d = *acc;
            *acc += c;
            Some(d)
        })
        .collect();
    let mut all = vec![0_u32; counts.iter().sum()];
    comm.allgatherv(&vec![rank as u32; rank + 1], &mut all, &counts, &displs)
        .unwrap();
    for r in 0..size {
        assert!(
            all[displs[r]..displs[r] + counts[r]]
                .iter()
                .all(|&x| x == r as u32)
        );
    }
    comm.barrier().unwrap();
    println!("SMALL PASSED rank {rank}");
}
