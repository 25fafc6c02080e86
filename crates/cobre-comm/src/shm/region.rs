//! Shared regions: one segment per region, created by rank 0 and mapped by every rank.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::exchange::Job;
use super::segment::{CreateError, Segment, Unlink};
use super::synchronize;
use crate::fingerprint::Fingerprint;
use crate::traits::{CommData, SharedRegion};
use crate::types::CommError;

/// Bytes every rank publishes to report how its part of an allocation went: a status
/// byte, a length, and a message.
const STATUS_BYTES: usize = 512;

fn status(result: &Result<(), String>) -> Vec<u8> {
    let mut out = vec![0_u8; STATUS_BYTES];
    if let Err(message) = result {
        let text = message.as_bytes();
        let n = text.len().min(STATUS_BYTES - 3);
        out[0] = 1;
        out[1..3].copy_from_slice(&(n as u16).to_le_bytes());
        out[3..3 + n].copy_from_slice(&text[..n]);
    }
    out
}

fn parse_status(data: &[u8]) -> Result<(), String> {
    if data.first() == Some(&0) {
        return Ok(());
    }
    let n = usize::from(u16::from_le_bytes([data[1], data[2]])).min(STATUS_BYTES - 3);
    Err(String::from_utf8_lossy(&data[3..3 + n]).into_owned())
}

/// Why rank 0 could not create the region's segment `name` of `bytes` bytes.
fn create_error(name: &str, bytes: usize, error: CreateError) -> String {
    match error {
        CreateError::Exists => format!(
            "a segment named {name} exists already ({})",
            Segment::describe(name)
        ),
        CreateError::NoSpace(e) => format!("/dev/shm has no room for {bytes} bytes ({e})"),
        CreateError::Other(e) => format!("cannot create {name}: {e}"),
    }
}

/// A region of node-shared memory: one segment that rank 0 creates and every rank maps.
/// See [`SharedMemoryProvider`](crate::SharedMemoryProvider) for the lifecycle.
///
/// # Example
/// ```no_run
/// use cobre_comm::{SharedMemoryProvider, SharedRegion, ShmBackend};
///
/// let comm = ShmBackend::from_env().unwrap();
/// let mut table = comm.create_shared_region::<f64>(1 << 20).unwrap();
/// if comm.is_leader() {
///     table.as_mut_slice().fill(2.5);
/// }
/// table.fence().unwrap();
/// assert_eq!(table.as_slice()[123], 2.5);
/// ```
#[derive(Debug)]
pub struct ShmRegion<T: CommData> {
    /// `None` for an empty region.
    segment: Option<Segment>,
    ptr: NonNull<T>,
    len: usize,
    job: Arc<Job>,
    _elements: PhantomData<T>,
}

impl<T: CommData> ShmRegion<T> {
    pub(crate) fn create(job: &Arc<Job>, count: usize) -> Result<Self, CommError> {
        let bytes =
            count
                .checked_mul(std::mem::size_of::<T>())
                .ok_or(CommError::AllocationFailed {
                    requested_bytes: usize::MAX,
                    message: format!(
                        "{count} elements of {} bytes overflow the address space",
                        std::mem::size_of::<T>()
                    ),
                })?;
        let mut state = job.begin()?;
        let fingerprint = Fingerprint::region::<T>(state.seq, count);
        let name = format!("{}.r{}", job.name, state.seq);
        let failed = |message: String| CommError::AllocationFailed {
            requested_bytes: bytes,
            message,
        };

        // Rank 0 owns the name from its creation until every rank has mapped the segment,
        // and removes it on every way out (`Unlink`). When rank 0 dies meanwhile, the
        // followers that notice remove it.
        let mut unlink = None;
        let leader_lost = |e: CommError| {
            if job.rank != 0 && bytes > 0 && matches!(e, CommError::PeerLost { rank: 0, .. }) {
                let _ = Segment::unlink(&name);
            }
            e
        };

        // Step 1: rank 0 creates the segment and says whether it could.
        let mut segment = None;
        let mut created: Result<(), String> = Ok(());
        if job.rank == 0 && bytes > 0 {
            match Segment::create(&name, bytes) {
                Ok(seg) => {
                    unlink = Some(Unlink::new(&name));
                    segment = Some(seg);
                }
                Err(e) => created = Err(create_error(&name, bytes, e)),
            }
        }
        let generation = job.publish(&mut state, &fingerprint, &status(&created));
        let mut leader_status = Ok(());
        job.collect(
            &mut state,
            generation,
            &fingerprint,
            |_| STATUS_BYTES,
            |r, data| {
                if r == 0 {
                    leader_status = parse_status(data);
                }
                Ok(())
            },
        )
        .map_err(leader_lost)?;
        if let Err(message) = leader_status {
            state.seq += 1;
            return Err(failed(format!(
                "rank 0 could not allocate the region: {message}"
            )));
        }

        // Step 2: the others map it; everyone says whether that worked; then the name goes.
        let mut mapped: Result<(), String> = Ok(());
        if job.rank != 0 && bytes > 0 {
            match Segment::open(&name) {
                Ok(Some(seg)) if seg.len() >= bytes => segment = Some(seg),
                Ok(_) => mapped = Err(format!("segment {name} is missing or too short")),
                Err(e) => mapped = Err(format!("cannot map {name}: {e}")),
            }
        }
        let generation = job.publish(&mut state, &fingerprint, &status(&mapped));
        let mut first_failure = None;
        job.collect(
            &mut state,
            generation,
            &fingerprint,
            |_| STATUS_BYTES,
            |r, data| {
                if let (None, Err(message)) = (&first_failure, parse_status(data)) {
                    first_failure = Some(format!("rank {r} could not map the region: {message}"));
                }
                Ok(())
            },
        )
        .map_err(leader_lost)?;
        // Every rank has mapped it (or given up): the name goes now.
        drop(unlink);
        state.seq += 1;
        if let Some(message) = first_failure {
            return Err(failed(message));
        }
        let ptr = segment
            .as_ref()
            .map_or(NonNull::dangling(), |seg| seg.ptr_at(0).cast::<T>());
        Ok(ShmRegion {
            segment,
            ptr,
            len: count,
            job: Arc::clone(job),
            _elements: PhantomData,
        })
    }
}

// SAFETY: the region is shared memory owned by this value (its mapping lives in
// `segment`); access follows the documented lifecycle.
unsafe impl<T: CommData> Send for ShmRegion<T> {}
// SAFETY: as above; `&self` only reads, or synchronises through the job.
unsafe impl<T: CommData> Sync for ShmRegion<T> {}

impl<T: CommData> SharedRegion<T> for ShmRegion<T> {
    fn as_slice(&self) -> &[T] {
        debug_assert!(self.segment.is_some() || self.len == 0);
        // SAFETY: `ptr` is the page-aligned start of a mapping of at least
        // `len * size_of::<T>()` bytes that lives as long as `self.segment` (or dangling
        // and aligned with `len == 0`); every bit pattern is a valid `T` (Pod). The leader
        // writes only between fences, when, per the lifecycle, no rank reads.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as for `as_slice`; `&mut self` makes the slice unique in this process,
        // and the lifecycle keeps other ranks from reading while the leader writes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    fn fence(&self) -> Result<(), CommError> {
        synchronize(&self.job, |seq| Fingerprint::region::<T>(seq, self.len))
    }
}
