//! Start-up of a job: rank 0 creates the segment, the others open and check it, every rank
//! claims its control line, and all wait until every rank has.
//!
//! The name leaves `/dev/shm` as soon as every rank has the segment mapped, or, when the
//! start-up fails (a rank dies, the timeout expires), as soon as one of the job sees it.
//! Who may remove it: the creator, and a rank that has claimed its line (those are the
//! job). A process refused on the way in (a duplicate rank, another size or build, a
//! segment that is not ours) leaves it alone: the job it found is not its own. One
//! exception: a segment whose creator is gone can never start, and whoever finds it in
//! that state removes it, so that a rank 0 killed before anyone joined leaves nothing.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use rustix::thread::futex;

use super::config::{ENV_NAME, ENV_SIGNALLING, ENV_SIZE, ShmConfig, Signalling};
use super::exchange::{Job, process_gone};
use super::layout::{
    H_ATTACHED, H_CHUNK, H_CREATOR, H_FAILED, H_LEN, H_MAGIC, H_SIGNALLING, H_SIZE, H_SLEEPERS,
    H_UNLINKED, H_VERSION, H_WAKE, HEADER_BYTES, Header, L_PID, Layout, MAGIC, VERSION,
    failed_rank, pid,
};
use super::segment::{CreateError, Segment};
use crate::types::BackendError;

/// Longest single sleep while waiting for the others to join.
const NAP: Duration = Duration::from_millis(50);
/// How often a waiting rank checks that the ranks that joined are still alive.
const LIVENESS_EVERY: Duration = Duration::from_millis(100);

fn init_failed(message: String) -> BackendError {
    BackendError::init_failed("shm", message)
}

/// Checks `config`, then creates (rank 0) or opens (the others) the job's segment; rank 0
/// picks the signalling for a node of `cores` cores unless `config` forces one.
/// Returns the segment, its layout, and whether this process created it.
pub(crate) fn open_segment(
    config: &ShmConfig,
    cores: usize,
) -> Result<(Segment, Layout, bool), BackendError> {
    config.validate().map_err(|(variable, value, expected)| {
        BackendError::InvalidConfiguration {
            backend: "shm".into(),
            variable: variable.into(),
            value,
            expected,
        }
    })?;
    let layout = |signalling| Layout {
        size: config.size,
        chunk: config.chunk_bytes,
        signalling,
    };
    if config.rank == 0 {
        let signalling = config
            .signalling
            .unwrap_or_else(|| Signalling::pick(config.size, cores));
        let layout = layout(signalling);
        Ok((create(config, layout)?, layout, true))
    } else {
        // No offset depends on the signalling: the segment is checked against the layout
        // with either, and the job then takes rank 0's.
        let (seg, signalling) = open(config, layout(Signalling::Flat))?;
        Ok((seg, layout(signalling), false))
    }
}

fn create(config: &ShmConfig, layout: Layout) -> Result<Segment, BackendError> {
    let name = &config.name;
    let len = layout.len();
    let seg = Segment::create(name, len).map_err(|e| match e {
        CreateError::Exists => init_failed(format!(
            "a shared-memory segment named {name} already exists ({}): another job uses this name, or a crashed \
             job left it behind (it is /dev/shm{name}); give each job a new {ENV_NAME} (`cobre-comm launch` does)",
            Segment::describe(name)
        )),
        CreateError::NoSpace(e) => init_failed(format!(
            "cannot reserve {len} bytes for segment {name} in /dev/shm ({e}): free space there or use fewer ranks"
        )),
        CreateError::Other(e) => init_failed(format!("cannot create segment {name}: {e}")),
    })?;
    write_header(&seg, &layout);
    Ok(seg)
}

/// Fills in the header of a new segment laid out as `layout`; the magic number goes
/// last, so a rank that sees it sees the rest.
pub(crate) fn write_header(seg: &Segment, layout: &Layout) {
    seg.u32_at(H_VERSION).store(VERSION, SeqCst);
    seg.u32_at(H_SIZE).store(layout.size as u32, SeqCst);
    seg.u64_at(H_CHUNK).store(layout.chunk as u64, SeqCst);
    seg.u64_at(H_LEN).store(layout.len() as u64, SeqCst);
    seg.u32_at(H_CREATOR).store(std::process::id(), SeqCst);
    seg.u32_at(H_SIGNALLING)
        .store(layout.signalling.code(), SeqCst);
    seg.u64_at(H_MAGIC).store(MAGIC, SeqCst);
}

/// The header as it is in `seg` now (at least [`HEADER_BYTES`] long).
pub(crate) fn read_header(seg: &Segment) -> Header {
    Header {
        magic: seg.u64_at(H_MAGIC).load(SeqCst),
        version: seg.u32_at(H_VERSION).load(SeqCst),
        size: seg.u32_at(H_SIZE).load(SeqCst),
        chunk: seg.u64_at(H_CHUNK).load(SeqCst),
        len: seg.u64_at(H_LEN).load(SeqCst),
        attached: seg.u32_at(H_ATTACHED).load(SeqCst),
        failed: seg.u32_at(H_FAILED).load(SeqCst),
        creator: seg.u32_at(H_CREATOR).load(SeqCst),
        unlinked: seg.u32_at(H_UNLINKED).load(SeqCst),
        signalling: seg.u32_at(H_SIGNALLING).load(SeqCst),
    }
}

/// Opens rank 0's segment, retrying until it exists and is initialised, and checks it;
/// returns it with the signalling rank 0 chose.
fn open(config: &ShmConfig, layout: Layout) -> Result<(Segment, Signalling), BackendError> {
    let name = &config.name;
    let deadline = Instant::now() + config.timeout;
    loop {
        let found = Segment::open(name)
            .map_err(|e| init_failed(format!("cannot use segment {name}: {e}")))?;
        if let Some(seg) = found {
            if seg.len() < HEADER_BYTES {
                return Err(init_failed(format!(
                    "segment {name} is {} bytes long, too short for a cobre-comm segment ({HEADER_BYTES} bytes \
                     of header at least): another program uses this name",
                    seg.len()
                )));
            }
            // Rank 0 writes the magic number last: 0 means it is still writing the header.
            if seg.u64_at(H_MAGIC).load(SeqCst) != 0 {
                let signalling = verify(config, &layout, &seg)?;
                return Ok((seg, signalling));
            }
        }
        if Instant::now() >= deadline {
            return Err(init_failed(format!(
                "rank 0 did not create segment {name} within {:?}: is rank 0 running with the same {ENV_NAME}?",
                config.timeout
            )));
        }
        // Waiting for another process to create a file: nothing to block on.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Checks rank 0's header against this rank's configuration; returns the job's signalling.
fn verify(config: &ShmConfig, layout: &Layout, seg: &Segment) -> Result<Signalling, BackendError> {
    let name = &config.name;
    let header = read_header(seg);
    header.check(layout, seg.len()).map_err(|e| {
        init_failed(format!(
            "segment {name} cannot be joined as rank {} of {} ({ENV_SIZE}): {e}",
            config.rank, config.size
        ))
    })?;
    if process_gone(header.creator) {
        // It can never start. It is ours (owner, mode and magic checked), and the name
        // still refers to it while its unlinked flag is clear: remove it.
        if seg.u32_at(H_UNLINKED).swap(1, SeqCst) == 0 {
            let _ = Segment::unlink(name);
        }
        return Err(init_failed(format!(
            "segment {name} is stale: the process that created it (pid {}) is gone, so the job cannot start; \
             the segment has been removed: start every rank again",
            header.creator
        )));
    }
    let theirs = Signalling::from_code(header.signalling).expect("checked by Header::check");
    match config.signalling {
        Some(mine) if mine != theirs => Err(init_failed(format!(
            "segment {name} cannot be joined as rank {} of {}: its job uses {theirs} signalling, this rank was \
             given {mine} signalling ({ENV_SIGNALLING}): every rank must use the same",
            config.rank, config.size
        ))),
        _ => Ok(theirs),
    }
}

/// Removes the job's name when dropped while armed: covers every way out of the start-up
/// of a process that belongs to the job.
struct UnlinkJob<'a> {
    job: &'a Job,
    armed: bool,
}

impl Drop for UnlinkJob<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.job.unlink();
        }
    }
}

impl Job {
    /// Claims this rank's line and waits until every rank has claimed its own; the name
    /// is removed as soon as they have, or when the start-up fails. `created`: this
    /// process created the segment.
    pub(crate) fn join(&self, created: bool) -> Result<(), BackendError> {
        let mut guard = UnlinkJob {
            job: self,
            armed: created,
        };
        let me = std::process::id();
        let line = self.seg.u32_at(self.layout.line(self.rank) + L_PID);
        if let Err(other) = line.compare_exchange(0, me, SeqCst, SeqCst) {
            return Err(init_failed(format!(
                "rank {} of segment {} is already taken by process {other}: two processes were given {}={}; \
                 this one stops and leaves the running job alone",
                self.rank,
                self.name,
                super::config::ENV_RANK,
                self.rank
            )));
        }
        guard.armed = true;
        let attached = self.seg.u32_at(H_ATTACHED);
        if attached.fetch_add(1, SeqCst) as usize + 1 >= self.size {
            self.unlink();
        }
        self.notify();
        self.wait_for_all().map_err(|e| {
            init_failed(format!("not every rank joined segment {}: {e}", self.name))
        })?;
        // Everyone has it mapped (no-op when the last to join has removed it already).
        self.unlink();
        guard.armed = false;
        Ok(())
    }

    /// Waits until every rank has claimed its line; fails when one that has is gone, when
    /// a peer recorded a loss, when the header is corrupt, or at the timeout.
    fn wait_for_all(&self) -> Result<(), String> {
        let start = Instant::now();
        let mut next_check = start;
        let wake = self.seg.u32_at(H_WAKE);
        let sleepers = self.seg.u32_at(H_SLEEPERS);
        let nap = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: NAP.as_nanos() as _,
        };
        loop {
            if let Some(rank) = failed_rank(self.seg.u32_at(H_FAILED).load(SeqCst), self.size)? {
                return Err(format!(
                    "lost rank {rank}: another rank found its process gone (reported to rank {})",
                    self.rank
                ));
            }
            // Every pid word is checked before any is used: a corrupt segment is reported
            // as such, whatever else happens meanwhile.
            let pids = (0..self.size)
                .map(|r| {
                    pid(self.seg.u32_at(self.layout.line(r) + L_PID).load(SeqCst))
                        .map_err(|e| format!("rank {r}'s {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let missing: Vec<String> = (0..self.size)
                .filter(|&r| pids[r].is_none())
                .map(|r| r.to_string())
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_check {
                next_check = now + LIVENESS_EVERY;
                let gone = pids
                    .iter()
                    .enumerate()
                    .find_map(|(r, p)| p.filter(|&p| process_gone(p)).map(|p| (r, p)));
                if let Some((r, p)) = gone {
                    self.mark_failed(r);
                    return Err(format!(
                        "lost rank {r}: its process (pid {p}) is gone; noticed by rank {} during start-up",
                        self.rank
                    ));
                }
            }
            if now - start >= self.timeout {
                return Err(format!(
                    "rank(s) {} did not join within {:?}: were all {} ranks started with the same {ENV_NAME}?",
                    missing.join(", "),
                    self.timeout,
                    self.size
                ));
            }
            // Sleep until a joiner notifies (it does when it sees a sleeper), a nap at most.
            // Announce first, then look again, so that no claim is missed in between.
            sleepers.fetch_add(1, SeqCst);
            let seen = wake.load(SeqCst);
            let claimed = (0..self.size)
                .all(|r| self.seg.u32_at(self.layout.line(r) + L_PID).load(SeqCst) != 0);
            if !claimed {
                let _ = futex::wait(wake, futex::Flags::empty(), seen, Some(&nap));
            }
            sleepers.fetch_sub(1, SeqCst);
        }
    }

    /// Removes the segment's name, once for the job: its unlinked flag says whether the
    /// name still refers to this segment.
    pub(crate) fn unlink(&self) {
        if self.seg.u32_at(H_UNLINKED).swap(1, SeqCst) == 0 {
            let _ = Segment::unlink(&self.name);
        }
    }
}
