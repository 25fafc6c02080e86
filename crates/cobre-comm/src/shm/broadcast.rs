//! Broadcast through the root's slots: in each step the root publishes the next chunk
//! and every other rank copies it.

use super::exchange::Job;
use crate::datatype::as_bytes_mut;
use crate::fingerprint::Fingerprint;
use crate::precondition::check_broadcast;
use crate::traits::CommData;
use crate::types::CommError;

pub(crate) fn broadcast<T: CommData>(
    job: &Job,
    buf: &mut [T],
    root: usize,
) -> Result<(), CommError> {
    check_broadcast(root, job.size)?;
    let mut state = job.begin()?;
    let fingerprint = Fingerprint::broadcast::<T>(state.seq, buf.len(), root);
    let chunk = job.layout.payload();
    let buf = as_bytes_mut(buf);
    let steps = buf.len().div_ceil(chunk).max(1);
    let is_root = job.rank == root;
    for k in 0..steps {
        let range = (k * chunk).min(buf.len())..((k + 1) * chunk).min(buf.len());
        let data: &[u8] = if is_root { &buf[range.clone()] } else { &[] };
        let generation = job.publish(&mut state, &fingerprint, data);
        job.collect(
            &mut state,
            generation,
            &fingerprint,
            |r| if r == root { range.len() } else { 0 },
            |r, data| {
                if r == root && !is_root {
                    buf[range.clone()].copy_from_slice(data);
                }
                Ok(())
            },
        )?;
    }
    state.seq += 1;
    Ok(())
}
