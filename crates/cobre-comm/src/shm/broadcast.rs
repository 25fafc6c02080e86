//! broadcast: picks a named algorithm and runs it, by the same rule as allgatherv
//! (`allgatherv.rs`, [`pick_copying`]): `direct` (`broadcast_direct.rs`) for small
//! buffers, `single-copy` (`broadcast_single_copy.rs`) for large ones where the kernel
//! allows it. `COBRE_SHM_ALGORITHMS=broadcast=NAME` forces one at every size.

use super::allgatherv::pick_copying;
use super::transport::ShmTransport;
use super::{broadcast_direct, broadcast_single_copy};
use crate::algorithm::{Algorithm, Op};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::CommError;

pub(crate) fn broadcast<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    buf: &mut [T],
    root: usize,
) -> Result<(), CommError> {
    let algorithm = pick_copying(link, Op::Broadcast, std::mem::size_of_val(buf));
    let fingerprint = &fingerprint.with_algorithm(algorithm);
    if algorithm == Algorithm::SingleCopy {
        broadcast_single_copy::run(link, fingerprint, buf, root)
    } else {
        broadcast_direct::run(link, fingerprint, buf, root)
    }
}
