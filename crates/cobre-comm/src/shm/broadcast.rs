//! broadcast: picks a named algorithm and runs it: `direct` (`broadcast_direct.rs`) at
//! every size; `single-copy` (`broadcast_single_copy.rs`) only when forced
//! (`COBRE_SHM_ALGORITHMS=broadcast=single-copy`, where the kernel allows it).
//!
//! Unlike allgatherv, a broadcast through the slots keeps every core copying: the root
//! fills its slot while the others copy out what is already in place. With single-copy the root
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

/// Broadcasts whose buffers together (the buffer's size times the ranks) reach this many
/// bytes write the non-root ranks' buffers with streaming stores (`copy::copy_streaming`):
/// about the last-level cache of the reference machine (32 MiB), beyond which the buffers
/// no longer stay in it. Below, plain copies are faster: 2 ranks, five interleaved pairs of
/// jobs, 1 MiB 108-156 against 183-215 us, 4 MiB 677-708 against 803-953, 8 MiB
/// 1266-1470 against 1399-1851; 4 ranks on 2 cores, seven pairs, medians: 4 MiB 1399
/// against 1549, but 8 MiB 3395 against 3076 (`docs/perf/broadcast-streaming.txt`).
pub(crate) const STREAMING_MIN_JOB_BYTES: usize = 32 << 20;

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
