//! The `direct` broadcast: in each step the root streams the next chunk into its slot
//! and every other rank copies it out as it lands, one piece of
//! [`STREAM_PIECE_BYTES`](super::exchange::STREAM_PIECE_BYTES) behind (two copies per
//! byte, overlapped). The root may run one step ahead of the slowest reader.

use super::transport::ShmTransport;
use crate::copy::copy_into;
use crate::datatype::as_bytes_mut;
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::CommError;

/// Bytes per step. Within a step the readers copy one piece behind the root; across
/// steps the root writes the next one while they finish, so two steps are in flight and
/// their slots (2 x 512 KiB) stay in the cache beside the buffers. 2 ranks, rounds of
/// interleaved jobs, avg us: 1 MiB 104-115 with 512 KiB steps, 107-258 with 384 KiB,
/// 114-151 with 256 KiB, 139-174 with whole 1 MiB slots, 126-141 before streaming
/// (128 KiB steps copied after they were complete); 4 MiB 596-703 against 658-801 with
/// 256 KiB and 689-791 before; 16 MiB 4264-5285 against 4389-5793 before
/// (`docs/perf/broadcast-streamed-steps.txt`).
pub(crate) const STEP_BYTES: usize = 512 << 10;

pub(crate) fn run<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    buf: &mut [T],
    root: usize,
) -> Result<(), CommError> {
    let chunk = link.job.layout.payload().min(STEP_BYTES);
    let buf = as_bytes_mut(buf);
    let streaming =
        buf.len().saturating_mul(link.job.size) >= super::broadcast::STREAMING_MIN_JOB_BYTES;
    let steps = buf.len().div_ceil(chunk).max(1);
    for k in 0..steps {
        let range = (k * chunk).min(buf.len())..((k + 1) * chunk).min(buf.len());
        if link.job.rank == root {
            let generation = link.publish_streamed(fingerprint, &buf[range]);
            link.collect(generation, fingerprint, |_| 0, |_, _| Ok(()))?;
        } else {
            let generation = link.publish(fingerprint, &[]);
            let out = &mut buf[range.clone()];
            link.collect_streamed(
                generation,
                fingerprint,
                (root, range.len()),
                |piece, data| {
                    copy_into(&mut out[piece], data, streaming);
                    Ok(())
                },
            )?;
        }
    }
    Ok(())
}
