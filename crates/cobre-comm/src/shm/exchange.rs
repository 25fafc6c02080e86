//! The job: attaching to the segment, and the exchange step every collective is made of.
//!
//! One step at generation `g`: a rank writes its data and fingerprint into its slot for
//! `g` (slots are double-buffered), publishes `arrive = g`, waits until every rank has
//! arrived at `g` (polling every rank's word, or in `log2 p` dissemination rounds: see
//! [`Signalling`]), compares fingerprints, and reads what it needs from the slots in rank
//! order. Double buffering makes a "done reading" signal unnecessary: a rank arrives at
//! `g` only after reading step `g - 1`, so once every rank has arrived at `g - 1` nobody
//! reads the buffers of `g - 2` any more, and step `g` may reuse them.
//!
//! A step in which one rank alone sends may be streamed (`publish_streamed`,
//! `collect_streamed`): the sender announces the step first and then writes its data in
//! pieces, storing after each the count of bytes in place (per buffer, in its control
//! line), and the readers copy each piece as soon as the count covers it.
//!
//! Waiting spins (up to 20 ms; not at all when the ranks outnumber the cores), then yields
//! (see `backoff.rs`), then sleeps on a futex in the segment with a short timeout.
//! Sleepers announce themselves, so publishers make the `futex_wake` system call only
//! when someone sleeps. While sleeping a rank checks that the ranks it waits
//! for are still alive: a dead one is recorded in the header and everyone is woken, so
//! every survivor reports it. A rank that stays silent past the timeout is reported too.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use rustix::thread::futex;

use super::backoff::Backoff;
use super::config::{ShmConfig, Signalling};
use super::layout::{
    H_ABORT, H_ABORT_CODE, H_ABORT_READY, H_FAILED, H_SLEEPERS, H_WAKE, INLINE_BYTES, L_ABANDONED,
    L_ARRIVE, L_PID, L_WRITING, Layout, failed_rank,
};
use super::segment::Segment;
use super::startup;
use crate::algorithm::Forced;
use crate::fingerprint::{FINGERPRINT_BYTES, Fingerprint};
use crate::types::{BackendError, CommError};

/// Longest single futex sleep, and how often a sleeper checks its peers' processes.
const NAP: Duration = Duration::from_millis(50);
const LIVENESS_EVERY: Duration = Duration::from_millis(100);

/// Bytes a streamed step writes between two counts of its progress (see
/// [`Job::publish_streamed`]), or a quarter of a slot when that is less: readers start
/// this far behind the writer. 16-128 KiB
/// measured the same for a 1 MiB broadcast on 2 ranks (104-132 us in 512 KiB steps).
pub(crate) const STREAM_PIECE_BYTES: usize = 64 << 10;

/// What a dissemination round passes on once two digests it has seen differ.
const DISAGREE: u64 = u64::MAX;

/// The exit code of a rank that ends the job because a peer stayed inside a write into
/// its memory past the timeout (see [`Job::abandon`]).
pub(crate) const STUCK_WRITER_EXIT_CODE: i32 = 70;

/// Per-process progress through the exchange steps.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    /// Exchange steps completed.
    generation: u64,
    /// Digest of the fingerprint of the step in progress.
    digest: u64,
}

/// This process's view of a shared-memory job.
#[derive(Debug)]
pub(crate) struct Job {
    pub seg: Segment,
    pub layout: Layout,
    pub name: String,
    pub rank: usize,
    pub size: usize,
    pub timeout: Duration,
    /// The algorithms this job forces (see [`crate::algorithm`]).
    pub algorithms: Forced,
    /// Whether single-copy transfers are allowed here, or why not (see `cma.rs`).
    pub single_copy: Result<(), String>,
    /// The node's cores, as read when the job started: the algorithms' picks depend on
    /// whether the ranks fit them.
    pub cores: usize,
    /// How a waiter spins and yields before it sleeps.
    backoff: Backoff,
}

/// A 64-bit digest of an encoded fingerprint: peers compare digests, and read the full
/// fingerprint only when they differ.
fn digest(encoded: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(encoded);
    hasher.finish()
}

/// Whether process `pid` has ended (gone, or a zombie waiting to be reaped). This process
/// has not (ranks of a test job may be threads of one process).
pub(crate) fn process_gone(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    if rustix::process::test_kill_process(p) == Err(rustix::io::Errno::SRCH) {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

impl Job {
    /// Creates (rank 0) or joins (other ranks) the job's segment, claims this rank, and
    /// waits until every rank has joined (see `startup.rs`). The node's cores are read
    /// once, for the signalling (rank 0 picks it) and for the waiting policy.
    pub(crate) fn attach(config: &ShmConfig) -> Result<Job, BackendError> {
        let cores = crate::cores::node_cores();
        let (seg, layout, created) = startup::open_segment(config, cores)?;
        let job = Job::on(seg, layout, config, super::cma::availability(), cores);
        job.join(created)?;
        Ok(job)
    }

    /// Rank `config.rank` of a job of `config.size` ranks run as threads of this process
    /// on a node of `cores` cores, on `seg` (see `segment::in_process`, its header written
    /// by `startup::write_header`): the start-up of [`Job::attach`] without a name in
    /// `/dev/shm`.
    #[cfg(test)]
    pub(crate) fn in_process(
        seg: Segment,
        config: &ShmConfig,
        cores: usize,
    ) -> Result<Job, BackendError> {
        let layout = Layout {
            size: config.size,
            chunk: config.chunk_bytes,
            signalling: config
                .signalling
                .unwrap_or_else(|| Signalling::pick(config.size, cores)),
        };
        let single_copy = if cfg!(miri) {
            Err("not under Miri".into())
        } else {
            Ok(())
        };
        let job = Job::on(seg, layout, config, single_copy, cores);
        job.join(config.rank == 0)?;
        Ok(job)
    }

    /// This rank's view of a job on `seg`, before it joins.
    fn on(
        seg: Segment,
        layout: Layout,
        config: &ShmConfig,
        single_copy: Result<(), String>,
        cores: usize,
    ) -> Job {
        Job {
            seg,
            layout,
            name: config.name.clone(),
            rank: config.rank,
            size: config.size,
            timeout: config.timeout,
            algorithms: config.algorithms,
            single_copy,
            backoff: Backoff::for_job(config.size, cores),
            cores,
        }
    }

    fn wake_word(&self) -> &AtomicU32 {
        self.seg.u32_at(H_WAKE)
    }

    /// Wakes sleepers, if any.
    pub(crate) fn notify(&self) {
        if self.seg.u32_at(H_SLEEPERS).load(SeqCst) > 0 {
            self.wake_word().fetch_add(1, SeqCst);
            let _ = futex::wake(self.wake_word(), futex::Flags::empty(), u32::MAX);
        }
    }

    /// Records that `rank` is lost and wakes everyone.
    pub(crate) fn mark_failed(&self, rank: usize) {
        let _ = self
            .seg
            .u32_at(H_FAILED)
            .compare_exchange(0, rank as u32 + 1, SeqCst, SeqCst);
        self.wake_word().fetch_add(1, SeqCst);
        let _ = futex::wake(self.wake_word(), futex::Flags::empty(), u32::MAX);
    }

    /// Ends the job with `code`: records it in the header (the first caller's code wins),
    /// wakes every sleeper and every abort watcher, and exits this process.
    pub(crate) fn abort(&self, code: i32) -> ! {
        let flag = self.seg.u32_at(H_ABORT);
        if flag
            .compare_exchange(0, self.rank as u32 + 1, SeqCst, SeqCst)
            .is_ok()
        {
            self.seg.u32_at(H_ABORT_CODE).store(code as u32, SeqCst);
            let ready = self.seg.u32_at(H_ABORT_READY);
            ready.store(1, SeqCst);
            let _ = futex::wake(ready, futex::Flags::empty(), u32::MAX);
            self.wake_word().fetch_add(1, SeqCst);
            let _ = futex::wake(self.wake_word(), futex::Flags::empty(), u32::MAX);
        }
        std::process::exit(code)
    }

    /// When a rank has called `abort`, exits this process with its code.
    pub(crate) fn exit_if_aborted(&self) {
        if self.seg.u32_at(H_ABORT_READY).load(SeqCst) == 1 {
            let by = self.seg.u32_at(H_ABORT).load(SeqCst) as usize - 1;
            let code = self.seg.u32_at(H_ABORT_CODE).load(SeqCst) as i32;
            if by != self.rank {
                eprintln!(
                    "cobre-comm: rank {}: rank {by} aborted the shm job {} with code {code}; exiting with it",
                    self.rank, self.name
                );
            }
            std::process::exit(code);
        }
    }

    /// Sleeps until a rank aborts (then exits this process with its code) or `nap` passes.
    pub(crate) fn watch_abort(&self, nap: Duration) {
        self.exit_if_aborted();
        let nap = rustix::time::Timespec {
            tv_sec: nap.as_secs() as _,
            tv_nsec: nap.subsec_nanos().into(),
        };
        let _ = futex::wait(
            self.seg.u32_at(H_ABORT_READY),
            futex::Flags::empty(),
            0,
            Some(&nap),
        );
        self.exit_if_aborted();
    }

    fn lost(&self, operation: &'static str) -> Option<CommError> {
        // A rank that aborted is gone too: its code, not a lost peer, ends this rank.
        self.exit_if_aborted();
        let rank = match failed_rank(self.seg.u32_at(H_FAILED).load(SeqCst), self.size) {
            Ok(rank) => rank?,
            Err(message) => return Some(CommError::Protocol { operation, message }),
        };
        let pid = self.seg.u32_at(self.layout.line(rank) + L_PID).load(SeqCst);
        Some(CommError::PeerLost {
            operation,
            rank,
            message: format!(
                "its process (pid {pid}) is gone; noticed while rank {} waited",
                self.rank
            ),
        })
    }

    /// Whether `rank` has published its part of step `generation`.
    fn arrived(&self, rank: usize, generation: u64) -> bool {
        self.seg
            .u64_at(self.layout.line(rank) + L_ARRIVE)
            .load(SeqCst)
            >= generation
    }

    /// The ranks that have not published their part of step `generation`.
    fn behind(&self, generation: u64) -> Vec<usize> {
        (0..self.size)
            .filter(|&r| !self.arrived(r, generation))
            .collect()
    }

    /// Waits until `done()` holds, for step `generation`: spins, yields, then sleeps on
    /// the futex. While asleep it checks the processes of the ranks that have not
    /// published their part of the step (those everything waits for) and of `partner`
    /// (the rank whose signal this wait is for), and gives up at the timeout naming the
    /// former, or `partner` when all have published.
    fn wait(
        &self,
        operation: &'static str,
        generation: u64,
        partner: Option<usize>,
        done: impl Fn() -> bool,
    ) -> Result<(), CommError> {
        if self.backoff.poll(&done) {
            return Ok(());
        }
        let start = Instant::now();
        let mut next_check = start + LIVENESS_EVERY;
        let sleepers = self.seg.u32_at(H_SLEEPERS);
        let nap = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: NAP.as_nanos() as _,
        };
        loop {
            if let Some(error) = self.lost(operation) {
                return Err(error);
            }
            sleepers.fetch_add(1, SeqCst);
            let seen = self.wake_word().load(SeqCst);
            if done() {
                sleepers.fetch_sub(1, SeqCst);
                return Ok(());
            }
            let _ = futex::wait(self.wake_word(), futex::Flags::empty(), seen, Some(&nap));
            sleepers.fetch_sub(1, SeqCst);
            if done() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_check {
                next_check = now + LIVENESS_EVERY;
                let behind = self.behind(generation);
                // The partner too: it may have died after publishing its arrival but
                // before passing on a later round, and then only its waiters notice.
                let watched = behind.iter().copied().chain(partner);
                for r in watched {
                    let pid = self.pid(r);
                    if pid != 0 && process_gone(pid) {
                        self.mark_failed(r);
                    }
                }
                if self.lost(operation).is_none() && now - start >= self.timeout {
                    let pending: Vec<String> = if behind.is_empty() {
                        partner.into_iter().collect()
                    } else {
                        behind
                    }
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                    return Err(CommError::Timeout {
                        operation,
                        timeout: self.timeout,
                        message: format!(
                            "rank {} waited for rank(s) {}, which are alive but silent (stopped, overloaded, or in another call)",
                            self.rank,
                            pending.join(", ")
                        ),
                    });
                }
            }
        }
    }

    /// Waits until every rank has published its part of step `generation` and returns
    /// whether every rank's fingerprint digest is `mine` (`false` says "look closer", not
    /// "they differ").
    ///
    /// Flat: polls every rank's arrival word and reads every digest. Dissemination: in
    /// round `k`, passes on the digest this rank has seen so far (its own, or
    /// [`DISAGREE`] once two differed) to rank `r + 2^k` and waits for rank `r - 2^k`'s;
    /// after `ceil(log2 p)` rounds what it has seen covers every rank. Round 0's words
    /// are the arrival word and digest `publish` wrote. Each word is written only by its
    /// owner and read after the owner's release store of the round's generation, and a
    /// rank reaches step `generation + 2` (reusing the parity) only after every rank has
    /// finished `generation + 1`, so no word is overwritten before it is read.
    fn arrive_all(
        &self,
        operation: &'static str,
        generation: u64,
        mine: u64,
    ) -> Result<bool, CommError> {
        match self.layout.signalling {
            Signalling::Flat => {
                let others = || (0..self.size).filter(|&r| r != self.rank);
                self.wait(operation, generation, None, || {
                    others().all(|r| self.arrived(r, generation))
                })?;
                Ok(others().all(|r| {
                    self.seg
                        .u64_at(self.layout.digest(r, generation))
                        .load(SeqCst)
                        == mine
                }))
            }
            Signalling::Dissemination => {
                let mut seen = mine;
                let mut distance = 1;
                let mut round = 0;
                while distance < self.size {
                    let from = (self.rank + self.size - distance) % self.size;
                    let (theirs_at, generation_at) = if round == 0 {
                        (
                            self.layout.digest(from, generation),
                            self.layout.line(from) + L_ARRIVE,
                        )
                    } else {
                        let mine_at = self.layout.round_digest(self.rank, round, generation);
                        self.seg.u64_at(mine_at).store(seen, SeqCst);
                        self.seg
                            .u64_at(self.layout.round(self.rank, round))
                            .store(generation, SeqCst);
                        self.notify();
                        (
                            self.layout.round_digest(from, round, generation),
                            self.layout.round(from, round),
                        )
                    };
                    let reached = self.seg.u64_at(generation_at);
                    self.wait(operation, generation, Some(from), || {
                        reached.load(SeqCst) >= generation
                    })?;
                    if self.seg.u64_at(theirs_at).load(SeqCst) != seen {
                        seen = DISAGREE;
                    }
                    distance *= 2;
                    round += 1;
                }
                Ok(seen == mine && mine != DISAGREE)
            }
        }
    }

    /// Marks the start of a write into rank `to`'s buffer in the single-copy call of step
    /// `generation` (see `single_copy.rs`). Returns `false`, with nothing marked, when `to`
    /// has left that call ([`Job::abandon`]): its buffer may hold other data by now. Every
    /// `true` must be followed by [`Job::end_write`] once the write is over.
    ///
    /// With `abandon` this is a handshake in which each side stores its own word, then
    /// loads the other's, all sequentially consistent: either the writer sees that the
    /// receiver left and does not write, or the receiver sees the write and waits for it.
    pub(crate) fn begin_write(&self, generation: u64, to: usize) -> bool {
        let writing = self.seg.u64_at(self.layout.line(self.rank) + L_WRITING);
        writing.store(generation, SeqCst);
        let abandoned = self.seg.u64_at(self.layout.line(to) + L_ABANDONED);
        if abandoned.load(SeqCst) == generation {
            writing.store(0, SeqCst);
            return false;
        }
        true
    }

    /// Marks the end of the write [`Job::begin_write`] started.
    pub(crate) fn end_write(&self) {
        self.seg
            .u64_at(self.layout.line(self.rank) + L_WRITING)
            .store(0, SeqCst);
    }

    /// Leaves the single-copy call of step `generation`, in which this rank announced a
    /// buffer for its peers to write into, with an error: once this returns, no peer writes
    /// there any more, so the caller may reuse the buffer. Peers that have not started a
    /// write see the mark and refuse to ([`Job::begin_write`]); a write already under way,
    /// one system call of at most a piece, is waited for, or its writer's death.
    ///
    /// A writer that stays inside a write past the timeout (stopped with a signal between
    /// marking and writing) could still overwrite this rank's memory later: the only safe
    /// way out is to end the job, which this does, saying why.
    pub(crate) fn abandon(&self, generation: u64) {
        self.seg
            .u64_at(self.layout.line(self.rank) + L_ABANDONED)
            .store(generation, SeqCst);
        let start = Instant::now();
        for r in (0..self.size).filter(|&r| r != self.rank) {
            let writing = self.seg.u64_at(self.layout.line(r) + L_WRITING);
            let mut next_check = Instant::now() + LIVENESS_EVERY;
            while writing.load(SeqCst) == generation {
                let now = Instant::now();
                if now >= next_check {
                    next_check = now + LIVENESS_EVERY;
                    let pid = self.pid(r);
                    if pid == 0 || process_gone(pid) {
                        break;
                    }
                    if now - start >= self.timeout {
                        eprintln!(
                            "cobre-comm shm: rank {r} has been writing into rank {}'s memory \
                             for over {:?} after rank {} left the call with an error; \
                             carrying on could let the write land in memory reused since, \
                             so rank {} ends the job (exit code {STUCK_WRITER_EXIT_CODE})",
                            self.rank, self.timeout, self.rank, self.rank
                        );
                        self.abort(STUCK_WRITER_EXIT_CODE);
                    }
                }
                std::thread::yield_now();
            }
        }
    }

    /// Whether the job's ranks fit the node's cores, each rank with one of its own.
    pub(crate) fn ranks_fit_cores(&self) -> bool {
        crate::cores::ranks_fit(self.size, self.cores)
    }

    /// The process id rank `rank` recorded when it joined.
    pub(crate) fn pid(&self, rank: usize) -> u32 {
        self.seg.u32_at(self.layout.line(rank) + L_PID).load(SeqCst)
    }

    /// Publishes `parts`, one after the other (at most one chunk in all), with
    /// `fingerprint` as this rank's part of the next step; returns the step's generation.
    pub(crate) fn publish(
        &self,
        state: &mut Steps,
        fingerprint: &Fingerprint,
        parts: &[&[u8]],
    ) -> u64 {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        debug_assert!(total <= self.layout.payload());
        let generation = state.generation + 1;
        // The buffers of this generation were last used at `generation - 2`, and nobody
        // reads them any more: every rank arrived at `generation - 1` (the previous collect
        // saw it), and a rank publishes a step only after reading the one before.
        let mut at = self.layout.data(self.rank, generation, total);
        for part in parts {
            self.seg.write(at, part);
            at += part.len();
        }
        self.arrive(state, fingerprint, generation);
        generation
    }

    /// Writes `fingerprint` and its digest for step `generation`, then this rank's
    /// arrival at it, and wakes any sleeper: the end of [`Job::publish`], the start of a
    /// streamed step.
    fn arrive(&self, state: &mut Steps, fingerprint: &Fingerprint, generation: u64) {
        let encoded = fingerprint.encode();
        state.digest = digest(&encoded);
        self.seg
            .write(self.layout.fingerprint(self.rank, generation), &encoded);
        self.seg
            .u64_at(self.layout.digest(self.rank, generation))
            .store(state.digest, SeqCst);
        self.seg
            .u64_at(self.layout.line(self.rank) + L_ARRIVE)
            .store(generation, SeqCst);
        self.notify();
        state.generation = generation;
    }

    /// Waits for every rank's part of step `generation`, checks that all ranks run the
    /// same collective, hands each rank's `len(r)` bytes to `read` in rank order, and
    /// releases the step.
    pub(crate) fn collect(
        &self,
        state: &mut Steps,
        generation: u64,
        fingerprint: &Fingerprint,
        len: impl Fn(usize) -> usize,
        mut read: impl FnMut(usize, &[u8]) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        self.agree(state, generation, fingerprint)?;
        for r in 0..self.size {
            let n = len(r);
            read(r, self.seg.read(self.layout.data(r, generation, n), n))?;
        }
        Ok(())
    }

    /// Like [`Job::publish`] for data that the other ranks copy while it is written: the
    /// step is announced first, then `data` goes into the slot in pieces of
    /// [`STREAM_PIECE_BYTES`], each followed by the count of bytes in place, so readers
    /// ([`Job::collect_streamed`]) copy one piece behind instead of one step behind.
    pub(crate) fn publish_streamed(
        &self,
        state: &mut Steps,
        fingerprint: &Fingerprint,
        data: &[u8],
    ) -> u64 {
        debug_assert!(data.len() <= self.layout.payload());
        let generation = state.generation + 1;
        let at = self.layout.data(self.rank, generation, data.len());
        let progress = self.seg.u64_at(self.layout.progress(self.rank, generation));
        // The readers of this buffer's last step are done with it (as in `publish`); a
        // reader of this step looks at the count only after seeing the arrival below.
        // Data that fits the control line goes out with the arrival, as in `publish`.
        let (first, rest) = data.split_at(if data.len() <= INLINE_BYTES {
            data.len()
        } else {
            0
        });
        self.seg.write(at, first);
        progress.store(first.len() as u64, SeqCst);
        self.arrive(state, fingerprint, generation);
        let mut written = first.len();
        // At least four pieces per slot, also where slots are small.
        let piece = STREAM_PIECE_BYTES.min(self.layout.payload() / 4).max(1);
        for piece in rest.chunks(piece) {
            self.seg.write(at + written, piece);
            written += piece.len();
            progress.store(written as u64, SeqCst);
            self.notify();
        }
        generation
    }

    /// Like [`Job::collect`] for a step in which only rank `from` sends data, `len`
    /// bytes streamed by [`Job::publish_streamed`]: once every rank has arrived and
    /// agreed, hands the data to `read` piece by piece as it lands, with each piece's
    /// byte range within the step.
    pub(crate) fn collect_streamed(
        &self,
        state: &mut Steps,
        generation: u64,
        fingerprint: &Fingerprint,
        (from, len): (usize, usize),
        mut read: impl FnMut(std::ops::Range<usize>, &[u8]) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        self.agree(state, generation, fingerprint)?;
        let at = self.layout.data(from, generation, len);
        let progress = self.seg.u64_at(self.layout.progress(from, generation));
        // Never past `len`, whatever the word says: only the step's bytes are read.
        let ready = || usize::try_from(progress.load(SeqCst)).map_or(len, |n| n.min(len));
        let mut done = 0;
        while done < len {
            let mut upto = ready();
            if upto <= done {
                self.wait(fingerprint.op.name(), generation, Some(from), || {
                    ready() > done
                })?;
                upto = ready();
            }
            read(done..upto, self.seg.read(at + done, upto - done))?;
            done = upto;
        }
        Ok(())
    }

    /// Waits for every rank's arrival at step `generation` and checks that every rank
    /// runs the same collective.
    fn agree(
        &self,
        state: &Steps,
        generation: u64,
        fingerprint: &Fingerprint,
    ) -> Result<(), CommError> {
        let op = fingerprint.op.name();
        let mine = state.digest;
        let agreed = self.arrive_all(op, generation, mine)?;
        // Digests that differ may still belong to fingerprints that agree (see
        // `Fingerprint::agrees_with`); every rank has arrived, so look at each.
        for r in (0..self.size).filter(|_| !agreed) {
            if self
                .seg
                .u64_at(self.layout.digest(r, generation))
                .load(SeqCst)
                == mine
            {
                continue;
            }
            let bytes: &[u8; FINGERPRINT_BYTES] = self
                .seg
                .read(self.layout.fingerprint(r, generation), FINGERPRINT_BYTES)
                .try_into()
                .expect("fingerprint size");
            let error = match Fingerprint::decode(bytes) {
                Ok(theirs) if fingerprint.agrees_with(&theirs) => continue,
                Ok(theirs) if theirs != *fingerprint => fingerprint.mismatch(self.rank, &theirs, r),
                Ok(_) => CommError::Protocol {
                    operation: op,
                    message: format!(
                        "rank {r}'s fingerprint digest does not match its fingerprint: the segment is corrupted"
                    ),
                },
                Err(e) => CommError::Protocol {
                    operation: op,
                    message: format!("rank {r} published an unreadable fingerprint: {e}"),
                },
            };
            return Err(error);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::shm::layout::H_UNLINKED;
    use crate::shm::segment::in_process;
    use crate::shm::startup::write_header;

    /// The two ranks of a job whose segment is memory of this process.
    fn two_ranks() -> (Job, Job) {
        let layout = Layout {
            size: 2,
            chunk: 4096,
            signalling: Signalling::Flat,
        };
        let seg = in_process::segment(layout.len());
        write_header(&seg, &layout);
        seg.u32_at(H_UNLINKED).store(1, SeqCst);
        let mut ranks = (0..2).map(|rank| {
            let seg = in_process::share(&seg);
            std::thread::spawn(move || {
                let config = ShmConfig {
                    timeout: Duration::from_secs(60),
                    chunk_bytes: 4096,
                    signalling: Some(Signalling::Flat),
                    ..ShmConfig::new("/in-process", rank, 2)
                };
                Job::in_process(seg, &config, 2).expect("join")
            })
        });
        let first = ranks.next().expect("rank 0");
        let second = ranks.next().expect("rank 1");
        (
            first.join().expect("rank 0"),
            second.join().expect("rank 1"),
        )
    }

    #[test]
    fn a_rank_that_leaves_waits_for_a_write_under_way_and_refuses_later_ones() {
        let (writer, receiver) = two_ranks();
        let generation = 7;
        assert!(writer.begin_write(generation, 1));
        let ending = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let writing = scope.spawn(|| {
                // The write lasts until rank 1 has marked the call abandoned.
                let mark = writer.seg.u64_at(writer.layout.line(1) + L_ABANDONED);
                while mark.load(SeqCst) != generation {
                    std::hint::spin_loop();
                }
                ending.store(true, SeqCst);
                writer.end_write();
            });
            receiver.abandon(generation);
            assert!(
                ending.load(SeqCst),
                "rank 1 left while rank 0 was still writing into its buffer"
            );
            writing.join().expect("writer");
        });
        assert!(
            !writer.begin_write(generation, 1),
            "a write into the buffer of a rank that left the call was allowed"
        );
        // Another call's writes go ahead, and so do writes to a rank that did not leave.
        assert!(writer.begin_write(generation + 1, 1));
        writer.end_write();
        assert!(receiver.begin_write(generation, 0));
        receiver.end_write();
    }
}
