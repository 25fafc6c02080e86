//! The `direct` allgatherv: in each step every rank publishes the next chunk of its
//! contribution in its slot and copies everyone else's into place (two copies per byte).

use super::transport::ShmTransport;
use crate::copy::copy_into;
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::CommError;

pub(crate) fn run<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    counts: &[usize],
    displs: &[usize],
) -> Result<(), CommError> {
    let rank = link.job.rank;
    let elem = std::mem::size_of::<T>();
    // Whole slots: every rank copies in and out at once, so fewer, larger steps win
    // (1 MiB at 2 ranks: 70 us with 1 MiB steps, 76 with 128 KiB, 80 with 64 KiB).
    let chunk = link.job.layout.payload();
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
    let streaming = recv.len() >= super::allgatherv::STREAMING_MIN_BYTES;
    let own = displs[rank] * elem;
    for k in 0..steps {
        let generation = link.publish(fingerprint, &[&send[piece(rank, k)]]);
        if k + 1 == steps {
            // This rank's own part goes into place while the others copy theirs in: a
            // rank that waits for a later one copies in the meantime.
            copy_into(&mut recv[own..own + send.len()], send, streaming);
        }
        link.collect(
            generation,
            fingerprint,
            |r| piece(r, k).len(),
            |r, data| {
                if r != rank {
                    let start = displs[r] * elem + piece(r, k).start;
                    copy_into(&mut recv[start..start + data.len()], data, streaming);
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}
