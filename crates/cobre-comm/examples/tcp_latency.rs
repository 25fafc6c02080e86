//! Latency of the TCP backend's collectives on this machine (loopback), in µs per call.
//!
//! ```text
//! cargo run --release --features tcp --example tcp_latency -- 4      # 4 ranks
//! ```
//!
//! Without `COBRE_TCP_RANK` in the environment the example starts the ranks itself (a free
//! port, a random token); with it, it runs as one rank of a job started elsewhere. Each
//! figure is the slowest rank's average over the timed iterations, after a warm-up, with
//! send buffers that change at every iteration.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cobre_comm::tcp_config::{ENV_BIND, ENV_COORDINATOR, ENV_PORT, ENV_RANK, ENV_SIZE, ENV_TOKEN};
use cobre_comm::{Communicator, ReduceOp, TcpBackend};

fn main() {
    if std::env::var_os(ENV_RANK).is_some() {
        let comm = TcpBackend::from_env().expect("join the job");
        run(&comm);
        return;
    }
    let ranks: usize = std::env::args()
        .nth(1)
        .map_or(2, |s| s.parse().expect("the number of ranks"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let token = format!(
        "{:x}",
        Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id())
    );
    let exe = std::env::current_exe().expect("own path");
    let mut children: Vec<_> = (0..ranks)
        .map(|r| {
            Command::new(&exe)
                .env(ENV_RANK, r.to_string())
                .env(ENV_SIZE, ranks.to_string())
                .env(ENV_COORDINATOR, "127.0.0.1")
                .env(ENV_BIND, "127.0.0.1")
                .env(ENV_PORT, port.to_string())
                .env(ENV_TOKEN, &token)
                .stdout(if r == 0 {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                })
                .spawn()
                .expect("start a rank")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut ok = true;
    for child in &mut children {
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                ok &= status.success();
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                ok = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::process::exit(i32::from(!ok));
}

/// Times `iters` calls of `op` after `iters / 10 + 1` warm-up calls; returns the slowest
/// rank's µs per call.
fn time<C: Communicator>(comm: &C, iters: usize, mut op: impl FnMut(usize)) -> f64 {
    for i in 0..=(iters / 10) {
        op(i);
    }
    comm.barrier().unwrap();
    let start = Instant::now();
    for i in 0..iters {
        op(i);
    }
    let mine = [start.elapsed().as_secs_f64() * 1e6 / iters as f64];
    let mut slowest = [0.0];
    comm.allreduce(&mine, &mut slowest, ReduceOp::Max).unwrap();
    slowest[0]
}

fn run<C: Communicator>(comm: &C) {
    let (rank, n) = (comm.rank(), comm.size());
    let report = |what: &str, us: f64| {
        if rank == 0 {
            println!("{n} ranks  {what:<28} {us:>12.2} us");
        }
    };
    let mut one = [0.0_f64];
    report(
        "allreduce 8 B (f64 sum)",
        time(comm, 20_000, |i| {
            comm.allreduce(&[i as f64 + rank as f64], &mut one, ReduceOp::Sum)
                .unwrap();
        }),
    );
    for bytes in [1 << 20, 16 << 20] {
        let counts: Vec<usize> = (0..n)
            .map(|r| (r + 1) * bytes / n - r * bytes / n)
            .collect();
        let displs: Vec<usize> = (0..n).map(|r| r * bytes / n).collect();
        let mut send = vec![rank as u8; counts[rank]];
        let mut recv = vec![0_u8; bytes];
        let iters = if bytes > 1 << 20 { 40 } else { 400 };
        report(
            &format!("allgatherv {} MiB", bytes >> 20),
            time(comm, iters, |i| {
                send[0] = i as u8;
                comm.allgatherv(&send, &mut recv, &counts, &displs).unwrap();
            }),
        );
    }
    for len in [1 << 7, 1 << 17] {
        let mut send = vec![rank as f64; len];
        let mut recv = vec![0.0; len];
        report(
            &format!("allreduce {} KiB (f64 sum)", (len * 8) >> 10),
            time(comm, if len > 1024 { 200 } else { 5000 }, |i| {
                send[0] = i as f64;
                comm.allreduce(&send, &mut recv, ReduceOp::Sum).unwrap();
            }),
        );
    }
    let mut buf = vec![0_u8; 1 << 20];
    report(
        "broadcast 1 MiB",
        time(comm, 400, |i| {
            buf[0] = i as u8;
            comm.broadcast(&mut buf, i % n).unwrap();
        }),
    );
    report("barrier", time(comm, 20_000, |_| comm.barrier().unwrap()));
}
