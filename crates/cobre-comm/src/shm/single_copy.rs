//! The exchange every single-copy algorithm is made of. Each rank announces a buffer
//! (address and length, through its control line); the ranks then copy straight between
//! their own buffers and their peers' (`cma.rs`), reading a peer's buffer or writing into
//! it; a second step tells every rank that all copies are over, so the owners may return,
//! and whether each succeeded, so a failure is an error on every rank, not a hang.
//!
//! Writing is the faster direction for data the writer has just used: an allgatherv rank
//! reads each piece of its contribution from memory once and writes it into every peer's
//! buffer and its own from the cache, where reading pulls the lines out of the owner's
//! cache or memory once per reader. The price is a hazard reading does not have: a rank
//! that leaves a call with an error (a lost peer, a timeout) must be sure that no peer
//! writes into its buffer afterwards, when the buffer may hold other data. So every write
//! is marked in the segment while it lasts, and a rank that leaves early marks the call
//! abandoned and waits for writes under way (`Job::begin_write`, `Job::abandon`).

use super::cma;
use super::transport::ShmTransport;
use crate::fingerprint::Fingerprint;
use crate::types::CommError;

/// How many buffers each rank announces (an allgatherv announces its receive buffer, to
/// be written into, and its send buffer, to be read from).
pub(crate) const BUFFERS: usize = 2;
/// Where an announcement holds the buffer the peers write into (a broadcast's one buffer,
/// written into and read from, too).
pub(crate) const RECV: usize = 0;
/// Where an announcement holds the buffer the peers read from.
pub(crate) const SEND: usize = 1;

/// A buffer of this rank, as announced: its address and length in bytes. The address is
/// only ever handed to the kernel, by the peers.
#[derive(Clone, Copy)]
pub(crate) struct Buffer {
    pub address: *const u8,
    pub len: usize,
}

impl Buffer {
    /// No buffer.
    pub(crate) const NONE: Buffer = Buffer {
        address: std::ptr::null(),
        len: 0,
    };

    pub(crate) fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            address: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

/// What a peer announced: where its buffers are, and a flag of the algorithm's own.
struct Remote {
    rank: usize,
    pid: u32,
    buffers: [(u64, usize); BUFFERS],
    flag: bool,
}

impl Remote {
    /// The address of `len` bytes at `offset` in the peer's buffer `which`, if its
    /// announced length holds them.
    fn range(&self, which: usize, offset: usize, len: usize) -> Result<u64, String> {
        let (address, size) = self.buffers[which];
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(address + offset as u64),
            _ => Err(format!(
                "rank {} announced a buffer of {size} bytes, expected at least {}",
                self.rank,
                offset.saturating_add(len)
            )),
        }
    }
}

/// Bytes of one announcement: two words per buffer, and the flag.
const ANNOUNCEMENT_BYTES: usize = BUFFERS * 16 + 8;

/// A single-copy call under way: this rank's buffer is announced, and the peers may copy
/// from it or into it until [`Session::close`].
#[must_use = "the peers may still be copying: close the session"]
pub(crate) struct Session {
    /// The step of the announcements, which names the call (`Job::begin_write`).
    generation: u64,
    /// Every other rank's announcement, in rank order.
    remotes: Vec<Remote>,
    /// Why a copy of this rank failed; no copy is tried after a failure.
    failure: Option<String>,
}

/// Announces this rank's `buffers` and `flag`, and waits for every other rank's
/// announcement. The caller must keep the buffers alive, and must not read the parts the
/// peers write into, until [`Session::close`] returns.
pub(crate) fn open(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    buffers: [Buffer; BUFFERS],
    flag: bool,
) -> Result<Session, CommError> {
    let me = link.job.rank;
    let mut announcement = [0_u8; ANNOUNCEMENT_BYTES];
    for (i, buffer) in buffers.iter().enumerate() {
        announcement[16 * i..16 * i + 8].copy_from_slice(&(buffer.address as u64).to_le_bytes());
        announcement[16 * i + 8..16 * i + 16].copy_from_slice(&(buffer.len as u64).to_le_bytes());
    }
    announcement[BUFFERS * 16] = u8::from(flag);
    let job = std::sync::Arc::clone(&link.job);
    let mut remotes = Vec::with_capacity(job.size.saturating_sub(1));
    let generation = link.publish(fingerprint, &[&announcement]);
    let collected = link.collect(
        generation,
        fingerprint,
        |_| announcement.len(),
        |q, data| {
            if q != me {
                let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8"));
                let buffer = |i: usize| {
                    let len = usize::try_from(word(16 * i + 8)).unwrap_or(usize::MAX);
                    (word(16 * i), len)
                };
                remotes.push(Remote {
                    rank: q,
                    pid: job.pid(q),
                    buffers: std::array::from_fn(buffer),
                    flag: data[BUFFERS * 16] != 0,
                });
            }
            Ok(())
        },
    );
    if let Err(error) = collected {
        // Peers that saw every announcement may already be writing into this buffer.
        job.abandon(generation);
        return Err(error);
    }
    Ok(Session {
        generation,
        remotes,
        failure: None,
    })
}

impl Session {
    /// Whether a copy of this rank has failed (then no further copy is tried).
    pub(crate) fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Records that this rank's part of the call failed, for [`Session::close`] to report
    /// on every rank; no copy is tried after it.
    pub(crate) fn fail(&mut self, why: String) {
        self.failure.get_or_insert(why);
    }

    /// Whether every other rank announced its flag set.
    pub(crate) fn every_flag(&self) -> bool {
        self.remotes.iter().all(|r| r.flag)
    }

    /// The announcement of rank `rank` (not this rank).
    fn remote(&self, rank: usize) -> Result<&Remote, String> {
        // The others' announcements are in rank order, this rank's left out.
        let at = self.remotes.partition_point(|r| r.rank < rank);
        match self.remotes.get(at) {
            Some(remote) if remote.rank == rank => Ok(remote),
            _ => Err(format!(
                "no announcement from rank {rank} among this call's {} peers",
                self.remotes.len()
            )),
        }
    }

    /// Copies `src` into rank `to`'s buffer `which`, `offset` bytes in, unless a copy of
    /// this rank has failed; a failure is recorded for [`Session::close`].
    pub(crate) fn write(
        &mut self,
        link: &ShmTransport,
        (to, which): (usize, usize),
        offset: usize,
        src: &[u8],
    ) {
        if self.failure.is_some() || src.is_empty() {
            return;
        }
        let outcome = self.remote(to).and_then(|remote| {
            let address = remote.range(which, offset, src.len())?;
            if !link.job.begin_write(self.generation, to) {
                return Err(format!(
                    "rank {to} left the call before this rank wrote its part"
                ));
            }
            let written = cma::write_to(remote.pid, address, src);
            link.job.end_write();
            written.map_err(|e| {
                format!(
                    "copying {} bytes to rank {to} (pid {}) failed: {e}",
                    src.len(),
                    remote.pid
                )
            })
        });
        self.failure = outcome.err();
    }

    /// Copies `dest.len()` bytes from rank `from`'s buffer `which`, `offset` bytes in, into
    /// `dest`, unless a copy of this rank has failed; a failure is recorded for
    /// [`Session::close`].
    pub(crate) fn read(&mut self, (from, which): (usize, usize), offset: usize, dest: &mut [u8]) {
        if self.failure.is_some() || dest.is_empty() {
            return;
        }
        let outcome = self.remote(from).and_then(|remote| {
            let address = remote.range(which, offset, dest.len())?;
            cma::read_from(remote.pid, address, dest).map_err(|e| {
                format!(
                    "copying {} bytes from rank {from} (pid {}) failed: {e}",
                    dest.len(),
                    remote.pid
                )
            })
        });
        self.failure = outcome.err();
    }

    /// Tells the peers that this rank's copies are over and whether they succeeded, waits
    /// until every rank's are (so the buffers may change), and fails on every rank if any
    /// rank's copies failed.
    pub(crate) fn close(
        self,
        link: &mut ShmTransport,
        fingerprint: &Fingerprint,
    ) -> Result<(), CommError> {
        let me = link.job.rank;
        let status = [u8::from(self.failure.is_some())];
        let generation = link.publish(fingerprint, &[&status]);
        let mut failed = Vec::new();
        let collected = link.collect(
            generation,
            fingerprint,
            |_| 1,
            |q, data| {
                if data[0] != 0 {
                    failed.push(q.to_string());
                }
                Ok(())
            },
        );
        if let Err(error) = collected {
            // A peer that has not said it is done may still be writing.
            link.job.abandon(self.generation);
            return Err(error);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_outside_an_announced_buffer_or_from_an_unknown_rank_are_refused() {
        let remote = Remote {
            rank: 2,
            pid: std::process::id(),
            buffers: [(4096, 100), (0, 0)],
            flag: true,
        };
        assert_eq!(remote.range(0, 90, 10), Ok(4186));
        let err = remote.range(0, 91, 10).unwrap_err();
        assert!(
            err.contains("rank 2 announced a buffer of 100 bytes, expected at least 101"),
            "{err}"
        );
        assert!(remote.range(0, usize::MAX, 2).is_err());
        assert!(remote.range(1, 0, 1).is_err());
        let session = Session {
            generation: 1,
            remotes: vec![remote],
            failure: None,
        };
        assert_eq!(session.remote(2).map(|r| r.rank), Ok(2));
        let err = session.remote(1).map(|r| r.rank).unwrap_err();
        assert!(err.contains("no announcement from rank 1"), "{err}");
    }
}
