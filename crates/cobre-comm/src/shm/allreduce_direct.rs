//! The `direct` allreduce: in each step every rank publishes the next chunk of its
//! contribution, then folds all chunks in rank order (rank 0's, then rank 1's, ...) into
//! its result, so `Sum` is exactly the rank-order fold on every rank. One step per chunk:
//! the lowest latency, but every rank reads every contribution.

use super::allreduce::fold_in_rank_order;
use super::transport::ShmTransport;
use crate::datatype::{as_bytes, elements_of};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::{CommError, ReduceOp};

/// Bytes per step: the contributions of one step and its result stay in cache while they
/// are folded (2 ranks, same run: 4 MiB in 888 us with 1 MiB steps, 701 us with 256 KiB,
/// 728 us with 128 KiB; 1 MiB in 188, 175 and 170 us).
pub(crate) const PIECE_BYTES: usize = 256 << 10;

pub(crate) fn run<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), CommError> {
    let (rank, size) = (link.job.rank, link.job.size);
    let per_step = link.job.layout.payload().min(PIECE_BYTES) / std::mem::size_of::<T>();
    let mut scratch: Vec<T> = Vec::new();
    for lo in (0..send.len()).step_by(per_step) {
        let hi = (lo + per_step).min(send.len());
        let out = &mut recv[lo..hi];
        link.step(
            fingerprint,
            as_bytes(&send[lo..hi]),
            |_| (hi - lo) * std::mem::size_of::<T>(),
            |r, data| {
                let part: &[T] = if r == rank {
                    &send[lo..hi]
                } else {
                    elements_of(data, &mut scratch)
                };
                fold_in_rank_order(out, (r, rank, size), part, &send[lo..hi], op)
            },
        )?;
    }
    Ok(())
}
