//! The `scatter-bruck` broadcast, for large buffers on many ranks: the root's buffer is cut
//! into `p` chunks, a binomial tree scatters them (one per rank), then Bruck's allgather
//! gives every rank all of them. Like `scatter-allgather` the root sends about `2 n` bytes
//! and the other ranks share the forwarding, but every message goes between neighbours
//! (ranks at distance `2^k`, `neighbours.rs`), so the call opens no connection, and it
//! takes about `2 ceil(log2 p)` rounds of one or two messages instead of `2 (p - 1)`
//! messages per rank: ahead of `scatter-allgather` from a few hundred ranks in the network
//! model (docs/PERFORMANCE.md), behind it on fewer.
//!
//! Ranks are numbered from the root, `v = (r - root) mod p`, and chunk `c` is relative
//! rank `c`'s. The scatter: rank `v > 0` receives the chunks `v .. v + lowbit(v)` from
//! `v - lowbit(v)` and passes the upper half of what it holds on at distances
//! `lowbit(v) / 2, ..., 2, 1`; the root at every power of two below `p`. The allgather
//! works in place, in the chunks' own order (no scratch buffer, no final copy): in each
//! round a rank sends the chunks it has, `v .. v + have` modulo `p`, to `v - have` and
//! receives as many from `v + have`; a run of chunks that wraps past the last one goes
//! as two frames, cut at the same chunk on both ends.
//!
//! Every non-root rank sends the rank it receives its chunks from an empty frame with its
//! fingerprint, so ranks that disagree on the root fail instead of waiting on each other.

use std::ops::Range;

use super::exchange::Exchange;
use super::transport::{Fail, RecvOp, SendOp};
use crate::algorithm::chunk_bounds;
use crate::fingerprint::Fingerprint;

/// Chunk `c` of `buf` is relative rank `c`'s.
pub(super) fn run(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    buf: &mut [u8],
    root: usize,
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    let bounds = chunk_bounds(buf.len(), n);
    let v = (me + n - root) % n;
    let rank_of = |v: usize| (v + root) % n;
    // The chunks this rank passes on lie in `v .. v + span`.
    let span = if v == 0 {
        n.next_power_of_two()
    } else {
        let low = 1 << v.trailing_zeros();
        let parent = rank_of(v - low);
        let end = (v + low).min(n);
        let mut sends = [SendOp::new(parent, fp, &[])];
        let mut recvs = [RecvOp::new(parent, &mut buf[bounds[v]..bounds[end]])];
        mesh.exchange(fp, &mut sends, &mut recvs)?;
        low
    };
    let children: Vec<(usize, usize)> = std::iter::successors(Some(span / 2), |&d| Some(d / 2))
        .take_while(|&d| d > 0)
        .filter(|&d| v + d < n)
        .map(|d| (v + d, (v + 2 * d).min(n)))
        .collect();
    {
        let held: &[u8] = buf;
        let mut sends: Vec<SendOp<'_>> = children
            .iter()
            .map(|&(c, end)| SendOp::new(rank_of(c), fp, &held[bounds[c]..bounds[end]]))
            .collect();
        let mut recvs: Vec<RecvOp<'_>> = children
            .iter()
            .map(|&(c, _)| RecvOp::new(rank_of(c), &mut []))
            .collect();
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    gather_in_place(mesh, fp, buf, &bounds, (v, root))
}

/// Bruck's allgather of the chunks, in place (see the module documentation).
fn gather_in_place(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    buf: &mut [u8],
    bounds: &[usize],
    (v, root): (usize, usize),
) -> Result<(), Fail> {
    let n = mesh.size();
    let rank_of = |v: usize| (v + root) % n;
    // The byte ranges of chunks `start .. start + count` (modulo `n`): one or two.
    let runs = |start: usize, count: usize| -> Vec<Range<usize>> {
        let mut runs = Vec::with_capacity(2);
        if start + count <= n {
            runs.push(bounds[start]..bounds[start + count]);
        } else {
            runs.push(bounds[start]..bounds[n]);
            runs.push(0..bounds[start + count - n]);
        }
        runs
    };
    let mut have = 1;
    while have < n {
        let count = have.min(n - have);
        let (to, from) = (rank_of((v + n - have) % n), rank_of((v + have) % n));
        let outgoing = runs(v, count);
        let incoming = runs((v + have) % n, count);
        for step in 0..outgoing.len().max(incoming.len()) {
            let (held, into) = apart(buf, outgoing.get(step), incoming.get(step));
            let mut sends: Vec<SendOp<'_>> =
                held.map(|h| SendOp::new(to, fp, h)).into_iter().collect();
            let mut recvs: Vec<RecvOp<'_>> =
                into.map(|i| RecvOp::new(from, i)).into_iter().collect();
            mesh.exchange(fp, &mut sends, &mut recvs)?;
        }
        have += count;
    }
    Ok(())
}

/// `buf[send]` to read and `buf[recv]` to write, at once (the two never overlap: one
/// ends where or before the other starts).
fn apart<'a>(
    buf: &'a mut [u8],
    send: Option<&Range<usize>>,
    recv: Option<&Range<usize>>,
) -> (Option<&'a [u8]>, Option<&'a mut [u8]>) {
    match (send, recv) {
        (Some(s), Some(r)) if s.end <= r.start => {
            let (low, high) = buf.split_at_mut(r.start);
            (Some(&low[s.clone()]), Some(&mut high[..r.len()]))
        }
        (Some(s), Some(r)) => {
            let (low, high) = buf.split_at_mut(s.start);
            (Some(&high[..s.len()]), Some(&mut low[r.clone()]))
        }
        (Some(s), None) => (Some(&buf[s.clone()]), None),
        (None, Some(r)) => (None, Some(&mut buf[r.clone()])),
        (None, None) => (None, None),
    }
}
