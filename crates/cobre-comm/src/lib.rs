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
//! when `COBRE_SHM_NAME` is set, otherwise `local` (each only if compiled in).
//! [`create_communicator_with`] does the same for a [`BackendKind`] chosen by the caller.
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
//! let comm = create_communicator().unwrap();
//! let n = comm.size() as f64;
//! assert_eq!(run(&comm), n * (n + 1.0) / 2.0);
//! ```

#[cfg(any(feature = "shm", feature = "mpi"))]
mod access;
#[cfg(any(feature = "shm", feature = "tcp"))]
mod call;
pub mod datatype;
mod env;
pub mod factory;
#[cfg(feature = "mpi")]
pub mod ferrompi;
#[cfg(any(feature = "shm", feature = "tcp"))]
pub(crate) mod fingerprint;
pub mod local;
pub mod precondition;
pub mod reduce;
#[cfg(feature = "shm")]
pub mod shm;
#[cfg(not(feature = "shm"))]
#[path = "shm/config_only.rs"]
pub mod shm;
#[cfg(feature = "tcp")]
pub mod tcp;
#[path = "tcp/config.rs"]
pub mod tcp_config;
pub mod traits;
pub mod types;

pub use bytemuck;
pub use datatype::ElementType;
pub use factory::{
    BACKEND_ENV, BackendKind, MPI_LAUNCHER_VARS, SelectedCommunicator, Selection,
    available_backends, create_communicator, create_communicator_with, requested_backend,
    select_backend,
};
#[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
pub use factory::{CommBackend, CommRegion};
#[cfg(feature = "mpi")]
pub use ferrompi::{FerrompiBackend, MpiRegion};
pub use local::{HeapRegion, LocalBackend};
#[cfg(feature = "shm")]
pub use shm::{ShmBackend, ShmConfig, ShmRegion};
#[cfg(feature = "tcp")]
pub use tcp::{TcpBackend, TcpConfig};
pub use traits::{CommData, Communicator, LocalCommunicator, SharedMemoryProvider, SharedRegion};
pub use types::{BackendError, CommError, ReduceOp};
