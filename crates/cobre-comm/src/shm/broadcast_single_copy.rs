//! The `single-copy` broadcast: every rank copies the root's buffer straight into its own
//! (`single_copy.rs`), one copy per byte; two steps of signalling whatever the size.

use super::single_copy;
use super::transport::ShmTransport;
use crate::datatype::as_bytes_mut;
use crate::fingerprint::Fingerprint;
use crate::traits::CommData;
use crate::types::CommError;

pub(crate) fn run<T: CommData>(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    buf: &mut [T],
    root: usize,
) -> Result<(), CommError> {
    let buf = as_bytes_mut(buf);
    if link.job.rank == root {
        single_copy::exchange(link, fingerprint, buf, |_| Ok(()))
    } else {
        // Only the root's announcement matters; ours is empty.
        single_copy::exchange(link, fingerprint, &[], |remote| {
            if remote.rank() == root {
                remote.read_into(buf)
            } else {
                Ok(())
            }
        })
    }
}
