//! The core traits: [`Communicator`], [`LocalCommunicator`], [`SharedMemoryProvider`],
//! [`SharedRegion`] and [`CommData`].

use crate::local::LocalBackend;
use crate::topology::ExecutionTopology;
use crate::types::{CommError, ReduceOp};

/// Element types that can travel through a collective.
///
/// `CommData` is implemented automatically for every type that is `Send + Sync + Copy +
/// Default + 'static` and [`bytemuck::Pod`] (plain old data: no padding, no pointers, every
/// bit pattern valid). The `Pod` bound is what lets the shared-memory and TCP backends move
/// values as bytes without undefined behaviour. With the `mpi` feature the bound also
/// includes `ferrompi::MpiDatatype`, which narrows the set to the seven primitives MPI can
/// transmit directly: `f32`, `f64`, `i32`, `i64`, `u8`, `u32`, `u64`.
///
/// Reductions ([`ReduceOp`]) are defined for those seven primitives on every backend; for
/// any other `CommData` type (say `u16`, or a `#[derive(Pod)]` struct) `allgatherv` and
/// `broadcast` work and `allreduce` returns [`CommError::UnsupportedReduction`].
///
/// # Example
/// ```
/// use cobre_comm::CommData;
///
/// fn takes<T: CommData>(_: &[T]) {}
/// takes(&[1.0_f64, 2.0]);
/// takes(&[7_u64]);
/// ```
#[cfg(not(feature = "mpi"))]
pub trait CommData: Send + Sync + Copy + Default + 'static + bytemuck::Pod {}

#[cfg(not(feature = "mpi"))]
impl<T> CommData for T where T: Send + Sync + Copy + Default + 'static + bytemuck::Pod {}

/// Element types that can travel through a collective.
///
/// With the `mpi` feature, `CommData` is the seven primitives MPI transmits directly
/// (`f32`, `f64`, `i32`, `i64`, `u8`, `u32`, `u64`): every type that is `Send + Sync + Copy +
/// Default + 'static`, [`bytemuck::Pod`] and `ferrompi::MpiDatatype`.
///
/// # Example
/// ```
/// use cobre_comm::CommData;
///
/// fn takes<T: CommData>(_: &[T]) {}
/// takes(&[1.0_f64, 2.0]);
/// ```
#[cfg(feature = "mpi")]
pub trait CommData:
    Send + Sync + Copy + Default + 'static + bytemuck::Pod + ::ferrompi::MpiDatatype
{
}

#[cfg(feature = "mpi")]
impl<T> CommData for T where
    T: Send + Sync + Copy + Default + 'static + bytemuck::Pod + ::ferrompi::MpiDatatype
{
}

/// Collective communication among the ranks of a job.
///
/// Four collectives and two accessors. All collectives are blocking: they return when this
/// rank's part is complete. Every rank of the communicator must call the same collectives in
/// the same order with matching arguments (as in MPI).
///
/// Preconditions are checked on every backend before any data moves and before any rank
/// blocks:
///
/// | call | precondition violated | error |
/// |---|---|---|
/// | `allgatherv` | `counts.len()` or `displs.len()` != size; `send.len()` != `counts[rank]`; `recv` shorter than `max(displs[r]+counts[r])`; overlapping target ranges | [`CommError::InvalidBufferSize`] |
/// | `allreduce` | `send.len()` != `recv.len()`; empty `send` | [`CommError::InvalidBufferSize`] |
/// | `allreduce` | element type without a reduction kernel | [`CommError::UnsupportedReduction`] |
/// | `broadcast` | `root >= size` | [`CommError::InvalidRoot`] |
///
/// `recv` is written only in the ranges the call names; results are identical on every rank.
///
/// The trait is deliberately **not object safe**: its collectives are generic, so callers
/// take `C: Communicator` and the compiler generates one copy per backend (static
/// dispatch). `Box<dyn Communicator>` does not compile:
///
/// ```compile_fail,E0038
/// use cobre_comm::{Communicator, LocalBackend};
/// let boxed: Box<dyn Communicator> = Box::new(LocalBackend);
/// ```
///
/// # Thread safety
/// `Communicator: Send + Sync` and the collectives take `&self`; callers must not run two
/// collectives on the same communicator at the same time from different threads.
///
/// # Example
/// ```
/// use cobre_comm::{Communicator, LocalBackend, ReduceOp};
///
/// fn global_mean<C: Communicator>(comm: &C, local: &[f64]) -> f64 {
///     let sums = [local.iter().sum::<f64>(), local.len() as f64];
///     let mut totals = [0.0; 2];
///     comm.allreduce(&sums, &mut totals, ReduceOp::Sum).unwrap();
///     totals[0] / totals[1]
/// }
///
/// assert_eq!(global_mean(&LocalBackend, &[1.0, 2.0, 3.0]), 2.0);
/// ```
pub trait Communicator: Send + Sync {
    /// Gathers variable-length contributions from every rank into every rank.
    ///
    /// Rank `r` contributes `send` (of length `counts[r]`), which lands in
    /// `recv[displs[r]..displs[r] + counts[r]]` on every rank. Other elements of `recv` are
    /// left untouched.
    ///
    /// # Errors
    /// [`CommError::InvalidBufferSize`] when a precondition of the table above fails, plus
    /// the backend's transport errors.
    ///
    /// # Example
    /// ```
    /// use cobre_comm::{Communicator, LocalBackend};
    ///
    /// let comm = LocalBackend;
    /// let mut recv = [0_u32; 4];
    /// comm.allgatherv(&[7, 8], &mut recv, &[2], &[1]).unwrap();
    /// assert_eq!(recv, [0, 7, 8, 0]);
    /// ```
    fn allgatherv<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError>;

    /// Combines `send` element-wise across all ranks with `op`; every rank receives the
    /// result in `recv`.
    ///
    /// # Errors
    /// [`CommError::InvalidBufferSize`] when `send.len() != recv.len()` or `send` is empty,
    /// [`CommError::UnsupportedReduction`] for element types without a kernel, plus the
    /// backend's transport errors.
    ///
    /// # Example
    /// ```
    /// use cobre_comm::{Communicator, LocalBackend, ReduceOp};
    ///
    /// let mut recv = [0.0_f32; 2];
    /// LocalBackend.allreduce(&[1.5, 2.5], &mut recv, ReduceOp::Sum).unwrap();
    /// assert_eq!(recv, [1.5, 2.5]);
    /// ```
    fn allreduce<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError>;

    /// Copies `buf` from rank `root` into `buf` on every other rank.
    ///
    /// # Errors
    /// [`CommError::InvalidRoot`] when `root >= size()`, plus the backend's transport errors.
    ///
    /// # Example
    /// ```
    /// use cobre_comm::{Communicator, LocalBackend};
    ///
    /// let mut buf = [1_u8, 2, 3];
    /// LocalBackend.broadcast(&mut buf, 0).unwrap();
    /// assert_eq!(buf, [1, 2, 3]);
    /// ```
    fn broadcast<T: CommData>(&self, buf: &mut [T], root: usize) -> Result<(), CommError>;

    /// Blocks until every rank has entered the barrier.
    ///
    /// # Errors
    /// The backend's transport errors (a lost peer, a timeout).
    ///
    /// # Example
    /// ```
    /// use cobre_comm::{Communicator, LocalBackend};
    /// LocalBackend.barrier().unwrap();
    /// ```
    fn barrier(&self) -> Result<(), CommError>;

    /// This rank's index, in `0..size()`. Cached at construction; never fails.
    ///
    /// ```
    /// use cobre_comm::{Communicator, LocalBackend};
    /// assert_eq!(LocalBackend.rank(), 0);
    /// ```
    fn rank(&self) -> usize;

    /// The number of ranks. Cached at construction; never fails.
    ///
    /// ```
    /// use cobre_comm::{Communicator, LocalBackend};
    /// assert_eq!(LocalBackend.size(), 1);
    /// ```
    fn size(&self) -> usize;

    /// Ends every rank of the job with exit code `error_code` (cobre-comm 0.18), for a rank
    /// that cannot go on and must not leave the others waiting in a collective.
    ///
    /// * `mpi`: `MPI_Abort` on the world communicator.
    /// * `local`: [`std::process::exit`].
    /// * `shm`: raises an abort flag (with the code) in the job's segment and wakes every
    ///   sleeper; each rank exits with the code within about 100 ms, whether it waits in a
    ///   collective or computes (a watcher thread sleeps on the flag).
    /// * `tcp`: sends an abort frame carrying the code to every connected peer, which pass
    ///   it on; each rank exits with the code as soon as it reads it (in a collective, or
    ///   within 20 ms per relay through a watcher thread that looks at the connections
    ///   between collectives: `log2 p` relays, about 200 ms at 1024 ranks).
    ///
    /// `cobre-comm launch` then exits with the same code. Destructors do not run.
    ///
    /// ```no_run
    /// use cobre_comm::{Communicator, LocalBackend};
    ///
    /// fn fail_job<C: Communicator>(comm: &C) -> ! {
    ///     eprintln!("rank {}: cannot continue", comm.rank());
    ///     comm.abort(3)
    /// }
    /// fail_job(&LocalBackend);
    /// ```
    fn abort(&self, error_code: i32) -> !;
}

/// Access to the [`ExecutionTopology`] a communicator gathered when it started
/// (cobre-comm 0.18). Implemented by every backend and by `CommBackend`.
///
/// # Example
/// ```
/// use cobre_comm::{create_communicator, BackendKind, TopologyProvider};
///
/// let comm = create_communicator(BackendKind::Local).unwrap();
/// let topology = comm.topology();
/// assert_eq!(topology.world_size, 1);
/// assert_eq!(topology.num_hosts(), 1);
/// ```
pub trait TopologyProvider: Send + Sync {
    /// The topology gathered at start-up; no communication.
    fn topology(&self) -> &ExecutionTopology;
}

/// The object-safe part of a communicator, for intra-node set-up code.
///
/// [`SharedMemoryProvider::split_local`] returns a [`LocalCommKind`] spanning the ranks of
/// this node; set-up code uses it to pick a leader and to synchronise. It is off the hot
/// path, so dynamic dispatch costs nothing that matters.
///
/// # Example
/// ```
/// use cobre_comm::{LocalBackend, LocalCommunicator, SharedMemoryProvider};
///
/// fn determine_leader(local_comm: &dyn LocalCommunicator) -> bool {
///     local_comm.rank() == 0
/// }
///
/// let node = LocalBackend.split_local().unwrap();
/// assert!(determine_leader(node.as_ref()));
/// node.barrier().unwrap();
/// ```
pub trait LocalCommunicator: Send + Sync {
    /// This rank's index among the ranks of the node.
    fn rank(&self) -> usize;
    /// The number of ranks on the node.
    fn size(&self) -> usize;
    /// Blocks until every rank of the node has entered.
    ///
    /// # Errors
    /// The backend's transport errors.
    fn barrier(&self) -> Result<(), CommError>;
}

/// The communicator over the ranks of one node that
/// [`SharedMemoryProvider::split_local`] returns (cobre-comm 0.18's type).
///
/// It implements [`LocalCommunicator`] itself, and `AsRef<dyn LocalCommunicator>`, so both
/// `local.rank()` and `local.as_ref()` (code written for a `Box<dyn LocalCommunicator>`)
/// compile. Variants other than `Local` exist only when their backend's feature is on, as
/// in 0.18, so code written for 0.18 that matches on it still compiles without them.
///
/// # Example
/// ```
/// use cobre_comm::{LocalBackend, LocalCommKind, LocalCommunicator, SharedMemoryProvider};
///
/// let node: LocalCommKind = LocalBackend.split_local().unwrap();
/// assert_eq!((node.rank(), node.size()), (0, 1));
/// let as_dyn: &dyn LocalCommunicator = node.as_ref();
/// as_dyn.barrier().unwrap();
/// ```
#[non_exhaustive]
pub enum LocalCommKind {
    /// One process: the node is this rank alone (the `local` and `tcp` backends).
    Local(LocalBackend),
    /// The ranks of this node in `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`.
    #[cfg(feature = "mpi")]
    Ferrompi(crate::ferrompi::FerrompiLocalComm),
    /// Every rank of a `shm` job (the job is one node).
    #[cfg(feature = "shm")]
    Shm(Box<dyn LocalCommunicator>),
}

impl LocalCommKind {
    /// This rank's index among the ranks of the node (also callable without importing
    /// [`LocalCommunicator`], as on the seed's `Box<dyn LocalCommunicator>`).
    ///
    /// ```
    /// use cobre_comm::{LocalBackend, SharedMemoryProvider};
    /// assert_eq!(LocalBackend.split_local().unwrap().rank(), 0);
    /// ```
    pub fn rank(&self) -> usize {
        self.inner().rank()
    }

    /// The number of ranks on the node.
    ///
    /// ```
    /// use cobre_comm::{LocalBackend, SharedMemoryProvider};
    /// assert_eq!(LocalBackend.split_local().unwrap().size(), 1);
    /// ```
    pub fn size(&self) -> usize {
        self.inner().size()
    }

    /// Blocks until every rank of the node has entered.
    ///
    /// # Errors
    /// The backend's transport errors.
    ///
    /// ```
    /// use cobre_comm::{LocalBackend, SharedMemoryProvider};
    /// LocalBackend.split_local().unwrap().barrier().unwrap();
    /// ```
    pub fn barrier(&self) -> Result<(), CommError> {
        self.inner().barrier()
    }

    fn inner(&self) -> &dyn LocalCommunicator {
        match self {
            LocalCommKind::Local(b) => b,
            #[cfg(feature = "mpi")]
            LocalCommKind::Ferrompi(c) => c,
            #[cfg(feature = "shm")]
            LocalCommKind::Shm(c) => c.as_ref(),
        }
    }
}

impl std::fmt::Debug for LocalCommKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let variant = match self {
            LocalCommKind::Local(_) => "Local",
            #[cfg(feature = "mpi")]
            LocalCommKind::Ferrompi(_) => "Ferrompi",
            #[cfg(feature = "shm")]
            LocalCommKind::Shm(_) => "Shm",
        };
        f.debug_struct("LocalCommKind")
            .field("variant", &variant)
            .field("rank", &self.inner().rank())
            .field("size", &self.inner().size())
            .finish()
    }
}

impl LocalCommunicator for LocalCommKind {
    fn rank(&self) -> usize {
        self.inner().rank()
    }

    fn size(&self) -> usize {
        self.inner().size()
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.inner().barrier()
    }
}

impl AsRef<dyn LocalCommunicator> for LocalCommKind {
    fn as_ref(&self) -> &(dyn LocalCommunicator + 'static) {
        self
    }
}

/// Memory shared between the ranks of one node.
///
/// A companion to [`Communicator`]: functions that need shared memory take
/// `C: Communicator + SharedMemoryProvider`.
///
/// The lifecycle of a region is: allocate with [`create_shared_region`] (collective: every
/// rank of the node calls it), the leader ([`is_leader`]) populates it through
/// [`SharedRegion::as_mut_slice`], every rank calls [`SharedRegion::fence`] (collective),
/// then every rank reads it through [`SharedRegion::as_slice`].
///
/// On a backend with true shared memory (`shm`, `mpi`) there is one allocation per node and
/// followers see the leader's writes after the fence. On [`HeapRegion`](crate::HeapRegion)
/// each rank holds its own copy, so followers see only their own (default) contents; code
/// that must work on both has every rank that needs data write it, or uses a real backend.
///
/// [`create_shared_region`]: SharedMemoryProvider::create_shared_region
/// [`is_leader`]: SharedMemoryProvider::is_leader
///
/// # Example
/// ```
/// use cobre_comm::{Communicator, LocalBackend, SharedMemoryProvider, SharedRegion};
///
/// fn load_table<C: Communicator + SharedMemoryProvider>(comm: &C) -> f64 {
///     let mut region = comm.create_shared_region::<f64>(1000).unwrap();
///     if comm.is_leader() {
///         for (i, x) in region.as_mut_slice().iter_mut().enumerate() {
///             *x = i as f64;
///         }
///     }
///     region.fence().unwrap();
///     region.as_slice().iter().sum()
/// }
///
/// assert_eq!(load_table(&LocalBackend), 499_500.0);
/// ```
pub trait SharedMemoryProvider: Send + Sync {
    /// The region type this backend hands out.
    type Region<T: CommData>: SharedRegion<T>;

    /// Allocates a region of `count` elements of `T`, zero-initialised (`T::default()` for
    /// primitives). Collective over the ranks of the node.
    ///
    /// # Errors
    /// [`CommError::AllocationFailed`] when the operating system refuses the memory (or the
    /// size overflows), plus the backend's transport errors.
    fn create_shared_region<T: CommData>(&self, count: usize)
    -> Result<Self::Region<T>, CommError>;

    /// A communicator over the ranks of this node, for set-up code.
    ///
    /// # Errors
    /// The backend's errors (for MPI, a failed communicator split).
    fn split_local(&self) -> Result<LocalCommKind, CommError>;

    /// Whether this rank populates shared regions (rank 0 of its node).
    fn is_leader(&self) -> bool;
}

/// A typed region of node-shared memory; see [`SharedMemoryProvider`] for the lifecycle.
///
/// # Access rule (`shm` and `mpi`)
/// The fences cut a region's life into epochs. In each epoch either the leader writes and
/// no other rank touches the region, or any ranks read and nobody writes: the first access
/// of the epoch decides, recorded in the shared memory itself. A follower that writes, a
/// leader that writes while other ranks read (since the last fence), and a follower that
/// reads while the leader writes each panic with a message that names the rule, instead
/// of racing with another process. So: allocate, the leader writes, `fence`, everyone
/// reads; to rewrite, `fence` again, the leader writes, `fence`, everyone reads. A slice
/// kept from before a fence and used after it is not caught (the signatures, fixed by the
/// 0.18 API, cannot tie it to the epoch): drop slices before fencing. On
/// [`HeapRegion`](crate::HeapRegion) every rank has a private copy and nothing can race.
///
/// # Example
/// ```
/// use cobre_comm::{HeapRegion, SharedRegion};
///
/// let mut region = HeapRegion::<u32>::new(3).unwrap();
/// region.as_mut_slice().copy_from_slice(&[1, 2, 3]);
/// region.fence().unwrap();
/// assert_eq!(region.as_slice(), &[1, 2, 3]);
/// ```
pub trait SharedRegion<T: CommData>: Send + Sync {
    /// The region's contents, for reading (after the fence).
    ///
    /// # Panics
    /// On a follower, when the leader has written the region since the last fence.
    fn as_slice(&self) -> &[T];
    /// The region's contents, for the leader to populate (before the fence).
    ///
    /// # Panics
    /// On a follower; on the leader, when another rank has read the region since the last
    /// fence.
    fn as_mut_slice(&mut self) -> &mut [T];
    /// Makes the leader's writes visible to every rank of the node. Collective.
    ///
    /// # Errors
    /// The backend's transport errors.
    fn fence(&self) -> Result<(), CommError>;
}
