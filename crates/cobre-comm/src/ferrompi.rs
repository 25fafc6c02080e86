//! The MPI backend: [`FerrompiBackend`], through the `ferrompi` crate (feature `mpi`).
//!
//! Every precondition is checked here, in our code, before ferrompi is called: buffer
//! lengths, counts and displacements (including counts that do not fit MPI's `int`). MPI
//! failures become [`CommError::CollectiveFailed`] with the MPI error code and the
//! library's message.
//!
//! Shared memory is real: [`SharedMemoryProvider::split_local`] is
//! `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`, and
//! [`SharedMemoryProvider::create_shared_region`] allocates an MPI shared-memory window
//! in which the node leader (node rank 0) holds the whole region and the followers map it.

use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ::ferrompi::{Communicator as MpiComm, Mpi, ThreadLevel, Win, WinFenceAssert};

use crate::copy::copy;
use crate::datatype::ElementType;
use crate::env::{Lookup, process_env};
use crate::precondition::{check_allgatherv, check_allreduce, check_broadcast};
use crate::reduce::check_reduction;
use crate::topology::{ExecutionTopology, HostInfo, MpiRuntimeInfo};
use crate::traits::{
    CommData, Communicator, LocalCommKind, LocalCommunicator, SharedMemoryProvider, SharedRegion,
    TopologyProvider,
};
use crate::types::{BackendError, CommError, ReduceOp};

/// Set by the first initialisation: MPI can be initialised once per process.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The MPI library's version string (`MPI_Get_library_version`), or why it is unknown.
///
/// ```no_run
/// println!("{}", cobre_comm::ferrompi::library_version());
/// ```
pub fn library_version() -> String {
    Mpi::library_version().unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Maps a ferrompi error to a [`CommError`].
fn mpi_error(operation: &'static str, error: &::ferrompi::Error) -> CommError {
    match error {
        ::ferrompi::Error::Finalized => CommError::InvalidCommunicator,
        ::ferrompi::Error::Mpi { code, message, .. } => CommError::CollectiveFailed {
            operation,
            mpi_error_code: *code,
            message: message.clone(),
        },
        other => CommError::CollectiveFailed {
            operation,
            mpi_error_code: -1,
            message: other.to_string(),
        },
    }
}

/// Converts a count to MPI's `int`, or explains why it cannot be.
/// `operation` names the collective and the argument ("allgatherv: counts[r] ...").
fn to_mpi_int(operation: &'static str, value: usize) -> Result<i32, CommError> {
    i32::try_from(value).map_err(|_| CommError::InvalidBufferSize {
        operation,
        expected: i32::MAX as usize,
        actual: value,
    })
}

/// The error for a launcher that started several tasks while MPI sees a world of one.
fn launcher_mismatch(world_size: usize, lookup: Lookup<'_>) -> Option<BackendError> {
    let (launcher, tasks) = crate::slurm::declared_ranks(lookup)?;
    (world_size == 1 && tasks > 1).then(|| BackendError::InitializationFailed {
        backend: "mpi".into(),
        source: format!(
            "{launcher} started {tasks} tasks but MPI reports a world of 1: \
             the MPI library this program is linked against is not the one of the launcher \
             (for instance Open MPI's mpirun with an MPICH build, or srun without the right --mpi plugin); \
             build against the launcher's MPI (MPI_PKG_CONFIG or MPICC) or use the matching mpiexec"
        )
        .into(),
    })
}

/// MPI through ferrompi: `MPI_Init_thread` at `Funneled` on construction, `MPI_Finalize`
/// on drop. Rank and size are cached at construction.
///
/// Only one `FerrompiBackend` may exist in a process, and MPI cannot be initialised again
/// after it is dropped (an MPI rule): create it once, at start-up, on the thread that
/// will make every MPI call.
///
/// # Example
/// ```no_run
/// // Run with: mpiexec -n 4 target/release/my_program
/// use cobre_comm::{Communicator, FerrompiBackend, ReduceOp};
///
/// let comm = FerrompiBackend::new().expect("MPI initialisation failed");
/// let mut total = [0.0_f64];
/// comm.allreduce(&[comm.rank() as f64], &mut total, ReduceOp::Sum).unwrap();
/// ```
pub struct FerrompiBackend {
    // Fields drop in order: the communicators are freed before MPI is finalized.
    world: MpiComm,
    node: MpiComm,
    rank: usize,
    size: usize,
    node_rank: usize,
    node_size: usize,
    threads: ThreadRule,
    topology: Box<ExecutionTopology>,
    mpi: Mpi,
}

/// Which threads may call MPI, from the thread level `MPI_Init_thread` provided: under
/// `Funneled` (what this backend asks for) or `Serialized`, only the thread that
/// initialised MPI; under `Multiple`, any thread. Every MPI call this crate makes is
/// checked against it first, so safe code cannot break MPI's threading rule even though
/// the communicator is `Send + Sync`.
#[derive(Debug, Clone, Copy)]
struct ThreadRule {
    owner: std::thread::ThreadId,
    level: ThreadLevel,
}

impl ThreadRule {
    fn here(level: ThreadLevel) -> ThreadRule {
        ThreadRule {
            owner: std::thread::current().id(),
            level,
        }
    }

    /// Fails unless the calling thread may call MPI.
    fn check(&self, operation: &'static str) -> Result<(), CommError> {
        if self.level == ThreadLevel::Multiple {
            return Ok(());
        }
        let here = std::thread::current().id();
        if here == self.owner {
            return Ok(());
        }
        Err(CommError::CollectiveFailed {
            operation,
            mpi_error_code: -1,
            message: format!(
                "called from thread {here:?}, but MPI was initialised at thread level {:?} by thread {:?}, \
                 and at that level only that thread may call MPI: make every call on this communicator \
                 (and its node communicator and regions) from the thread that created it",
                self.level, self.owner
            ),
        })
    }
}

// SAFETY: `ferrompi::Mpi` is !Send/!Sync only to keep MPI calls on the thread that
// initialised MPI. Every method that calls MPI first checks `threads` (`ThreadRule::check`),
// which refuses any thread but the initialising one unless MPI provided
// `MPI_THREAD_MULTIPLE`, and the handle itself holds no thread-local state.
unsafe impl Send for FerrompiBackend {}
// SAFETY: as above: the thread check keeps every MPI call on the initialising thread (so
// calls are also serialised) unless MPI allows any thread at any time.
unsafe impl Sync for FerrompiBackend {}

impl std::fmt::Debug for FerrompiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FerrompiBackend")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("node_rank", &self.node_rank)
            .field("node_size", &self.node_size)
            .finish_non_exhaustive()
    }
}

impl FerrompiBackend {
    /// Initialises MPI (`MPI_Init_thread` at `Funneled`) and caches rank and size.
    ///
    /// # Errors
    /// [`BackendError::InitializationFailed`] when MPI was already initialised in this
    /// process, when the MPI library refuses to start, or when the launcher started
    /// several tasks but MPI sees a world of one (mismatched MPI library and launcher).
    pub fn new() -> Result<Self, BackendError> {
        Self::new_with(&process_env)
    }

    pub(crate) fn new_with(lookup: Lookup<'_>) -> Result<Self, BackendError> {
        let failed = |message: String| BackendError::InitializationFailed {
            backend: "mpi".into(),
            source: message.into(),
        };
        if INITIALIZED.swap(true, Ordering::SeqCst) {
            return Err(failed(
                "MPI was already initialised in this process, and MPI can be initialised only once per process \
                 (not even again after MPI_Finalize): create one communicator at start-up and keep it for the life \
                 of the program"
                    .into(),
            ));
        }
        let mpi = Mpi::init_thread(ThreadLevel::Funneled)
            .map_err(|e| failed(format!("MPI_Init_thread failed: {e}")))?;
        let level = mpi.thread_level();
        if level < ThreadLevel::Funneled {
            return Err(failed(format!(
                "MPI_Init_thread provided thread level {level:?}, expected at least Funneled: this MPI library \
                 cannot be used with threads in the program; use an MPI built with thread support"
            )));
        }
        let threads = ThreadRule::here(level);
        let world = mpi.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if let Some(error) = launcher_mismatch(size, lookup) {
            return Err(error);
        }
        let node = world.split_shared().map_err(|e| {
            failed(format!(
                "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) failed: {e}"
            ))
        })?;
        let (node_rank, node_size) = (node.rank() as usize, node.size() as usize);
        let info = world
            .topology(&mpi)
            .map_err(|e| failed(format!("gathering the hosts of the ranks failed: {e}")))?;
        let topology = Box::new(ExecutionTopology {
            backend: crate::BackendKind::Mpi,
            world_size: size,
            hosts: info
                .hosts()
                .iter()
                .map(|h| HostInfo {
                    hostname: h.hostname.clone(),
                    ranks: h.ranks.iter().map(|&r| r as usize).collect(),
                })
                .collect(),
            mpi: Some(MpiRuntimeInfo {
                library_version: info.library_version().trim().to_string(),
                standard_version: info.standard_version().to_string(),
                thread_level: format!("{:?}", info.thread_level()),
            }),
            slurm: crate::topology::slurm_from_env(),
        });
        Ok(FerrompiBackend {
            world,
            node,
            rank,
            size,
            node_rank,
            node_size,
            threads,
            topology,
            mpi,
        })
    }

    /// The underlying `MPI_COMM_WORLD` communicator, for MPI calls this crate does not
    /// wrap (point-to-point, other collectives). Calls on it follow the same Funneled rule.
    ///
    /// ```no_run
    /// let comm = cobre_comm::FerrompiBackend::new().unwrap();
    /// let name = comm.mpi_world().processor_name().unwrap();
    /// println!("running on {name}");
    /// ```
    pub fn mpi_world(&self) -> &MpiComm {
        &self.world
    }

    /// The MPI thread level the library provided (at least `Funneled`).
    ///
    /// ```no_run
    /// let comm = cobre_comm::FerrompiBackend::new().unwrap();
    /// println!("{:?}", comm.thread_level());
    /// ```
    pub fn thread_level(&self) -> ThreadLevel {
        self.mpi.thread_level()
    }
}

/// An unsigned type whose order MPI reductions get wrong, and the signed type whose order
/// matches it after [`Unsigned::to_ordered`].
trait Unsigned<S>: bytemuck::Pod {
    fn to_ordered(self) -> S;
    fn from_ordered(value: S) -> Self;
}

impl Unsigned<i32> for u8 {
    fn to_ordered(self) -> i32 {
        i32::from(self)
    }
    /// Truncation: exact for min/max, and the wrapping result for a sum.
    fn from_ordered(value: i32) -> u8 {
        value as u8
    }
}

impl Unsigned<i64> for u32 {
    fn to_ordered(self) -> i64 {
        i64::from(self)
    }
    fn from_ordered(value: i64) -> u32 {
        value as u32
    }
}

impl Unsigned<i64> for u64 {
    /// Flipping the top bit maps unsigned order onto signed order.
    fn to_ordered(self) -> i64 {
        (self ^ (1 << 63)) as i64
    }
    fn from_ordered(value: i64) -> u64 {
        (value as u64) ^ (1 << 63)
    }
}

impl FerrompiBackend {
    /// Min/Max of unsigned integers through a signed type of the same order: MPICH 4.0
    /// (ch4) compares `MPI_UINT8_T`, `MPI_UINT32_T` and `MPI_UINT64_T` as signed numbers in
    /// `MPI_MIN`/`MPI_MAX`, which gives wrong results for values above the signed range.
    fn ordered_as<U, S, T>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: ::ferrompi::ReduceOp,
    ) -> Result<(), CommError>
    where
        U: Unsigned<S>,
        S: CommData,
        T: CommData,
    {
        let send: &[U] = bytemuck::cast_slice(send);
        let ordered: Vec<S> = send.iter().map(|&x| x.to_ordered()).collect();
        let mut reduced = vec![S::default(); ordered.len()];
        self.world
            .allreduce(&ordered, &mut reduced, op)
            .map_err(|e| mpi_error("allreduce", &e))?;
        let recv: &mut [U] = bytemuck::cast_slice_mut(recv);
        for (out, value) in recv.iter_mut().zip(reduced) {
            *out = U::from_ordered(value);
        }
        Ok(())
    }
}

impl Communicator for FerrompiBackend {
    fn allgatherv<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError> {
        const OP: &str = "allgatherv";
        self.threads.check(OP)?;
        check_allgatherv(self.rank, self.size, send.len(), recv.len(), counts, displs)?;
        let counts = counts
            .iter()
            .map(|&c| to_mpi_int("allgatherv: counts[r] must fit MPI's int", c))
            .collect::<Result<Vec<i32>, _>>()?;
        let displs = displs
            .iter()
            .map(|&d| to_mpi_int("allgatherv: displs[r] must fit MPI's int", d))
            .collect::<Result<Vec<i32>, _>>()?;
        if self.size == 1 {
            // MPICH 4.0 (ch4) ignores the displacement on a world of one and writes at
            // recv[0]; the gather of one rank is a copy.
            copy(&mut recv[displs[0] as usize..][..send.len()], send);
            return Ok(());
        }
        self.world
            .allgatherv(send, recv, &counts, &displs)
            .map_err(|e| mpi_error(OP, &e))
    }

    fn allreduce<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        const OP: &str = "allreduce";
        self.threads.check(OP)?;
        check_allreduce(send.len(), recv.len())?;
        check_reduction::<T>(op)?;
        to_mpi_int("allreduce: send.len() must fit MPI's int", send.len())?;
        let mpi_op = match op {
            ReduceOp::Sum => ::ferrompi::ReduceOp::Sum,
            ReduceOp::Min => ::ferrompi::ReduceOp::Min,
            ReduceOp::Max => ::ferrompi::ReduceOp::Max,
            ReduceOp::BitwiseOr => ::ferrompi::ReduceOp::BitwiseOr,
        };
        match (ElementType::of::<T>(), op) {
            // Open MPI 4.1's vectorised MPI_SUM on MPI_UINT8_T saturates at 255 instead of
            // wrapping; summing the bytes as i32 and truncating gives the wrapping sum.
            (ElementType::U8, _) => return self.ordered_as::<u8, i32, T>(send, recv, mpi_op),
            (ElementType::U32, ReduceOp::Min | ReduceOp::Max) => {
                return self.ordered_as::<u32, i64, T>(send, recv, mpi_op);
            }
            (ElementType::U64, ReduceOp::Min | ReduceOp::Max) => {
                return self.ordered_as::<u64, i64, T>(send, recv, mpi_op);
            }
            _ => {}
        }
        self.world
            .allreduce(send, recv, mpi_op)
            .map_err(|e| mpi_error(OP, &e))
    }

    fn broadcast<T: CommData>(&self, buf: &mut [T], root: usize) -> Result<(), CommError> {
        const OP: &str = "broadcast";
        self.threads.check(OP)?;
        check_broadcast(root, self.size)?;
        to_mpi_int("broadcast: buf.len() must fit MPI's int", buf.len())?;
        self.world
            .broadcast(buf, root as i32)
            .map_err(|e| mpi_error(OP, &e))
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.threads.check("barrier")?;
        self.world.barrier().map_err(|e| mpi_error("barrier", &e))
    }

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    /// `MPI_Abort` on the world communicator: the MPI runtime ends every rank.
    fn abort(&self, error_code: i32) -> ! {
        self.world.abort(error_code)
    }
}

impl TopologyProvider for FerrompiBackend {
    fn topology(&self) -> &ExecutionTopology {
        &self.topology
    }
}

/// The ranks of one node, from `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`.
///
/// What [`SharedMemoryProvider::split_local`] returns on the `mpi` backend, inside
/// [`LocalCommKind::Ferrompi`] (cobre-comm 0.18's name).
///
/// ```no_run
/// use cobre_comm::{FerrompiBackend, LocalCommKind, LocalCommunicator, SharedMemoryProvider};
///
/// let comm = FerrompiBackend::new().unwrap();
/// if let LocalCommKind::Ferrompi(node) = comm.split_local().unwrap() {
///     println!("rank {} of {} on this node", node.rank(), node.size());
/// }
/// ```
pub struct FerrompiLocalComm {
    comm: MpiComm,
    rank: usize,
    size: usize,
    threads: ThreadRule,
}

impl std::fmt::Debug for FerrompiLocalComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FerrompiLocalComm")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl LocalCommunicator for FerrompiLocalComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.threads.check("barrier")?;
        self.comm.barrier().map_err(|e| mpi_error("barrier", &e))
    }
}

impl SharedMemoryProvider for FerrompiBackend {
    type Region<T: CommData> = MpiRegion<T>;

    fn create_shared_region<T: CommData>(&self, count: usize) -> Result<MpiRegion<T>, CommError> {
        self.threads.check("create_shared_region")?;
        MpiRegion::allocate(&self.node, self.node_rank == 0, count, self.threads)
    }

    fn split_local(&self) -> Result<LocalCommKind, CommError> {
        self.threads.check("split_local")?;
        let comm = self
            .world
            .split_shared()
            .map_err(|e| mpi_error("split_local", &e))?;
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        Ok(LocalCommKind::Ferrompi(FerrompiLocalComm {
            comm,
            rank,
            size,
            threads: self.threads,
        }))
    }

    fn is_leader(&self) -> bool {
        self.node_rank == 0
    }
}

/// A region of an MPI shared-memory window: the node leader allocates it whole, the
/// followers map the leader's memory. See [`SharedMemoryProvider`] for the lifecycle.
///
/// # Example
/// ```no_run
/// use cobre_comm::{FerrompiBackend, SharedMemoryProvider, SharedRegion};
///
/// let comm = FerrompiBackend::new().unwrap();
/// let mut region = comm.create_shared_region::<f64>(1 << 20).unwrap();
/// if comm.is_leader() {
///     region.as_mut_slice().fill(1.0);
/// }
/// region.fence().unwrap();
/// assert_eq!(region.as_slice()[0], 1.0);
/// ```
pub struct MpiRegion<T: CommData> {
    /// Start of the leader's region in this process's address space.
    ptr: NonNull<T>,
    len: usize,
    /// The window; fences need `&mut`, regions are shared by `&self`.
    window: Mutex<Win<T>>,
    threads: ThreadRule,
    /// The shared word of the access rule, at the start of the leader's window memory
    /// (`None` for an empty region).
    word: Option<NonNull<std::sync::atomic::AtomicU64>>,
    access: crate::access::AccessRule,
}

/// Elements of `T` before the region's data in the window: room for the access word,
/// keeping the data aligned for `T`.
fn header_elements<T>() -> usize {
    64_usize.div_ceil(std::mem::size_of::<T>().max(1))
}

// SAFETY: the region is memory of an MPI window that stays mapped while `window` lives;
// `ptr` is only dereferenced through `as_slice`/`as_mut_slice`, whose borrows are tied to
// the region. MPI calls (fences) are checked against the backend's thread rule first.
unsafe impl<T: CommData> Send for MpiRegion<T> {}
// SAFETY: as above; shared access only reads (`as_slice`) or fences under the mutex.
unsafe impl<T: CommData> Sync for MpiRegion<T> {}

impl<T: CommData> std::fmt::Debug for MpiRegion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiRegion")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<T: CommData> MpiRegion<T> {
    fn allocate(
        node: &MpiComm,
        leader: bool,
        count: usize,
        threads: ThreadRule,
    ) -> Result<Self, CommError> {
        let requested_bytes = count.saturating_mul(std::mem::size_of::<T>());
        let failed = |e: ::ferrompi::Error| CommError::AllocationFailed {
            requested_bytes,
            message: format!("MPI_Win_allocate_shared: {e}"),
        };
        let header = if count == 0 {
            0
        } else {
            header_elements::<T>()
        };
        let mut window = Win::<T>::allocate_shared(node, if leader { header + count } else { 0 })
            .map_err(failed)?;
        let (base, len) = {
            let mut view = window.remote(0).map_err(failed)?;
            // SAFETY: no process writes the region yet (the leader writes only after this
            // collective allocation returns, and the region is zero-filled by ferrompi),
            // and the slice is turned into a pointer at once; later accesses go through
            // `as_slice`/`as_mut_slice` under the access rule.
            let slice = unsafe { view.as_mut_slice() };
            (NonNull::from(slice).cast::<T>(), view.len())
        };
        let len = len.saturating_sub(header);
        // SAFETY: the window holds `header + len` elements from `base`; `header` elements
        // are at most 64 bytes plus one element, inside it.
        let ptr = unsafe { base.add(header) };
        let word = (header > 0 && base.as_ptr().cast::<u64>().is_aligned())
            .then(|| base.cast::<std::sync::atomic::AtomicU64>());
        // Opens the first fence epoch: the leader's stores made before the user's fence are
        // published by it.
        window
            .fence(WinFenceAssert::none(), WinFenceAssert::none(), |_| Ok(()))
            .map_err(failed)?;
        Ok(MpiRegion {
            ptr,
            len,
            window: Mutex::new(window),
            threads,
            word,
            access: crate::access::AccessRule::new(leader, node.rank() as usize),
        })
    }

    fn access_word(&self) -> Option<&std::sync::atomic::AtomicU64> {
        // SAFETY: the word is 8 aligned bytes at the start of the window memory, which
        // stays mapped while `self.window` lives; it is only accessed atomically.
        self.word.map(|w| unsafe { w.as_ref() })
    }
}

impl<T: CommData> SharedRegion<T> for MpiRegion<T> {
    fn as_slice(&self) -> &[T] {
        if let Some(word) = self.access_word() {
            self.access.read(word);
        }
        // SAFETY: `ptr` points to `len` elements of the leader's window region, mapped
        // while `self.window` lives; every bit pattern is a valid `T` (Pod). The access
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
        self.threads.check("fence")?;
        let mut window = self
            .window
            .lock()
            .map_err(|_| CommError::InvalidCommunicator)?;
        window
            .fence(WinFenceAssert::none(), WinFenceAssert::none(), |_| Ok(()))
            .map_err(|e| mpi_error("fence", &e))?;
        self.access.fenced();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::test_vars as vars;

    #[test]
    fn a_world_of_one_under_a_multi_task_launcher_is_explained() {
        let err = launcher_mismatch(
            1,
            &vars(&[
                ("SLURM_STEP_ID", "0"),
                ("SLURM_PROCID", "0"),
                ("SLURM_STEP_NUM_TASKS", "4"),
                ("SLURM_STEP_NODELIST", "n1"),
            ]),
        )
        .unwrap();
        let text = err.to_string();
        assert!(
            text.contains(
                "srun (SLURM_STEP_NUM_TASKS=4) started 4 tasks but MPI reports a world of 1"
            ),
            "{text}"
        );
        assert!(
            launcher_mismatch(1, &vars(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")])).is_none(),
            "a batch script outside srun is not a launch"
        );
        assert!(launcher_mismatch(4, &vars(&[("PMI_SIZE", "4")])).is_none());
        assert!(launcher_mismatch(1, &vars(&[("PMI_SIZE", "1")])).is_none());
        assert!(
            launcher_mismatch(1, &vars(&[("SLURM_NTASKS", "8")])).is_none(),
            "an allocation without srun is not a launch"
        );
        assert!(launcher_mismatch(1, &vars(&[("OMPI_COMM_WORLD_SIZE", "2")])).is_some());
    }

    #[test]
    fn unsigned_order_survives_the_signed_detour() {
        let values = [0_u64, 1, (1 << 63) - 1, 1 << 63, u64::MAX];
        for pair in values.windows(2) {
            assert!(pair[0].to_ordered() < pair[1].to_ordered());
            assert_eq!(u64::from_ordered(pair[1].to_ordered()), pair[1]);
        }
        assert!(200_u8.to_ordered() > 10_u8.to_ordered());
        assert_eq!(u32::from_ordered(u32::MAX.to_ordered()), u32::MAX);
    }

    #[test]
    fn counts_beyond_mpi_int_are_refused() {
        let err = to_mpi_int("allgatherv: counts[r] must fit MPI's int", 1 << 31).unwrap_err();
        assert!(
            err.to_string()
                == "allgatherv: counts[r] must fit MPI's int: expected 2147483647, found 2147483648",
            "{err}"
        );
        assert_eq!(to_mpi_int("allgatherv: x", 5), Ok(5));
    }
}
