//! allreduce: picks a named algorithm and runs it.
//!
//! | algorithm | picked when |
//! |---|---|
//! | `direct` (`allreduce_direct.rs`) | below [`REDUCE_SCATTER_MIN_BYTES`] (2 ranks: [`REDUCE_SCATTER_MIN_BYTES_2`]), or fewer elements than ranks |
//! | `reduce-scatter-allgather` (`allreduce_reduce_scatter_allgather.rs`) | larger buffers |
//!
//! `COBRE_SHM_ALGORITHMS=allreduce=NAME` forces one at every size. Both fold in rank order.

use super::transport::ShmTransport;
use super::{allreduce_direct, allreduce_reduce_scatter_allgather};
use crate::algorithm::{Algorithm, Op};
use crate::fingerprint::Fingerprint;
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

/// The algorithm for `len` elements of `T` on this job.
pub(crate) fn pick<T>(link: &ShmTransport, len: usize) -> Algorithm {
    let job = &link.job;
    match job.algorithms.get(Op::Allreduce) {
        Some(forced @ (Algorithm::Direct | Algorithm::ReduceScatterAllgather)) => forced,
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
    if algorithm == Algorithm::ReduceScatterAllgather {
        allreduce_reduce_scatter_allgather::run(link, fingerprint, send, recv, op)
    } else {
        allreduce_direct::run(link, fingerprint, send, recv, op)
    }
}
