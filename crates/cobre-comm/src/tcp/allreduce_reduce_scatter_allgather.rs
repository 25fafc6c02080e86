//! The `reduce-scatter-allgather` allreduce, for large buffers: the buffer is cut into
//! `p` chunks, chunk `c` owned by rank `c`. Every rank sends chunk `c` to its owner,
//! which folds the `p` pieces in rank order; then every owner sends its reduced chunk to
//! every rank. Two rounds; each rank moves `2 (p - 1) / p` buffers whatever `p`, and no
//! rank is a hot spot.
//!
//! The owner folds in place: the first piece it needs arrives straight in its chunk of
//! `recv` and the others fold into it, two arrays read per step rather than three. On 2
//! ranks a large chunk streams through a stage in cache instead, each part folded as it
//! arrives, so the piece is never written to and read back from memory.

use super::allreduce_direct::{fold_received, receive_contributions};
use super::exchange::Exchange;
use super::scratch::Scratch;
use super::split::consecutive;
use super::transport::{Fail, RecvOp, SendOp};
use crate::algorithm::chunk_bounds;
use crate::copy::copy;
use crate::datatype::{as_bytes, as_bytes_mut, elements_of};
use crate::fingerprint::Fingerprint;
use crate::reduce::combine_into;
use crate::traits::CommData;
use crate::types::ReduceOp;

/// On 2 ranks, a chunk of at least this many bytes is received through a stage of
/// [`STAGE_BYTES`] and folded part by part, in cache ([`RecvOp::streamed`]); a smaller
/// one is received in place and folded after. Medians of interleaved jobs, 2 ranks,
/// streamed against in place: 1 MiB allreduce (512 KiB chunks) 289 against 248 us,
/// 4 MiB 1076 against 1113, 8 MiB 2254 against 2336, 16 MiB 4558 against 4941, 64 MiB
/// 27.1 against 28.8 ms (`docs/perf/tcp-allreduce-fold.txt`).
const STREAM_MIN_CHUNK_BYTES: usize = 2 << 20;

/// The stage of a streamed chunk: well inside the L2 cache (1 MiB measured slower than
/// 256 KiB at 16 MiB, 4854 against 4469 us; 64-128 KiB alike).
const STAGE_BYTES: usize = 256 << 10;

pub(super) fn run<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
    scratch: &mut Scratch,
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    if n == 1 {
        mesh.local(|| copy(recv, send));
        return Ok(());
    }
    let bounds = chunk_bounds(send.len(), n);
    let (lo, hi) = (bounds[me], bounds[me + 1]);
    // Phase 1: gather the pieces of my chunk and fold them in rank order.
    if n == 2 && std::mem::size_of_val(&send[lo..hi]) >= STREAM_MIN_CHUNK_BYTES {
        gather_streamed(mesh, fp, send, recv, &bounds, op, scratch)?;
    } else {
        gather_in_place(mesh, fp, send, recv, &bounds, op, scratch)?;
    }
    // Phase 2: every owner sends its reduced chunk to every rank.
    let mut chunks = consecutive(recv, (0..n).map(|c| bounds[c + 1] - bounds[c]));
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

/// Phase 1: receives the pieces of this rank's chunk, rank 0's (on rank 0 rank 1's)
/// straight into place and the others into `scratch`, then folds them in place.
fn gather_in_place<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    bounds: &[usize],
    op: ReduceOp,
    scratch: &mut Scratch,
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    let (lo, hi) = (bounds[me], bounds[me + 1]);
    let others = scratch.elements::<T>((n - 2) * (hi - lo));
    {
        let mut sends: Vec<SendOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, as_bytes(&send[bounds[p]..bounds[p + 1]])))
            .collect();
        let result = as_bytes_mut(&mut recv[lo..hi]);
        let mut recvs = receive_contributions(result, as_bytes_mut(others), me, n);
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    mesh.local(|| fold_received(&mut recv[lo..hi], (me, n), &send[lo..hi], others, op));
    Ok(())
}

/// Phase 1 on 2 ranks: the peer's piece of this rank's chunk streams through a stage in
/// cache, and each part is folded with this rank's as it arrives, in rank order.
fn gather_streamed<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    bounds: &[usize],
    op: ReduceOp,
    scratch: &mut Scratch,
) -> Result<(), Fail> {
    let me = mesh.rank();
    let peer = 1 - me;
    let (lo, hi) = (bounds[me], bounds[me + 1]);
    let size = std::mem::size_of::<T>();
    let stage = scratch.elements::<T>((STAGE_BYTES / size).max(2));
    let (out, mine) = (&mut recv[lo..hi], &send[lo..hi]);
    let mut fold = |offset: usize, bytes: &[u8]| {
        // The stage is a slice of `T`, so this is a view; a copy only if it were not.
        let mut unaligned = Vec::new();
        let part = elements_of::<T>(bytes, &mut unaligned);
        let at = offset / size;
        let out = &mut out[at..at + part.len()];
        let mine = &mine[at..at + part.len()];
        let (first, second) = if me == 0 { (mine, part) } else { (part, mine) };
        combine_into(out, first, second, op).expect("checked reducible, equal lengths");
    };
    let theirs = as_bytes(&send[bounds[peer]..bounds[peer + 1]]);
    let mut sends = [SendOp::new(peer, fp, theirs)];
    let stage = as_bytes_mut(stage);
    let mut recvs = [RecvOp::streamed(
        peer,
        (hi - lo) * size,
        size,
        stage,
        &mut fold,
    )];
    mesh.exchange(fp, &mut sends, &mut recvs)
}
