//! The `bruck` allgatherv (Bruck et al., 1997): `ceil(log2 p)` rounds for any `p`.
//!
//! Each rank keeps the blocks it has gathered in *rotated* order, its own first: block `j`
//! of rank `r`'s view is rank `(r + j) mod p`'s. After round `k` it holds blocks
//! `0..2^(k+1)`: in round `k` it sends its first `min(2^k, p - 2^k)` blocks, one frame,
//! to rank `r - 2^k`, and receives as many from rank `r + 2^k`, which are its blocks
//! `2^k..`.
//!
//! When the blocks lie back to back in `recv` in rank order (counts and their prefix sums
//! as displacements, the usual layout), the rotated view is `recv` itself read from this
//! rank's block on, wrapping past the last rank to rank 0: every run of blocks a round
//! sends or receives is one span of `recv`, or two when it wraps, and travels as one frame
//! of two parts (a vectored write; reads straight into the two spans). Nothing is copied
//! besides this rank's own block and no scratch is needed, so the algorithm suits large
//! gathers too. Other layouts gather into scratch in rotated order and copy every block
//! to its displacement at the end. Both put the same frames on the wire, so ranks whose
//! `recv` layouts differ (each rank chooses its own displacements) work together.
//!
//! Each rank receives the `(p - 1)` other blocks once, like the direct exchange and the
//! ring, but in `ceil(log2 p)` frames instead of `p - 1`: fewer, larger messages once the
//! job is larger than a few ranks. The price is in the links: a block travels up to
//! `ceil(log2 p)` hops, so a host's link carries about `n` per rank on it (the ring: `n`
//! per host). `allgatherv.rs` weighs the two.

use super::exchange::Exchange;
use super::split::{blocks_by_rank, spans};
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
    if back_to_back(ranges) {
        in_place(mesh, fp, send, recv, ranges)
    } else {
        through_scratch(mesh, fp, send, recv, ranges)
    }
}

/// Whether every rank's block starts where the previous rank's ends.
pub(super) fn back_to_back(ranges: &[(usize, usize)]) -> bool {
    ranges.windows(2).all(|pair| pair[0].1 == pair[1].0)
}

/// Bruck's rounds straight in `recv`, whose blocks lie back to back in rank order.
fn in_place(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[u8],
    recv: &mut [u8],
    ranges: &[(usize, usize)],
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    let base = ranges.first().map_or(0, |&(start, _)| start);
    let end = ranges.last().map_or(0, |&(_, end)| end);
    let all = &mut recv[base..end];
    let total = all.len();
    // Offset in `all` of rank `r`'s block, for `r` in `0..=n` (rank `n`: the end).
    let start = |r: usize| if r == n { total } else { ranges[r].0 - base };
    // The spans of `all` holding the blocks of ranks `first..first + count` (modulo `n`):
    // one, or two when the run wraps past the last rank (the second then starts at 0).
    let run_of = |first: usize, count: usize| -> [(usize, usize); 2] {
        if first + count <= n {
            [(start(first), start(first + count)), (0, 0)]
        } else {
            [(start(first), total), (0, start(first + count - n))]
        }
    };
    mesh.local(|| copy(&mut all[start(me)..start(me + 1)], send));
    let mut have = 1;
    while have < n {
        let count = have.min(n - have);
        let (to, from) = ((me + n - have) % n, (me + have) % n);
        // My blocks `0..count` (ranks `me..`) go to `to`; `from`'s first `count` blocks
        // are my blocks `have..` (ranks `from..`). The two runs of ranks are disjoint
        // because `count <= have` and `have + count <= n`.
        let [out, out_tail] = run_of(me, count);
        let [into, into_tail] = run_of(from, count);
        let [out, out_tail, into, into_tail] = spans(all, [out, out_tail, into, into_tail]);
        let mut sends = [SendOp::wrapped(to, fp, out, out_tail)];
        let mut recvs = [RecvOp::wrapped(from, into, into_tail)];
        mesh.exchange(fp, &mut sends, &mut recvs)?;
        have += count;
    }
    Ok(())
}

/// Bruck's rounds in scratch, for blocks in any layout, then one copy per block.
fn through_scratch(
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
    let rotated = scratch.elements::<u8>(bounds[n]);
    mesh.local(|| copy(&mut rotated[..send.len()], send));
    let result = gather_rotated(mesh, fp, rotated, &bounds);
    if result.is_ok() {
        mesh.local(|| {
            for (r, slot) in blocks_by_rank(recv, ranges).into_iter().enumerate() {
                let j = (r + n - me) % n;
                copy(slot, &rotated[bounds[j]..bounds[j + 1]]);
            }
        });
    }
    *mesh.scratch() = scratch;
    result
}
