//! allreduce: picks a named algorithm and runs it. All five compute exactly the
//! rank-order fold `((x0 op x1) op x2) op ...` of every element, on every rank.
//!
//! | algorithm | rounds | picked when |
//! |---|---|---|
//! | `direct` (`allreduce_direct.rs`) | 1 | small buffers on up to [`DIRECT_MAX_RANKS`] ranks |
//! | `bruck` (`allreduce_bruck.rs`) | `ceil(log2 p)` | small buffers on more ranks |
//! | `reduce-scatter-allgather` (`allreduce_reduce_scatter_allgather.rs`) | 2 | above [`SMALL_MAX_BYTES`], with at least as many elements as ranks, unless `reduce-scatter-bruck` is |
//! | `reduce-scatter-bruck` (`allreduce_reduce_scatter_bruck.rs`) | `2 ceil(log2 p)` | above [`SMALL_MAX_BYTES`] from [`REDUCE_SCATTER_BRUCK_MIN_RANKS`] ranks while its forwarding through the host links is cheap (`forwarding_is_cheap`): between neighbours only, `O(log p)` connections |
//! | `reduce-scatter-grid` (`allreduce_reduce_scatter_grid.rs`) | 4 | above [`SMALL_MAX_BYTES`] on several hosts with several ranks each, where the grid is ahead ([`grid_is_ahead`]): `k - 1 + h - 1` connections for `k` ranks on each of `h` hosts |
//! | `ring` (`allreduce_ring.rs`) | `m + 2 p - 3` | forced only: every message goes to the next rank, so a job needs no connection beyond the neighbours (where descriptors are scarce); its rounds grow with `p` |
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
use super::transport::Fail;
use super::{
    DIRECT_MAX_RANKS, allreduce_bruck, allreduce_direct, allreduce_reduce_scatter_allgather,
    allreduce_reduce_scatter_bruck, allreduce_reduce_scatter_grid, allreduce_ring,
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
    let per_host = ranks.div_ceil(hosts.clamp(1, ranks.max(1)));
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
    let per_host = ranks.div_ceil(hosts.clamp(1, ranks.max(1)));
    hosts > 1
        && per_host > 1
        && (per_host >= GRID_MIN_RANKS_PER_HOST
            || (ranks >= GRID_MIN_RANKS && !forwarding_is_cheap))
}

/// The algorithm for `len` elements (`bytes` bytes) on `ranks` ranks over `hosts` hosts:
/// the `forced` one, else for large buffers (at least one element per rank)
/// `reduce-scatter-grid` where it is ahead ([`grid_is_ahead`]), `reduce-scatter-bruck`
/// where its forwarding is cheap ([`forwarding_is_cheap`]) and `reduce-scatter-allgather`
/// elsewhere, else `direct` up to [`DIRECT_MAX_RANKS`] ranks and `bruck` above.
pub(crate) fn pick(
    forced: Option<Algorithm>,
    (ranks, hosts): (usize, usize),
    bytes: usize,
    len: usize,
) -> Algorithm {
    match forced {
        Some(
            forced @ (Algorithm::Direct
            | Algorithm::ReduceScatterAllgather
            | Algorithm::Bruck
            | Algorithm::ReduceScatterBruck
            | Algorithm::ReduceScatterGrid
            | Algorithm::Ring),
        ) => forced,
        _ if ranks > 1 && bytes > SMALL_MAX_BYTES && len >= ranks => {
            let cheap = forwarding_is_cheap(ranks, hosts, bytes);
            if grid_is_ahead(ranks, hosts, cheap) {
                Algorithm::ReduceScatterGrid
            } else if cheap {
                Algorithm::ReduceScatterBruck
            } else {
                Algorithm::ReduceScatterAllgather
            }
        }
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
    let algorithm = pick(
        mesh.forced().get(Op::Allreduce),
        (mesh.size(), mesh.hosts().count()),
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
        Algorithm::Ring => allreduce_ring::run(mesh, fp, send, recv, op),
        _ => allreduce_direct::run(mesh, fp, send, recv, op, &mut scratch),
    };
    *mesh.scratch() = scratch;
    result
}

/// The first `count` elements of `scratch`, as `T`, growing it when needed. `u64`
/// storage is aligned for every reducible element type.
pub(super) fn scratch_elements<T: CommData>(scratch: &mut Vec<u64>, count: usize) -> &mut [T] {
    let bytes = count * std::mem::size_of::<T>();
    let words = bytes.div_ceil(8);
    if scratch.len() < words {
        scratch.resize(words, 0);
    }
    let all: &mut [u8] = bytemuck::cast_slice_mut(&mut scratch[..]);
    bytemuck::cast_slice_mut(&mut all[..bytes])
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
    fn large_buffers_on_hosts_of_many_ranks_go_through_the_grid() {
        let grid = Algorithm::ReduceScatterGrid;
        let rsa = Algorithm::ReduceScatterAllgather;
        // 8 ranks per host or more (the model's figures in the doc of `grid_is_ahead`).
        assert_eq!(pick(None, (1024, 64), 64 << 10, 8 << 10), grid);
        assert_eq!(pick(None, (1024, 64), 1 << 20, 128 << 10), grid);
        assert_eq!(pick(None, (64, 8), 1 << 20, 128 << 10), grid);
        assert_eq!(pick(None, (16, 2), 1 << 20, 128 << 10), grid);
        // 2-4 per host: from 512 ranks, where reduce-scatter-bruck is not cheap.
        assert_eq!(pick(None, (1024, 256), 1 << 20, 128 << 10), grid);
        assert_eq!(pick(None, (1024, 512), 1 << 20, 128 << 10), grid);
        assert_eq!(pick(None, (256, 64), 1 << 20, 128 << 10), rsa);
        assert_eq!(pick(None, (32, 8), 1 << 20, 128 << 10), rsa);
        // Never on one host, nor with one rank per host, nor for small buffers.
        assert_eq!(pick(None, (64, 1), 1 << 20, 128 << 10), rsa);
        assert_eq!(pick(None, (1024, 1024), 16 << 20, 2 << 20), rsa);
        assert_eq!(pick(None, (1024, 64), 8 << 10, 1 << 10), Algorithm::Bruck);
    }

    #[test]
    fn a_forced_algorithm_runs_at_every_size() {
        for forced in [
            Algorithm::Direct,
            Algorithm::ReduceScatterAllgather,
            Algorithm::Bruck,
            Algorithm::ReduceScatterBruck,
            Algorithm::ReduceScatterGrid,
            Algorithm::Ring,
        ] {
            for (ranks, bytes, len) in [(1, 0, 0), (3, 8, 1), (8, 1 << 20, 1 << 17)] {
                assert_eq!(pick(Some(forced), (ranks, 1), bytes, len), forced);
            }
        }
    }
}
