//! The exchange every single-copy algorithm is made of: each rank announces where its
//! buffer is (address and length, through its control line), every rank copies what it
//! needs straight out of its peers' buffers (`cma.rs`), and a second step tells the owners
//! that nobody reads their buffers any more, so they may return, and tells every rank
//! whether every copy succeeded, so a failure is an error on every rank, not a hang.

use super::cma;
use super::transport::ShmTransport;
use crate::fingerprint::Fingerprint;
use crate::types::CommError;

/// Where a peer's buffer is.
pub(crate) struct Remote {
    rank: usize,
    pid: u32,
    address: u64,
    len: usize,
}

impl Remote {
    /// The peer's rank.
    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    /// Copies the peer's whole buffer into `dest`, which must have its length.
    pub(crate) fn read_into(&self, dest: &mut [u8]) -> Result<(), String> {
        if dest.len() != self.len {
            return Err(format!(
                "rank {} announced {} bytes, expected {}",
                self.rank,
                self.len,
                dest.len()
            ));
        }
        cma::read_from(self.pid, self.address, dest).map_err(|e| {
            format!(
                "copying {} bytes from rank {} (pid {}) failed: {e}",
                self.len, self.rank, self.pid
            )
        })
    }
}

/// Announces `mine`, hands every other rank's announcement to `read` in rank order, and
/// waits until every rank has finished reading.
pub(crate) fn exchange(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    mine: &[u8],
    read: impl FnMut(&Remote) -> Result<(), String>,
) -> Result<(), CommError> {
    read_all(link, fingerprint, mine, read)?.wait(link, fingerprint)
}

/// The first part of [`exchange`]: announces `mine`, hands every other rank's announcement
/// to `read` in rank order, and tells the others that this rank is done reading. The
/// peers may still be reading `mine`: [`Reads::wait`] must follow before it changes or
/// the call returns. In between, the caller may do work of its own that the peers'
/// reads do not depend on.
pub(crate) fn read_all(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    mine: &[u8],
    mut read: impl FnMut(&Remote) -> Result<(), String>,
) -> Result<Reads, CommError> {
    let me = link.job.rank;
    let mut announce = [0_u8; 16];
    announce[..8].copy_from_slice(&(mine.as_ptr() as u64).to_le_bytes());
    announce[8..].copy_from_slice(&(mine.len() as u64).to_le_bytes());
    let job = std::sync::Arc::clone(&link.job);
    let mut failure: Option<String> = None;
    let generation = link.publish(fingerprint, &[&announce]);
    link.collect(
        generation,
        fingerprint,
        |_| announce.len(),
        |q, data| {
            if q == me || failure.is_some() {
                return Ok(());
            }
            let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8"));
            let remote = Remote {
                rank: q,
                pid: job.pid(q),
                address: word(0),
                len: usize::try_from(word(8)).unwrap_or(usize::MAX),
            };
            if let Err(why) = read(&remote) {
                failure = Some(why);
            }
            Ok(())
        },
    )?;
    // Done reading: each rank says whether its copies succeeded.
    let status = [u8::from(failure.is_some())];
    let generation = link.publish(fingerprint, &[&status]);
    Ok(Reads {
        generation,
        failure,
    })
}

/// This rank's reads of an [`read_all`], done; the peers' reads of its buffer maybe not.
#[must_use = "the peers may still be reading this rank's buffer: wait for them"]
pub(crate) struct Reads {
    generation: u64,
    failure: Option<String>,
}

impl Reads {
    /// Waits until every rank has finished reading (so this rank's buffer may change),
    /// and fails on every rank if any rank's copies failed.
    pub(crate) fn wait(
        self,
        link: &mut ShmTransport,
        fingerprint: &Fingerprint,
    ) -> Result<(), CommError> {
        let me = link.job.rank;
        let mut failed = Vec::new();
        link.collect(
            self.generation,
            fingerprint,
            |_| 1,
            |q, data| {
                if data[0] != 0 {
                    failed.push(q.to_string());
                }
                Ok(())
            },
        )?;
        let operation = fingerprint.op.name();
        if let Some(why) = self.failure {
            return Err(CommError::CollectiveFailed {
                operation,
                mpi_error_code: -1,
                message: format!("single-copy transfer on rank {me}: {why}"),
            });
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(CommError::CollectiveFailed {
                operation,
                mpi_error_code: -1,
                message: format!(
                    "single-copy transfer failed on rank(s) {} (see their errors)",
                    failed.join(", ")
                ),
            })
        }
    }
}
