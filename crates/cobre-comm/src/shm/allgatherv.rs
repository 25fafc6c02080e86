//! allgatherv: picks a named algorithm and runs it.
//!
//! | algorithm | picked when |
//! |---|---|
//! | `direct` (`allgatherv_direct.rs`) | small gathers, very large ones on ranks that outnumber the cores, or single-copy not allowed here |
//! | `single-copy` (`allgatherv_single_copy.rs`) | from [`SINGLE_COPY_MIN_BYTES_PER_RANK`] per rank gathered while the ranks fit the cores, within [`CROWDED_SINGLE_COPY_BYTES`] otherwise, where the kernel allows it (`cma.rs`) |
//!
//! `COBRE_SHM_ALGORITHMS=allgatherv=NAME` forces one at every size.

use super::transport::ShmTransport;
use super::{allgatherv_direct, allgatherv_single_copy};
use crate::algorithm::{Algorithm, Op};
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::CommError;

/// While the ranks fit the node's cores, gathers from this many bytes per rank on copy
/// once, straight between the ranks' buffers, where the kernel allows it. Each rank
/// writes its own part into every peer's buffer; two steps of signalling, against the
/// slots' one per chunk. 2 ranks, three interleaved jobs each (`docs/perf/shm-crossovers.txt`):
/// 16 KiB gathered 2.30 us against 2.21-2.29 through the slots, 32 KiB 3.02-3.10 against
/// 3.50-3.53, 1 MiB 44-52 against 81-96, 256 MiB 32.8-37.9 ms against 39.1-41.3 (the
/// reading single-copy before).
pub(crate) const SINGLE_COPY_MIN_BYTES_PER_RANK: usize = 16 << 10;

/// With more ranks than cores, the gathered sizes that copy once. Below, the two steps
/// cost more than the slots save; above, the kernel's copies, which cannot skip reading
/// the lines they overwrite, lose to the slots' streaming stores. 3 ranks on 2 cores:
/// 128 KiB 18.6-21.3 us against 19.5-21.2 through the slots, 2 MiB 332-389 against
/// 378-383, 32 MiB level, 64 MiB 21.3-23.1 ms against 14.2-15.8; 4 ranks: 256 KiB 38-39
/// us against 31-33, 1 MiB 160-171 against 173-178, 16 MiB 2.81-2.83 ms against
/// 3.31-3.32, 32 MiB 7.2-8.3 against 6.6-7.0.
pub(crate) const CROWDED_SINGLE_COPY_BYTES: std::ops::Range<usize> = (1 << 20)..(32 << 20);

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
        _ if job.size > 1 && job.single_copy.is_ok() && single_copy_pays(job, bytes) => {
            Algorithm::SingleCopy
        }
        _ => Algorithm::Direct,
    }
}

/// Whether copying once beats the slots for a gather of `bytes` on this job.
fn single_copy_pays(job: &super::exchange::Job, bytes: usize) -> bool {
    if job.ranks_fit_cores() {
        bytes >= SINGLE_COPY_MIN_BYTES_PER_RANK * job.size
    } else {
        CROWDED_SINGLE_COPY_BYTES.contains(&bytes)
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
