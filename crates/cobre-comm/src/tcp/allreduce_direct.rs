//! The `direct` allreduce: every rank sends its whole buffer to every other rank at once
//! and folds the `p` contributions locally, in rank order. One round, the latency of a
//! single message, but each rank receives `(p - 1)` buffers: for small buffers on few
//! ranks.

use super::allreduce::fold_in_rank_order;
use super::exchange::Exchange;
use super::scratch::Scratch;
use super::transport::{Fail, RecvOp, SendOp};
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::ReduceOp;

pub(super) fn run<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
    scratch: &mut Scratch,
) -> Result<(), Fail> {
    let (me, n, len) = (mesh.rank(), mesh.size(), send.len());
    let others = scratch.elements::<T>((n - 1) * len);
    {
        let mut sends: Vec<SendOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, as_bytes(send)))
            .collect();
        let mut recvs = receive_pieces(as_bytes_mut(others), me, n);
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    mesh.local(|| fold(recv, (me, n), send, others, op));
    Ok(())
}

/// Folds the contributions of ranks `0..n` in rank order into `out`: rank `me`'s is
/// `mine`, the others are consecutive `out.len()`-element pieces of `others` (ranks
/// `0..me` then `me + 1..n`).
pub(super) fn fold<T: CommData>(
    out: &mut [T],
    (me, n): (usize, usize),
    mine: &[T],
    others: &[T],
    op: ReduceOp,
) {
    let len = out.len();
    let piece = |r: usize| -> &[T] {
        if r == me {
            mine
        } else {
            let i = if r < me { r } else { r - 1 };
            &others[i * len..(i + 1) * len]
        }
    };
    fold_in_rank_order(out, n, piece, op);
}

/// Receive operations for the pieces of every rank but `me`, into `others` (cut into
/// `n - 1` equal pieces, possibly empty).
pub(super) fn receive_pieces(mut others: &mut [u8], me: usize, n: usize) -> Vec<RecvOp<'_>> {
    let len = others.len() / (n - 1).max(1);
    let mut ops = Vec::with_capacity(n.saturating_sub(1));
    for i in 0..n.saturating_sub(1) {
        let (slot, rest) = std::mem::take(&mut others).split_at_mut(len);
        others = rest;
        ops.push(RecvOp::new(if i < me { i } else { i + 1 }, slot));
    }
    ops
}
