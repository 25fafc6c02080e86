//! The `dissemination` barrier: in round `k` every rank signals rank `r + 2^k` and waits for
//! rank `r - 2^k` (mod n); after `ceil(log2 n)` rounds every rank has heard, directly or
//! not, from every other.

use super::exchange::Exchange;
use super::transport::{Fail, RecvOp, SendOp};
use crate::fingerprint::Fingerprint;

pub(super) fn run(mesh: &mut impl Exchange, fp: &Fingerprint) -> Result<(), Fail> {
    let (me, n) = (mesh.rank(), mesh.size());
    let mut distance = 1;
    while distance < n {
        let to = (me + distance) % n;
        let from = (me + n - distance) % n;
        let mut sends = [SendOp::new(to, fp, &[])];
        let mut recvs = [RecvOp::new(from, &mut [])];
        mesh.exchange(fp, &mut sends, &mut recvs)?;
        distance *= 2;
    }
    Ok(())
}
