//! The `bruck` allgatherv (Bruck et al., 1997): `ceil(log2 p)` rounds for any `p`.
//!
//! Each rank keeps the blocks it has gathered in *rotated* order, its own first: block `j`
//! of rank `r`'s buffer is rank `(r + j) mod p`'s. After round `k` it holds blocks
//! `0..2^(k+1)`: in round `k` it sends its first `min(2^k, p - 2^k)` blocks, one
//! contiguous frame, to rank `r - 2^k`, and receives as many from rank `r + 2^k`, which
//! are its blocks `2^k..`. A last local copy puts every block at its displacement.
//!
//! Each rank receives the `(p - 1)` other blocks once, like the direct exchange, but
//! sends and receives one frame per round instead of `p - 1` in one round: fewer, larger
//! messages once the job is larger than a few ranks.

use super::allreduce::scratch_elements;
use super::exchange::Exchange;
use super::split::blocks_by_rank;
use super::transport::{Fail, RecvOp, SendOp};
use crate::copy::copy;
use crate::fingerprint::Fingerprint;

/// Bruck's rounds over `rotated`, whose block `j` (of rank `(me + j) mod p`) spans bytes
/// `bounds[j]..bounds[j + 1]`; block 0 is this rank's and must be filled. Every block is
/// filled on return.
pub(super) fn gather_rotated(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    rotated: &mut [u8],
    bounds: &[usize],
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    debug_assert_eq!(bounds.len(), n + 1);
    let mut have = 1;
    while have < n {
        let count = have.min(n - have);
        // Rank `me + have` holds, as its first `count` blocks, exactly my blocks
        // `have..have + count`; my first `count` are rank `me - have`'s next ones.
        let to = (me + n - have) % n;
        let from = (me + have) % n;
        let (held, rest) = rotated.split_at_mut(bounds[have]);
        let incoming = &mut rest[..bounds[have + count] - bounds[have]];
        let mut sends = [SendOp::new(to, fp, &held[..bounds[count]])];
        let mut recvs = [RecvOp::new(from, incoming)];
        mesh.exchange(fp, &mut sends, &mut recvs)?;
        have += count;
    }
    Ok(())
}

/// `ranges[r] = (start, end)` in bytes of rank `r`'s block in `recv`.
pub(super) fn run(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[u8],
    recv: &mut [u8],
    ranges: &[(usize, usize)],
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    let mut bounds = Vec::with_capacity(n + 1);
    bounds.push(0);
    for j in 0..n {
        let (start, end) = ranges[(me + j) % n];
        bounds.push(bounds[j] + (end - start));
    }
    let mut scratch = std::mem::take(mesh.scratch());
    let rotated = scratch_elements::<u8>(&mut scratch, bounds[n]);
    copy(&mut rotated[..send.len()], send);
    let result = gather_rotated(mesh, fp, rotated, &bounds);
    if result.is_ok() {
        for (r, slot) in blocks_by_rank(recv, ranges).into_iter().enumerate() {
            let j = (r + n - me) % n;
            copy(slot, &rotated[bounds[j]..bounds[j + 1]]);
        }
    }
    *mesh.scratch() = scratch;
    result
}
