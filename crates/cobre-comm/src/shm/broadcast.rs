//! broadcast: picks a named algorithm and runs it: `single-copy`
//! (`broadcast_single_copy.rs`) from [`SINGLE_COPY_MIN_BYTES`] while the ranks fit the
//! node's cores, where the kernel allows it; `direct` (`broadcast_direct.rs`) otherwise.
//! `COBRE_SHM_ALGORITHMS=broadcast=NAME` forces one at every size.
//!
//! Through the slots every core copies: the root fills its slot while the others copy
//! out what is already in place, twice the bytes copied. Single-copy keeps every core at
//! work too, with half the copying: the root writes the first part of its buffer into the
//! others' while they read the rest out of the root's. On ranks that outnumber the cores
//! there is no idle core for that to use, and the slots were faster or level at every
//! size but 4-16 MiB on 3 ranks of 2 cores (`docs/perf/shm-crossovers.txt`).

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

/// While the ranks fit the cores, broadcasts from this many bytes on copy once. 2 ranks,
/// three interleaved jobs each: 64 KiB 6.6-7.0 us against 6.7-8.0 through the slots,
/// 256 KiB 16.6-17.2 against 20.4-30.1, 1 MiB 58.5-62.7 against 68.8-93.0, 16 MiB
/// 1.25-1.36 ms against 2.12-2.27, 64 MiB 7.1-8.1 against 8.3-9.8; 32 KiB 4.1-4.5
/// against 3.4.
pub(crate) const SINGLE_COPY_MIN_BYTES: usize = 128 << 10;

pub(crate) fn broadcast<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    buf: &mut [T],
    root: usize,
) -> Result<(), CommError> {
    let job = &link.job;
    let bytes = std::mem::size_of_val(buf);
    let algorithm = match job.algorithms.get(Op::Broadcast) {
        Some(forced @ (Algorithm::Direct | Algorithm::SingleCopy)) => forced,
        _ if job.size > 1
            && job.single_copy.is_ok()
            && job.ranks_fit_cores()
            && bytes >= SINGLE_COPY_MIN_BYTES =>
        {
            Algorithm::SingleCopy
        }
        _ => Algorithm::Direct,
    };
    let fingerprint = &fingerprint.with_algorithm(algorithm);
    if algorithm == Algorithm::SingleCopy {
        broadcast_single_copy::run(link, fingerprint, buf, root)
    } else {
        broadcast_direct::run(link, fingerprint, buf, root)
    }
}
