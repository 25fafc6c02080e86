//! The `single-copy` allreduce: a reduce-scatter and an allgather with no slots between
//! the ranks (`single_copy.rs`). Each rank owns a slice of the buffer. It folds its slice
//! from every rank's contribution in rank order (so `Sum` is exactly the rank-order fold,
//! as with the other algorithms), reading each peer's part straight out of the peer's send
//! buffer, then writes the reduced slice straight into every peer's receive buffer, from
//! the cache. It goes piece by piece ([`PIECE_BYTES`]); two steps of signalling whatever
//! the size. Per rank, about `2 (p - 1) / p` of the buffer is copied by the kernel, against
//! four copies of that through the slots (`reduce-scatter-allgather`: each contribution
//! into a slot and out, each reduced slice into a slot and out). Extra memory: one piece.

use super::allreduce::fold_in_rank_order;
use super::single_copy::{self, Buffer, RECV, SEND};
use super::transport::ShmTransport;
use crate::algorithm::chunk_bounds;
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::{CommError, ReduceOp};

/// Bytes of each piece: a peer's part of it is read into a scratch buffer, folded, and
/// the reduced piece written to every peer while it is still in the L1 or L2 cache.
pub(crate) const PIECE_BYTES: usize = 64 << 10;

pub(crate) fn run<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), CommError> {
    let (me, n) = (link.job.rank, link.job.size);
    let elem = std::mem::size_of::<T>();
    let bounds = chunk_bounds(send.len(), n);
    let mine = bounds[me]..bounds[me + 1];
    let buffers = [Buffer::of(as_bytes(recv)), Buffer::of(as_bytes(send))];
    let mut session = single_copy::open(link, fingerprint, buffers, true)?;
    let piece = (PIECE_BYTES / elem).max(1);
    let mut scratch = vec![T::zeroed(); piece.min(mine.len())];
    let mut folded = Ok(());
    'pieces: for start in mine.clone().step_by(piece) {
        let range = start..(start + piece).min(mine.end);
        for q in 0..n {
            let part: &[T] = if q == me {
                &send[range.clone()]
            } else {
                let part = &mut scratch[..range.len()];
                session.read((q, SEND), start * elem, as_bytes_mut(part));
                if session.failed() {
                    break 'pieces;
                }
                part
            };
            folded = fold_in_rank_order(
                &mut recv[range.clone()],
                (q, me, n),
                part,
                &send[range.clone()],
                op,
            );
            if let Err(error) = &folded {
                session.fail(format!("folding rank {q}'s part failed: {error}"));
                break 'pieces;
            }
        }
        for q in (0..n).filter(|&q| q != me) {
            session.write(
                link,
                (q, RECV),
                start * elem,
                as_bytes(&recv[range.clone()]),
            );
        }
    }
    let closed = session.close(link, fingerprint);
    // A failed fold is also in `closed`, told to every rank; this rank reports its own.
    folded.and(closed)
}
