//! The `direct` allgatherv: every rank sends its block to every other rank and
//! receives every block straight into its place in `recv`, all at once.
//!
//! Each rank sends and receives `(n - 1)` blocks, the same volume as a ring, in a single
//! step and without forwarding, and rank 0 carries no more traffic than anyone else.

use super::exchange::Exchange;
use super::split::blocks_by_rank;
use super::transport::{Fail, RecvOp, SendOp};
use crate::copy::copy;
use crate::fingerprint::Fingerprint;

/// `ranges[r] = (start, end)` in bytes of rank `r`'s block in `recv`.
pub(super) fn run(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[u8],
    recv: &mut [u8],
    ranges: &[(usize, usize)],
) -> Result<(), Fail> {
    let me = mesh.rank();
    let mut sends: Vec<SendOp<'_>> = (0..mesh.size())
        .filter(|&p| p != me)
        .map(|p| SendOp::new(p, fp, send))
        .collect();
    let mut recvs = Vec::with_capacity(mesh.size());
    let mut own: &mut [u8] = &mut [];
    for (r, slice) in blocks_by_rank(recv, ranges).into_iter().enumerate() {
        if r == me {
            own = slice;
        } else {
            recvs.push(RecvOp::new(r, slice));
        }
    }
    // This rank's own block is copied while the kernel moves the others'.
    mesh.exchange_overlapping(fp, &mut sends, &mut recvs, || copy(own, send))
}
