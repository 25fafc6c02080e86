//! The `reduce-scatter-allgather` allreduce, pipelined in pieces of [`PIECE_BYTES`].
//!
//! Each piece of the buffer is cut into one slice per rank. In step `k` every rank
//! publishes piece `k` of its contribution (without its own slice, which only it folds)
//! together with its reduced slice of piece `k - 1`; then it folds its own slice of piece `k` from every rank's contribution, in
//! rank order (so `Sum` is exactly the rank-order fold, as with `direct`), and copies the
//! other ranks' reduced slices of piece `k - 1` into place. Every rank folds `1 / p` of
//! the buffer instead of all of it, and reads `1 / p` of each contribution plus the
//! reduced slices; the pipeline adds one step in all. Extra memory: none beyond the slots.

use super::allreduce::fold_in_rank_order;
use super::transport::ShmTransport;
use crate::algorithm::chunk_bounds;
use crate::copy::copy;
use crate::datatype::{as_bytes, elements_of};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::{CommError, ReduceOp};

/// Bytes of each pipelined piece: small enough that a piece and its slices stay in cache
/// between being written and being read, large enough that the steps are few.
pub(crate) const PIECE_BYTES: usize = 256 << 10;

pub(crate) fn run<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), CommError> {
    let (me, n) = (link.job.rank, link.job.size);
    let elem = std::mem::size_of::<T>();
    // A step carries a piece plus a slice of the previous one: at most `piece * (n + 1) / n`
    // elements must fit in the slot.
    let slot = link.job.layout.payload() / elem;
    let piece = (PIECE_BYTES / elem).min(slot * n / (n + 1)).max(1);
    let pieces = send.len().div_ceil(piece);
    let range = |k: usize| (k * piece).min(send.len())..((k + 1) * piece).min(send.len());
    // Slice `q` of piece `k`, in elements of the whole buffer.
    let slice = |k: usize, q: usize| {
        let r = range(k);
        let bounds = chunk_bounds(r.len(), n);
        r.start + bounds[q]..r.start + bounds[q + 1]
    };
    let mut scratch: Vec<T> = Vec::new();
    for k in 0..=pieces {
        let reduced: &[T] = k.checked_sub(1).map_or(&[], |j| &recv[slice(j, me)]);
        // Every rank publishes piece `k` without its own slice, which nobody else folds.
        let (piece_k, own) = if k < pieces {
            (range(k), slice(k, me))
        } else {
            (0..0, 0..0)
        };
        let generation = link.publish(
            fingerprint,
            &[
                as_bytes(reduced),
                as_bytes(&send[piece_k.start..own.start]),
                as_bytes(&send[own.end..piece_k.end]),
            ],
        );
        let previous_len = |q: usize| k.checked_sub(1).map_or(0, |j| slice(j, q).len());
        let slice_k = |q: usize| if k < pieces { slice(k, q) } else { 0..0 };
        let out = &mut *recv;
        link.collect(
            generation,
            fingerprint,
            |q| (previous_len(q) + piece_k.len() - slice_k(q).len()) * elem,
            |q, data| {
                let (reduced, contribution) = data.split_at(previous_len(q) * elem);
                if q != me
                    && let Some(j) = k.checked_sub(1)
                {
                    copy(&mut out[slice(j, q)], elements_of(reduced, &mut scratch));
                }
                if own.is_empty() {
                    return Ok(());
                }
                let part: &[T] = if q == me {
                    &send[own.clone()]
                } else {
                    // Rank q left its own slice out: ours sits that much earlier when it
                    // comes after q's.
                    let theirs = slice_k(q);
                    let mut at = own.start - piece_k.start;
                    if theirs.start < own.start {
                        at -= theirs.len();
                    }
                    let bytes = &contribution[at * elem..(at + own.len()) * elem];
                    elements_of(bytes, &mut scratch)
                };
                fold_in_rank_order(
                    &mut out[own.clone()],
                    (q, me, n),
                    part,
                    &send[own.clone()],
                    op,
                )
            },
        )?;
    }
    Ok(())
}
