//! # cobre-comm
//!
//! Collective communication for distributed numerical programs, behind one trait, with
//! interchangeable backends: the same program runs on one process, on many processes of
//! one machine, or across a cluster.
//!
//! | backend | Cargo feature | what it is | how ranks start |
//! |---|---|---|---|
//! | `local` | always | one process, zero cost | `cargo run` |
//! | `mpi` | `mpi` | MPI through `ferrompi` (MPICH / Open MPI) | `mpiexec -n N`, `srun` |
//! | `shm` | `shm` | many processes on one node, POSIX shared memory | `cobre-comm launch -n N` |
//! | `tcp` | `tcp` | many processes on one or many hosts over TCP | `cobre-comm launch`, or env vars |
//!
//! ## Design
//!
//! * **Static dispatch.** [`Communicator`] has generic collectives and is deliberately not
//!   object safe. Code that communicates takes `C: Communicator`; the compiler emits one
//!   copy per backend, and [`LocalBackend`]'s collectives inline to the copies they
//!   describe. When several backends are compiled in, [`create_communicator`] returns an
//!   enum (`CommBackend`) whose methods are one `match` away from the backend's own.
//! * **Features pick what is compiled**, `COBRE_COMM_BACKEND` picks what runs. With no
//!   distributed feature, [`create_communicator`] returns [`LocalBackend`] itself.
//! * **One contract for every backend.** Preconditions ([`precondition`]) and reductions
//!   ([`reduce`]) are written once and shared. Errors say what was expected and what was
//!   found ([`CommError`], [`BackendError`]).
//! * **Shared memory is a companion trait.** [`SharedMemoryProvider`] hands out
//!   [`SharedRegion`]s: real node-shared memory on `shm` and `mpi`, a private
//!   [`HeapRegion`] on `local`.
//!
//! ## Backend selection
//!
//! `COBRE_COMM_BACKEND` = unset or `auto`, `local`, `mpi`, `tcp`, `shm`. Anything else is
//! [`BackendError::InvalidBackend`]; a backend not compiled in is
//! [`BackendError::BackendNotAvailable`]. `auto` picks, in order: `mpi` when an MPI launcher
//! variable is set ([`MPI_LAUNCHER_VARS`]), `tcp` when `COBRE_TCP_COORDINATOR` is set, `shm`
//! when `COBRE_SHM_NAME` is set, `tcp` configured from the step in a Slurm step without
//! `mpi` ([`slurm`]), otherwise `local` (each only if compiled in) — unless a launcher
//! declares several ranks that no compiled backend can join, which is an error rather than
//! N silent copies of a one-process job.
//! [`create_communicator`] takes cobre-comm 0.18's [`BackendKind`] (`Auto`, `Mpi`,
//! `Local`); [`create_communicator_with`] takes a [`Backend`], which also names `tcp` and
//! `shm`, for library callers that choose for themselves.
//!
//! ## Compatibility with cobre-comm 0.18
//!
//! Programs written against cobre-comm 0.18 build unchanged on this crate (through
//! `[patch.crates-io]`): same traits ([`Communicator::abort`], [`TopologyProvider`]), same
//! enums ([`BackendKind`], [`ReduceOp`] with `BitwiseOr`), same error fields
//! ([`CommError`], [`BackendError`]), same helpers ([`per_rank_counts`], [`prefix_displs`]),
//! and the `shared-memory` feature. `docs/UPSTREAM.md` in the repository lists every
//! difference.
//!
//! ## Example
//! ```
//! use cobre_comm::{create_communicator, Communicator, ReduceOp};
//!
//! fn run<C: Communicator>(comm: &C) -> f64 {
//!     let local = [comm.rank() as f64 + 1.0];
//!     let mut total = [0.0];
//!     comm.allreduce(&local, &mut total, ReduceOp::Sum).unwrap();
//!     total[0]
//! }
//!
//! let comm = create_communicator(cobre_comm::BackendKind::Auto).unwrap();
//! let n = comm.size() as f64;
//! assert_eq!(run(&comm), n * (n + 1.0) / 2.0);
//! ```

#[cfg(any(feature = "shm", feature = "mpi"))]
mod access;
pub mod algorithm;
#[cfg(any(feature = "shm", feature = "tcp"))]
mod call;
#[cfg(all(test, any(feature = "shm", feature = "tcp")))]
mod collective_checks;
mod copy;
#[cfg(any(feature = "shm", feature = "tcp"))]
mod cores;
pub mod datatype;
mod env;
pub mod factory;
#[cfg(feature = "mpi")]
pub mod ferrompi;
#[cfg(any(feature = "shm", feature = "tcp"))]
pub(crate) mod fingerprint;
pub mod local;
#[cfg(feature = "tcp")]
pub mod model;
pub mod precondition;
pub mod reduce;
#[cfg(feature = "shm")]
pub mod shm;
#[cfg(not(feature = "shm"))]
#[path = "shm/config_only.rs"]
pub mod shm;
pub mod slurm;
#[cfg(feature = "tcp")]
pub mod tcp;
#[path = "tcp/config.rs"]
pub mod tcp_config;
pub mod topology;
pub mod traits;
pub mod types;

pub use bytemuck;
#[cfg(any(feature = "shm", feature = "tcp"))]
pub use cores::node_cores;
pub use datatype::ElementType;
pub use factory::{
    BACKEND_ENV, Backend, BackendKind, MPI_LAUNCHER_VARS, SelectedCommunicator, Selection,
    available_backends, create_communicator, create_communicator_with, requested_backend,
    select_backend,
};
#[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
pub use factory::{CommBackend, CommRegion};
#[cfg(feature = "mpi")]
pub use ferrompi::{FerrompiBackend, FerrompiLocalComm, MpiRegion};
pub use local::{HeapRegion, LocalBackend};
#[cfg(feature = "shm")]
pub use shm::{ShmBackend, ShmRegion};
#[cfg(feature = "tcp")]
pub use tcp::TcpBackend;
pub use topology::{ExecutionTopology, HostInfo, MpiRuntimeInfo, SlurmJobInfo};
// The configurations are compiled in every build (auto-detection and launchers read them).
pub use shm::ShmConfig;
pub use tcp_config::TcpConfig;
pub use traits::{
    CommData, Communicator, LocalCommKind, LocalCommunicator, SharedMemoryProvider, SharedRegion,
    TopologyProvider,
};
pub use types::{BackendError, CommError, ReduceOp};

/// The even partition of `total` items over `num_ranks` ranks (cobre-comm 0.18): the first
/// `total % num_ranks` ranks get one item more than the others. Index `r` is rank `r`'s
/// count, ready for `allgatherv`. Zero ranks give an empty vector.
///
/// # Example
/// ```
/// use cobre_comm::{per_rank_counts, prefix_displs};
///
/// let counts = per_rank_counts(10, 4);
/// assert_eq!(counts, vec![3, 3, 2, 2]);
/// assert_eq!(prefix_displs(&counts), vec![0, 3, 6, 8]);
/// assert!(per_rank_counts(5, 0).is_empty());
/// ```
pub fn per_rank_counts(total: usize, num_ranks: usize) -> Vec<usize> {
    if num_ranks == 0 {
        return Vec::new();
    }
    let base = total / num_ranks;
    let remainder = total % num_ranks;
    (0..num_ranks)
        .map(|r| base + usize::from(r < remainder))
        .collect()
}

/// Exclusive prefix sums of `counts`: the `allgatherv` displacements that lay the ranks'
/// ranges end to end (cobre-comm 0.18).
///
/// # Example
/// ```
/// assert_eq!(cobre_comm::prefix_displs(&[2, 0, 5]), vec![0, 2, 2]);
/// assert!(cobre_comm::prefix_displs(&[]).is_empty());
/// ```
pub fn prefix_displs(counts: &[usize]) -> Vec<usize> {
    counts
        .iter()
        .scan(0_usize, |next, &c| {
            let start = *next;
            *next += c;
            Some(start)
        })
        .collect()
}
