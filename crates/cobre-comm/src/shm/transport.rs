//! The shared-memory transport of the call layer: the job's segment and this rank's
//! progress through its exchange steps. Every collective of this backend is a sequence of
//! [`ShmTransport::step`]s (see `exchange.rs`).

use std::sync::Arc;

use super::exchange::{Job, Steps};
use crate::call::Transport;
use crate::fingerprint::Fingerprint;
use crate::types::CommError;

/// A job and this rank's position in its sequence of exchange steps.
#[derive(Debug)]
pub(crate) struct ShmTransport {
    pub job: Arc<Job>,
    steps: Steps,
}

impl ShmTransport {
    pub(crate) fn new(job: Arc<Job>) -> ShmTransport {
        ShmTransport {
            job,
            steps: Steps::default(),
        }
    }

    /// One exchange step: publishes `data` (at most one chunk) under `fingerprint`, waits
    /// for every rank's part, checks that every rank runs the same call, and hands each
    /// rank's `len(r)` bytes to `read` in rank order.
    pub(crate) fn step(
        &mut self,
        fingerprint: &Fingerprint,
        data: &[u8],
        len: impl Fn(usize) -> usize,
        read: impl FnMut(usize, &[u8]) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        let generation = self.publish(fingerprint, &[data]);
        self.collect(generation, fingerprint, len, read)
    }

    /// The first half of a step: publishes this rank's part, the concatenation of `parts`
    /// (at most one chunk); returns the step's generation.
    pub(crate) fn publish(&mut self, fingerprint: &Fingerprint, parts: &[&[u8]]) -> u64 {
        self.job.publish(&mut self.steps, fingerprint, parts)
    }

    /// The second half of a step (see [`ShmTransport::step`]).
    pub(crate) fn collect(
        &mut self,
        generation: u64,
        fingerprint: &Fingerprint,
        len: impl Fn(usize) -> usize,
        read: impl FnMut(usize, &[u8]) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        self.job
            .collect(&mut self.steps, generation, fingerprint, len, read)
    }

    /// The first half of a step in which this rank alone sends `data` (at most one
    /// chunk), written while the others copy it (see `Job::publish_streamed`).
    pub(crate) fn publish_streamed(&mut self, fingerprint: &Fingerprint, data: &[u8]) -> u64 {
        self.job
            .publish_streamed(&mut self.steps, fingerprint, data)
    }

    /// The second half of a step in which only rank `from` sends, `len` bytes streamed:
    /// hands them to `read` piece by piece as they land (see `Job::collect_streamed`).
    pub(crate) fn collect_streamed(
        &mut self,
        generation: u64,
        fingerprint: &Fingerprint,
        (from, len): (usize, usize),
        read: impl FnMut(std::ops::Range<usize>, &[u8]) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        self.job
            .collect_streamed(&mut self.steps, generation, fingerprint, (from, len), read)
    }
}

impl Transport for ShmTransport {
    type Failure = CommError;

    fn error(failure: &CommError) -> CommError {
        failure.clone()
    }

    /// The refusal is one step without data: every rank reads every rank's fingerprint,
    /// so the ranks that made the call see the refusal, and the refusing ranks see them.
    fn refuse(&mut self, refusal: &Fingerprint) -> Result<(), CommError> {
        self.step(refusal, &[], |_| 0, |_, _| Ok(()))
    }

    /// Nothing to send: every rank of a step reads every fingerprint and sees a mismatch
    /// by itself, and a lost rank is recorded in the segment for all.
    fn broken(&mut self, _failure: &CommError, _call: &Fingerprint) {}
}
