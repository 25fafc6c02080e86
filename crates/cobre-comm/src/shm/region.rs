//! Shared regions: one segment per region, created by rank 0 and mapped by every rank.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::ShmCalls;
use super::segment::{CreateError, Segment, Unlink};
use super::transport::ShmTransport;
use crate::access::AccessRule;
use crate::fingerprint::Fingerprint;
use crate::traits::{CommData, SharedRegion};
use crate::types::CommError;

/// The region's segment starts with one page for the access word ([`AccessRule`]); the
/// elements follow, page-aligned.
const REGION_HEADER: usize = 4096;

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
    calls: Arc<ShmCalls>,
    access: AccessRule,
    _elements: PhantomData<T>,
}

impl<T: CommData> ShmRegion<T> {
    pub(crate) fn create(calls: &Arc<ShmCalls>, count: usize) -> Result<Self, CommError> {
        let elem = std::mem::size_of::<T>();
        let bytes = count.checked_mul(elem).ok_or(CommError::AllocationFailed {
            requested_bytes: usize::MAX,
            message: format!("{count} elements of {elem} bytes overflow the address space"),
        });
        let checked = bytes.as_ref().map(drop).map_err(Clone::clone);
        let bytes = bytes.unwrap_or(0);
        let mut rank = 0;
        let allocated = calls.run(
            checked,
            |seq| Fingerprint::region::<T>(seq, count),
            |link, fp| {
                rank = link.job.rank;
                let segment_bytes = if bytes == 0 { 0 } else { REGION_HEADER + bytes };
                allocate(link, fp, segment_bytes)
            },
        )?;
        let segment = allocated.map_err(|message| CommError::AllocationFailed {
            requested_bytes: bytes,
            message,
        })?;
        let ptr = segment.as_ref().map_or(NonNull::dangling(), |seg| {
            seg.ptr_at(REGION_HEADER).cast::<T>()
        });
        Ok(ShmRegion {
            segment,
            ptr,
            len: count,
            calls: Arc::clone(calls),
            access: AccessRule::new(rank == 0, rank),
            _elements: PhantomData,
        })
    }

    /// The shared word of the access rule (none for an empty region: nothing to race on).
    fn access_word(&self) -> Option<&std::sync::atomic::AtomicU64> {
        self.segment.as_ref().map(|seg| seg.u64_at(0))
    }
}

/// The collective part of an allocation, in two steps. `Ok(Err(message))` is a failure
/// every rank agrees on (the communicator stays usable); `Err` breaks the job.
fn allocate(
    link: &mut ShmTransport,
    fingerprint: &Fingerprint,
    bytes: usize,
) -> Result<Result<Option<Segment>, String>, CommError> {
    let job = Arc::clone(&link.job);
    let name = format!("{}.r{}", job.name, fingerprint.seq);

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
    let mut leader_status = Ok(());
    link.step(
        fingerprint,
        &status(&created),
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
        return Ok(Err(format!(
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
    let mut first_failure = None;
    link.step(
        fingerprint,
        &status(&mapped),
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
    Ok(match first_failure {
        Some(message) => Err(message),
        None => Ok(segment),
    })
}

// SAFETY: the region is shared memory owned by this value (its mapping lives in
// `segment`); every access is checked against the access rule (`AccessRule`).
unsafe impl<T: CommData> Send for ShmRegion<T> {}
// SAFETY: as above; `&self` only reads, or synchronises through the job.
unsafe impl<T: CommData> Sync for ShmRegion<T> {}

impl<T: CommData> SharedRegion<T> for ShmRegion<T> {
    fn as_slice(&self) -> &[T] {
        debug_assert!(self.segment.is_some() || self.len == 0);
        if let Some(word) = self.access_word() {
            self.access.read(word);
        }
        // SAFETY: `ptr` is the page-aligned start of a mapping of at least
        // `len * size_of::<T>()` bytes that lives as long as `self.segment` (or dangling
        // and aligned with `len == 0`); every bit pattern is a valid `T` (Pod). The access
        // rule just checked that no other process writes in this epoch.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        if let Some(word) = self.access_word() {
            self.access.write(word);
        }
        // SAFETY: as for `as_slice`; `&mut self` makes the slice unique in this process,
        // and the access rule just checked that this is the leader and that no other
        // process reads in this epoch.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    fn fence(&self) -> Result<(), CommError> {
        self.calls.run(
            Ok(()),
            |seq| Fingerprint::region::<T>(seq, self.len),
            |link, fp| link.step(fp, &[], |_| 0, |_, _| Ok(())),
        )?;
        self.access.fenced();
        Ok(())
    }
}
