//! allreduce: picks a named algorithm and runs it.
//!
//! | algorithm | picked when |
//! |---|---|
//! | `direct` (`allreduce_direct.rs`) | below [`REDUCE_SCATTER_MIN_BYTES`] (2 ranks: [`REDUCE_SCATTER_MIN_BYTES_2`]), or fewer elements than ranks |
//! | `reduce-scatter-allgather` (`allreduce_reduce_scatter_allgather.rs`) | larger buffers, on ranks that outnumber the cores or where single-copy is not allowed |
//! | `single-copy` (`allreduce_single_copy.rs`) | from [`SINGLE_COPY_MIN_BYTES`] while the ranks fit the cores, where the kernel allows it (`cma.rs`) |
//!
//! `COBRE_SHM_ALGORITHMS=allreduce=NAME` forces one at every size. All fold in rank order.

use super::transport::ShmTransport;
use super::{allreduce_direct, allreduce_reduce_scatter_allgather, allreduce_single_copy};
use crate::algorithm::{Algorithm, Op};
use crate::copy::copy;
use crate::fingerprint::Fingerprint;
use crate::reduce::{combine_into, reduce_into};
use crate::traits::CommData;
use crate::types::{CommError, ReduceOp};

/// Buffers from this many bytes on use `reduce-scatter-allgather` on 3 ranks or more (with
/// at least as many elements as ranks): each rank then reads and folds `1/p` of every
/// contribution instead of all of them.
pub(crate) const REDUCE_SCATTER_MIN_BYTES: usize = 64 << 10;
/// The same threshold on 2 ranks, where the saving is smaller (each rank folds half the
/// buffer, but publishes its reduced half and copies the other's): even at 64-128 KiB,
/// ahead from 256 KiB (medians of 5 interleaved rounds: 256 KiB 39.7 against 44.7 us,
/// 512 KiB 74.0 against 90.1; `docs/perf/shm-crossovers.txt`).
pub(crate) const REDUCE_SCATTER_MIN_BYTES_2: usize = 256 << 10;

/// While the ranks fit the cores, allreduces from this many bytes on go single-copy, where
/// the kernel allows it: each reduced slice goes straight into the peers' buffers instead
/// of through a slot. 2 ranks, three interleaved jobs each (`docs/perf/shm-crossovers.txt`):
/// 64 KiB 10.6-10.9 us against `direct`'s 8.6-12.6, 128 KiB 16.4-17.2 against 20.2-22.6,
/// 256 KiB 29.5-34.0 against 34.9-43.7, 1 MiB 135-149 against
/// `reduce-scatter-allgather`'s 166-168, 16 MiB 2.45-2.59 ms against 2.90-3.18. On 3 and 4
/// ranks of 2 cores it was level or behind at every size from 64 KiB to 16 MiB (16 MiB,
/// 4 ranks: 13.2-13.6 ms against 9.3-10.1).
pub(crate) const SINGLE_COPY_MIN_BYTES: usize = 128 << 10;

/// The algorithm for `len` elements of `T` on this job.
pub(crate) fn pick<T>(link: &ShmTransport, len: usize) -> Algorithm {
    let job = &link.job;
    match job.algorithms.get(Op::Allreduce) {
        Some(
            forced
            @ (Algorithm::Direct | Algorithm::ReduceScatterAllgather | Algorithm::SingleCopy),
        ) => forced,
        _ if job.size > 1
            && len >= job.size
            && job.single_copy.is_ok()
            && job.ranks_fit_cores()
            && len * std::mem::size_of::<T>() >= SINGLE_COPY_MIN_BYTES =>
        {
            Algorithm::SingleCopy
        }
        _ if job.size > 1
            && len >= job.size
            && len * std::mem::size_of::<T>()
                >= if job.size == 2 {
                    REDUCE_SCATTER_MIN_BYTES_2
                } else {
                    REDUCE_SCATTER_MIN_BYTES
                } =>
        {
            Algorithm::ReduceScatterAllgather
        }
        _ => Algorithm::Direct,
    }
}

pub(crate) fn allreduce<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), CommError> {
    let algorithm = pick::<T>(link, send.len());
    let fingerprint = &fingerprint.with_algorithm(algorithm);
    match algorithm {
        Algorithm::ReduceScatterAllgather => {
            allreduce_reduce_scatter_allgather::run(link, fingerprint, send, recv, op)
        }
        Algorithm::SingleCopy => allreduce_single_copy::run(link, fingerprint, send, recv, op),
        _ => allreduce_direct::run(link, fingerprint, send, recv, op),
    }
}

/// Folds rank `q`'s part into `out`, called for `q = 0, 1, ...` in rank order by rank `me`
/// of `size`, where `own` is this rank's part (and `part` is `own` when `q == me`).
///
/// Ranks 0 and 1 fold their own part into the first step, `out = op(part_0, part_1)`,
/// instead of copying part 0 into `out` and folding part 1 over it: one pass over `out`
/// fewer, and the same result bit for bit (the same operations in the same order).
pub(crate) fn fold_in_rank_order<T: CommData>(
    out: &mut [T],
    (q, me, size): (usize, usize, usize),
    part: &[T],
    own: &[T],
    op: ReduceOp,
) -> Result<(), CommError> {
    match (q, me) {
        // Rank 0 waits for part 1 to fold its own part with it.
        (0, 0) if size > 1 => Ok(()),
        (0, 1) => combine_into(out, part, own, op),
        (0, _) => {
            copy(out, part);
            Ok(())
        }
        (1, 0) => combine_into(out, own, part, op),
        // Rank 1 folded its own part with part 0 already.
        (1, 1) => Ok(()),
        _ => reduce_into(out, part, op),
    }
}
