//! The `single-copy` allgatherv: every rank copies each peer's contribution straight from
//! the peer's send buffer into place (`single_copy.rs`), one copy per byte, whatever the
//! size; two steps of signalling whatever the size.

use super::single_copy;
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
    let me = link.job.rank;
    let elem = std::mem::size_of::<T>();
    let send = as_bytes(send);
    let recv = as_bytes_mut(recv);
    let reads = single_copy::read_all(link, fingerprint, send, |remote| {
        let q = remote.rank();
        let at = displs[q] * elem;
        remote.read_into(&mut recv[at..at + counts[q] * elem])
    })?;
    // This rank's own part goes into place while the others may still be reading.
    let own = displs[me] * elem;
    let streaming = recv.len() >= super::allgatherv::STREAMING_MIN_BYTES;
    copy_into(&mut recv[own..own + send.len()], send, streaming);
    reads.wait(link, fingerprint)
}
