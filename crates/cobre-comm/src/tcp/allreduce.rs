//! allreduce: picks a named algorithm and runs it. All seven compute exactly the
//! rank-order fold `((x0 op x1) op x2) op ...` of every element, on every rank.
//!
//! | algorithm | rounds | picked when |
//! |---|---|---|
//! | `direct` (`allreduce_direct.rs`) | 1 | small buffers on up to [`DIRECT_MAX_RANKS`] ranks |
//! | `bruck` (`allreduce_bruck.rs`) | `ceil(log2 p)` | small buffers on more ranks, unless `host-bruck` is |
//! | `host-bruck` (`allreduce_host_bruck.rs`) | `ceil(log2 h) + 2` | small buffers on more ranks over several hosts of several ranks each, where it is ahead ([`host_bruck_is_ahead`]): one rank per host sends across the hosts' links |
//! | `reduce-scatter-allgather` (`allreduce_reduce_scatter_allgather.rs`) | 2 | above [`SMALL_MAX_BYTES`], with at least as many elements as ranks, unless `reduce-scatter-bruck` is |
//! | `reduce-scatter-bruck` (`allreduce_reduce_scatter_bruck.rs`) | `2 ceil(log2 p)` | above [`SMALL_MAX_BYTES`] from [`REDUCE_SCATTER_BRUCK_MIN_RANKS`] ranks while its forwarding through the host links is cheap (`forwarding_is_cheap`): between neighbours only, `O(log p)` connections |
//! | `reduce-scatter-grid` (`allreduce_reduce_scatter_grid.rs`) | 4 | above [`SMALL_MAX_BYTES`] on several hosts with several ranks each, where the grid is ahead ([`grid_is_ahead`]): `k - 1 + h - 1` connections for `k` ranks on each of `h` hosts |
//! | `ring` (`allreduce_ring.rs`) | `m + 2 p - 3` | above [`SMALL_MAX_BYTES`] on several hosts whose ranks are consecutive, while its rounds cost less than the bytes it keeps off the hosts' links ([`ring_is_ahead`]): it crosses each host's link from one rank; every message goes to the next rank, so it needs no connection beyond the neighbours (force it where descriptors are scarce). On one host of 3 to [`RING_ONE_HOST_MAX_RANKS`] ranks from [`RING_ONE_HOST_MIN_BYTES`]: it folds each piece while the next is on its way
//!
//! `COBRE_TCP_ALGORITHMS=allreduce=NAME` forces one at every size. [`SMALL_MAX_BYTES`] is
//! the crossover measured on loopback with `cobre-comm bench --algorithms`
//! (docs/PERFORMANCE.md, "tcp crossovers"): on 3 and 4 ranks `direct` wins up to 32 KiB
//! and `reduce-scatter-allgather` from 64 KiB; on 2 ranks the two tie from 64 KiB to
//! 256 KiB (moving the 2-rank threshold to 256 KiB gained nothing measurable).
//!
//! The small-buffer algorithms gather every contribution and fold locally; they never
//! combine partial results in tree order, which would change the rounding of `Sum`.

use super::exchange::Exchange;
use super::hosts::ranks_per_host;
use super::transport::Fail;
use super::{
    DIRECT_MAX_RANKS, allreduce_bruck, allreduce_direct, allreduce_host_bruck,
    allreduce_reduce_scatter_allgather, allreduce_reduce_scatter_bruck,
    allreduce_reduce_scatter_grid, allreduce_ring,
};
use crate::algorithm::{Algorithm, Op};
use crate::copy::copy;
use crate::fingerprint::Fingerprint;
use crate::reduce::{combine_into, reduce_into};
use crate::traits::CommData;
use crate::types::ReduceOp;

/// Contributions up to this many bytes are small: every rank gathers all of them and folds
/// locally (`direct` or `bruck`). Larger ones are reduced chunk by chunk by their owners.
pub(crate) const SMALL_MAX_BYTES: usize = 32 << 10;

/// Large allreduces on at least this many ranks may go `reduce-scatter-bruck` (see
/// [`forwarding_is_cheap`]).
pub(crate) const REDUCE_SCATTER_BRUCK_MIN_RANKS: usize = 256;

/// What `reduce-scatter-bruck` may forward through a host's link, per rank of the job.
pub(crate) const REDUCE_SCATTER_BRUCK_BYTES_PER_RANK: usize = 16 << 10;

/// Whether `reduce-scatter-bruck` is ahead of `reduce-scatter-allgather` for `bytes` on
/// `ranks` ranks over `hosts` hosts. `reduce-scatter-allgather` sends `2 (p - 1)` messages
/// per rank, whatever the size; `reduce-scatter-bruck` sends `2 ceil(log2 p)` but forwards
/// about `(bytes / 2) ceil(log2 p)` through each rank's share of its host's link. In the
/// network model (25 GbE, docs/PERFORMANCE.md) it leads while
/// `bytes x ranks per host x ceil(log2 p) <= p x 16 KiB`, from 256 ranks: one rank per
/// host, 256 ranks up to 512 KiB (1127 against 1530 us), 1024 ranks at 1 MiB (2373
/// against 6138), 2048 at 1 MiB (2577 against 12282); 16 per host, 1024 ranks at 64 KiB
/// (2283 against 6138). Below 256 ranks, or past that budget, it trails (256 ranks, 16 per
/// host, 64 KiB: 1866 against 1538; one per host, 256 ranks, 1 MiB: 1965 against 1530).
fn forwarding_is_cheap(ranks: usize, hosts: usize, bytes: usize) -> bool {
    let per_host = ranks_per_host(ranks, hosts);
    let rounds = ranks.next_power_of_two().trailing_zeros() as usize;
    ranks >= REDUCE_SCATTER_BRUCK_MIN_RANKS
        && bytes.saturating_mul(per_host).saturating_mul(rounds)
            <= ranks.saturating_mul(REDUCE_SCATTER_BRUCK_BYTES_PER_RANK)
}

/// Large allreduces on hosts of at least this many ranks go `reduce-scatter-grid`.
pub(crate) const GRID_MIN_RANKS_PER_HOST: usize = 8;

/// Large allreduces on at least this many ranks, with more than one per host, go
/// `reduce-scatter-grid` unless `reduce-scatter-bruck` is cheap.
pub(crate) const GRID_MIN_RANKS: usize = 512;

/// Whether `reduce-scatter-grid` is ahead for a large allreduce on `ranks` ranks over
/// `hosts` hosts. It sends `2 (k - 1) + 2 (h - 1)` messages per rank instead of `2 (p -
/// 1)` for the same bytes across each host's link, in four steps instead of two: in the
/// network model (25 GbE, docs/PERFORMANCE.md) it leads from 8 ranks per host (64 ranks
/// on 8 hosts, 1 MiB: 5508 against 6057 us; 1024 on 64 at 64 KiB: 884 against
/// `reduce-scatter-bruck`'s 2283, at 1 MiB 11740 against 14159; 16 on 2 hosts, 1 MiB:
/// 2472 against 3332), and from 512 ranks with 2-4 per host where `reduce-scatter-bruck`
/// is not cheap (1024 ranks on 256 hosts, 1 MiB: 3781 against 6138). With 2-4 per host on
/// fewer ranks it trails by up to 10% (32 ranks on 8 hosts, 1 MiB: 3174 against 3029),
/// and with one per host it is `reduce-scatter-allgather`.
fn grid_is_ahead(ranks: usize, hosts: usize, forwarding_is_cheap: bool) -> bool {
    let per_host = ranks_per_host(ranks, hosts);
    hosts > 1
        && per_host > 1
        && (per_host >= GRID_MIN_RANKS_PER_HOST
            || (ranks >= GRID_MIN_RANKS && !forwarding_is_cheap))
}

/// Small allreduces go `host-bruck` on hosts of at most this many ranks.
pub(crate) const HOST_BRUCK_ANY_HOSTS_MAX_RANKS_PER_HOST: usize = 8;

/// Small allreduces go `host-bruck` from this many hosts, however many ranks each runs.
pub(crate) const HOST_BRUCK_MIN_HOSTS: usize = 16;

/// Whether `host-bruck` is ahead of `bruck` for a small allreduce on `ranks` ranks over
/// `hosts` hosts. `bruck` sends every contribution across the hosts' links from every
/// rank, up to `p / 2` of them per frame in its last rounds; `host-bruck` sends them from
/// one rank per host, a `k`-th of the bytes with `k` ranks per host, but its leaders
/// receive and send `k - 1` frames within the host. In the network model (25 GbE,
/// docs/PERFORMANCE.md) it leads with 2-8 ranks per host from 8 ranks (8 per host, 1024
/// ranks: 156 against 179 us; 4096: 200 against 278), and on more ranks per host from 16
/// hosts (16 per host, 256 ranks: 119 against 122; 1024: 157 against 190; 4096: 200
/// against 353); on fewer hosts it trails (16 per host, 64 ranks: 82 against 78; 32 per
/// host, 64 ranks: 100 against 69).
fn host_bruck_is_ahead(ranks: usize, hosts: usize) -> bool {
    let per_host = ranks_per_host(ranks, hosts);
    hosts > 1
        && per_host > 1
        && (per_host <= HOST_BRUCK_ANY_HOSTS_MAX_RANKS_PER_HOST || hosts >= HOST_BRUCK_MIN_HOSTS)
}

/// The fewest and the most ranks on one host for which the `ring` may be picked (from
/// [`RING_ONE_HOST_MIN_BYTES`]). Beyond the most measured here its `m + 2 p - 3` rounds
/// grow, and `reduce-scatter-allgather` stays the pick until a larger node measures them.
/// On 2 ranks `reduce-scatter-allgather` leads at every size since its owners fold in
/// place ([`allreduce_direct::received_in_place`]): medians of three interleaved jobs,
/// 4 MiB 1075 against the ring's 1275 us, 16 MiB 4237 against 5038, 64 MiB 20.8 against
/// 24.7 ms (`docs/perf/tcp-allreduce-fold.txt`).
pub(crate) const RING_ONE_HOST_MIN_RANKS: usize = 3;
/// See [`RING_ONE_HOST_MIN_RANKS`].
pub(crate) const RING_ONE_HOST_MAX_RANKS: usize = 4;

/// From how many bytes the `ring` is ahead of `reduce-scatter-allgather` on 3 and 4 ranks
/// of one host. Measured on loopback, both forced, rounds interleaved
/// (docs/PERFORMANCE.md, "tcp crossovers"), with the owners folding in place: 3 ranks,
/// 2 MiB 1859 us against the ring's 1661, 4 MiB 4560 against 3013, 16 MiB 16.3 ms against
/// 12.3; 4 ranks, 2 MiB 2275 against 2031, 4 MiB 6217 against 3755, 16 MiB 22.2 against
/// 21.1 (at 8 MiB 10.4 against 11.6: these ranks share 2 cores, and their rounds vary).
/// At 2 MiB the ring leads by a tenth, within a round's spread; 4 MiB keeps the margin.
pub(crate) const RING_ONE_HOST_MIN_BYTES: usize = 4 << 20;

/// What one round of the `ring` allreduce costs, in bytes a host's link moves meanwhile:
/// a hop within a host (loopback latency and two message overheads, about 7 us on the
/// modelled 25 GbE cluster).
pub(crate) const RING_ROUND_BYTES: usize = 22 << 10;

/// Whether the `ring` is ahead for a large allreduce of `bytes` (`len` elements) on
/// `ranks` ranks over `hosts` hosts whose ranks are consecutive (Slurm's block
/// placement). The ring then crosses each host's link from one rank, which carries about
/// `2 n` each way, where the others' links carry about `2 n k (h - 1) / h` with `k` ranks
/// on each of `h` hosts; it pays `m + 2 p - 3` rounds for it (`m` pieces,
/// `allreduce_ring::pieces`), each worth [`RING_ROUND_BYTES`], and about `2.5 n` of
/// copies through loopback. In the network model (25 GbE, docs/PERFORMANCE.md) this
/// matches every cell measured: 16 ranks per host, 1 MiB, 64 ranks 2654 against
/// `reduce-scatter-grid`'s 7930 us, 256 ranks 4542 against 10951, 1024 ranks 14766
/// against 11740 (grid); 16 MiB on 64 ranks 23076 against 126145; 4 per host, 1 MiB, 64
/// ranks 3098 against 3229, 256 ranks 5433 against 3407 (`reduce-scatter-allgather`);
/// 2 per host, 16 MiB, 64 ranks 25087 against 26123, 256 ranks 34377 against 26719.
///
/// On one host of [`RING_ONE_HOST_MIN_RANKS`] to [`RING_ONE_HOST_MAX_RANKS`] ranks, the
/// ring is ahead from [`RING_ONE_HOST_MIN_BYTES`]: there it keeps nothing off a link, but
/// each rank folds a piece while the next one is on its way, in cache, where
/// `reduce-scatter-allgather` receives a whole chunk before it folds it.
fn ring_is_ahead(shape: Shape, bytes: usize, len: usize) -> bool {
    let Shape {
        ranks,
        hosts,
        blocks,
    } = shape;
    let hosts = hosts.clamp(1, ranks.max(1));
    if hosts == 1 {
        return (RING_ONE_HOST_MIN_RANKS..=RING_ONE_HOST_MAX_RANKS).contains(&ranks)
            && bytes >= RING_ONE_HOST_MIN_BYTES;
    }
    let per_host = ranks_per_host(ranks, hosts);
    if !blocks || per_host < 2 {
        return false;
    }
    let pieces = allreduce_ring::pieces(len, bytes, ranks);
    let ring = (pieces + 2 * ranks)
        .saturating_mul(RING_ROUND_BYTES)
        .saturating_add(bytes / 2 * 5);
    let others = bytes.saturating_mul(2 * per_host).saturating_mul(hosts - 1) / hosts;
    ring <= others
}

/// The shape of a job as the picks see it: its ranks, its hosts, and whether each host's
/// ranks are consecutive (as the model and Slurm's block placement put them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub ranks: usize,
    pub hosts: usize,
    pub blocks: bool,
}

impl From<(usize, usize)> for Shape {
    /// `ranks` over `hosts` hosts, in blocks.
    fn from((ranks, hosts): (usize, usize)) -> Shape {
        Shape {
            ranks,
            hosts,
            blocks: true,
        }
    }
}

/// The algorithm for `len` elements (`bytes` bytes) on `ranks` ranks over `hosts` hosts:
/// the `forced` one, else for large buffers (at least one element per rank)
/// `reduce-scatter-grid` where it is ahead ([`grid_is_ahead`]), `reduce-scatter-bruck`
/// where its forwarding is cheap ([`forwarding_is_cheap`]) and `reduce-scatter-allgather`
/// elsewhere (the `ring` before all three where it is ahead, [`ring_is_ahead`]), else `direct` up to [`DIRECT_MAX_RANKS`] ranks and above it `host-bruck`
/// where it is ahead ([`host_bruck_is_ahead`]) and `bruck` elsewhere.
pub(crate) fn pick(
    forced: Option<Algorithm>,
    shape: impl Into<Shape>,
    bytes: usize,
    len: usize,
) -> Algorithm {
    let shape = shape.into();
    let (ranks, hosts) = (shape.ranks, shape.hosts);
    match forced {
        Some(
            forced @ (Algorithm::Direct
            | Algorithm::ReduceScatterAllgather
            | Algorithm::Bruck
            | Algorithm::ReduceScatterBruck
            | Algorithm::ReduceScatterGrid
            | Algorithm::HostBruck
            | Algorithm::Ring),
        ) => forced,
        _ if ranks > 1 && bytes > SMALL_MAX_BYTES && len >= ranks => {
            let cheap = forwarding_is_cheap(ranks, hosts, bytes);
            if ring_is_ahead(shape, bytes, len) {
                Algorithm::Ring
            } else if grid_is_ahead(ranks, hosts, cheap) {
                Algorithm::ReduceScatterGrid
            } else if cheap {
                Algorithm::ReduceScatterBruck
            } else {
                Algorithm::ReduceScatterAllgather
            }
        }
        _ if ranks > DIRECT_MAX_RANKS && host_bruck_is_ahead(ranks, hosts) => Algorithm::HostBruck,
        _ if ranks > DIRECT_MAX_RANKS => Algorithm::Bruck,
        _ => Algorithm::Direct,
    }
}

pub(crate) fn allreduce<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), Fail> {
    let shape = Shape {
        ranks: mesh.size(),
        hosts: mesh.hosts().count(),
        blocks: mesh.hosts().in_blocks(),
    };
    let algorithm = pick(
        mesh.forced().get(Op::Allreduce),
        shape,
        std::mem::size_of_val(send),
        send.len(),
    );
    let fp = &fp.with_algorithm(algorithm);
    // What the algorithms receive lands in a buffer kept by the mesh, so large reductions
    // do not map fresh pages at every call.
    let mut scratch = std::mem::take(mesh.scratch());
    let result = match algorithm {
        Algorithm::ReduceScatterAllgather => {
            allreduce_reduce_scatter_allgather::run(mesh, fp, send, recv, op, &mut scratch)
        }
        Algorithm::ReduceScatterBruck => {
            allreduce_reduce_scatter_bruck::run(mesh, fp, send, recv, op, &mut scratch)
        }
        Algorithm::ReduceScatterGrid => {
            allreduce_reduce_scatter_grid::run(mesh, fp, send, recv, op, &mut scratch)
        }
        Algorithm::Bruck => allreduce_bruck::run(mesh, fp, send, recv, op, &mut scratch),
        Algorithm::HostBruck => allreduce_host_bruck::run(mesh, fp, send, recv, op, &mut scratch),
        Algorithm::Ring => allreduce_ring::run(mesh, fp, send, recv, op),
        _ => allreduce_direct::run(mesh, fp, send, recv, op, &mut scratch),
    };
    *mesh.scratch() = scratch;
    result
}

/// Folds the contributions of ranks `0..n` into `out` in rank order; `piece(r)` is rank
/// `r`'s (as long as `out`).
pub(super) fn fold_in_rank_order<'a, T: CommData>(
    out: &mut [T],
    n: usize,
    piece: impl Fn(usize) -> &'a [T],
    op: ReduceOp,
) {
    if n == 1 {
        copy(out, piece(0));
        return;
    }
    combine_into(out, piece(0), piece(1), op).expect("checked reducible, equal lengths");
    for r in 2..n {
        reduce_into(out, piece(r), op).expect("checked reducible, equal lengths");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffers_go_direct_on_few_ranks_and_bruck_on_more() {
        let small = SMALL_MAX_BYTES;
        assert_eq!(pick(None, (1, 1), 8, 1), Algorithm::Direct);
        assert_eq!(
            pick(None, (DIRECT_MAX_RANKS, 1), small, small / 8),
            Algorithm::Direct
        );
        assert_eq!(
            pick(None, (DIRECT_MAX_RANKS + 1, 1), 8, 1),
            Algorithm::Bruck
        );
        assert_eq!(pick(None, (64, 1), small, small / 8), Algorithm::Bruck);
    }

    #[test]
    fn small_buffers_on_hosts_of_several_ranks_gather_by_host() {
        let host_bruck = Algorithm::HostBruck;
        // 2-8 ranks per host: from a few hosts.
        assert_eq!(pick(None, (8, 2), 8, 1), host_bruck);
        assert_eq!(pick(None, (4096, 512), 8, 1), host_bruck);
        // More per host: from 16 hosts.
        assert_eq!(pick(None, (64, 4), 8, 1), Algorithm::Bruck);
        assert_eq!(pick(None, (256, 16), 8, 1), host_bruck);
        assert_eq!(pick(None, (4096, 256), SMALL_MAX_BYTES, 1), host_bruck);
        assert_eq!(pick(None, (512, 16), 8, 1), host_bruck);
        // One rank per host, one host, or few ranks: as before.
        assert_eq!(pick(None, (1024, 1024), 8, 1), Algorithm::Bruck);
        assert_eq!(pick(None, (64, 1), 8, 1), Algorithm::Bruck);
        assert_eq!(pick(None, (4, 2), 8, 1), Algorithm::Direct);
        // Large buffers keep their algorithms.
        assert_ne!(pick(None, (256, 16), 1 << 20, 1 << 17), host_bruck);
    }

    #[test]
    fn large_buffers_reduce_scatter_unless_shorter_than_the_job() {
        let large = SMALL_MAX_BYTES + 8;
        assert_eq!(
            pick(None, (2, 1), large, large / 8),
            Algorithm::ReduceScatterAllgather
        );
        assert_eq!(
            pick(None, (64, 1), large, large / 8),
            Algorithm::ReduceScatterAllgather
        );
        assert_eq!(pick(None, (1, 1), large, large / 8), Algorithm::Direct);
        // Fewer elements than ranks: some owners would get empty chunks.
        assert_eq!(pick(None, (8, 1), 1 << 20, 4), Algorithm::Bruck);
    }

    #[test]
    fn large_buffers_on_many_hosts_forward_through_neighbours_while_that_is_cheap() {
        let rsb = Algorithm::ReduceScatterBruck;
        let rsa = Algorithm::ReduceScatterAllgather;
        // One rank per host (the model's figures in the doc of `forwarding_is_cheap`).
        assert_eq!(pick(None, (256, 256), 512 << 10, 64 << 10), rsb);
        assert_eq!(pick(None, (256, 256), 1 << 20, 128 << 10), rsa);
        assert_eq!(pick(None, (1024, 1024), 1 << 20, 128 << 10), rsb);
        assert_eq!(pick(None, (2048, 2048), 1 << 20, 128 << 10), rsb);
        assert_eq!(pick(None, (1024, 1024), 16 << 20, 2 << 20), rsa);
        // 2 and 4 ranks per host share each link.
        assert_eq!(pick(None, (1024, 256), 64 << 10, 8 << 10), rsb);
        assert_eq!(pick(None, (2048, 1024), 1 << 20, 128 << 10), rsb);
        // Below 256 ranks, and on one host, never.
        assert_eq!(pick(None, (128, 128), 64 << 10, 8 << 10), rsa);
        assert_eq!(pick(None, (128, 32), 64 << 10, 8 << 10), rsa);
        assert_eq!(pick(None, (4096, 1), 64 << 10, 8 << 10), rsa);
    }

    #[test]
    fn large_buffers_on_hosts_in_blocks_go_around_the_ring_while_its_rounds_are_few() {
        let ring = Algorithm::Ring;
        // The model's figures in the doc of `ring_is_ahead`.
        assert_eq!(pick(None, (64, 4), 1 << 20, 128 << 10), ring);
        assert_eq!(pick(None, (256, 16), 1 << 20, 128 << 10), ring);
        assert_eq!(pick(None, (64, 4), 16 << 20, 2 << 20), ring);
        assert_eq!(pick(None, (64, 16), 1 << 20, 128 << 10), ring);
        assert_eq!(pick(None, (64, 8), 1 << 20, 128 << 10), ring);
        assert_eq!(pick(None, (16, 2), 1 << 20, 128 << 10), ring);
        assert_eq!(pick(None, (64, 32), 16 << 20, 2 << 20), ring);
        // Too many rounds for the bytes.
        assert_ne!(pick(None, (1024, 64), 1 << 20, 128 << 10), ring);
        assert_ne!(pick(None, (256, 64), 1 << 20, 128 << 10), ring);
        assert_ne!(pick(None, (256, 128), 16 << 20, 2 << 20), ring);
        assert_ne!(pick(None, (64, 4), 64 << 10, 8 << 10), ring);
        // Never on one host of more ranks than measured, one rank per host, or hosts whose
        // ranks are not consecutive (every hop of the ring would cross).
        assert_ne!(pick(None, (64, 1), 16 << 20, 2 << 20), ring);
        assert_ne!(pick(None, (5, 1), 16 << 20, 2 << 20), ring);
        assert_ne!(pick(None, (64, 64), 16 << 20, 2 << 20), ring);
        let dealt = Shape {
            ranks: 64,
            hosts: 4,
            blocks: false,
        };
        assert_eq!(
            pick(None, dealt, 1 << 20, 128 << 10),
            Algorithm::ReduceScatterGrid
        );
    }

    #[test]
    fn large_buffers_on_three_or_four_ranks_of_one_host_go_around_the_ring_from_the_measured_sizes()
    {
        let (ring, rsa) = (Algorithm::Ring, Algorithm::ReduceScatterAllgather);
        // The measured crossovers in the docs of `RING_ONE_HOST_MIN_RANKS` and
        // `RING_ONE_HOST_MIN_BYTES`: never on 2 ranks.
        for bytes in [512 << 10, 4 << 20, 8 << 20, 16 << 20, 1 << 30] {
            assert_eq!(pick(None, (2, 1), bytes, bytes / 8), rsa);
        }
        for ranks in [3, 4] {
            assert_eq!(pick(None, (ranks, 1), 2 << 20, 256 << 10), rsa);
            assert_eq!(pick(None, (ranks, 1), 4 << 20, 512 << 10), ring);
            assert_eq!(pick(None, (ranks, 1), 16 << 20, 2 << 20), ring);
        }
        // Two ranks on two hosts: not measured across hosts, the pick stays.
        assert_eq!(pick(None, (2, 2), 16 << 20, 2 << 20), rsa);
    }

    #[test]
    fn large_buffers_on_hosts_of_many_ranks_go_through_the_grid() {
        let grid = Algorithm::ReduceScatterGrid;
        let rsa = Algorithm::ReduceScatterAllgather;
        // 8 ranks per host or more (the model's figures in the doc of `grid_is_ahead`).
        assert_eq!(pick(None, (1024, 64), 64 << 10, 8 << 10), grid);
        assert_eq!(pick(None, (1024, 64), 1 << 20, 128 << 10), grid);
        assert_eq!(pick(None, (4096, 256), 1 << 20, 128 << 10), grid);
        // 2-4 per host: from 512 ranks, where reduce-scatter-bruck is not cheap.
        assert_eq!(pick(None, (1024, 256), 1 << 20, 128 << 10), grid);
        assert_eq!(pick(None, (1024, 512), 1 << 20, 128 << 10), grid);
        assert_eq!(pick(None, (256, 64), 1 << 20, 128 << 10), rsa);
        // Never on one host, nor with one rank per host, nor for small buffers.
        assert_eq!(pick(None, (64, 1), 1 << 20, 128 << 10), rsa);
        assert_eq!(pick(None, (1024, 1024), 16 << 20, 2 << 20), rsa);
        assert_eq!(
            pick(None, (1024, 64), 8 << 10, 1 << 10),
            Algorithm::HostBruck
        );
    }

    #[test]
    fn a_forced_algorithm_runs_at_every_size() {
        for forced in [
            Algorithm::Direct,
            Algorithm::ReduceScatterAllgather,
            Algorithm::Bruck,
            Algorithm::ReduceScatterBruck,
            Algorithm::ReduceScatterGrid,
            Algorithm::HostBruck,
            Algorithm::Ring,
        ] {
            for (ranks, bytes, len) in [(1, 0, 0), (3, 8, 1), (8, 1 << 20, 1 << 17)] {
                assert_eq!(pick(Some(forced), (ranks, 1), bytes, len), forced);
            }
        }
    }
}
