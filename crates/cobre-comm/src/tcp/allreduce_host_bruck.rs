//! The `host-bruck` allreduce, for small buffers on hosts of several ranks: the `bruck`
//! allreduce (`allreduce_bruck.rs`) with one rank per host in Bruck's rounds.
//!
//! 1. every rank sends its contribution to its host's first rank, the *leader*;
//! 2. the leaders gather every host's contributions by Bruck's allgather among
//!    themselves (`leaders.rs`, `ceil(log2 h)` rounds on `h` hosts), a host's
//!    contributions travelling as one block;
//! 3. each leader folds all `p` contributions in rank order, `((x0 op x1) op x2) op ...`,
//!    and sends the result to the other ranks of its host.
//!
//! Contributions are never combined in another order (a host's partial sum first would
//! change the rounding of `Sum`), so the result is the same, bit for bit, as every other
//! algorithm's. What `bruck` sends across a host's link in its last rounds, `k` ranks'
//! frames of up to `p / 2` contributions each, here is one leader's frame: a `k`-th of the
//! bytes in `ceil(log2 h) + 2` rounds instead of `ceil(log2 p)`, and a rank other than a
//! leader holds one connection. The leader receives and sends `k - 1` small frames
//! within its host.

use std::sync::Arc;

use super::allgatherv_bruck::gather_rotated;
use super::allreduce::fold_in_rank_order;
use super::exchange::Exchange;
use super::leaders::Leaders;
use super::scratch::Scratch;
use super::split::consecutive;
use super::transport::{Fail, RecvOp, SendOp};
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
    let (me, n, len) = (mesh.rank(), mesh.size(), send.len());
    let hosts = Arc::clone(mesh.hosts());
    let host = hosts.of(me);
    let local = hosts.members(host);
    let k = local.len();
    if local[0] != me {
        // Steps 1 and 3 at once: the result cannot arrive before the contribution left.
        let mut sends = [SendOp::new(local[0], fp, as_bytes(send))];
        let mut recvs = [RecvOp::new(local[0], as_bytes_mut(recv))];
        return mesh.exchange(fp, &mut sends, &mut recvs);
    }
    let h = hosts.count();
    // Block `j` of `rotated` holds the contributions of host `(host + j) mod h`, in
    // local order; its bounds in bytes.
    let bytes = std::mem::size_of_val(send);
    let mut bounds = Vec::with_capacity(h + 1);
    bounds.push(0);
    for j in 0..h {
        bounds.push(bounds[j] + hosts.members((host + j) % h).len() * bytes);
    }
    let rotated = scratch.elements::<T>(n * len);
    mesh.local(|| copy(&mut rotated[..len], send));
    if k > 1 {
        // Step 1: the host's other contributions, after this rank's.
        let mut recvs: Vec<RecvOp<'_>> =
            consecutive(&mut rotated[len..k * len], (1..k).map(|_| len))
                .into_iter()
                .zip(&local[1..])
                .map(|(piece, &r)| RecvOp::new(r, as_bytes_mut(piece)))
                .collect();
        mesh.exchange(fp, &mut [], &mut recvs)?;
    }
    // Step 2: among the leaders.
    let mut leaders = Leaders::of(mesh).expect("this rank leads its host");
    gather_rotated(&mut leaders, fp, as_bytes_mut(rotated), &bounds)?;
    drop(leaders);
    let rotated: &[T] = rotated;
    let elem = std::mem::size_of::<T>().max(1);
    let piece = |r: usize| {
        let j = (hosts.of(r) + h - host) % h;
        let start = bounds[j] / elem + hosts.local_index(r) * len;
        &rotated[start..start + len]
    };
    mesh.local(|| fold_in_rank_order(recv, n, piece, op));
    if k > 1 {
        // Step 3: the result to the host's other ranks.
        let recv: &[T] = recv;
        let mut sends: Vec<SendOp<'_>> = local[1..]
            .iter()
            .map(|&r| SendOp::new(r, fp, as_bytes(recv)))
            .collect();
        mesh.exchange(fp, &mut sends, &mut [])?;
    }
    Ok(())
}
