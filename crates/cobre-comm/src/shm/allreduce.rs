//! Allreduce through the slots: in each step every rank publishes the next chunk of its
//! contribution, then folds all chunks in rank order (rank 0's, then rank 1's, ...) into
//! its result, so `Sum` is exactly the rank-order fold on every rank.

use super::exchange::Job;
use crate::datatype::as_bytes;
use crate::fingerprint::Fingerprint;
use crate::precondition::check_allreduce;
use crate::reduce::{check_reduction, reduce_into};
use crate::traits::CommData;
use crate::types::{CommError, ReduceOp};

pub(crate) fn allreduce<T: CommData>(
    job: &Job,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), CommError> {
    check_allreduce(send.len(), recv.len())?;
    check_reduction::<T>(op)?;
    let mut state = job.begin()?;
    let fingerprint = Fingerprint::allreduce::<T>(state.seq, send.len(), op);
    let per_step = job.layout.payload() / std::mem::size_of::<T>();
    let mut scratch: Vec<T> = Vec::new();
    for lo in (0..send.len()).step_by(per_step) {
        let hi = (lo + per_step).min(send.len());
        let generation = job.publish(&mut state, &fingerprint, as_bytes(&send[lo..hi]));
        let out = &mut recv[lo..hi];
        job.collect(
            &mut state,
            generation,
            &fingerprint,
            |_| (hi - lo) * std::mem::size_of::<T>(),
            |r, data| {
                let part: &[T] = if r == job.rank {
                    &send[lo..hi]
                } else if let Ok(aligned) = bytemuck::try_cast_slice(data) {
                    aligned
                } else {
                    // Slots are page-aligned, so this copy is a fallback only.
                    scratch.clear();
                    scratch.extend(
                        data.chunks_exact(std::mem::size_of::<T>())
                            .map(bytemuck::pod_read_unaligned::<T>),
                    );
                    &scratch
                };
                if r == 0 {
                    out.copy_from_slice(part);
                    Ok(())
                } else {
                    reduce_into(out, part, op)
                }
            },
        )?;
    }
    state.seq += 1;
    Ok(())
}
