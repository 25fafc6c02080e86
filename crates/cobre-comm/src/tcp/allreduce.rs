//! allreduce, in two algorithms that both compute exactly the rank-order fold
//! `((x0 op x1) op x2) op ...` of every element:
//!
//! * **direct** (small buffers): every rank sends its whole buffer to every other rank and
//!   folds the `n` contributions locally, in rank order. One step: the latency of a single
//!   message.
//! * **reduce-scatter then allgather** (large buffers): the buffer is cut into `n` chunks,
//!   chunk `c` owned by rank `c`. Every rank sends chunk `c` to its owner, which folds the
//!   `n` pieces in rank order; then every owner sends its reduced chunk to every rank.
//!   Each rank moves `2 (n - 1) / n` buffers, whatever `n`, and no rank is a hot spot.

use super::split::chunk_bounds;
use super::transport::{Fail, Mesh, RecvOp, SendOp};
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::reduce::reduce_into;
use crate::traits::CommData;
use crate::types::ReduceOp;

/// Buffers up to this many bytes use the direct algorithm.
pub(crate) const DIRECT_MAX_BYTES: usize = 32 << 10;

pub(crate) fn allreduce<T: CommData>(
    mesh: &mut Mesh,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), Fail> {
    if std::mem::size_of_val(send) <= DIRECT_MAX_BYTES || send.len() < mesh.size {
        direct(mesh, fp, send, recv, op)
    } else {
        reduce_scatter_allgather(mesh, fp, send, recv, op)
    }
}

/// Folds `parts` (one per rank, in rank order) into `out`.
fn fold<T: CommData>(out: &mut [T], parts: &[T], op: ReduceOp) {
    let len = out.len();
    out.copy_from_slice(&parts[..len]);
    for part in parts[len..]
        .chunks_exact(len.max(1))
        .take_while(|_| len > 0)
    {
        reduce_into(out, part, op).expect("checked reducible, equal lengths");
    }
}

fn direct<T: CommData>(
    mesh: &mut Mesh,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), Fail> {
    let (me, n, len) = (mesh.rank, mesh.size, send.len());
    let mut all = vec![T::default(); n * len];
    all[me * len..(me + 1) * len].copy_from_slice(send);
    {
        let mut sends: Vec<SendOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, as_bytes(send)))
            .collect();
        let mut recvs: Vec<RecvOp<'_>> = all
            .chunks_mut(len)
            .enumerate()
            .filter(|&(p, _)| p != me)
            .map(|(p, slot)| RecvOp::new(p, as_bytes_mut(slot)))
            .collect();
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    fold(recv, &all, op);
    Ok(())
}

fn reduce_scatter_allgather<T: CommData>(
    mesh: &mut Mesh,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank, mesh.size);
    let bounds = chunk_bounds(send.len(), n);
    let (lo, hi) = (bounds[me], bounds[me + 1]);
    let mine = hi - lo;
    // Phase 1: gather the pieces of my chunk, fold them in rank order.
    let mut pieces = vec![T::default(); n * mine];
    pieces[me * mine..(me + 1) * mine].copy_from_slice(&send[lo..hi]);
    {
        let mut sends: Vec<SendOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, as_bytes(&send[bounds[p]..bounds[p + 1]])))
            .collect();
        let mut recvs: Vec<RecvOp<'_>> = pieces
            .chunks_mut(mine.max(1))
            .enumerate()
            .filter(|&(p, _)| p != me)
            .map(|(p, slot)| RecvOp::new(p, as_bytes_mut(slot)))
            .collect();
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    fold(&mut recv[lo..hi], &pieces, op);
    drop(pieces);
    // Phase 2: every owner sends its reduced chunk to every rank.
    let mut chunks: Vec<&mut [T]> = Vec::with_capacity(n);
    let mut rest = recv;
    for c in 0..n {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(bounds[c + 1] - bounds[c]);
        chunks.push(head);
        rest = tail;
    }
    let (before, after) = chunks.split_at_mut(me);
    let (own, after) = after.split_first_mut().expect("my chunk");
    let own: &[T] = own;
    let mut sends: Vec<SendOp<'_>> = (0..n)
        .filter(|&p| p != me)
        .map(|p| SendOp::new(p, fp, as_bytes(own)))
        .collect();
    let mut recvs: Vec<RecvOp<'_>> = before
        .iter_mut()
        .enumerate()
        .chain(after.iter_mut().enumerate().map(|(i, c)| (me + 1 + i, c)))
        .map(|(p, c)| RecvOp::new(p, as_bytes_mut(c)))
        .collect();
    mesh.exchange(fp, &mut sends, &mut recvs)
}
