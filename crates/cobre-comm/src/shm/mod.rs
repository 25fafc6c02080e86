//! The shared-memory backend: [`ShmBackend`], many processes of one node exchanging data
//! through one POSIX shared-memory segment, without MPI (feature `shm`).
//!
//! Rank 0 creates the segment (`shm_open` with `O_EXCL`, mode 0600, its size reserved
//! with `fallocate` so a full `/dev/shm` is an error at start-up rather than a SIGBUS
//! later); the other ranks open it, and the last one to join removes its name, so a
//! crash leaves nothing in `/dev/shm`. Each rank owns a control line and two data slots;
//! every collective is a sequence of exchange steps (see `exchange.rs`) that carry a
//! fingerprint of the call, so ranks that disagree get
//! [`CommError::CollectiveMismatch`]. Payloads of
//! any size are pipelined through the slots chunk by chunk. `allreduce` folds the
//! contributions in rank order, so `Sum` is exactly `((x0 + x1) + x2) + ...`.
//!
//! A dead peer is noticed by every waiting survivor within about 100 ms and named in
//! [`CommError::PeerLost`]; a silent one is reported as
//! [`CommError::Timeout`] after `COBRE_SHM_TIMEOUT_SECS`.
//! After such an error every call fails fast with the same error.

mod allgatherv;
mod allgatherv_direct;
mod allgatherv_single_copy;
mod allreduce;
mod allreduce_direct;
mod allreduce_reduce_scatter_allgather;
mod allreduce_single_copy;
mod backoff;
mod broadcast;
mod broadcast_direct;
mod broadcast_single_copy;
mod cma;
mod config;
mod exchange;
mod layout;
mod region;
mod segment;
mod single_copy;
mod startup;
mod transport;

#[cfg(test)]
mod algorithm_tests;

use std::sync::{Arc, Weak};
use std::time::Duration;

pub use config::{
    ALGORITHMS, DEFAULT_CHUNK_BYTES, DEFAULT_TIMEOUT, ENV_ALGORITHMS, ENV_NAME, ENV_RANK,
    ENV_SIGNALLING, ENV_SIZE, ENV_TIMEOUT, ENV_VARS, FLAT_MAX_RANKS, MAX_CHUNK_BYTES, MAX_SIZE,
    ShmConfig, Signalling, rank_env, timeout_value,
};
pub use region::ShmRegion;

use crate::algorithm::{Algorithm, Op};
use crate::call::Calls;
use crate::env::Lookup;
use crate::topology::ExecutionTopology;
use crate::traits::{
    CommData, Communicator, LocalCommKind, LocalCommunicator, SharedMemoryProvider,
    TopologyProvider,
};
use crate::types::{BackendError, CommError, ReduceOp};
use exchange::Job;
use transport::ShmTransport;

/// Whether this machine lets shm ranks copy large payloads once, straight between their
/// buffers (the `single-copy` algorithms); the reason when it does not (the Linux Yama
/// module's `kernel.yama.ptrace_scope` above 0), in which case they go through the
/// shared slots.
///
/// ```
/// if let Err(why) = cobre_comm::shm::single_copy_available() {
///     assert!(why.contains("ptrace_scope"));
/// }
/// ```
///
/// # Errors
/// The reason single-copy transfers are not allowed here.
pub fn single_copy_available() -> Result<(), String> {
    cma::availability()
}

/// The cores this node gives a job, from which the backend picks its [`Signalling`] and
/// how long a waiter spins: the same function as [`crate::node_cores`], kept at this
/// path for the programs that use it here.
pub use crate::cores::node_cores;

/// How long a waiting rank of a `size`-rank job on a node that gives it `cores` cores
/// busy-polls before it yields its core (and, a few milliseconds of yielding later,
/// sleeps on a futex): 20 ms while the ranks fit the cores, none when they outnumber
/// them, as the rank it waits for may need its core. A waiting rank keeps its core busy
/// that long, as MPI's ranks do for the whole wait.
///
/// ```
/// use std::time::Duration;
/// use cobre_comm::shm::spin_before_yield;
///
/// assert_eq!(spin_before_yield(2, 2), Duration::from_millis(20));
/// assert_eq!(spin_before_yield(4, 2), Duration::ZERO);
/// ```
#[must_use]
pub fn spin_before_yield(size: usize, cores: usize) -> std::time::Duration {
    backoff::Backoff::for_job(size, cores).spin_for()
}

/// The calls of one process of a job, shared by its communicator, node communicator and
/// regions.
pub(crate) type ShmCalls = Calls<ShmTransport>;

/// Many processes of one node, through POSIX shared memory.
///
/// Usually created by [`create_communicator`](crate::create_communicator) from the
/// `COBRE_SHM_*` variables that `cobre-comm launch` sets; library callers can pass a
/// [`ShmConfig`].
///
/// # Example
/// ```no_run
/// // cobre-comm launch -n 4 --backend shm -- target/release/my_program
/// use cobre_comm::{Communicator, ReduceOp, ShmBackend};
///
/// let comm = ShmBackend::from_env().expect("shm set-up failed");
/// let mut total = [0.0_f64];
/// comm.allreduce(&[comm.rank() as f64], &mut total, ReduceOp::Sum).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ShmBackend {
    job: Arc<Job>,
    calls: Arc<ShmCalls>,
    topology: Arc<ExecutionTopology>,
}

impl ShmBackend {
    /// Joins the job described by `config`: rank 0 creates the segment, the others open
    /// it; returns when every rank has joined.
    ///
    /// # Errors
    /// [`BackendError::InvalidConfiguration`] for a bad name, rank or size;
    /// [`BackendError::InitializationFailed`] when the segment exists already (a stale or
    /// foreign segment), belongs to a different job configuration, `/dev/shm` is too
    /// small, or not every rank joins within the timeout.
    pub fn new(config: &ShmConfig) -> Result<Self, BackendError> {
        if let Err(why) = cma::availability() {
            let forced = config.algorithms;
            if [Op::Allgatherv, Op::Broadcast]
                .into_iter()
                .any(|op| forced.get(op) == Some(Algorithm::SingleCopy))
            {
                return Err(BackendError::InvalidConfiguration {
                    backend: "shm".into(),
                    variable: ENV_ALGORITHMS.into(),
                    value: forced.to_string(),
                    expected: format!("no single-copy algorithm on this machine: {why}"),
                });
            }
        }
        let job = Arc::new(Job::attach(config)?);
        spawn_abort_watcher(Arc::downgrade(&job));
        Ok(Self::on_job(job))
    }

    /// The communicator of a job this process has joined.
    fn on_job(job: Arc<Job>) -> ShmBackend {
        // One segment is one machine: every rank runs on this host.
        let mut topology = crate::topology::single_process(crate::BackendKind::Auto);
        topology.world_size = job.size;
        topology.hosts[0].ranks = (0..job.size).collect();
        let calls = Calls::new(job.rank, job.size, ShmTransport::new(Arc::clone(&job)));
        ShmBackend {
            job,
            calls: Arc::new(calls),
            topology: Arc::new(topology),
        }
    }

    /// Joins the job described by the `COBRE_SHM_*` environment variables.
    ///
    /// # Errors
    /// As [`ShmConfig::from_env`] and [`ShmBackend::new`].
    pub fn from_env() -> Result<Self, BackendError> {
        Self::new(&ShmConfig::from_env()?)
    }

    pub(crate) fn from_lookup(lookup: Lookup<'_>) -> Result<Self, BackendError> {
        Self::new(&ShmConfig::from_lookup(lookup)?)
    }
}

/// A thread that sleeps on the job's abort flag, so that a rank busy computing (not in a
/// collective) also exits when another rank calls `abort`. It ends when the job is dropped.
fn spawn_abort_watcher(job: Weak<Job>) {
    const NAP: Duration = Duration::from_millis(100);
    let _ = std::thread::Builder::new()
        .name("cobre-comm-shm-abort".into())
        .spawn(move || {
            while let Some(job) = job.upgrade() {
                job.watch_abort(NAP);
            }
        });
}

/// A barrier: one step that moves no data (`direct`, the only algorithm).
fn barrier(calls: &ShmCalls) -> Result<(), CommError> {
    calls.barrier(|link, fp| {
        let fp = &fp.with_algorithm(Algorithm::Direct);
        link.step(fp, &[], |_| 0, |_, _| Ok(()))
    })
}

impl Communicator for ShmBackend {
    fn allgatherv<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError> {
        self.calls
            .allgatherv(send, recv.len(), counts, displs, |link, fp| {
                allgatherv::allgatherv(link, fp, send, recv, counts, displs)
            })
    }

    fn allreduce<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        self.calls
            .allreduce::<T>(send.len(), recv.len(), op, |link, fp| {
                allreduce::allreduce(link, fp, send, recv, op)
            })
    }

    fn broadcast<T: CommData>(&self, buf: &mut [T], root: usize) -> Result<(), CommError> {
        self.calls.broadcast::<T>(buf.len(), root, |link, fp| {
            broadcast::broadcast(link, fp, buf, root)
        })
    }

    fn barrier(&self) -> Result<(), CommError> {
        barrier(&self.calls)
    }

    fn rank(&self) -> usize {
        self.job.rank
    }

    fn size(&self) -> usize {
        self.job.size
    }

    fn abort(&self, error_code: i32) -> ! {
        self.job.abort(error_code)
    }
}

impl TopologyProvider for ShmBackend {
    /// Every rank on this host; `backend` is [`BackendKind::Auto`](crate::BackendKind::Auto)
    /// (0.18 has no `shm` kind).
    fn topology(&self) -> &ExecutionTopology {
        &self.topology
    }
}

/// The ranks of the node: all of them (the job is one node).
struct ShmNode {
    job: Arc<Job>,
    calls: Arc<ShmCalls>,
}

impl LocalCommunicator for ShmNode {
    fn rank(&self) -> usize {
        self.job.rank
    }

    fn size(&self) -> usize {
        self.job.size
    }

    fn barrier(&self) -> Result<(), CommError> {
        barrier(&self.calls)
    }
}

impl SharedMemoryProvider for ShmBackend {
    type Region<T: CommData> = ShmRegion<T>;

    fn create_shared_region<T: CommData>(&self, count: usize) -> Result<ShmRegion<T>, CommError> {
        ShmRegion::create(&self.calls, count)
    }

    fn split_local(&self) -> Result<LocalCommKind, CommError> {
        Ok(LocalCommKind::Shm(Box::new(ShmNode {
            job: Arc::clone(&self.job),
            calls: Arc::clone(&self.calls),
        })))
    }

    fn is_leader(&self) -> bool {
        self.job.rank == 0
    }
}
