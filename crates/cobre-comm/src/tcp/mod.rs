//! The TCP backend: [`TcpBackend`], many processes on one or many hosts, no MPI needed.
//!
//! * **Rendezvous** (`rendezvous.rs`): rank 0 listens on `COBRE_TCP_PORT`; the other ranks
//!   connect to `COBRE_TCP_COORDINATOR`, retrying until the timeout (they may start before
//!   rank 0). A handshake checks the magic number, protocol version, rank range, duplicate
//!   ranks, job size and the token (HMAC-SHA256 over random nonces, never sent in clear);
//!   a connection that fails it is refused and logged, and the job goes on.
//! * **Mesh**: each rank then connects to its neighbours, the ranks at distance `2^k`
//!   either way round the ring (`neighbours.rs`, `O(log p)`), so no collective funnels
//!   through rank 0; a connection to any other rank is opened the first time an algorithm
//!   needs it (`rendezvous/on_demand.rs`). IPv4 and IPv6; `TCP_NODELAY` and keepalive on
//!   every connection, Reno congestion control on those within a host whose ranks fit
//!   its cores (`tcp_config::WITHIN_HOST_CONGESTION`), writes of at most 1 MiB with the
//!   receives served between them (`transport.rs`).
//! * **Algorithms**: one entry file per collective (`allreduce.rs`, `allgatherv.rs`,
//!   `broadcast.rs`, `barrier.rs`) picks a named algorithm, forced or by size and rank
//!   count, and runs it from its own file. Small messages go in one round of direct
//!   messages on up to 4 (`DIRECT_MAX_RANKS`) ranks, in `ceil(log2 p)` rounds above: Bruck's
//!   allgather (`allgatherv_bruck.rs`; `allreduce_bruck.rs` gathers the contributions
//!   with it and folds them locally), a binomial broadcast (`broadcast_binomial.rs`).
//!   Large ones take bandwidth-optimal algorithms: a ring allgatherv, a reduce-scatter to
//!   chunk owners then an allgather for allreduce, scatter then allgather for broadcast.
//!   Every allreduce computes exactly the rank-order fold. Barrier is a dissemination
//!   barrier. Every step sends and receives at once.
//! * **Frames** (`frame.rs`): a 64-byte header with the collective's fingerprint; lengths
//!   are checked against the local call before any payload is read.
//! * **Failures** (`transport.rs`): a closed connection is reported at once naming the
//!   rank, and the rank that sees a failure tells every rank it is connected to (an abort
//!   frame), which pass it on, so all survivors fail fast; a silent peer is reported after
//!   `COBRE_TCP_TIMEOUT_SECS`. After such an error the communicator is poisoned. A report
//!   of `abort` is passed on too, before the rank exits with its code. Dropping the
//!   communicator says goodbye to every peer and reads until they close their side too
//!   (at most 300 ms), so the connections close without a reset.

mod allgatherv;
mod allgatherv_bruck;
mod allgatherv_direct;
mod allgatherv_ring;
mod allreduce;
mod allreduce_bruck;
mod allreduce_direct;
mod allreduce_host_bruck;
mod allreduce_reduce_scatter_allgather;
mod allreduce_reduce_scatter_bruck;
mod allreduce_reduce_scatter_grid;
mod allreduce_ring;
mod barrier;
mod barrier_dissemination;
mod broadcast;
mod broadcast_binomial;
mod broadcast_direct;
mod broadcast_scatter_allgather;
mod broadcast_scatter_bruck;
pub(crate) mod exchange;
pub use crate::tcp_config as config;
#[cfg(test)]
mod algorithm_tests;
pub(crate) mod frame;
#[cfg(test)]
mod fuzz_tests;
pub(crate) mod handshake;
pub(crate) mod hosts;
mod leaders;
pub(crate) mod neighbours;
mod rendezvous;
pub(crate) mod scratch;
mod split;
pub(crate) mod transport;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

pub use config::TcpConfig;

use crate::call::Calls;
use crate::datatype::{as_bytes, as_bytes_mut};
use crate::fingerprint::Fingerprint;
use crate::local::{HeapRegion, LocalBackend};
use crate::topology::ExecutionTopology;
use crate::traits::{
    CommData, Communicator, LocalCommKind, SharedMemoryProvider, TopologyProvider,
};
use crate::types::{BackendError, CommError, ReduceOp};
use exchange::Exchange;
use frame::{ABORT_EXIT, AbortReport};
use transport::{Fail, Mesh};

/// Up to this many ranks, small messages go in one round of direct messages to every
/// peer (`direct`); on more ranks, in `ceil(log2 p)` rounds of one message each (`bruck`,
/// `binomial`). At 4 ranks or fewer the log-p algorithms need 2 rounds for a saving of
/// at most 2 messages per rank, which does not pay for the extra round trip.
pub(crate) const DIRECT_MAX_RANKS: usize = 4;

/// A communicator over TCP connections: one process per rank, on one or many hosts.
///
/// Build it from the `COBRE_TCP_*` environment variables with [`TcpBackend::from_env`] (what
/// [`create_communicator`](crate::create_communicator) does), or from a [`TcpConfig`] with
/// [`TcpBackend::new`]. Construction blocks until every rank of the job has joined (or
/// the timeout expires).
///
/// `allreduce(Sum)` gives exactly the rank-order fold on every rank; every collective
/// carries a fingerprint, so ranks that make different calls get
/// [`CommError::CollectiveMismatch`]. A lost rank gives [`CommError::PeerLost`] naming it,
/// on every survivor; a silent one [`CommError::Timeout`]. After such an error every later
/// call fails fast with the same error.
///
/// TCP has no shared memory: [`SharedMemoryProvider`] hands out private
/// [`HeapRegion`]s, every rank is its own node leader, and
/// [`split_local`](SharedMemoryProvider::split_local) returns a one-rank communicator.
///
/// # Example
/// ```
/// use cobre_comm::{Communicator, ReduceOp, TcpBackend, TcpConfig};
///
/// // A job of one rank needs no network at all.
/// let comm = TcpBackend::new(&TcpConfig::new(0, 1)).unwrap();
/// let mut total = [0.0_f64];
/// comm.allreduce(&[2.5], &mut total, ReduceOp::Sum).unwrap();
/// assert_eq!(total, [2.5]);
/// ```
///
/// Several processes (each with its own `COBRE_TCP_RANK`):
/// ```no_run
/// use cobre_comm::{Communicator, TcpBackend};
///
/// // COBRE_TCP_COORDINATOR=node01 COBRE_TCP_RANK=1 COBRE_TCP_SIZE=4 COBRE_TCP_TOKEN=... ./app
/// let comm = TcpBackend::from_env().expect("join the job");
/// comm.barrier().unwrap();
/// ```
pub struct TcpBackend {
    rank: usize,
    size: usize,
    calls: Arc<Calls<Mesh>>,
    topology: ExecutionTopology,
}

impl std::fmt::Debug for TcpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpBackend")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl TcpBackend {
    /// Joins the job described by `config`: blocks until every rank is connected.
    ///
    /// # Errors
    /// [`BackendError::InvalidConfiguration`] / [`BackendError::MissingConfiguration`] for
    /// unusable fields, [`BackendError::InitializationFailed`] when the port cannot be
    /// bound, rank 0 refuses this rank (taken rank, wrong token or size), or the job is not
    /// complete within `config.timeout`.
    ///
    /// # Example
    /// ```
    /// use cobre_comm::{Communicator, TcpBackend, TcpConfig};
    ///
    /// let comm = TcpBackend::new(&TcpConfig::new(0, 1)).unwrap();
    /// assert_eq!((comm.rank(), comm.size()), (0, 1));
    /// assert!(TcpBackend::new(&TcpConfig::new(2, 2)).is_err());
    /// ```
    pub fn new(config: &TcpConfig) -> Result<TcpBackend, BackendError> {
        // Read once: how long waiting ranks spin depends on it, before and after the
        // hosts are known.
        let cores = crate::cores::node_cores();
        let mesh = rendezvous::join(config, cores)?;
        let mut backend = TcpBackend {
            rank: config.rank,
            size: config.size,
            calls: Arc::new(Calls::new(config.rank, config.size, mesh)),
            topology: crate::topology::single_process(crate::BackendKind::Auto),
        };
        if config.size > 1 {
            spawn_abort_watcher(Arc::downgrade(&backend.calls));
        }
        backend.topology =
            crate::topology::gather(&backend, crate::BackendKind::Auto).map_err(|e| {
                BackendError::init_failed(
                    "tcp",
                    format!("gathering the hosts of the ranks failed: {e}"),
                )
            })?;
        // Every rank gathered the same hosts: the algorithm picks and schedules that depend
        // on them (`allreduce.rs`, `allreduce_reduce_scatter_grid.rs`) agree on every rank.
        let hosts = std::sync::Arc::new(hosts::Hosts::from_members(
            config.size,
            backend
                .topology
                .hosts
                .iter()
                .map(|h| h.ranks.clone())
                .collect(),
        ));
        let local_ranks = hosts.members(hosts.of(config.rank)).len();
        let spin = transport::spin_for(local_ranks, cores);
        let unpaced = transport::unpaced_for(local_ranks, cores);
        backend.calls.with_transport(|mesh, _| {
            mesh.hosts = hosts;
            mesh.spin = spin;
            mesh.set_unpaced(unpaced);
        });
        Ok(backend)
    }

    /// Joins the job described by the `COBRE_TCP_*` environment variables (see
    /// [`TcpConfig::from_env`]).
    ///
    /// # Errors
    /// As [`TcpConfig::from_env`] and [`TcpBackend::new`].
    ///
    /// ```no_run
    /// let comm = cobre_comm::TcpBackend::from_env().unwrap();
    /// ```
    pub fn from_env() -> Result<TcpBackend, BackendError> {
        TcpBackend::new(&TcpConfig::from_env()?)
    }

    pub(crate) fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TcpBackend, BackendError> {
        TcpBackend::new(&TcpConfig::from_lookup(lookup)?)
    }
}

/// How long a waiting exchange of a rank whose host runs `local_ranks` ranks of the job
/// on `cores` cores retries, yielding between tries, before it sleeps in `poll`: 20 ms
/// while the host's ranks fit its cores, 50 us when they outnumber them. A waiting rank
/// keeps its core busy that long, as MPI's ranks do for the whole wait.
///
/// ```
/// use std::time::Duration;
/// use cobre_comm::tcp::spin_before_sleep;
///
/// assert_eq!(spin_before_sleep(2, 2), Duration::from_millis(20));
/// assert_eq!(spin_before_sleep(4, 2), Duration::from_micros(50));
/// ```
#[must_use]
pub fn spin_before_sleep(local_ranks: usize, cores: usize) -> Duration {
    transport::spin_for(local_ranks, cores)
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        // The abort watcher may hold a reference for a moment; the calls' lock orders it.
        self.calls.with_transport(|mesh, healthy| {
            if healthy {
                mesh.goodbye();
            }
        });
    }
}

/// allgatherv's pick and algorithm, after the call layer: the backend and the network
/// model (`crate::model`) both run this.
pub(crate) fn run_allgatherv<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    counts: &[usize],
    displs: &[usize],
) -> Result<(), Fail> {
    // The ranges were checked to fit in `recv`.
    let elem = std::mem::size_of::<T>();
    let ranges: Vec<(usize, usize)> = counts
        .iter()
        .zip(displs)
        .map(|(&c, &d)| (d * elem, (d + c) * elem))
        .collect();
    allgatherv::allgatherv(mesh, fp, as_bytes(send), as_bytes_mut(recv), &ranges)
}

/// allreduce's pick and algorithm, after the call layer (see [`run_allgatherv`]).
pub(crate) fn run_allreduce<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
) -> Result<(), Fail> {
    allreduce::allreduce(mesh, fp, send, recv, op)
}

/// broadcast's pick and algorithm, after the call layer (see [`run_allgatherv`]).
pub(crate) fn run_broadcast<T: CommData>(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    buf: &mut [T],
    root: usize,
) -> Result<(), Fail> {
    broadcast::broadcast(mesh, fp, as_bytes_mut(buf), root)
}

/// barrier's algorithm, after the call layer (see [`run_allgatherv`]).
pub(crate) fn run_barrier(mesh: &mut impl Exchange, fp: &Fingerprint) -> Result<(), Fail> {
    barrier::barrier(mesh, fp)
}

impl Communicator for TcpBackend {
    fn allgatherv<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError> {
        self.calls
            .allgatherv(send, recv.len(), counts, displs, |mesh, fp| {
                run_allgatherv(mesh, fp, send, recv, counts, displs)
            })
    }

    fn allreduce<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        self.calls
            .allreduce::<T>(send.len(), recv.len(), op, |mesh, fp| {
                run_allreduce(mesh, fp, send, recv, op)
            })
    }

    fn broadcast<T: CommData>(&self, buf: &mut [T], root: usize) -> Result<(), CommError> {
        self.calls.broadcast::<T>(buf.len(), root, |mesh, fp| {
            run_broadcast(mesh, fp, buf, root)
        })
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.calls.barrier(run_barrier)
    }

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn abort(&self, error_code: i32) -> ! {
        // A collective of another thread may hold the mesh; wait for it briefly, then exit
        // anyway (the peers then see this rank's connections close).
        let report = AbortReport {
            code: ABORT_EXIT,
            rank: self.rank as u32,
            message: error_code.to_string(),
        };
        let deadline = Instant::now() + Duration::from_millis(200);
        while self
            .calls
            .try_with_transport(|mesh| mesh.abort(&report, 0))
            .is_none()
            && Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        std::process::exit(error_code)
    }
}

impl TopologyProvider for TcpBackend {
    /// The hostname of every rank, gathered when the backend started; `backend` is
    /// [`BackendKind::Auto`](crate::BackendKind::Auto) (0.18 has no `tcp` kind).
    fn topology(&self) -> &ExecutionTopology {
        &self.topology
    }
}

/// A thread that looks at the connections between collectives, so that a rank busy
/// computing also exits when a peer calls `abort` (a collective in progress sees the
/// abort frame itself). It ends when the backend is dropped.
///
/// The report reaches the ranks not connected to the aborting one through `log2 p`
/// relays, each up to one look late while every rank computes: looking every 20 ms
/// keeps a 1024-rank job within about 200 ms (100 ms made it a second). A look is a try
/// of a lock and one peek per connection, 50 times a second.
fn spawn_abort_watcher(calls: Weak<Calls<Mesh>>) {
    const EVERY: Duration = Duration::from_millis(20);
    let _ = std::thread::Builder::new()
        .name("cobre-comm-tcp-abort".into())
        .spawn(move || {
            loop {
                let Some(calls) = calls.upgrade() else { return };
                calls.try_with_transport(|mesh| {
                    if let Some(report) = mesh.pending_exit() {
                        mesh.pass_on_exit(&report);
                    }
                });
                drop(calls);
                std::thread::sleep(EVERY);
            }
        });
}

impl SharedMemoryProvider for TcpBackend {
    type Region<T: CommData> = HeapRegion<T>;

    fn create_shared_region<T: CommData>(&self, count: usize) -> Result<HeapRegion<T>, CommError> {
        HeapRegion::new(count)
    }

    fn split_local(&self) -> Result<LocalCommKind, CommError> {
        Ok(LocalCommKind::Local(LocalBackend))
    }

    fn is_leader(&self) -> bool {
        true
    }
}
