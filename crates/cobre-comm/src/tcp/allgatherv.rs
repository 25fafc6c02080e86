//! allgatherv: picks a named algorithm and runs it.
//!
//! | algorithm | rounds | picked when |
//! |---|---|---|
//! | `direct` (`allgatherv_direct.rs`) | 1 | up to [`DIRECT_MAX_RANKS`] ranks, at every size |
//! | `bruck` (`allgatherv_bruck.rs`) | `ceil(log2 p)` | more ranks, below [`RING_MIN_BYTES`] gathered, or larger gathers while forwarding through the host links is cheap ([`forwarding_is_cheap`]) |
//! | `ring` (`allgatherv_ring.rs`) | `p - 1` | more ranks, larger gathers, many ranks per host |
//!
//! `COBRE_TCP_ALGORITHMS=allgatherv=NAME` forces one at every size.

use super::exchange::Exchange;
use super::hosts::ranks_per_host;
use super::transport::Fail;
use super::{DIRECT_MAX_RANKS, allgatherv_bruck, allgatherv_direct, allgatherv_ring};
use crate::algorithm::{Algorithm, Op};
use crate::fingerprint::Fingerprint;

/// Gathers of at least this many bytes in all (on more than [`DIRECT_MAX_RANKS`] ranks)
/// go around the ring, unless [`forwarding_is_cheap`] (never on one host): there the
/// per-round latency no longer matters, and each rank talks only to its two neighbours.
pub(crate) const RING_MIN_BYTES: usize = 256 << 10;

/// What one round of the ring costs, in bytes a host's link moves meanwhile: a hop
/// within a host costs [`RING_LOCAL_ROUND_BYTES`], and with `k` ranks per host one hop in
/// `k` crosses to the next host and costs [`RING_REMOTE_ROUND_BYTES`] more. The ring's
/// ranks forward as soon as they receive, so its `p - 1` rounds cost the average hop.
/// Fitted to the network model (25 GbE, `cobre-comm model --algorithms allgatherv=...`,
/// us per call, ring against Bruck, the pick first): 16 ranks per host, 1 MiB, 256 ranks
/// 2401 against 5389 (ring), 512 ranks 4376 against 5444 (ring), 1024 ranks 5481 against
/// 8326 (Bruck); 2 per host, 32 ranks, 1 MiB 731 against 917 (Bruck); 4 per host, 64
/// ranks, 1 MiB 1091 against 1402 (ring); 1024 ranks, 16 MiB, 2 per host 10900 against
/// 21537 (Bruck), 4 per host 17714 against 21607 (ring).
pub(crate) const RING_LOCAL_ROUND_BYTES: usize = 12 << 10;

/// See [`RING_LOCAL_ROUND_BYTES`].
pub(crate) const RING_REMOTE_ROUND_BYTES: usize = 96 << 10;

/// Whether Bruck's `ceil(log2 p)` rounds beat the ring's `p - 1` for a gather of `total`
/// bytes on `ranks` ranks over `hosts` hosts. Both receive every block once, but Bruck
/// sends most blocks off the host (its partners sit `2^k` ranks away) while the ring
/// crosses each host boundary once, from one rank per host: with `k` ranks per host, a
/// host's link carries about `k` times the gather under Bruck and once under the ring.
/// Bruck wins while those `(k - 1) total` extra bytes take less than the ring's `p - 1 -
/// ceil(log2 p)` extra rounds (each worth [`RING_LOCAL_ROUND_BYTES`] plus a `k`-th of
/// [`RING_REMOTE_ROUND_BYTES`]). With one rank per host Bruck always wins; on one host
/// (all ranks on loopback) the ring does for every gather from [`RING_MIN_BYTES`].
pub(crate) fn forwarding_is_cheap(ranks: usize, hosts: usize, total: usize) -> bool {
    let per_host = ranks_per_host(ranks, hosts);
    let rounds = ranks.next_power_of_two().trailing_zeros() as usize;
    let saved_rounds = ranks.saturating_sub(1 + rounds);
    let round_bytes = RING_LOCAL_ROUND_BYTES + RING_REMOTE_ROUND_BYTES / per_host;
    (per_host - 1).saturating_mul(total) <= saved_rounds.saturating_mul(round_bytes)
}

pub(crate) fn pick(
    forced: Option<Algorithm>,
    (ranks, hosts): (usize, usize),
    total: usize,
) -> Algorithm {
    match forced {
        Some(forced @ (Algorithm::Direct | Algorithm::Bruck | Algorithm::Ring)) => forced,
        _ if ranks <= DIRECT_MAX_RANKS => Algorithm::Direct,
        _ if total < RING_MIN_BYTES || forwarding_is_cheap(ranks, hosts, total) => Algorithm::Bruck,
        _ => Algorithm::Ring,
    }
}

pub(crate) fn allgatherv(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[u8],
    recv: &mut [u8],
    ranges: &[(usize, usize)],
) -> Result<(), Fail> {
    let total = ranges.iter().map(|&(start, end)| end - start).sum();
    let algorithm = pick(
        mesh.forced().get(Op::Allgatherv),
        (mesh.size(), mesh.hosts().count()),
        total,
    );
    let fp = &fp.with_algorithm(algorithm);
    match algorithm {
        Algorithm::Bruck => allgatherv_bruck::run(mesh, fp, send, recv, ranges),
        Algorithm::Ring => allgatherv_ring::run(mesh, fp, send, recv, ranges),
        _ => allgatherv_direct::run(mesh, fp, send, recv, ranges),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_ranks_go_direct_more_ranks_bruck_then_ring_on_one_host() {
        assert_eq!(pick(None, (1, 1), 0), Algorithm::Direct);
        assert_eq!(
            pick(None, (DIRECT_MAX_RANKS, 1), 1 << 30),
            Algorithm::Direct
        );
        assert_eq!(pick(None, (DIRECT_MAX_RANKS + 1, 1), 0), Algorithm::Bruck);
        assert_eq!(pick(None, (1024, 1), RING_MIN_BYTES - 1), Algorithm::Bruck);
        assert_eq!(pick(None, (1024, 1), RING_MIN_BYTES), Algorithm::Ring);
        assert_eq!(pick(None, (64, 1), RING_MIN_BYTES), Algorithm::Ring);
        assert_eq!(pick(None, (5, 1), RING_MIN_BYTES), Algorithm::Ring);
    }

    #[test]
    fn large_gathers_go_bruck_while_the_host_links_carry_it_cheaply() {
        let (bruck, ring) = (Algorithm::Bruck, Algorithm::Ring);
        // One rank per host: Bruck's forwarding costs the links nothing extra.
        assert_eq!(pick(None, (64, 64), 1 << 20), bruck);
        assert_eq!(pick(None, (4096, 4096), 256 << 20), bruck);
        // 16 ranks per host: 1 MiB from 1024 ranks on, not 16 MiB.
        assert_eq!(pick(None, (1024, 64), 1 << 20), bruck);
        assert_eq!(pick(None, (512, 32), 1 << 20), ring);
        assert_eq!(pick(None, (256, 16), 1 << 20), ring);
        assert_eq!(pick(None, (1024, 64), 16 << 20), ring);
        // 16 MiB on 1024 ranks: two per host Bruck, four the ring.
        assert_eq!(pick(None, (1024, 512), 16 << 20), bruck);
        assert_eq!(pick(None, (1024, 256), 16 << 20), ring);
        // 2 per host: 1 MiB Bruck, 4 per host the ring.
        assert_eq!(pick(None, (32, 16), 1 << 20), bruck);
        assert_eq!(pick(None, (64, 16), 1 << 20), ring);
        // Few hosts: the ring.
        assert_eq!(pick(None, (32, 2), 1 << 20), ring);
        assert_eq!(pick(None, (6, 3), 1 << 20), ring);
    }

    #[test]
    fn a_forced_algorithm_runs_at_every_size() {
        for forced in [Algorithm::Direct, Algorithm::Bruck, Algorithm::Ring] {
            for (ranks, total) in [(1, 0), (3, 7), (8, 1 << 30)] {
                assert_eq!(pick(Some(forced), (ranks, 8), total), forced);
            }
        }
    }
}
