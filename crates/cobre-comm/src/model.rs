//! A network model of the `tcp` backend: the backend's own collective code (the same picks
//! and algorithm functions, after the call layer) run by `P` simulated ranks over `H`
//! simulated hosts, each rank a thread whose sends and receives advance simulated clocks
//! instead of moving bytes. It predicts how a collective's time grows with the job, far
//! beyond the ranks one machine can host (4096 ranks take seconds).
//!
//! The network is LogGP-like ([`Network`]): every message costs its sender and its receiver
//! a fixed CPU overhead, travels with a fixed latency, and occupies the sender's and the
//! receiver's links (or, within a host, their copies through loopback) for
//! `bytes / bandwidth`. A host's link is shared by the ranks that use it: each gets `1 /
//! k` of it when `k` ranks of the host send or receive across hosts during the call
//! (collectives are symmetric, so they do so at once; a first pass of the same schedule
//! finds them), and each rank's messages queue on its share in the order it sends and
//! receives them. Messages within a host use the loopback figures. Every rank's
//! simulated time depends only on its own program order and the times its messages
//! arrive, so a run is deterministic whatever the threads' real order. Local copies and
//! reductions are not timed (the model is about the network), nor done: the algorithms
//! hand every such step to their network (`Exchange::local`), and a simulated rank skips
//! it, so its buffers, fresh mappings, are never touched and take no memory. Every rank
//! is assumed to have a core of its own.
//!
//! ```
//! use cobre_comm::algorithm::Op;
//! use cobre_comm::model::{Job, Network};
//!
//! let job = Job::new(64, 4, Network::ETHERNET_25G);
//! let t = job.time(Op::Allreduce, 8).unwrap();
//! assert!(t > 0.0);
//! ```

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;

use crate::algorithm::{Forced, Op};
use crate::fingerprint::Fingerprint;
use crate::tcp::exchange::Exchange;
use crate::tcp::frame::{ABORT_PROTOCOL, AbortReport};
use crate::tcp::hosts::Hosts;
use crate::tcp::scratch::Scratch;
use crate::tcp::transport::{Fail, RecvOp, SendOp};
use crate::types::{CommError, ReduceOp};

/// Bytes of the header every tcp frame carries.
const FRAME_HEADER: f64 = 64.0;

/// The costs of one network, in microseconds and bytes per microsecond.
///
/// ```
/// let net = cobre_comm::model::Network::LOOPBACK;
/// assert!(net.local_latency_us > 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Network {
    /// CPU time a rank spends on each message it sends or receives (system calls, polling).
    pub overhead_us: f64,
    /// Time from the last byte leaving a host to its arrival at another host.
    pub latency_us: f64,
    /// Bytes per microsecond of each host's link, each direction (1 GB/s = 1000).
    pub bandwidth: f64,
    /// Latency between two ranks of one host (loopback).
    pub local_latency_us: f64,
    /// Bytes per microsecond between two ranks of one host (loopback copies).
    pub local_bandwidth: f64,
    /// Cores per host, 0 for a core per rank. When a host's ranks outnumber its cores, its
    /// ranks share them: each message costs them `ranks / cores` times the overhead, and
    /// copies within the host run at `cores / ranks` of the loopback bandwidth.
    pub cores_per_host: usize,
}

impl Network {
    /// Loopback on the reference machine of `docs/PERFORMANCE.md`, two cores (2 ranks: 8 B
    /// allreduce 7.1 us, 8 MiB sent each way in about 3.5 ms): one host, so only the local
    /// figures matter.
    pub const LOOPBACK: Network = Network {
        overhead_us: 1.5,
        latency_us: 4.0,
        bandwidth: 2500.0,
        local_latency_us: 4.0,
        local_bandwidth: 2500.0,
        cores_per_host: 2,
    };

    /// A 25 Gb/s Ethernet cluster through the kernel's TCP stack: about 15 us one way
    /// between hosts, 3.1 GB/s per link and direction; loopback within a host.
    pub const ETHERNET_25G: Network = Network {
        overhead_us: 1.5,
        latency_us: 15.0,
        bandwidth: 3125.0,
        local_latency_us: 4.0,
        local_bandwidth: 2500.0,
        cores_per_host: 0,
    };
}

/// A simulated job: `ranks` ranks spread over `hosts` hosts in blocks (ranks `0..r/h` on
/// the first host, and so on, as Slurm's block distribution places them).
#[derive(Debug, Clone)]
pub struct Job {
    /// Number of ranks.
    pub ranks: usize,
    /// Number of hosts.
    pub hosts: usize,
    /// The network's costs.
    pub network: Network,
    /// Algorithms forced, as `COBRE_TCP_ALGORITHMS` would.
    pub forced: Forced,
    /// The most resident memory, in bytes, the process may reach while the simulated
    /// ranks run before the run is stopped with an error (each has a thread, and an inbox
    /// of the messages sent to it). `None`: three quarters of what the machine has
    /// available when the run starts (`MemAvailable`; no limit where that cannot be
    /// read).
    pub memory_limit: Option<u64>,
}

impl Job {
    /// `ranks` ranks over `hosts` hosts (at least one, at most `ranks`), nothing forced.
    #[must_use]
    pub fn new(ranks: usize, hosts: usize, network: Network) -> Job {
        Job {
            ranks: ranks.max(1),
            hosts: hosts.clamp(1, ranks.max(1)),
            network,
            forced: Forced::NONE,
            memory_limit: None,
        }
    }

    /// Predicted time of one call of `op` in microseconds, averaged over the ranks (as
    /// `cobre-comm bench` averages). `bytes` means what it means for `bench`: the payload
    /// per rank for allreduce (f64 sum) and broadcast (from rank 0), the total gathered
    /// for allgatherv (f64, spread evenly), ignored for barrier.
    ///
    /// # Errors
    /// A message if a simulated rank failed (a bug in an algorithm: the model runs the
    /// backend's own code, so the model is also a test of it at scale).
    ///
    /// ```
    /// use cobre_comm::{algorithm::Op, model::{Job, Network}};
    /// let small = Job::new(64, 64, Network::ETHERNET_25G).time(Op::Barrier, 0).unwrap();
    /// let large = Job::new(1024, 1024, Network::ETHERNET_25G).time(Op::Barrier, 0).unwrap();
    /// assert!(large / small < 2.5, "dissemination: log p rounds");
    /// ```
    pub fn time(&self, op: Op, bytes: usize) -> Result<f64, String> {
        self.predict(op, bytes).map(|p| p.avg_us)
    }

    /// As [`Job::time`], with the connections the call needs: the most ranks any one
    /// simulated rank exchanged with. A tcp rank starts connected to its `O(log p)`
    /// neighbours and opens the rest when an algorithm first needs them, so this is what
    /// the call costs in sockets per rank.
    ///
    /// # Errors
    /// As [`Job::time`].
    ///
    /// ```
    /// use cobre_comm::{algorithm::Op, model::{Job, Network}};
    /// let p = Job::new(1024, 1024, Network::ETHERNET_25G).predict(Op::Allreduce, 8).unwrap();
    /// assert!(p.connections <= 19, "Bruck's allgather: ranks at distance 2^k");
    /// ```
    pub fn predict(&self, op: Op, bytes: usize) -> Result<Prediction, String> {
        let ranks = self.run(op, bytes, 0)?;
        let total: f64 = ranks.iter().map(|(clock, _)| clock).sum();
        Ok(Prediction {
            avg_us: total / self.ranks as f64,
            connections: ranks
                .iter()
                .map(|(_, peers)| peers.len())
                .max()
                .unwrap_or(0),
        })
    }

    /// Every simulated rank's time and the ranks it exchanged with (a broadcast from
    /// `root`).
    ///
    /// Two passes: the first finds which ranks of each host send or receive across
    /// hosts (the schedule does not depend on timing), the second gives each of them an
    /// equal share of its host's link.
    fn run(&self, op: Op, bytes: usize, root: usize) -> Result<RankOutcomes, String> {
        let layout = Hosts::blocks(self.ranks, self.hosts);
        // First every rank of a host shares its link.
        let every_rank: Vec<usize> = (0..self.ranks)
            .map(|r| layout.members(layout.of(r)).len())
            .collect();
        if layout.count() == 1 || layout.count() == self.ranks {
            // One host, or one rank per host: every rank that uses a link has it alone.
            return self.pass(op, bytes, root, layout, &every_rank);
        }
        let first = self.pass(op, bytes, root, layout.clone(), &every_rank)?;
        let mut crossing = vec![0_usize; layout.count()];
        for (rank, (_, peers)) in first.iter().enumerate() {
            let host = layout.of(rank);
            if peers.iter().any(|&q| layout.of(q) != host) {
                crossing[host] += 1;
            }
        }
        let sharing: Vec<usize> = (0..self.ranks)
            .map(|r| crossing[layout.of(r)].max(1))
            .collect();
        self.pass(op, bytes, root, layout, &sharing)
    }

    /// One simulated call, rank `r`'s link share `1 / sharing[r]`: every rank's time and
    /// peers.
    fn pass(
        &self,
        op: Op,
        bytes: usize,
        root: usize,
        layout: Hosts,
        sharing: &[usize],
    ) -> Result<RankOutcomes, String> {
        let net = Arc::new(SimNet::new(self, layout, sharing));
        let guard = MemoryGuard::start(Arc::clone(&net), op, bytes, self.memory_limit);
        let elements = bytes / 8;
        let handles: Vec<_> = (0..self.ranks)
            .map(|rank| {
                let net = Arc::clone(&net);
                let forced = self.forced;
                let size = self.ranks;
                let hosts = Arc::clone(&net.layout);
                std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn(move || {
                        let mut buffers = Buffers::new();
                        let mut sim = SimRank {
                            net,
                            rank,
                            size,
                            hosts,
                            forced,
                            clock: 0.0,
                            out_free: 0.0,
                            in_free: 0.0,
                            local_out_free: 0.0,
                            local_in_free: 0.0,
                            scratch: Scratch::mapped(),
                            peers: BTreeSet::new(),
                        };
                        // A rank that fails or panics ends the run for every rank, so none
                        // waits for its messages.
                        let mut ending = Ending {
                            net: Arc::clone(&sim.net),
                            ok: false,
                        };
                        let result = run_one(&mut sim, &mut buffers, op, elements, root)
                            .map(|()| (sim.clock, std::mem::take(&mut sim.peers)))
                            .map_err(|f| format!("simulated rank {rank}: {}", f.err));
                        ending.ok = result.is_ok();
                        result
                    })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot start a simulated rank: {e}"))?;
        let mut ranks = Vec::with_capacity(self.ranks);
        let mut failure = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(rank)) => ranks.push(rank),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => failure = failure.or(Some("a simulated rank panicked".to_string())),
            }
        }
        if let Some(why) = guard.and_then(MemoryGuard::stop) {
            return Err(why);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(ranks),
        }
    }
}

/// Every simulated rank's time and the ranks it exchanged with, by rank.
type RankOutcomes = Vec<(f64, BTreeSet<usize>)>;

/// A simulated rank's buffers. The algorithms only cut them into frames: nothing reads
/// or writes their bytes on a simulated rank ([`SimRank`]'s `local` skips the copying and
/// reducing), so each is held as the rank's scratch is, in a fresh mapping whose pages
/// are never touched and take no memory ([`Scratch::mapped`]).
struct Buffers {
    send: Scratch,
    recv: Scratch,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            send: Scratch::mapped(),
            recv: Scratch::mapped(),
        }
    }

    /// `send` of `send_len` and `recv` of `recv_len` elements.
    fn sized(&mut self, send_len: usize, recv_len: usize) -> (&[f64], &mut [f64]) {
        (self.send.elements(send_len), self.recv.elements(recv_len))
    }
}

/// What the model predicts for one call ([`Job::predict`]).
///
/// ```
/// use cobre_comm::{algorithm::Op, model::{Job, Network}};
/// let p = Job::new(4, 1, Network::LOOPBACK).predict(Op::Barrier, 0).unwrap();
/// assert!(p.avg_us > 0.0);
/// assert_eq!(p.connections, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Time of the call in microseconds, averaged over the ranks.
    pub avg_us: f64,
    /// The most ranks any one rank exchanged with.
    pub connections: usize,
}

/// One call of `op` by one simulated rank, through the backend's own entry functions.
fn run_one(
    sim: &mut SimRank,
    buffers: &mut Buffers,
    op: Op,
    elements: usize,
    root: usize,
) -> Result<(), Fail> {
    let (rank, size) = (sim.rank, sim.size);
    match op {
        Op::Allreduce => {
            let (send, recv) = buffers.sized(elements, elements);
            let fp = Fingerprint::allreduce::<f64>(0, elements, ReduceOp::Sum);
            crate::tcp::run_allreduce(sim, &fp, send, recv, ReduceOp::Sum)
        }
        Op::Broadcast => {
            let (_, buf) = buffers.sized(0, elements);
            let fp = Fingerprint::broadcast::<f64>(0, elements, root);
            crate::tcp::run_broadcast(sim, &fp, buf, root)
        }
        Op::Allgatherv => {
            let counts = crate::per_rank_counts(elements, size);
            let displs = crate::prefix_displs(&counts);
            let (send, recv) = buffers.sized(counts[rank], elements);
            let fp = Fingerprint::allgatherv::<f64>(0, &counts);
            crate::tcp::run_allgatherv(sim, &fp, send, recv, &counts, &displs)
        }
        Op::Barrier => crate::tcp::run_barrier(sim, &Fingerprint::barrier(0)),
    }
}

/// The shared state of the simulated network: one inbox per rank.
struct SimNet {
    network: Network,
    /// The host of each rank (the algorithms see the same).
    layout: Arc<Hosts>,
    /// Each rank's share of its host's link, in bytes per microsecond.
    share: Vec<f64>,
    /// How many ranks share each core of each rank's host (at least 1).
    crowding: Vec<f64>,
    inboxes: Vec<Inbox>,
    /// Set when a rank failed: every rank still waiting gives up.
    failed: AtomicBool,
    /// How many messages were posted so far: a rank that waits long looks at it to tell a
    /// slow run (thousands of rank threads on a few cores) from one that is stuck.
    posted: AtomicU64,
}

/// Ends a simulated rank: unless it succeeded, tells every other rank to stop waiting.
struct Ending {
    net: Arc<SimNet>,
    ok: bool,
}

impl Drop for Ending {
    fn drop(&mut self) {
        if !self.ok {
            self.net.fail();
        }
    }
}

/// Every simulated rank has a thread and an inbox, and the messages queued in the inboxes
/// grow with the job (an algorithm that sends `p - 1` messages per rank queues 16.7
/// million of them on 4096 ranks, 8 GB), so a large call on thousands of ranks could need
/// more memory than the machine has. Rather
/// than let the kernel's out-of-memory killer end the process (or another one), a thread
/// watches this process's resident memory and stops the run, with an error that says so,
/// when it passes the job's `memory_limit` (by default three quarters of what the machine
/// had available at the start: ranks busy when it trips go on allocating until they next
/// wait).
struct MemoryGuard {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<String>>,
}

impl MemoryGuard {
    const EVERY: Duration = Duration::from_millis(20);

    /// Starts watching, unless the memory figures cannot be read (not Linux).
    fn start(net: Arc<SimNet>, op: Op, bytes: usize, limit: Option<u64>) -> Option<MemoryGuard> {
        resident_bytes()?;
        let limit = match limit {
            Some(limit) => limit,
            None => memory_available()? / 4 * 3,
        };
        let done = Arc::new(AtomicBool::new(false));
        let watching = Arc::clone(&done);
        let ranks = net.inboxes.len();
        let thread = std::thread::Builder::new()
            .name("cobre-comm-model-memory".into())
            .spawn(move || {
                // At least one look, even at a run that ended before this thread first
                // ran: its memory may still be held.
                loop {
                    let used = resident_bytes().unwrap_or(0);
                    if used > limit {
                        net.fail();
                        return Some(format!(
                            "the model of {} of {bytes} bytes on {ranks} ranks stopped: its \
                             simulated ranks took {:.2} GiB, more than the limit of \
                             {:.2} GiB (three quarters of the memory available when it \
                             started, unless set); model fewer ranks or smaller messages",
                            op.name(),
                            gib(used),
                            gib(limit)
                        ));
                    }
                    if watching.load(Ordering::SeqCst) {
                        return None;
                    }
                    std::thread::sleep(Self::EVERY);
                }
            })
            .ok()?;
        Some(MemoryGuard { done, thread })
    }

    /// Stops watching; why the run was stopped, if it was.
    fn stop(self) -> Option<String> {
        self.done.store(true, Ordering::SeqCst);
        self.thread.join().ok().flatten()
    }
}

#[allow(clippy::cast_precision_loss)] // a figure for a message
fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1_u32 << 30)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn memory_available() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

/// This process's resident memory (`VmRSS` of `/proc/self/status`), in bytes.
fn resident_bytes() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
}

/// The value of a `name   123 kB` line, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The longest a simulated rank waits, in real time, for a message while no rank of the
/// job posts any: only an algorithm that never sends what its peer receives would wait
/// that long.
const STUCK: Duration = Duration::from_secs(60);

/// A message in flight: when its last byte reaches the receiver's host, its payload
/// length, and whether it crossed hosts.
#[derive(Clone, Copy)]
struct Message {
    arrival: f64,
    bytes: usize,
    remote: bool,
}

#[derive(Default)]
struct Inbox {
    queue: Mutex<Queue>,
    arrived: Condvar,
}

/// What an inbox holds.
#[derive(Default)]
struct Queue {
    /// The messages not yet received, per sender.
    from: HashMap<usize, VecDeque<Message>>,
    /// While its rank waits: how many more messages it needs from each sender before it
    /// can go on. Only those senders' posts count towards waking it, and only the post
    /// that completes the set wakes it: a rank of a large job receives from thousands of
    /// ranks in one exchange, and a wake-up (two switches between threads) per message
    /// cost more than everything else the model does.
    wanted: HashMap<usize, usize>,
    /// The messages its rank still waits for, over all senders in `wanted`.
    missing: usize,
}

impl SimNet {
    /// `sharing[r]`: how many ranks share rank `r`'s host link.
    fn new(job: &Job, layout: Hosts, sharing: &[usize]) -> SimNet {
        let layout = Arc::new(layout);
        let per_host = |r: usize| layout.members(layout.of(r)).len() as f64;
        SimNet {
            network: job.network,
            share: sharing
                .iter()
                .map(|&k| job.network.bandwidth / k.max(1) as f64)
                .collect(),
            crowding: (0..job.ranks)
                .map(|r| match job.network.cores_per_host {
                    0 => 1.0,
                    cores => (per_host(r) / cores as f64).max(1.0),
                })
                .collect(),
            layout,
            inboxes: (0..job.ranks).map(|_| Inbox::default()).collect(),
            failed: AtomicBool::new(false),
            posted: AtomicU64::new(0),
        }
    }

    /// Marks the run failed and wakes every waiting rank.
    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        for inbox in &self.inboxes {
            // Taking the lock orders the flag before any waiter's next look at it.
            drop(inbox.queue.lock().unwrap_or_else(PoisonError::into_inner));
            inbox.arrived.notify_all();
        }
    }

    fn post(&self, from: usize, to: usize, message: Message) {
        let inbox = &self.inboxes[to];
        let mut queue = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.from.entry(from).or_default().push_back(message);
        self.posted.fetch_add(1, Ordering::Relaxed);
        if let Some(left) = queue.wanted.get_mut(&from)
            && *left > 0
        {
            *left -= 1;
            queue.missing -= 1;
            if queue.missing == 0 {
                drop(queue);
                inbox.arrived.notify_all();
            }
        }
    }

    /// Waits until the next message from each of `from` to `to` has come (a sender named
    /// twice: its next two), and takes them, in the order of `from`. Which rank was
    /// waited for and why not, when another rank failed or no rank posted a message for
    /// [`STUCK`] while this one waited.
    ///
    /// Waiting for the whole set at once gives the same messages as waiting for each in
    /// turn: a sender posts whether or not its receiver is looking, so the set is complete
    /// exactly when the last of them would have come.
    fn receive_all(&self, to: usize, from: &[usize]) -> Result<Vec<Message>, (usize, String)> {
        let inbox = &self.inboxes[to];
        let mut queue = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut needed: HashMap<usize, usize> = HashMap::default();
        for &sender in from {
            *needed.entry(sender).or_default() += 1;
        }
        let mut wanted = HashMap::default();
        for (sender, count) in needed {
            let have = queue.from.get(&sender).map_or(0, VecDeque::len);
            if count > have {
                wanted.insert(sender, count - have);
            }
        }
        if !wanted.is_empty() {
            queue.missing = wanted.values().sum();
            queue.wanted = wanted;
            let mut deadline = Instant::now() + STUCK;
            let mut posted = self.posted.load(Ordering::Relaxed);
            while queue.missing > 0 {
                let failed = self.failed.load(Ordering::SeqCst);
                let mut left = deadline.saturating_duration_since(Instant::now());
                // Other ranks still make progress when the count of posts moved: the
                // messages may yet come.
                let stuck = left.is_zero() && self.posted.load(Ordering::Relaxed) == posted;
                if failed || stuck {
                    let sender = queue
                        .wanted
                        .iter()
                        .filter(|&(_, &left)| left > 0)
                        .map(|(&sender, _)| sender)
                        .min()
                        .unwrap_or(to);
                    queue.wanted.clear();
                    queue.missing = 0;
                    let why = if failed {
                        format!(
                            "rank {to} stopped waiting for rank {sender}: another simulated rank failed"
                        )
                    } else {
                        format!(
                            "rank {to} waited {STUCK:?} for a message from rank {sender} that never came, while no rank sent any"
                        )
                    };
                    return Err((sender, why));
                }
                if left.is_zero() {
                    posted = self.posted.load(Ordering::Relaxed);
                    deadline = Instant::now() + STUCK;
                    left = STUCK;
                }
                queue = inbox
                    .arrived
                    .wait_timeout(queue, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            queue.wanted.clear();
        }
        Ok(from
            .iter()
            .map(|sender| {
                queue
                    .from
                    .get_mut(sender)
                    .and_then(VecDeque::pop_front)
                    .expect("every message waited for has come")
            })
            .collect())
    }
}

/// One simulated rank: the backend's algorithms see it as their network.
struct SimRank {
    net: Arc<SimNet>,
    rank: usize,
    size: usize,
    hosts: Arc<Hosts>,
    forced: Forced,
    /// This rank's simulated time, in microseconds.
    clock: f64,
    /// When this rank's share of its host's link is next free, out and in.
    out_free: f64,
    in_free: f64,
    /// When this rank's copies into and out of loopback are next done.
    local_out_free: f64,
    local_in_free: f64,
    scratch: Scratch,
    /// The ranks this one sent to or received from.
    peers: BTreeSet<usize>,
}

impl Exchange for SimRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn forced(&self) -> Forced {
        self.forced
    }

    fn hosts(&self) -> &Arc<Hosts> {
        &self.hosts
    }

    fn scratch(&mut self) -> &mut Scratch {
        &mut self.scratch
    }

    /// Nothing to do: no bytes arrive, so copying or reducing them would only fault in
    /// the pages of every rank's buffers (gigabytes for a large call on thousands of
    /// ranks), and the model times the network, not the arithmetic.
    fn local(&self, _work: impl FnOnce()) {}

    /// Sends go out one after the other (each costs the overhead, and queues on this
    /// rank's link share), then each receive completes at the later of its arrival and
    /// this rank's incoming share being free, plus the overhead. The `work` is skipped
    /// (see [`Exchange::local`]).
    fn exchange_overlapping(
        &mut self,
        _fp: &Fingerprint,
        sends: &mut [SendOp<'_>],
        recvs: &mut [RecvOp<'_>],
        _work: impl FnOnce(),
    ) -> Result<(), Fail> {
        let net = Arc::clone(&self.net);
        let costs = net.network;
        let share = net.share[self.rank];
        let crowding = net.crowding[self.rank];
        let overhead = costs.overhead_us * crowding;
        let local_bandwidth = costs.local_bandwidth / crowding;
        self.peers.extend(sends.iter().map(|s| s.peer));
        self.peers.extend(recvs.iter().map(|r| r.peer));
        for send in sends.iter() {
            self.clock += overhead;
            let wire = send.len() as f64 + FRAME_HEADER;
            let remote = net.layout.of(send.peer) != net.layout.of(self.rank);
            let arrival = if remote {
                self.out_free = self.out_free.max(self.clock) + wire / share;
                self.out_free + costs.latency_us
            } else {
                self.local_out_free = self.local_out_free.max(self.clock) + wire / local_bandwidth;
                self.local_out_free + costs.local_latency_us
            };
            let message = Message {
                arrival,
                bytes: send.len(),
                remote,
            };
            net.post(self.rank, send.peer, message);
        }
        let senders: Vec<usize> = recvs.iter().map(|r| r.peer).collect();
        let messages = net
            .receive_all(self.rank, &senders)
            .map_err(|(peer, why)| failure(peer, why))?;
        for (recv, message) in recvs.iter().zip(messages) {
            if message.bytes != recv.len() {
                let why = format!(
                    "rank {} sent {} bytes to rank {}, which expected {}",
                    recv.peer,
                    message.bytes,
                    self.rank,
                    recv.len()
                );
                return Err(failure(recv.peer, why));
            }
            let wire = message.bytes as f64 + FRAME_HEADER;
            let done = if message.remote {
                self.in_free = message.arrival.max(self.in_free + wire / share);
                self.in_free
            } else {
                self.local_in_free = message
                    .arrival
                    .max(self.local_in_free + wire / local_bandwidth);
                self.local_in_free
            };
            self.clock = self.clock.max(done) + overhead;
        }
        Ok(())
    }
}

/// The failure of a simulated receive: a length that differs from what was sent (the
/// backend would refuse such a frame, so the algorithm disagrees with itself), another
/// rank's failure, or a message that never comes.
fn failure(peer: usize, message: String) -> Fail {
    Fail {
        err: CommError::Protocol {
            operation: "model",
            message: message.clone(),
        },
        report: AbortReport {
            code: ABORT_PROTOCOL,
            rank: peer as u32,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Algorithm;

    #[test]
    fn two_ranks_on_loopback_match_the_measured_small_allreduce() {
        // Measured: 7.1 us (docs/perf/tcp-mpitcp-2.txt).
        let t = Job::new(2, 1, Network::LOOPBACK)
            .time(Op::Allreduce, 8)
            .unwrap();
        assert!((5.0..10.0).contains(&t), "{t}");
    }

    /// A run whose simulated ranks' buffers outgrow the memory limit stops with an error
    /// that says so, instead of growing until the kernel kills the process.
    #[test]
    fn a_run_that_outgrows_the_memory_limit_stops_with_an_error() {
        if resident_bytes().is_none() {
            return; // no /proc: no guard
        }
        // What the simulated ranks write depends on the algorithm (the model moves no
        // bytes), so the test holds memory of its own past the limit while they run: the
        // guard looks at least once, however soon the run ends. The limit is absolute:
        // tests running alongside in this process come and go with memory of their own.
        let held = std::hint::black_box(vec![1_u8; 256 << 20]);
        let job = Job {
            memory_limit: Some(128 << 20),
            ..Job::new(64, 1, Network::LOOPBACK)
        };
        let err = job.time(Op::Allreduce, 8 << 20).unwrap_err();
        drop(held);
        assert!(
            err.contains("allreduce of 8388608 bytes on 64 ranks stopped")
                && err.contains("fewer ranks or smaller messages"),
            "{err}"
        );
        // The same run with room to spare completes.
        let job = Job {
            memory_limit: Some(1 << 40),
            ..Job::new(64, 1, Network::LOOPBACK)
        };
        assert!(job.time(Op::Allreduce, 8 << 20).is_ok());
    }

    /// The simulated ranks touch none of their buffers: 64 ranks of a 64 MiB allreduce
    /// and of a 64 MiB broadcast (8 GiB and 4 GiB of buffers) run within a 2 GiB limit.
    #[test]
    fn simulated_ranks_leave_their_buffers_untouched() {
        if resident_bytes().is_none() {
            return; // no /proc: no guard
        }
        let job = Job {
            memory_limit: Some(2 << 30),
            ..Job::new(64, 4, Network::LOOPBACK)
        };
        for op in [Op::Allreduce, Op::Broadcast] {
            if let Err(e) = job.time(op, 64 << 20) {
                panic!("{op:?}: {e}");
            }
        }
    }

    #[test]
    fn every_collective_runs_at_odd_sizes() {
        for ranks in [1, 2, 3, 5, 17] {
            for op in Op::ALL {
                for bytes in [0, 8, 8 << 10, 1 << 20] {
                    let t = Job::new(ranks, ranks.div_ceil(2), Network::ETHERNET_25G)
                        .time(op, bytes)
                        .unwrap();
                    assert!(t.is_finite() && t >= 0.0, "{op:?} {ranks} {bytes}: {t}");
                }
            }
        }
    }

    #[test]
    fn a_failed_rank_ends_every_wait() {
        let net = Arc::new(SimNet::new(
            &Job::new(2, 1, Network::LOOPBACK),
            Hosts::one(2),
            &[2, 2],
        ));
        let waiter = {
            let net = Arc::clone(&net);
            std::thread::spawn(move || net.receive_all(0, &[1]))
        };
        net.fail();
        let (sender, why) = waiter.join().unwrap().err().unwrap();
        assert_eq!(sender, 1);
        assert!(why.contains("another simulated rank failed"), "{why}");
    }

    /// A rank waiting for several messages at once gets each sender's in the order it
    /// sent them, in the order it asked for them, whichever came first.
    #[test]
    fn a_rank_receives_a_set_of_messages_in_the_order_it_names() {
        let net = Arc::new(SimNet::new(
            &Job::new(3, 1, Network::LOOPBACK),
            Hosts::one(3),
            &[3, 3, 3],
        ));
        let message = |bytes| Message {
            arrival: 0.0,
            bytes,
            remote: false,
        };
        // One from rank 1 is already there; the rest come while rank 0 waits.
        net.post(1, 0, message(10));
        let waiter = {
            let net = Arc::clone(&net);
            std::thread::spawn(move || net.receive_all(0, &[2, 1, 1]))
        };
        net.post(1, 0, message(11));
        net.post(2, 0, message(20));
        let got: Vec<usize> = waiter
            .join()
            .unwrap()
            .unwrap()
            .iter()
            .map(|m| m.bytes)
            .collect();
        assert_eq!(got, [20, 10, 11]);
        assert_eq!(net.receive_all(0, &[]).unwrap().len(), 0);
    }

    /// The algorithms picked for small calls, the ring allgatherv, `scatter-bruck`
    /// (picked for large broadcasts on many ranks; forced here at every size),
    /// `reduce-scatter-bruck` and the ring allreduce (forced) talk only to the neighbours a tcp rank connects to
    /// at start-up, at every job size and root: no connection is opened during those calls.
    #[test]
    fn small_calls_the_rings_and_the_bruck_schedules_use_only_the_start_up_connections() {
        use crate::tcp::neighbours::neighbours;
        let scatter_bruck =
            Forced::parse("broadcast=scatter-bruck", crate::tcp_config::ALGORITHMS).unwrap();
        let reduce_scatter_bruck = Forced::parse(
            "allreduce=reduce-scatter-bruck",
            crate::tcp_config::ALGORITHMS,
        )
        .unwrap();
        let ring = Forced::parse("allreduce=ring", crate::tcp_config::ALGORITHMS).unwrap();
        let sizes = (1..=33).chain([63, 64, 65, 100, 127, 128, 129, 256, 257, 1000]);
        for ranks in sizes {
            let cases = [
                (Op::Allreduce, 8, Forced::NONE),
                (Op::Allreduce, 8 << 10, Forced::NONE),
                (Op::Allreduce, 64 << 10, reduce_scatter_bruck),
                (Op::Allreduce, 64 << 10, ring),
                (Op::Allgatherv, 8 << 10, Forced::NONE),
                (Op::Allgatherv, 1 << 20, Forced::NONE),
                (Op::Broadcast, 8 << 10, Forced::NONE),
                (Op::Broadcast, 1 << 20, scatter_bruck),
                (Op::Broadcast, 1 << 20, Forced::NONE),
                (Op::Barrier, 0, Forced::NONE),
            ];
            let roots = [0, ranks / 3, ranks - 1];
            let runs = cases
                .iter()
                .flat_map(|&case| roots.iter().map(move |&root| (case, root)))
                .filter(|&((op, bytes, forced), root)| {
                    let sparse = forced != Forced::NONE || ranks >= 256;
                    (op == Op::Broadcast || root == 0)
                        && (ranks <= 200
                            || bytes <= 8 << 10
                            || op == Op::Broadcast
                            || forced == reduce_scatter_bruck
                            || (forced == ring && ranks <= 257))
                        && (op != Op::Broadcast || bytes < 1 << 20 || sparse)
                });
            for ((op, bytes, forced), root) in runs {
                let job = Job {
                    forced,
                    ..Job::new(ranks, 1, Network::LOOPBACK)
                };
                for (rank, (_, peers)) in job.run(op, bytes, root).unwrap().iter().enumerate() {
                    let allowed = neighbours(rank, ranks);
                    assert!(
                        peers.iter().all(|p| allowed.contains(p)),
                        "{op:?} of {bytes} B (root {root}, {forced}) on {ranks} ranks: rank {rank} used {peers:?}, connected to {allowed:?}"
                    );
                }
            }
        }
        // A large allreduce talks to every rank (each owner gathers its chunk), and so does
        // a large broadcast on fewer ranks than `scatter-bruck` needs to be ahead.
        let job = Job::new(12, 1, Network::LOOPBACK);
        assert_eq!(job.predict(Op::Allreduce, 1 << 20).unwrap().connections, 11);
        assert_eq!(job.predict(Op::Broadcast, 1 << 20).unwrap().connections, 11);
    }

    /// With one rank per host, a large allreduce on 256 ranks or more goes
    /// `reduce-scatter-bruck` while its forwarding is cheap, and then keeps to the start-up
    /// connections (at most 15 on 256 ranks); with 16 ranks per host it goes
    /// `reduce-scatter-grid`, and talks to its host and one rank per other host (1024 ranks
    /// on 64 hosts: 78 connections instead of 1023), faster than `reduce-scatter-allgather`.
    #[test]
    fn a_small_allreduce_on_hosts_of_many_ranks_crosses_hosts_from_one_rank_each() {
        let mut packed = Job::new(1024, 64, Network::ETHERNET_25G);
        let by_host = packed.predict(Op::Allreduce, 8).unwrap();
        assert!(
            by_host.connections <= 15 + 2 * 6,
            "the host's ranks and Bruck's among 64 leaders: {by_host:?}"
        );
        packed.forced = Forced::NONE.with(Op::Allreduce, Some(Algorithm::Bruck));
        let bruck = packed.predict(Op::Allreduce, 8).unwrap();
        assert!(by_host.avg_us < bruck.avg_us, "{by_host:?} {bruck:?}");
        let small = Job::new(64, 4, Network::ETHERNET_25G)
            .time(Op::Allreduce, 8)
            .unwrap();
        assert!(by_host.avg_us / small <= 2.5, "{} {small}", by_host.avg_us);
    }

    #[test]
    fn a_link_used_by_one_rank_of_its_host_is_not_shared() {
        // The ring crosses between two hosts of 16 from one rank each: its two remote
        // hops have whole links, and its other hops stay on loopback, so it beats the
        // ring over 32 hosts, all of whose hops cross.
        let ring = Forced::NONE.with(Op::Allgatherv, Some(Algorithm::Ring));
        let time = |hosts: usize| {
            let mut job = Job::new(32, hosts, Network::ETHERNET_25G);
            job.forced = ring;
            job.time(Op::Allgatherv, 1 << 20).unwrap()
        };
        let (packed, spread) = (time(2), time(32));
        assert!(packed < spread, "{packed} {spread}");
    }

    #[test]
    fn a_large_allreduce_on_many_hosts_keeps_to_few_connections() {
        let spread = Job::new(256, 256, Network::ETHERNET_25G);
        let one_per_host = spread.predict(Op::Allreduce, 512 << 10).unwrap();
        assert!(one_per_host.connections <= 15, "{one_per_host:?}");
        let mut packed = Job::new(1024, 64, Network::ETHERNET_25G);
        let grid = packed.predict(Op::Allreduce, 1 << 20).unwrap();
        assert_eq!(grid.connections, 15 + 63, "{grid:?}");
        packed.forced = Forced::NONE.with(Op::Allreduce, Some(Algorithm::ReduceScatterAllgather));
        let everyone = packed.predict(Op::Allreduce, 1 << 20).unwrap();
        assert_eq!(everyone.connections, 1023);
        assert!(grid.avg_us < everyone.avg_us, "{grid:?} {everyone:?}");
    }

    /// With a rank per host a large allgatherv goes `bruck`: its time grows as log p
    /// (1 MiB: 1024 ranks within 1.5x of 64 ranks; the ring took 12.8x) and it keeps to the
    /// start-up connections, here for 16 MiB on 1000 ranks.
    #[test]
    fn a_large_gather_over_many_hosts_grows_as_log_p_on_the_start_up_connections() {
        use crate::tcp::neighbours::neighbours;
        let time = |ranks| {
            Job::new(ranks, ranks, Network::ETHERNET_25G)
                .time(Op::Allgatherv, 1 << 20)
                .unwrap()
        };
        let (t64, t1024) = (time(64), time(1024));
        assert!(
            t1024 < 1.5 * t64,
            "64 ranks {t64} us, 1024 ranks {t1024} us"
        );
        let job = Job::new(1000, 1000, Network::ETHERNET_25G);
        let runs = job.run(Op::Allgatherv, 16 << 20, 0).unwrap();
        for (rank, (_, peers)) in runs.iter().enumerate() {
            let allowed = neighbours(rank, 1000);
            assert!(
                peers.iter().all(|p| allowed.contains(p)),
                "rank {rank} used {peers:?}, connected to {allowed:?}"
            );
        }
    }

    #[test]
    fn more_bytes_take_longer() {
        let job = Job::new(8, 8, Network::ETHERNET_25G);
        for op in [Op::Allreduce, Op::Allgatherv, Op::Broadcast] {
            let small = job.time(op, 8 << 10).unwrap();
            let large = job.time(op, 8 << 20).unwrap();
            assert!(large > 10.0 * small, "{op:?}: {small} then {large}");
        }
    }
}
