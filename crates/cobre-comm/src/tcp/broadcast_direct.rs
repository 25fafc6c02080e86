//! The `direct` broadcast: the root sends the buffer to every rank at once while every
//! other rank sends the root an empty frame carrying its fingerprint, so that ranks that
//! disagree on the root find out instead of waiting on each other.

use super::exchange::Exchange;
use super::transport::{Fail, RecvOp, SendOp};
use crate::fingerprint::Fingerprint;

pub(super) fn run(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    buf: &mut [u8],
    root: usize,
) -> Result<(), Fail> {
    let me = mesh.rank();
    if me == root {
        let buf: &[u8] = buf;
        let mut sends: Vec<SendOp<'_>> = (0..mesh.size())
            .filter(|&p| p != me)
            .map(|p| SendOp::new(p, fp, buf))
            .collect();
        let mut recvs: Vec<RecvOp<'_>> = (0..mesh.size())
            .filter(|&p| p != me)
            .map(|p| RecvOp::new(p, &mut []))
            .collect();
        mesh.exchange(fp, &mut sends, &mut recvs)
    } else {
        let mut sends = [SendOp::new(root, fp, &[])];
        let mut recvs = [RecvOp::new(root, buf)];
        mesh.exchange(fp, &mut sends, &mut recvs)
    }
}
