//! allgatherv: picks a named algorithm and runs it.
//!
//! | algorithm | picked when |
//! |---|---|
//! | `direct` (`allgatherv_direct.rs`) | below [`SINGLE_COPY_MIN_BYTES`] gathered, or single-copy not allowed here |
//! | `single-copy` (`allgatherv_single_copy.rs`) | larger gathers, where the kernel allows it (`cma.rs`) |
//!
//! `COBRE_SHM_ALGORITHMS=allgatherv=NAME` forces one at every size.

use super::transport::ShmTransport;
use super::{allgatherv_direct, allgatherv_single_copy};
use crate::algorithm::{Algorithm, Op};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::CommError;

/// Gathers from this many bytes on copy once, straight between the ranks' buffers, where
/// the kernel allows it. The kernel's copy pins the source pages as it goes (about 5 GB/s
/// here), so it only pulls clearly ahead of two plain copies for large payloads: at 2
/// ranks on this project's reference machine, quiet, two rounds, 1 MiB took 88 us against
/// 89-96 us through the slots, 2 MiB 212-220 against 225, 4 MiB 406 against 473-483,
/// 16 MiB 1.43-1.61 ms against 1.90-2.00 ms. On a machine with slower memory
/// (`docs/perf/shm-crossovers.txt`) 2 ranks still favour it from 4 MiB (256 MiB: 38.5-40.0
/// ms against 44.5-47.0), while 3 and 4 ranks on 2 cores run both at the same speed up to
/// 16 MiB and direct ahead above (64 MiB: 21.0 against 24.8-25.2 ms at 3 ranks).
pub(crate) const SINGLE_COPY_MIN_BYTES: usize = 4 << 20;

/// Gathers from this many bytes on write the caller's buffer with streaming stores
/// (`copy::copy_streaming`): the lines are not read into the cache before being
/// overwritten. 2 ranks, medians of 3-5 interleaved rounds: 8 MiB 1.29-1.55 ms against
/// 1.51-1.76, 16 MiB 2.89-3.50 against 3.46-3.89, 256 MiB 55.0 against 58.3 ms; below,
/// slower (1 MiB 194 against 100 us, 4 MiB 520-780 against 470-731), where the buffer
/// still fits in the cache and is read from there.
pub(crate) const STREAMING_MIN_BYTES: usize = 8 << 20;

/// `direct` or `single-copy` for an allgatherv gathering `bytes`: the forced one, else by
/// size.
fn pick(link: &ShmTransport, bytes: usize) -> Algorithm {
    let job = &link.job;
    match job.algorithms.get(Op::Allgatherv) {
        Some(forced @ (Algorithm::Direct | Algorithm::SingleCopy)) => forced,
        _ if job.size > 1 && bytes >= SINGLE_COPY_MIN_BYTES && job.single_copy.is_ok() => {
            Algorithm::SingleCopy
        }
        _ => Algorithm::Direct,
    }
}

pub(crate) fn allgatherv<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    counts: &[usize],
    displs: &[usize],
) -> Result<(), CommError> {
    let total: usize = counts.iter().sum::<usize>() * std::mem::size_of::<T>();
    let algorithm = pick(link, total);
    let fingerprint = &fingerprint.with_algorithm(algorithm);
    if algorithm == Algorithm::SingleCopy {
        allgatherv_single_copy::run(link, fingerprint, send, recv, counts, displs)
    } else {
        allgatherv_direct::run(link, fingerprint, send, recv, counts, displs)
    }
}
