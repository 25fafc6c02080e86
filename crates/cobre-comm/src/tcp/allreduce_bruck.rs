//! The `bruck` allreduce, for small buffers on many ranks: every contribution is gathered
//! by Bruck's allgather (`allgatherv_bruck.rs`, `ceil(log2 p)` rounds), then each rank
//! folds all `p` of them locally in rank order, `((x0 op x1) op x2) op ...`.
//!
//! Partial results are never combined in tree order (as recursive doubling or halving
//! would), since that changes the rounding of a floating-point `Sum`: the result is the
//! same, bit for bit, as every other algorithm's. The price is that each rank receives
//! `(p - 1)` buffers, as in the direct algorithm, so it is only picked for small ones.

use super::allgatherv_bruck::gather_rotated;
use super::allreduce::fold_in_rank_order;
use super::exchange::Exchange;
use super::scratch::Scratch;
use super::transport::Fail;
use crate::copy::copy;
use crate::datatype::as_bytes_mut;
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
    // Block `j` of `rotated` is the contribution of rank `(me + j) mod n`.
    let rotated = scratch.elements::<T>(n * len);
    mesh.local(|| copy(&mut rotated[..len], send));
    let bytes = std::mem::size_of_val(send);
    let bounds: Vec<usize> = (0..=n).map(|j| j * bytes).collect();
    gather_rotated(mesh, fp, as_bytes_mut(rotated), &bounds)?;
    let rotated: &[T] = rotated;
    let piece = |r: usize| {
        let j = (r + n - me) % n;
        &rotated[j * len..(j + 1) * len]
    };
    mesh.local(|| fold_in_rank_order(recv, n, piece, op));
    Ok(())
}
