//! Every tcp algorithm, forced, on jobs of 1 to 9 ranks run as threads of this process:
//! the sizes that exercise the edges of each schedule (one rank, odd and non-power-of-two
//! counts, empty contributions, fewer elements than ranks), checked against plain loops.

use std::net::TcpListener;
use std::time::Duration;

use std::sync::Arc;

use super::TcpBackend;
use super::config::{ALGORITHMS, TcpConfig};
use super::hosts::Hosts;
use crate::algorithm::{Algorithm, Forced, Op};
use crate::collective_checks;
use crate::traits::Communicator;

/// Runs `body` on every rank of a job of `size` threads with `forced` algorithms.
fn job(size: usize, forced: Forced, body: fn(&TcpBackend)) {
    job_on_hosts(size, forced, |size| vec![(0..size).collect()], body);
}

/// The ranks of each host of a job of the given size.
type Layout = fn(usize) -> Vec<Vec<usize>>;

/// As [`job`], but the ranks believe they run on the hosts `hosts(size)` lists (the
/// threads share one machine; the schedules that depend on hosts run as they would).
fn job_on_hosts(size: usize, forced: Forced, hosts: Layout, body: fn(&TcpBackend)) {
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
                let layout = Arc::new(Hosts::from_members(size, hosts(size)));
                comm.calls.with_transport(|mesh, _| mesh.hosts = layout);
                body(&comm);
            })
        })
        .collect();
    for (rank, handle) in ranks.into_iter().enumerate() {
        assert!(
            handle.join().is_ok(),
            "rank {rank} of {size} failed with {forced} on hosts {:?}",
            hosts(size)
        );
    }
}

fn gathers(comm: &TcpBackend) {
    collective_checks::gathers(comm, 40_000);
}

fn reductions(comm: &TcpBackend) {
    let n = comm.size();
    collective_checks::reductions(comm, &[1, 2, n.saturating_sub(1).max(1), 17, 5000]);
}

fn broadcasts(comm: &TcpBackend) {
    collective_checks::broadcasts(comm, &[0, 1, 1001, 70_000]);
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

/// Host layouts for the schedules that depend on hosts: blocks, ranks dealt round-robin,
/// hosts of different sizes interleaved, and one rank per host.
const LAYOUTS: [Layout; 4] = [
    |size| {
        let half = size.div_ceil(2);
        vec![(0..half).collect(), (half..size).collect()]
    },
    |size| (0..3).map(|h| (h..size).step_by(3).collect()).collect(),
    |size| {
        let (few, many) = (0..size).partition(|r| r % 4 == 1);
        vec![many, few]
    },
    |size| (0..size).map(|r| vec![r]).collect(),
];

#[test]
fn the_default_picks_on_hosts_of_every_shape() {
    // On two hosts of four in blocks the large allreduce goes around the ring and the
    // small one through the hosts' first ranks (`host-bruck`).
    let shape = super::allreduce::Shape {
        ranks: 8,
        hosts: 2,
        blocks: true,
    };
    let pick = |bytes: usize| super::allreduce::pick(None, shape, bytes, bytes / 8);
    assert_eq!(pick(200_000 * 8), Algorithm::Ring);
    assert_eq!(pick(8), Algorithm::HostBruck);
    for hosts in LAYOUTS {
        job_on_hosts(8, Forced::NONE, hosts, |comm| {
            collective_checks::reductions(comm, &[1, 7, 9, 5000, 200_000]);
            gathers(comm);
        });
    }
}

#[test]
fn the_allreduces_that_route_by_host_on_hosts_of_every_shape() {
    for algorithm in [Algorithm::ReduceScatterGrid, Algorithm::HostBruck] {
        let forced = Forced::NONE.with(Op::Allreduce, Some(algorithm));
        for hosts in LAYOUTS {
            for size in [1, 2, 3, 4, 5, 7, 9] {
                job_on_hosts(size, forced, hosts, |comm| {
                    let n = comm.size();
                    collective_checks::reductions(
                        comm,
                        &[1, 2, n.saturating_sub(1).max(1), n + 1, 17, 5000],
                    );
                });
            }
        }
    }
}
