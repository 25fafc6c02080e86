//! The `reduce-scatter-bruck` allreduce: `reduce-scatter-allgather` between neighbours
//! only, for large buffers on many ranks.
//!
//! The buffer is cut into `p` chunks, chunk `c` owned by rank `c`, as in
//! `reduce-scatter-allgather`; but instead of sending each piece straight to its owner
//! (a connection to every rank), the pieces travel as in Bruck's all-to-all. Rank `r`
//! keeps `p` slots; slot `j` starts with its piece for rank `r + j`. In round `k` it sends
//! every slot whose index has bit `k` set, packed into one frame, to rank `r + 2^k`, and
//! receives the same slots from rank `r - 2^k`: a piece moves by the set bits of `j`,
//! `j` in all, so after `ceil(log2 p)` rounds slot `j` of rank `r` holds rank `r - j`'s
//! piece of chunk `r`. The owner folds the `p` pieces in rank order (`Sum` stays the exact
//! rank-order fold, whatever the route the pieces took), and Bruck's allgather spreads
//! the reduced chunks.
//!
//! Each rank sends about `(n / 2) ceil(log2 p)` bytes in the first half instead of `n`,
//! in `ceil(log2 p)` messages instead of `p - 1`: on a 1024-rank job, 10 messages and
//! 19 connections instead of 1023 of each. Extra memory: the slots and the two packed
//! frames, about twice the buffer, in the mesh's scratch.

use super::allgatherv_bruck::gather_rotated;
use super::allreduce::fold_in_rank_order;
use super::exchange::Exchange;
use super::scratch::Scratch;
use super::transport::{Fail, RecvOp, SendOp};
use crate::algorithm::chunk_bounds;
use crate::copy::copy;
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
    let chunk_len = |c: usize| bounds[c % n + 1] - bounds[c % n];
    // Every slot has room for the longest chunk; packed frames carry at most half the
    // slots, rounded up.
    let cap = (0..n).map(chunk_len).max().unwrap_or(0);
    let packed = n.div_ceil(2) * cap;
    let (slots, rest) = scratch
        .elements::<T>(n * cap + 2 * packed)
        .split_at_mut(n * cap);
    let (outgoing, incoming) = rest.split_at_mut(packed);
    mesh.local(|| {
        for j in 0..n {
            let c = (me + j) % n;
            copy(
                &mut slots[j * cap..j * cap + chunk_len(c)],
                &send[bounds[c]..bounds[c + 1]],
            );
        }
    });
    // Before round `k`, slot `j` of rank `x` holds a piece of chunk `x + j - (j mod 2^k)`:
    // the low bits of `j` are the distance it has travelled.
    let mut bit = 1;
    while bit < n {
        let moving: Vec<usize> = (0..n).filter(|j| j & bit != 0).collect();
        let held = |x: usize, j: usize| chunk_len(x + j - (j & (bit - 1)));
        let (to, from) = ((me + bit) % n, (me + n - bit) % n);
        let sent: usize = moving.iter().map(|&j| held(me, j)).sum();
        mesh.local(|| {
            let mut at = 0;
            for &j in &moving {
                let len = held(me, j);
                copy(&mut outgoing[at..at + len], &slots[j * cap..j * cap + len]);
                at += len;
            }
        });
        let arriving: usize = moving.iter().map(|&j| held(from, j)).sum();
        {
            let mut sends = [SendOp::new(to, fp, as_bytes(&outgoing[..sent]))];
            let mut recvs = [RecvOp::new(from, as_bytes_mut(&mut incoming[..arriving]))];
            mesh.exchange(fp, &mut sends, &mut recvs)?;
        }
        mesh.local(|| {
            let mut at = 0;
            for &j in &moving {
                let len = held(from, j);
                copy(&mut slots[j * cap..j * cap + len], &incoming[at..at + len]);
                at += len;
            }
        });
        bit <<= 1;
    }
    // Slot `j` now holds rank `me - j`'s piece of my chunk.
    let (lo, hi) = (bounds[me], bounds[me + 1]);
    let mine = hi - lo;
    mesh.local(|| {
        fold_in_rank_order(
            &mut recv[lo..hi],
            n,
            |r| {
                let j = (me + n - r) % n;
                &slots[j * cap..j * cap + mine]
            },
            op,
        );
    });
    // Bruck's allgather of the reduced chunks, in the slots' room: block `j` is rank
    // `me + j`'s chunk.
    let elem = std::mem::size_of::<T>();
    let mut rotated_bounds = Vec::with_capacity(n + 1);
    rotated_bounds.push(0);
    for j in 0..n {
        rotated_bounds.push(rotated_bounds[j] + chunk_len(me + j) * elem);
    }
    let rotated = &mut as_bytes_mut(slots)[..rotated_bounds[n]];
    mesh.local(|| copy(&mut rotated[..mine * elem], as_bytes(&recv[lo..hi])));
    gather_rotated(mesh, fp, rotated, &rotated_bounds)?;
    mesh.local(|| {
        for j in 1..n {
            let c = (me + j) % n;
            copy(
                as_bytes_mut(&mut recv[bounds[c]..bounds[c + 1]]),
                &rotated[rotated_bounds[j]..rotated_bounds[j + 1]],
            );
        }
    });
    Ok(())
}
