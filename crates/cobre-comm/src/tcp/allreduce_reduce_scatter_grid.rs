//! The `reduce-scatter-grid` allreduce: `reduce-scatter-allgather` with the connections
//! of a grid, for large buffers on many ranks per host.
//!
//! The buffer is cut into `p` chunks, chunk `c` owned by rank `c`, and each owner folds
//! the `p` pieces of its chunk in rank order, as in `reduce-scatter-allgather` (so `Sum`
//! is the exact rank-order fold). What changes is the route: a piece for an owner on
//! another host first goes to its *carrier*, the rank of its own host at the owner's
//! local index ([`Hosts::carrier`]), which sends the pieces of all its host's ranks to
//! the owner in one frame. The reduced chunks come back the same way. Four steps:
//!
//! 1. every rank sends each rank of its host the pieces that rank carries or owns;
//! 2. each carrier sends every owner it carries for the pieces of its whole host;
//!    the owners fold;
//! 3. each owner sends its reduced chunk to its carrier on every other host;
//! 4. every rank sends each rank of its host the reduced chunks it owns or carried.
//!
//! With `k` ranks on each of `h` hosts a rank holds `k - 1 + h - 1` connections instead of
//! `p - 1` (a 1024-rank job on 64 hosts: 78 instead of 1023), and sends `2 (k - 1) + 2
//! (h - 1)` messages instead of `2 (p - 1)`, while the bytes crossing each host's link are
//! those of `reduce-scatter-allgather`. Extra memory: about three times the buffer, in
//! the mesh's scratch (the pieces are packed into one frame per peer and step).

use std::sync::Arc;

use super::allreduce::fold_in_rank_order;
use super::exchange::Exchange;
use super::hosts::Hosts;
use super::scratch::Scratch;
use super::split::consecutive;
use super::transport::{Fail, RecvOp, SendOp};
use crate::algorithm::chunk_bounds;
use crate::copy::copy;
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::ReduceOp;

/// The chunks each rank of host `host` carries or owns, by local index, ascending.
fn routes(hosts: &Hosts, host: usize, n: usize) -> Vec<Vec<usize>> {
    let mut by_carrier = vec![Vec::new(); hosts.members(host).len()];
    for c in 0..n {
        by_carrier[hosts.local_index(hosts.carrier(host, c))].push(c);
    }
    by_carrier
}

#[allow(clippy::too_many_lines)] // four steps, each a few lines of packing
pub(super) fn run<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
    scratch: &mut Scratch,
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    let hosts = Arc::clone(mesh.hosts());
    let bounds = chunk_bounds(send.len(), n);
    let len = |c: usize| bounds[c + 1] - bounds[c];
    let chunk = |c: usize| bounds[c]..bounds[c + 1];
    let host = hosts.of(me);
    let local = hosts.members(host);
    let mine = hosts.local_index(me);
    let routes = routes(&hosts, host, n);
    let routed_len = |i: usize| routes[i].iter().map(|&c| len(c)).sum::<usize>();
    let carried = &routes[mine];
    // `carried` holds `me` and the chunks of other hosts this rank carries; where each
    // starts in a frame of them.
    let mut at = vec![0; n];
    let mut offset = 0;
    for &c in carried {
        at[c] = offset;
        offset += len(c);
    }
    let carried_len = offset;
    let remote: Vec<usize> = carried.iter().copied().filter(|&c| c != me).collect();
    let k = local.len();
    // Where each rank of another host sits in the frames this rank receives as an owner:
    // hosts in order, each host's ranks in order.
    let mut slot = vec![usize::MAX; n];
    let mut slots = 0;
    for h in (0..hosts.count()).filter(|&h| h != host) {
        for &r in hosts.members(h) {
            slot[r] = slots;
            slots += 1;
        }
    }
    let outgoing_len = (0..k)
        .filter(|&i| i != mine)
        .map(routed_len)
        .sum::<usize>()
        .max(k * remote.iter().map(|&c| len(c)).sum::<usize>())
        .max(carried_len);
    let incoming_len =
        (k * carried_len).max((0..k).filter(|&i| i != mine).map(routed_len).sum::<usize>());
    let (outgoing, rest) = scratch
        .elements::<T>(outgoing_len + incoming_len + slots * len(me))
        .split_at_mut(outgoing_len);
    let (incoming, theirs) = rest.split_at_mut(incoming_len);

    // Step 1: to each rank of this host, the pieces it carries or owns; from each, the
    // pieces this rank carries or owns (slot `i` of `incoming` from local rank `i`).
    if k > 1 {
        let mut packed = consecutive(
            &mut outgoing[..],
            (0..k).map(|i| if i == mine { 0 } else { routed_len(i) }),
        );
        mesh.local(|| {
            for (i, frame) in packed.iter_mut().enumerate().filter(|&(i, _)| i != mine) {
                let mut filled = 0;
                for &c in &routes[i] {
                    copy(&mut frame[filled..filled + len(c)], &send[chunk(c)]);
                    filled += len(c);
                }
            }
        });
        let mut sends: Vec<SendOp<'_>> = packed
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != mine)
            .map(|(i, frame)| SendOp::new(local[i], fp, as_bytes(frame)))
            .collect();
        let mut recvs: Vec<RecvOp<'_>> =
            consecutive(&mut incoming[..], (0..k).map(|_| carried_len))
                .into_iter()
                .enumerate()
                .filter(|&(i, _)| i != mine)
                .map(|(i, piece)| RecvOp::new(local[i], as_bytes_mut(piece)))
                .collect();
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    // Local rank `i`'s piece of chunk `c` (one this rank carries or owns).
    let from_host = |i: usize, c: usize| -> std::ops::Range<usize> {
        let start = i * carried_len + at[c];
        start..start + len(c)
    };

    // Step 2: to each owner this rank carries for, its host's pieces in local order; from
    // this rank's carrier on each other host, that host's pieces of chunk `me`.
    {
        let mut packed = consecutive(&mut outgoing[..], remote.iter().map(|&c| k * len(c)));
        mesh.local(|| {
            for (frame, &c) in packed.iter_mut().zip(&remote) {
                for i in 0..k {
                    let piece = if i == mine {
                        &send[chunk(c)]
                    } else {
                        &incoming[from_host(i, c)]
                    };
                    copy(&mut frame[i * len(c)..(i + 1) * len(c)], piece);
                }
            }
        });
        let mut sends: Vec<SendOp<'_>> = packed
            .iter()
            .zip(&remote)
            .map(|(frame, &c)| SendOp::new(c, fp, as_bytes(frame)))
            .collect();
        let others: Vec<usize> = (0..hosts.count()).filter(|&h| h != host).collect();
        let mut recvs: Vec<RecvOp<'_>> = consecutive(
            &mut theirs[..],
            others.iter().map(|&h| hosts.members(h).len() * len(me)),
        )
        .into_iter()
        .zip(&others)
        .map(|(frame, &h)| RecvOp::new(hosts.carrier(h, me), as_bytes_mut(frame)))
        .collect();
        if !sends.is_empty() || !recvs.is_empty() {
            mesh.exchange(fp, &mut sends, &mut recvs)?;
        }
    }
    let piece = |r: usize| -> &[T] {
        if r == me {
            &send[chunk(me)]
        } else if hosts.of(r) == host {
            &incoming[from_host(hosts.local_index(r), me)]
        } else {
            &theirs[slot[r] * len(me)..(slot[r] + 1) * len(me)]
        }
    };
    mesh.local(|| fold_in_rank_order(&mut recv[chunk(me)], n, piece, op));

    // Step 3: chunk `me` to this rank's carrier on each other host; from each owner this
    // rank carries for, its reduced chunk, straight into place.
    {
        let mut chunks = consecutive(recv, (0..n).map(len));
        let own: &[T] = std::mem::take::<&mut [T]>(&mut chunks[me]);
        let mut sends: Vec<SendOp<'_>> = (0..hosts.count())
            .filter(|&h| h != host)
            .map(|h| SendOp::new(hosts.carrier(h, me), fp, as_bytes(own)))
            .collect();
        let mut recvs: Vec<RecvOp<'_>> = chunks
            .into_iter()
            .enumerate()
            .filter(|&(c, _)| c != me && hosts.of(c) != host && hosts.carrier(host, c) == me)
            .map(|(c, dest)| RecvOp::new(c, as_bytes_mut(dest)))
            .collect();
        if !sends.is_empty() || !recvs.is_empty() {
            mesh.exchange(fp, &mut sends, &mut recvs)?;
        }
    }

    // Step 4: to each rank of this host, the chunks this rank owns or carried; from each,
    // the chunks it owns or carried.
    if k > 1 {
        let frame = &mut outgoing[..carried_len];
        mesh.local(|| {
            for &c in carried {
                copy(&mut frame[at[c]..at[c] + len(c)], &recv[chunk(c)]);
            }
        });
        let frame: &[T] = frame;
        let mut sends: Vec<SendOp<'_>> = (0..k)
            .filter(|&i| i != mine)
            .map(|i| SendOp::new(local[i], fp, as_bytes(frame)))
            .collect();
        let mut received = consecutive(
            &mut incoming[..],
            (0..k).map(|i| if i == mine { 0 } else { routed_len(i) }),
        );
        {
            let mut recvs: Vec<RecvOp<'_>> = received
                .iter_mut()
                .enumerate()
                .filter(|&(i, _)| i != mine)
                .map(|(i, frame)| RecvOp::new(local[i], as_bytes_mut(frame)))
                .collect();
            mesh.exchange(fp, &mut sends, &mut recvs)?;
        }
        mesh.local(|| {
            for (i, frame) in received.iter().enumerate().filter(|&(i, _)| i != mine) {
                let mut read = 0;
                for &c in &routes[i] {
                    copy(&mut recv[chunk(c)], &frame[read..read + len(c)]);
                    read += len(c);
                }
            }
        });
    }
    Ok(())
}
