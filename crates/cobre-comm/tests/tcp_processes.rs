//! The TCP backend on real processes over loopback: the conformance suite on 1 to 4 ranks,
//! hostile peers during the rendezvous, collective mismatches and `kill -9` of a rank.
//!
//! Each test re-runs this test binary as the ranks of a job (`child_rank` with
//! `TCP_TEST_ROLE` set), with a deadline after which every child is killed.
#![cfg(feature = "tcp")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use cobre_comm::{CommError, Communicator, ReduceOp, TcpBackend};
use cobre_comm_conformance::{Options, run_suite};

const ROLE: &str = "TCP_TEST_ROLE";

/// A free loopback port (the kernel picks it; we release it for rank 0 to bind).
/// A free port below the ephemeral range, so that no outgoing connection of a test
/// running in parallel can take it before rank 0 binds it.
fn free_port() -> u16 {
    cobre_comm_launcher::free_port().expect("a free port")
}

struct Rank {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: Vec<String>,
    exited_at: Option<Instant>,
}

impl Rank {
    fn spawn(role: &str, rank: usize, size: usize, port: u16, extra: &[(&str, &str)]) -> Rank {
        Rank::spawn_in(None, role, rank, size, port, extra)
    }

    /// As [`Rank::spawn`], inside the network namespace `netns` when given.
    fn spawn_in(
        netns: Option<&str>,
        role: &str,
        rank: usize,
        size: usize,
        port: u16,
        extra: &[(&str, &str)],
    ) -> Rank {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["--exact", "child_rank", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env("COBRE_TCP_RANK", rank.to_string())
            .env("COBRE_TCP_SIZE", size.to_string())
            .env("COBRE_TCP_COORDINATOR", "127.0.0.1")
            .env("COBRE_TCP_BIND", "127.0.0.1")
            .env("COBRE_TCP_PORT", port.to_string())
            .env("COBRE_TCP_TIMEOUT_SECS", "20")
            .env("COBRE_TCP_TOKEN", "test-token")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn a rank");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Rank {
            child,
            lines: rx,
            output: Vec::new(),
            exited_at: None,
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.output.push(line);
        }
    }

    /// Waits for a line containing `needle`.
    fn wait_for(&mut self, needle: &str, deadline: Instant) -> bool {
        loop {
            if self.output.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) => self.output.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => return false,
            }
        }
    }

    /// Waits for the process to exit by `deadline` (killing it after) and returns whether
    /// it exited successfully, or `None` if it had to be killed.
    fn finish(&mut self, deadline: Instant) -> Option<bool> {
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                self.exited_at.get_or_insert_with(Instant::now);
                // Give the reader threads a moment to deliver the last lines.
                let end = Instant::now() + Duration::from_secs(2);
                while let Ok(line) = self
                    .lines
                    .recv_timeout(end.saturating_duration_since(Instant::now()))
                {
                    self.output.push(line);
                }
                return Some(status.success());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.drain();
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn text(&self) -> String {
        self.output.join("\n")
    }
}

impl Drop for Rank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `role` on ranks `0..size` and expects every one to succeed within `limit`.
fn run_job(role: &str, size: usize, limit: Duration) -> Vec<Rank> {
    let port = free_port();
    let mut ranks: Vec<Rank> = (0..size)
        .map(|r| Rank::spawn(role, r, size, port, &[]))
        .collect();
    let deadline = Instant::now() + limit;
    for (r, rank) in ranks.iter_mut().enumerate() {
        let outcome = rank.finish(deadline);
        assert_eq!(
            outcome,
            Some(true),
            "rank {r} of {size} ({role}) failed or timed out:\n{}",
            rank.text()
        );
    }
    ranks
}

#[test]
fn conformance_on_1_to_4_processes() {
    for size in 1..=4 {
        let ranks = run_job("conformance", size, Duration::from_secs(120));
        for rank in &ranks {
            assert!(
                rank.text().contains("CONFORMANCE PASSED"),
                "{}",
                rank.text()
            );
        }
    }
}

#[test]
fn conformance_on_8_processes_sharing_few_cores() {
    let ranks = run_job("conformance", 8, Duration::from_secs(120));
    for rank in &ranks {
        assert!(
            rank.text().contains("CONFORMANCE PASSED"),
            "{}",
            rank.text()
        );
    }
}

#[test]
fn mismatched_collectives_fail_on_every_rank() {
    let ranks = run_job("mismatch", 3, Duration::from_secs(60));
    for rank in &ranks {
        assert!(rank.text().contains("MISMATCH SEEN"), "{}", rank.text());
    }
}

#[test]
fn ranks_that_disagree_on_the_root_fail_instead_of_waiting() {
    // Each rank believes the other is the root: both would wait forever for data.
    let ranks = run_job("root_mismatch", 2, Duration::from_secs(60));
    for rank in &ranks {
        assert!(rank.text().contains("MISMATCH SEEN"), "{}", rank.text());
        assert!(rank.text().contains("different roots"), "{}", rank.text());
    }
}

#[test]
fn hostile_peers_are_refused_and_the_job_completes() {
    let size = 3;
    let port = free_port();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ranks = vec![Rank::spawn("small", 0, size, port, &[])];
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
    let mut wrong = Rank::spawn(
        "expect_refused",
        2,
        size,
        port,
        &[("COBRE_TCP_TOKEN", "wrong")],
    );
    assert_eq!(wrong.finish(deadline), Some(true), "{}", wrong.text());
    assert!(wrong.text().contains("token"), "{}", wrong.text());
    // Two processes claim rank 1: exactly one is refused as a duplicate.
    let mut first = Rank::spawn("small_or_refused", 1, size, port, &[]);
    let mut second = Rank::spawn("small_or_refused", 1, size, port, &[]);
    // A peer claiming a rank out of range, or a different size, is refused too.
    let mut out_of_range = Rank::spawn("expect_refused", 1, size + 1, port, &[]);
    assert_eq!(
        out_of_range.finish(deadline),
        Some(true),
        "{}",
        out_of_range.text()
    );
    ranks.push(Rank::spawn("small", 2, size, port, &[]));
    for (r, rank) in ranks.iter_mut().enumerate() {
        assert_eq!(
            rank.finish(deadline),
            Some(true),
            "rank {r}:\n{}",
            rank.text()
        );
        assert!(rank.text().contains("SMALL PASSED"), "{}", rank.text());
    }
    assert_eq!(first.finish(deadline), Some(true), "{}", first.text());
    assert_eq!(second.finish(deadline), Some(true), "{}", second.text());
    let refused = [&first, &second]
        .iter()
        .filter(|r| r.text().contains("REFUSED") && r.text().contains("already taken"))
        .count();
    let passed = [&first, &second]
        .iter()
        .filter(|r| r.text().contains("SMALL PASSED"))
        .count();
    assert_eq!(
        (refused, passed),
        (1, 1),
        "{}\n---\n{}",
        first.text(),
        second.text()
    );
    let log = ranks[0].text();
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
    for (size, victim) in [(2, 1), (4, 2), (3, 0)] {
        let port = free_port();
        let mut ranks: Vec<Rank> = (0..size)
            .map(|r| Rank::spawn("forever", r, size, port, &[]))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        for rank in &mut ranks {
            assert!(rank.wait_for("RUNNING", deadline), "{}", rank.text());
        }
        ranks[victim].child.kill().expect("kill -9");
        let killed = Instant::now();
        let _ = ranks[victim].child.wait();
        for (r, rank) in ranks.iter_mut().enumerate() {
            if r == victim {
                continue;
            }
            let outcome = rank.finish(killed + Duration::from_secs(5));
            let text = rank.text();
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
            let took = rank.exited_at.expect("exited") - killed;
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
    let port = free_port();
    let timeout = [("COBRE_TCP_TIMEOUT_SECS", "1")];
    let mut ranks: Vec<Rank> = (0..size)
        .map(|r| Rank::spawn("forever", r, size, port, &timeout))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for rank in &mut ranks {
        assert!(rank.wait_for("RUNNING", deadline), "{}", rank.text());
    }
    let pid = ranks[victim].child.id().to_string();
    let stopped = Command::new("kill").args(["-STOP", &pid]).status();
    assert!(
        stopped.is_ok_and(|s| s.success()),
        "cannot stop rank {victim}"
    );
    let since = Instant::now();
    for (r, rank) in ranks.iter_mut().enumerate() {
        if r == victim {
            continue;
        }
        let outcome = rank.finish(since + Duration::from_secs(10));
        let text = rank.text();
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
        let took = rank.exited_at.expect("exited") - since;
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "rank {r} reported after {took:?}, expected about the 1 s timeout: {line}"
        );
    }
    let _ = ranks[victim].child.kill();
}

#[test]
fn ipv6_loopback_job() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; nothing to test");
        return;
    }
    let port = free_port();
    let v6 = [("COBRE_TCP_COORDINATOR", "::1"), ("COBRE_TCP_BIND", "::1")];
    let mut ranks: Vec<Rank> = (0..3)
        .map(|r| Rank::spawn("small", r, 3, port, &v6))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (r, rank) in ranks.iter_mut().enumerate() {
        assert_eq!(
            rank.finish(deadline),
            Some(true),
            "rank {r}:\n{}",
            rank.text()
        );
        assert!(rank.text().contains("SMALL PASSED"), "{}", rank.text());
    }
}

#[test]
fn the_factory_builds_the_tcp_backend_from_the_environment() {
    let ranks = run_job("factory", 2, Duration::from_secs(60));
    for rank in &ranks {
        assert!(rank.text().contains("SMALL PASSED"), "{}", rank.text());
    }
}

#[test]
fn dropping_is_graceful_and_an_early_drop_is_reported() {
    // Every rank drops at its own pace after the same calls: nobody sees an error.
    let ranks = run_job("staggered_drop", 3, Duration::from_secs(60));
    for rank in &ranks {
        assert!(rank.text().contains("DROPPED CLEANLY"), "{}", rank.text());
        assert!(!rank.text().contains("cobre-comm tcp:"), "{}", rank.text());
    }
    // Rank 1 leaves after one barrier; the others' second barrier names it.
    let ranks = run_job("early_drop", 3, Duration::from_secs(60));
    for (r, rank) in ranks.iter().enumerate() {
        if r != 1 {
            let text = rank.text();
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
        Rank::spawn_in(Some(&ns.names[0]), "forever", 0, 2, port, &env),
        Rank::spawn_in(Some(&ns.names[1]), "forever", 1, 2, port, &env),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    for rank in &mut ranks {
        assert!(rank.wait_for("RUNNING", deadline), "{}", rank.text());
    }
    assert!(ns.cut(), "cannot cut the link");
    let since = Instant::now();
    for (r, rank) in ranks.iter_mut().enumerate() {
        let outcome = rank.finish(since + Duration::from_secs(10));
        let text = rank.text();
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
        let took = rank.exited_at.expect("exited") - since;
        assert!(
            took < Duration::from_secs(4),
            "rank {r} took {took:?}: {line}"
        );
        eprintln!("rank {r} after {took:?}: {line}");
    }
}

/// The body of every child process; does nothing in a normal test run.
#[allow(clippy::too_many_lines)] // one arm per role
#[test]
fn child_rank() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "conformance" => {
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
        "small" => small(&TcpBackend::from_env().expect("join")),
        "factory" => {
            let selection = cobre_comm::select_backend(cobre_comm::Backend::Auto).unwrap();
            assert_eq!(
                selection.backend,
                cobre_comm::Backend::Tcp,
                "{}",
                selection.reason
            );
            let comm =
                cobre_comm::create_communicator(cobre_comm::BackendKind::Auto).expect("join");
            assert!(matches!(comm, cobre_comm::CommBackend::Tcp(_)), "{comm:?}");
            let cobre_comm::CommBackend::Tcp(tcp) = &comm else {
                unreachable!()
            };
            small(tcp);
        }
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
        "expect_refused" => {
            let err = TcpBackend::from_env().expect_err("must be refused");
            println!("REFUSED: {err}");
        }
        "mismatch" => {
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
        "forever" => {
            let comm = TcpBackend::from_env().expect("join");
            let start = Instant::now();
            let mut i = 0_u64;
            loop {
                let send = [i as f64, 1.0];
                let mut recv = [0.0; 2];
                let result = comm
                    .allreduce(&send, &mut recv, ReduceOp::Sum)
                    .and_then(|()| {
                        if i.is_multiple_of(3) {
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
        other => panic!("unknown role {other}"),
    }
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
