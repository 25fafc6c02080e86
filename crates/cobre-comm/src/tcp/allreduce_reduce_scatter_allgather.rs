//! The `reduce-scatter-allgather` allreduce, for large buffers: the buffer is cut into
//! `p` chunks, chunk `c` owned by rank `c`. Every rank sends chunk `c` to its owner,
//! which folds the `p` pieces in rank order; then every owner sends its reduced chunk to
//! every rank. Two rounds; each rank moves `2 (p - 1) / p` buffers whatever `p`, and no
//! rank is a hot spot.

use super::allreduce_direct::{fold, receive_pieces};
use super::exchange::Exchange;
use super::scratch::Scratch;
use super::split::consecutive;
use super::transport::{Fail, RecvOp, SendOp};
use crate::algorithm::chunk_bounds;
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
    let (me, n) = (mesh.rank(), mesh.size());
    let bounds = chunk_bounds(send.len(), n);
    let (lo, hi) = (bounds[me], bounds[me + 1]);
    // Phase 1: gather the pieces of my chunk, fold them in rank order.
    let others = scratch.elements::<T>((n - 1) * (hi - lo));
    {
        let mut sends: Vec<SendOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, as_bytes(&send[bounds[p]..bounds[p + 1]])))
            .collect();
        let mut recvs = receive_pieces(as_bytes_mut(others), me, n);
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    mesh.local(|| fold(&mut recv[lo..hi], (me, n), &send[lo..hi], others, op));
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
