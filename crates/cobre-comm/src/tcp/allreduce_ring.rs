//! The `ring` allreduce, for large buffers on many ranks: every message goes to the next
//! rank of the ring, so a rank needs no connection beyond its two neighbours, whatever
//! the job's size.
//!
//! The buffer is cut into `m` pieces that travel down the ring in rank order: rank 0
//! sends its piece to rank 1, which folds its own contribution into it and passes it on,
//! and so on to rank `p - 1`. Each piece thus accumulates exactly the rank-order fold
//! `((x0 op x1) op x2) op ...` (the running prefix, never a partial result of another
//! shape), and leaves rank `p - 1` complete. From there it goes on around the ring,
//! rank `p - 1` to rank 0 to rank 1 and so on up to rank `p - 2`, each rank keeping a
//! copy. The pieces follow each other like a pipeline: in round `t` rank `r` sends the
//! prefix of piece `t - r` and the result of piece `t - p - r` (rank `p - 1`: the result
//! of piece `t - p + 1`), both in one frame of two parts, and receives the next two
//! from rank `r - 1`.
//!
//! Each link carries every piece twice (its prefix, then its result): `2 n` bytes, as the
//! classic ring allreduce does, in `m + 2 p - 3` rounds. `m` balances the pipeline's
//! length against the rounds' count ([`pieces`]).

use super::exchange::Exchange;
use super::split::spans;
use super::transport::{Fail, RecvOp, SendOp};
use crate::algorithm::chunk_bounds;
use crate::copy::copy;
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::reduce::reduce_into;
use crate::traits::CommData;
use crate::types::ReduceOp;

/// Bytes a link moves in the time of one round's fixed costs (latency and per-message
/// overheads), as `allgatherv::RING_LOCAL_ROUND_BYTES` estimates a round within a host,
/// rounded for loopback, where the ring also runs.
const BYTES_PER_ROUND: usize = 16 << 10;

/// The number of pieces for `len` elements of `bytes` bytes in all on `ranks` ranks.
/// The call takes about `(m + 2 p) (a + n / (m b))` for a round's fixed cost `a` and a
/// link's bandwidth `b`, least at `m = sqrt(2 p n / (a b))`: for 1 MiB, 16 pieces on 2
/// ranks, 362 on 1024 ranks. At least one piece, at most one per element.
pub(crate) fn pieces(len: usize, bytes: usize, ranks: usize) -> usize {
    let best = (2.0 * ranks as f64 * bytes as f64 / BYTES_PER_ROUND as f64).sqrt();
    (best.round() as usize).clamp(1, len.max(1))
}

pub(super) fn run<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    if n == 1 {
        mesh.local(|| copy(recv, send));
        return Ok(());
    }
    let count = pieces(send.len(), std::mem::size_of_val(send), n);
    let bounds = chunk_bounds(send.len(), count);
    let elements = |piece: usize| bounds[piece]..bounds[piece + 1];
    let size = std::mem::size_of::<T>();
    let bytes =
        |piece: Option<usize>| piece.map_or((0, 0), |i| (bounds[i] * size, bounds[i + 1] * size));
    let piece = |i: isize| usize::try_from(i).ok().filter(|&i| i < count);
    let (next, prev, last) = ((me + 1) % n, (me + n - 1) % n, n - 1);
    let (rank, ranks) = (me as isize, n as isize);
    for t in 0..(count + 2 * n - 3) as isize {
        // The pieces this rank sends to `next` and receives from `prev` in round `t`.
        let prefix_out = if me < last { piece(t - rank) } else { None };
        let result_out = if me == last {
            piece(t - ranks + 1)
        } else if me + 2 < n {
            piece(t - ranks - rank)
        } else {
            None
        };
        let prefix_in = if me > 0 { piece(t - rank + 1) } else { None };
        let result_in = if me == 0 {
            piece(t - ranks + 1)
        } else if me < last {
            piece(t - ranks - rank + 1)
        } else {
            None
        };
        let sending = usize::from(prefix_out.is_some() || result_out.is_some());
        let receiving = usize::from(prefix_in.is_some() || result_in.is_some());
        if sending + receiving == 0 {
            continue;
        }
        // Rank 0's prefixes are its own contribution, sent straight from `send`.
        let from_recv = prefix_out.filter(|_| me > 0);
        let [out, out_result, into, into_result] = spans(
            as_bytes_mut(recv),
            [
                bytes(from_recv),
                bytes(result_out),
                bytes(prefix_in),
                bytes(result_in),
            ],
        );
        let out: &[u8] = match prefix_out {
            Some(i) if me == 0 => as_bytes(&send[elements(i)]),
            _ => out,
        };
        let mut sends = [SendOp::wrapped(next, fp, out, out_result)];
        let mut recvs = [RecvOp::wrapped(prev, into, into_result)];
        mesh.exchange(fp, &mut sends[..sending], &mut recvs[..receiving])?;
        if let Some(i) = prefix_in {
            mesh.local(|| {
                reduce_into(&mut recv[elements(i)], &send[elements(i)], op)
                    .expect("checked reducible, equal lengths");
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn the_pieces_grow_with_the_ranks_and_the_bytes_within_the_elements() {
        assert_eq!(pieces(1 << 17, 1 << 20, 2), 16);
        assert_eq!(pieces(1 << 17, 1 << 20, 1024), 362);
        assert_eq!(pieces(1 << 21, 16 << 20, 2), 64);
        assert_eq!(pieces(3, 24, 1024), 2);
        assert_eq!(pieces(3, 24_000, 1024), 3);
        assert_eq!(pieces(0, 0, 8), 1);
    }
}
