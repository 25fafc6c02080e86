//! The `ring` allgatherv, for large gathers: `p - 1` rounds; in each, every rank sends
//! one block to rank `r + 1` and receives one from rank `r - 1`, the block it sends being
//! the one it received in the round before (its own in the first). Blocks are received
//! straight into their place in `recv` and sent from there: no copy besides this rank's
//! own block.
//!
//! Each rank sends and receives the `(p - 1)` other blocks once, and only ever to and
//! from its two neighbours, so no link carries more than one block at a time.

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
    let (me, n) = (mesh.rank(), mesh.size());
    let mut blocks = blocks_by_rank(recv, ranges);
    mesh.local(|| copy(blocks[me], send));
    let (right, left) = ((me + 1) % n, (me + n - 1) % n);
    for round in 0..n.saturating_sub(1) {
        let outgoing = (me + n - round) % n;
        let incoming = (me + n - round - 1) % n;
        let [out, into] = blocks
            .get_disjoint_mut([outgoing, incoming])
            .expect("two different ranks' blocks");
        let mut sends = [SendOp::new(right, fp, out)];
        let mut recvs = [RecvOp::new(left, into)];
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    Ok(())
}
