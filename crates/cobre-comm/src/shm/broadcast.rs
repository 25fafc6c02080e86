//! broadcast: picks a named algorithm and runs it: `direct` (`broadcast_direct.rs`) at
//! every size; `single-copy` (`broadcast_single_copy.rs`) only when forced
//! (`COBRE_SHM_ALGORITHMS=broadcast=single-copy`, where the kernel allows it).
//!
//! Unlike allgatherv, a broadcast through the slots keeps every core copying: the root
//! fills one chunk while the others empty the one before. With single-copy the root
//! waits while each reader pulls the buffer through the kernel, which pins the pages as
//! it goes and copies more slowly than a plain copy. Measured, interleaved, two rounds
//! (`docs/perf/shm-crossovers.txt`): single-copy took 1.0-1.9x as long as direct at
//! every size from 1 to 64 MiB on 2, 3 and 4 ranks.

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
    let algorithm = match link.job.algorithms.get(Op::Broadcast) {
        Some(Algorithm::SingleCopy) => Algorithm::SingleCopy,
        _ => Algorithm::Direct,
    };
    let fingerprint = &fingerprint.with_algorithm(algorithm);
    if algorithm == Algorithm::SingleCopy {
        broadcast_single_copy::run(link, fingerprint, buf, root)
    } else {
        broadcast_direct::run(link, fingerprint, buf, root)
    }
}
