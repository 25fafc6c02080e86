//! allreduce: picks a named algorithm and runs it. All four compute exactly the
//! rank-order fold `((x0 op x1) op x2) op ...` of every element, on every rank.
//!
//! | algorithm | rounds | picked when |
//! |---|---|---|
//! | `direct` (`allreduce_direct.rs`) | 1 | small buffers on up to [`DIRECT_MAX_RANKS`] ranks |
//! | `bruck` (`allreduce_bruck.rs`) | `ceil(log2 p)` | small buffers on more ranks |
//! | `reduce-scatter-allgather` (`allreduce_reduce_scatter_allgather.rs`) | 2 | above [`SMALL_MAX_BYTES`], with at least as many elements as ranks |
//! | `reduce-scatter-bruck` (`allreduce_reduce_scatter_bruck.rs`) | `2 ceil(log2 p)` | only when forced: between neighbours only (`O(log p)` connections), ahead of `reduce-scatter-allgather` in the network model only with one rank per host, from 512 ranks, at about 1 MiB |
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
    allreduce_reduce_scatter_bruck,
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

/// The algorithm for `len` elements (`bytes` bytes) on `ranks` ranks: the `forced` one,
/// else `reduce-scatter-allgather` for large buffers (at least one element per rank),
/// else `direct` up to [`DIRECT_MAX_RANKS`] ranks and `bruck` above.
pub(crate) fn pick(forced: Option<Algorithm>, ranks: usize, bytes: usize, len: usize) -> Algorithm {
    match forced {
        Some(
            forced @ (Algorithm::Direct
            | Algorithm::ReduceScatterAllgather
            | Algorithm::Bruck
            | Algorithm::ReduceScatterBruck),
        ) => forced,
        _ if ranks > 1 && bytes > SMALL_MAX_BYTES && len >= ranks => {
            Algorithm::ReduceScatterAllgather
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
        mesh.size(),
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
        Algorithm::Bruck => allreduce_bruck::run(mesh, fp, send, recv, op, &mut scratch),
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
        assert_eq!(pick(None, 1, 8, 1), Algorithm::Direct);
        assert_eq!(
            pick(None, DIRECT_MAX_RANKS, small, small / 8),
            Algorithm::Direct
        );
        assert_eq!(pick(None, DIRECT_MAX_RANKS + 1, 8, 1), Algorithm::Bruck);
        assert_eq!(pick(None, 64, small, small / 8), Algorithm::Bruck);
    }

    #[test]
    fn large_buffers_reduce_scatter_unless_shorter_than_the_job() {
        let large = SMALL_MAX_BYTES + 8;
        assert_eq!(
            pick(None, 2, large, large / 8),
            Algorithm::ReduceScatterAllgather
        );
        assert_eq!(
            pick(None, 64, large, large / 8),
            Algorithm::ReduceScatterAllgather
        );
        assert_eq!(pick(None, 1, large, large / 8), Algorithm::Direct);
        // Fewer elements than ranks: some owners would get empty chunks.
        assert_eq!(pick(None, 8, 1 << 20, 4), Algorithm::Bruck);
    }

    #[test]
    fn a_forced_algorithm_runs_at_every_size() {
        for forced in [
            Algorithm::Direct,
            Algorithm::ReduceScatterAllgather,
            Algorithm::Bruck,
            Algorithm::ReduceScatterBruck,
        ] {
            for (ranks, bytes, len) in [(1, 0, 0), (3, 8, 1), (8, 1 << 20, 1 << 17)] {
                assert_eq!(pick(Some(forced), ranks, bytes, len), forced);
            }
        }
    }
}
