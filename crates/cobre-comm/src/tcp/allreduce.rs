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

use super::exchange::Exchange;
use super::transport::{Fail, RecvOp, SendOp};
use crate::algorithm::{Algorithm, Op, chunk_bounds};
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::reduce::{combine_into, reduce_into};
use crate::traits::CommData;
use crate::types::ReduceOp;

/// Buffers up to this many bytes use the direct algorithm.
pub(crate) const DIRECT_MAX_BYTES: usize = 32 << 10;

/// The forced algorithm, else `direct` up to [`DIRECT_MAX_BYTES`] (or with fewer elements
/// than ranks), `reduce-scatter-allgather` above.
fn pick(mesh: &impl Exchange, bytes: usize, len: usize) -> Algorithm {
    match mesh.forced().get(Op::Allreduce) {
        Some(forced @ (Algorithm::Direct | Algorithm::ReduceScatterAllgather)) => forced,
        _ if bytes <= DIRECT_MAX_BYTES || len < mesh.size() => Algorithm::Direct,
        _ => Algorithm::ReduceScatterAllgather,
    }
}

pub(crate) fn allreduce<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), Fail> {
    // The pieces received from the other ranks land in a buffer kept by the mesh, so large
    // reductions do not map fresh pages at every call. `u64` storage is aligned for every
    // reducible element type.
    let algorithm = pick(mesh, std::mem::size_of_val(send), send.len());
    let fp = &fp.with_algorithm(algorithm);
    let mut scratch = std::mem::take(mesh.scratch());
    let result = if algorithm == Algorithm::ReduceScatterAllgather {
        reduce_scatter_allgather(mesh, fp, send, recv, op, &mut scratch)
    } else {
        direct(mesh, fp, send, recv, op, &mut scratch)
    };
    *mesh.scratch() = scratch;
    result
}

/// `(n - 1) * len` elements of scratch space, as `T`.
fn others<T: CommData>(scratch: &mut Vec<u64>, n: usize, len: usize) -> &mut [T] {
    let bytes = (n - 1) * len * std::mem::size_of::<T>();
    let words = bytes.div_ceil(8);
    if scratch.len() < words {
        scratch.resize(words, 0);
    }
    let all: &mut [u8] = bytemuck::cast_slice_mut(&mut scratch[..]);
    bytemuck::cast_slice_mut(&mut all[..bytes])
}

/// Folds the contributions in rank order into `out`: rank `me`'s is `mine`, the others
/// are consecutive `out.len()`-element pieces of `others` (ranks `0..me` then `me + 1..n`).
fn fold<T: CommData>(out: &mut [T], me: usize, mine: &[T], others: &[T], op: ReduceOp) {
    let len = out.len();
    let piece = |r: usize| -> &[T] {
        if r == me {
            mine
        } else {
            let i = if r < me { r } else { r - 1 };
            &others[i * len..(i + 1) * len]
        }
    };
    let n = others.len() / len.max(1) + 1;
    if n == 1 {
        out.copy_from_slice(mine);
        return;
    }
    combine_into(out, piece(0), piece(1), op).expect("checked reducible, equal lengths");
    for r in 2..n {
        reduce_into(out, piece(r), op).expect("checked reducible, equal lengths");
    }
}

/// Receive operations for the pieces of every rank but `me`, into `others` (cut into
/// `n - 1` equal pieces, possibly empty).
fn receive_pieces(mut others: &mut [u8], me: usize, n: usize) -> Vec<RecvOp<'_>> {
    let len = others.len() / (n - 1).max(1);
    let mut ops = Vec::with_capacity(n.saturating_sub(1));
    for i in 0..n.saturating_sub(1) {
        let (slot, rest) = std::mem::take(&mut others).split_at_mut(len);
        others = rest;
        ops.push(RecvOp::new(if i < me { i } else { i + 1 }, slot));
    }
    ops
}

fn direct<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
    scratch: &mut Vec<u64>,
) -> Result<(), Fail> {
    let (me, n, len) = (mesh.rank(), mesh.size(), send.len());
    let others = others::<T>(scratch, n, len);
    {
        let mut sends: Vec<SendOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, as_bytes(send)))
            .collect();
        let mut recvs = receive_pieces(as_bytes_mut(others), me, n);
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    fold(recv, me, send, others, op);
    Ok(())
}

fn reduce_scatter_allgather<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
    scratch: &mut Vec<u64>,
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    let bounds = chunk_bounds(send.len(), n);
    let (lo, hi) = (bounds[me], bounds[me + 1]);
    // Phase 1: gather the pieces of my chunk, fold them in rank order.
    let others = others::<T>(scratch, n, hi - lo);
    {
        let mut sends: Vec<SendOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, as_bytes(&send[bounds[p]..bounds[p + 1]])))
            .collect();
        let mut recvs = receive_pieces(as_bytes_mut(others), me, n);
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    fold(&mut recv[lo..hi], me, &send[lo..hi], others, op);
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
