//! The `binomial` broadcast: `ceil(log2 p)` rounds from any root.
//!
//! Ranks are numbered relative to the root, `v = (r - root) mod p`. Rank `v > 0` receives
//! the buffer from `v - h`, `h` the highest power of two not above `v`, then sends it to
//! `v + 2h`, `v + 4h`, ... (those below `p`), all at once; the root sends to `1, 2, 4,
//! ...`. Rank `v` is `popcount(v)` hops from the root: at most `ceil(log2 p)`. The root
//! sends `ceil(log2 p)` copies instead of `p - 1`.
//!
//! Every non-root rank also sends its parent an empty frame carrying its fingerprint, as
//! the direct broadcast does to the root: ranks that disagree on the root (or on anything
//! else) then find out from a frame instead of waiting on each other. Along every edge
//! of each rank's tree a frame flows one way or the other, so two views of the call
//! always meet.

use super::exchange::Exchange;
use super::transport::{Fail, RecvOp, SendOp};
use crate::fingerprint::Fingerprint;

pub(super) fn run(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    buf: &mut [u8],
    root: usize,
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    let v = (me + n - root) % n;
    let rank_of = |v: usize| (v + root) % n;
    // The distance to the first child: just above the edge this rank was reached by.
    let mut first = 1;
    if v > 0 {
        let h = 1 << v.ilog2();
        let parent = rank_of(v - h);
        let mut sends = [SendOp::new(parent, fp, &[])];
        let mut recvs = [RecvOp::new(parent, buf)];
        mesh.exchange(fp, &mut sends, &mut recvs)?;
        first = h << 1;
    }
    let children: Vec<usize> = std::iter::successors(Some(first), |&d| d.checked_mul(2))
        .take_while(|&d| v + d < n)
        .map(|d| rank_of(v + d))
        .collect();
    if children.is_empty() {
        return Ok(());
    }
    let buf: &[u8] = buf;
    let mut sends: Vec<SendOp<'_>> = children.iter().map(|&c| SendOp::new(c, fp, buf)).collect();
    let mut recvs: Vec<RecvOp<'_>> = children.iter().map(|&c| RecvOp::new(c, &mut [])).collect();
    mesh.exchange(fp, &mut sends, &mut recvs)
}

#[cfg(test)]
mod tests {
    /// Every relative rank's parent and children, as `run` computes them.
    fn tree(n: usize) -> Vec<(Option<usize>, Vec<usize>)> {
        (0..n)
            .map(|v| {
                let (parent, first) = if v == 0 {
                    (None, 1)
                } else {
                    let h = 1 << v.ilog2();
                    (Some(v - h), h << 1)
                };
                let children = std::iter::successors(Some(first), |&d| d.checked_mul(2))
                    .take_while(|&d| v + d < n)
                    .map(|d| v + d)
                    .collect();
                (parent, children)
            })
            .collect()
    }

    #[test]
    fn every_rank_is_reached_once_within_log2_rounds() {
        for n in 1..=70 {
            let t = tree(n);
            for (v, (parent, _)) in t.iter().enumerate() {
                if let Some(p) = parent {
                    assert!(t[*p].1.contains(&v), "{n} ranks: {v} not a child of {p}");
                }
            }
            let edges: usize = t.iter().map(|(_, c)| c.len()).sum();
            assert_eq!(edges, n - 1);
            // The depth of the tree (rank `v` is `popcount(v)` hops from the root) is the
            // latency in rounds: `ceil(log2 n)` at most, exactly that at powers of two.
            let depth = |mut v: usize| {
                let mut d = 0;
                while let Some(p) = t[v].0 {
                    v = p;
                    d += 1;
                }
                d
            };
            let rounds = (0..n).map(depth).max().unwrap_or(0);
            let log = n.next_power_of_two().trailing_zeros() as usize;
            assert!(rounds <= log, "{n} ranks: {rounds} rounds");
            if n.is_power_of_two() {
                assert_eq!(rounds, log);
            }
        }
    }
}
