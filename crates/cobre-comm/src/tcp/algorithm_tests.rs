//! Every tcp algorithm, forced, on jobs of 1 to 9 ranks run as threads of this process:
//! the sizes that exercise the edges of each schedule (one rank, odd and non-power-of-two
//! counts, empty contributions, fewer elements than ranks), checked against plain loops.

use std::net::TcpListener;
use std::time::Duration;

use super::TcpBackend;
use super::config::{ALGORITHMS, TcpConfig};
use crate::algorithm::{Algorithm, Forced, Op};
use crate::traits::Communicator;
use crate::types::ReduceOp;

/// Runs `body` on every rank of a job of `size` threads with `forced` algorithms.
fn job(size: usize, forced: Forced, body: fn(&TcpBackend)) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let ranks: Vec<_> = (0..size)
        .map(|rank| {
            std::thread::spawn(move || {
                let config = TcpConfig {
                    coordinator: Some("127.0.0.1".into()),
                    port,
                    timeout: Duration::from_secs(30),
                    algorithms: forced,
                    ..TcpConfig::new(rank, size)
                };
                let comm = TcpBackend::new(&config).expect("join");
                body(&comm);
            })
        })
        .collect();
    for (rank, handle) in ranks.into_iter().enumerate() {
        assert!(
            handle.join().is_ok(),
            "rank {rank} of {size} failed with {forced}"
        );
    }
}

/// A value of rank `r` at index `i` whose sums round differently in different orders.
#[allow(clippy::cast_precision_loss)]
fn value(r: usize, i: usize) -> f64 {
    let magnitude = [1e16, 1.0, -1e16, 3.5, 1e-3][(r + i) % 5];
    magnitude * (1.0 + (r * 31 + i * 7) as f64 / 97.0)
}

fn gathers(comm: &TcpBackend) {
    let (me, n) = (comm.rank(), comm.size());
    let patterns: Vec<Vec<usize>> = vec![
        (0..n).map(|r| 1 + 3 * r + (r % 2) * 5).collect(),
        (0..n).map(|r| if r % 2 == 0 { 0 } else { r + 1 }).collect(),
        (0..n).map(|r| if r + 1 == n { 5 } else { 0 }).collect(),
        vec![0; n],
        (0..n).map(|r| 40_000 + r).collect(),
    ];
    for counts in patterns {
        // Reversed order, with gaps in between.
        let stride = counts.iter().max().copied().unwrap_or(0) + 3;
        let displs: Vec<usize> = (0..n).map(|r| (n - 1 - r) * stride + 2).collect();
        let len = n * stride + 2;
        let send: Vec<u32> = (0..counts[me]).map(|i| (me * 100_000 + i) as u32).collect();
        let mut recv = vec![u32::MAX; len];
        comm.allgatherv(&send, &mut recv, &counts, &displs)
            .expect("allgatherv");
        let mut expected = vec![u32::MAX; len];
        for r in 0..n {
            for i in 0..counts[r] {
                expected[displs[r] + i] = (r * 100_000 + i) as u32;
            }
        }
        assert_eq!(recv, expected, "rank {me} of {n}, counts {counts:?}");
    }
}

fn reductions(comm: &TcpBackend) {
    let (me, n) = (comm.rank(), comm.size());
    for len in [1, 2, n.saturating_sub(1).max(1), 17, 5000] {
        let send: Vec<f64> = (0..len).map(|i| value(me, i)).collect();
        let mut recv = vec![0.0; len];
        comm.allreduce(&send, &mut recv, ReduceOp::Sum)
            .expect("allreduce");
        let expected: Vec<f64> = (0..len)
            .map(|i| (1..n).fold(value(0, i), |acc, r| acc + value(r, i)))
            .collect();
        let same = recv
            .iter()
            .zip(&expected)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "rank {me} of {n}: sum of {len} is not the rank-order fold"
        );
        let send: Vec<i32> = (0..len).map(|i| ((me * 7 + i) % 11) as i32).collect();
        let mut recv = vec![0; len];
        comm.allreduce(&send, &mut recv, ReduceOp::Max)
            .expect("allreduce");
        let expected: Vec<i32> = (0..len)
            .map(|i| (0..n).map(|r| ((r * 7 + i) % 11) as i32).max().unwrap())
            .collect();
        assert_eq!(recv, expected, "rank {me} of {n}: max of {len}");
    }
}

fn broadcasts(comm: &TcpBackend) {
    let (me, n) = (comm.rank(), comm.size());
    for root in 0..n {
        for len in [0, 1, 1001, 70_000] {
            let expected: Vec<u8> = (0..len).map(|i| (i * 13 + root) as u8).collect();
            let mut buf = if me == root {
                expected.clone()
            } else {
                vec![0xEE; len]
            };
            comm.broadcast(&mut buf, root).expect("broadcast");
            assert!(
                buf == expected,
                "rank {me} of {n}: broadcast of {len} from {root}"
            );
        }
    }
    comm.barrier().expect("barrier");
}

/// The `i`-th algorithm of every collective (its last one when it has fewer).
fn column(i: usize) -> Forced {
    ALGORITHMS.iter().fold(Forced::NONE, |forced, (op, algs)| {
        forced.with(*op, Some(algs[i.min(algs.len() - 1)]))
    })
}

#[test]
fn every_forced_algorithm_on_1_to_9_ranks() {
    let columns = ALGORITHMS.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
    for i in 0..columns {
        for size in [1, 2, 3, 4, 5, 7, 8, 9] {
            let forced = column(i);
            job(size, forced, |comm| {
                gathers(comm);
                reductions(comm);
                broadcasts(comm);
            });
        }
    }
}

#[test]
fn the_default_picks_on_8_ranks() {
    // Small messages take the log-p algorithms here, large ones the ring and the
    // reduce-scatter.
    assert_eq!(column(2).get(Op::Allgatherv), Some(Algorithm::Ring));
    job(8, Forced::NONE, |comm| {
        gathers(comm);
        reductions(comm);
        broadcasts(comm);
    });
}
