//! The `scatter-allgather` broadcast, for large buffers (van de Geijn): the root sends
//! chunk `c` of the buffer to rank `c`, then every rank sends its chunk to every other
//! non-root rank. The root sends `2 (n - 1) / n` buffers instead of `n - 1`, and the other
//! ranks share the forwarding. As in the direct broadcast, every non-root rank also sends
//! the root an empty frame with its fingerprint, so ranks that disagree on the root fail
//! instead of waiting on each other.

use super::exchange::Exchange;
use super::transport::{Fail, RecvOp, SendOp};
use crate::algorithm::chunk_bounds;
use crate::fingerprint::Fingerprint;

pub(super) fn run(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    buf: &mut [u8],
    root: usize,
) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    let bounds = chunk_bounds(buf.len(), n);
    if me == root {
        let buf: &[u8] = buf;
        let mut sends: Vec<SendOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, &buf[bounds[p]..bounds[p + 1]]))
            .collect();
        let mut recvs: Vec<RecvOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| RecvOp::new(p, &mut []))
            .collect();
        mesh.exchange(fp, &mut sends, &mut recvs)?;
        let own = &buf[bounds[me]..bounds[me + 1]];
        let mut sends: Vec<SendOp<'_>> = (0..n)
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, own))
            .collect();
        return mesh.exchange(fp, &mut sends, &mut []);
    }
    let mut chunks: Vec<&mut [u8]> = Vec::with_capacity(n);
    let mut rest = buf;
    for c in 0..n {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(bounds[c + 1] - bounds[c]);
        chunks.push(head);
        rest = tail;
    }
    {
        let mut sends = [SendOp::new(root, fp, &[])];
        let mut recvs = [RecvOp::new(root, chunks[me])];
        mesh.exchange(fp, &mut sends, &mut recvs)?;
    }
    let (before, after) = chunks.split_at_mut(me);
    let (own, after) = after.split_first_mut().expect("my chunk");
    let own: &[u8] = own;
    let mut sends: Vec<SendOp<'_>> = (0..n)
        .filter(|&p| p != me && p != root)
        .map(|p| SendOp::new(p, fp, own))
        .collect();
    let mut recvs: Vec<RecvOp<'_>> = before
        .iter_mut()
        .enumerate()
        .chain(after.iter_mut().enumerate().map(|(i, c)| (me + 1 + i, c)))
        .map(|(p, c)| RecvOp::new(p, c))
        .collect();
    mesh.exchange(fp, &mut sends, &mut recvs)
}
