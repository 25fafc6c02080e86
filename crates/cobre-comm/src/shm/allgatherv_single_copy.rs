//! The `single-copy` allgatherv: every rank writes its contribution straight into every
//! peer's buffer (`single_copy.rs`), one copy per byte, whatever the size; two steps of
//! signalling whatever the size.
//!
//! A writer puts its block where its own `displs` say; that is where the peer wants it
//! only if the peer's `displs` are the same. They may differ (each rank chooses the layout
//! of its own buffer), so each rank announces whether its `displs` are the usual ones,
//! the blocks back to back in rank order; if any rank's are not, every rank instead reads
//! each peer's block out of the peer's send buffer into the place its own `displs` say.
//!
//! Writing goes piece by piece ([`PIECE_BYTES`]): each piece of the send buffer is written to
//! every peer, then into place in this rank's own buffer, so it is read from memory once
//! and then from the cache. Against reading each peer's contribution out of its buffer
//! (the peer's lines come from its core or from memory, and the own part is a separate
//! pass), 2 ranks, interleaved jobs: 4 MiB 290-317 us against 355-370, 16 MiB 1217-1275
//! against 1368-1471, 256 MiB 32.8-37.9 ms against 39.1-41.3; 3 ranks on 2 cores, 16 MiB
//! 2797-2859 against 3473-3645; 4 ranks, 4 MiB 692-752 against 975-1007.

use super::single_copy::{self, Buffer, RECV, SEND};
use super::transport::ShmTransport;
use crate::copy::copy_into;
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::CommError;

/// Bytes of the send buffer written per piece: a quarter of the L2 cache of the reference
/// machine, so a piece is still there for its last copy. 2 ranks, 256 MiB, medians of
/// three interleaved jobs: 128 KiB 37.1 ms, 256 KiB 38.8, 512 KiB 34.9, 1 MiB 36.5, 2 MiB
/// 37.9; 4 MiB: 2 MiB pieces 336-386 us against 281-297.
pub(crate) const PIECE_BYTES: usize = 512 << 10;

pub(crate) fn run<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    counts: &[usize],
    displs: &[usize],
) -> Result<(), CommError> {
    let me = link.job.rank;
    let size = link.job.size;
    let elem = std::mem::size_of::<T>();
    let send = as_bytes(send);
    let recv = as_bytes_mut(recv);
    let own = displs[me] * elem;
    let streaming = recv.len() >= super::allgatherv::STREAMING_MIN_BYTES;
    let usual = back_to_back(counts, displs);
    let buffers = [Buffer::of(recv), Buffer::of(send)];
    let mut session = single_copy::open(link, fingerprint, buffers, usual)?;
    if usual && session.every_flag() {
        for (i, piece) in send.chunks(PIECE_BYTES).enumerate() {
            let at = own + i * PIECE_BYTES;
            for q in (0..size).filter(|&q| q != me) {
                session.write(link, (q, RECV), at, piece);
            }
            copy_into(&mut recv[at..at + piece.len()], piece, streaming);
        }
    } else {
        for q in (0..size).filter(|&q| q != me) {
            let at = displs[q] * elem;
            session.read((q, SEND), 0, &mut recv[at..at + counts[q] * elem]);
        }
        copy_into(&mut recv[own..own + send.len()], send, streaming);
    }
    session.close(link, fingerprint)
}

/// Whether `displs` put the blocks back to back in rank order from the buffer's start.
fn back_to_back(counts: &[usize], displs: &[usize]) -> bool {
    let mut next = 0;
    counts.iter().zip(displs).all(|(&count, &displ)| {
        let here = displ == next;
        next += count;
        here
    })
}
