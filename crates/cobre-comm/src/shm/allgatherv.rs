//! Allgatherv through the slots: in each step every rank publishes the next chunk of its
//! contribution and copies everyone else's into place.

use super::exchange::Job;
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::precondition::check_allgatherv;
use crate::traits::CommData;
use crate::types::CommError;

pub(crate) fn allgatherv<T: CommData>(
    job: &Job,
    send: &[T],
    recv: &mut [T],
    counts: &[usize],
    displs: &[usize],
) -> Result<(), CommError> {
    check_allgatherv(job.rank, job.size, send.len(), recv.len(), counts, displs)?;
    let mut state = job.begin()?;
    let fingerprint = Fingerprint::allgatherv::<T>(state.seq, counts);
    let elem = std::mem::size_of::<T>();
    let chunk = job.layout.payload();
    let bytes: Vec<usize> = counts.iter().map(|c| c * elem).collect();
    let steps = bytes
        .iter()
        .map(|b| b.div_ceil(chunk))
        .max()
        .unwrap_or(0)
        .max(1);
    let piece = |r: usize, k: usize| (k * chunk).min(bytes[r])..((k + 1) * chunk).min(bytes[r]);
    let send = as_bytes(send);
    let recv = as_bytes_mut(recv);
    for k in 0..steps {
        let generation = job.publish(&mut state, &fingerprint, &send[piece(job.rank, k)]);
        job.collect(
            &mut state,
            generation,
            &fingerprint,
            |r| piece(r, k).len(),
            |r, data| {
                if r != job.rank {
                    let start = displs[r] * elem + piece(r, k).start;
                    recv[start..start + data.len()].copy_from_slice(data);
                }
                Ok(())
            },
        )?;
    }
    let own = displs[job.rank] * elem;
    recv[own..own + send.len()].copy_from_slice(send);
    state.seq += 1;
    Ok(())
}
