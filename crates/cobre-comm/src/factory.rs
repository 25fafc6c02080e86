//! Backend selection: [`BackendKind`], [`create_communicator`], [`create_communicator_with`],
//! [`available_backends`] and, when a distributed backend is compiled in, the
//! enum-dispatched `CommBackend`.

use std::fmt;
use std::str::FromStr;

use crate::env::{Lookup, process_env};
use crate::types::BackendError;

#[allow(unused_imports)] // only named by the docs when a distributed feature is on
use crate::local::LocalBackend;

/// The environment variable that overrides backend selection.
pub const BACKEND_ENV: &str = "COBRE_COMM_BACKEND";

/// Variables set by MPI launchers (`mpiexec` of MPICH / Open MPI / Intel MPI, Slurm's
/// `srun`); any of them makes auto-detection pick the `mpi` backend when it is compiled in.
pub const MPI_LAUNCHER_VARS: [&str; 6] = [
    "PMI_RANK",
    "PMI_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MPI_LOCALRANKID",
    "SLURM_PROCID",
];

/// Which backend to use; [`BackendKind::Auto`] lets the factory decide.
///
/// Parses from the names accepted by `COBRE_COMM_BACKEND` (case-insensitive).
///
/// # Example
/// ```
/// use cobre_comm::BackendKind;
///
/// assert_eq!("shm".parse::<BackendKind>().unwrap(), BackendKind::Shm);
/// assert_eq!(" AUTO ".parse::<BackendKind>().unwrap(), BackendKind::Auto);
/// assert_eq!(BackendKind::default(), BackendKind::Auto);
/// assert_eq!(BackendKind::Tcp.to_string(), "tcp");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Detect from the environment: MPI launcher variables, then `COBRE_TCP_COORDINATOR`,
    /// then `COBRE_SHM_NAME`, otherwise `local`.
    #[default]
    Auto,
    /// MPI through ferrompi (feature `mpi`).
    Mpi,
    /// TCP sockets (feature `tcp`).
    Tcp,
    /// POSIX shared memory on one node (feature `shm`).
    Shm,
    /// One process, no communication.
    Local,
}

impl BackendKind {
    /// Every kind, `Auto` first.
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Auto,
        BackendKind::Local,
        BackendKind::Mpi,
        BackendKind::Tcp,
        BackendKind::Shm,
    ];

    /// The name used by `COBRE_COMM_BACKEND` and the command-line tool.
    ///
    /// ```
    /// assert_eq!(cobre_comm::BackendKind::Mpi.name(), "mpi");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Mpi => "mpi",
            BackendKind::Tcp => "tcp",
            BackendKind::Shm => "shm",
            BackendKind::Local => "local",
        }
    }

    /// Whether this backend is compiled into this binary (`Auto` always is).
    ///
    /// ```
    /// assert!(cobre_comm::BackendKind::Local.is_available());
    /// ```
    pub fn is_available(self) -> bool {
        self == BackendKind::Auto || available_backends().contains(&self.name())
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| BackendError::InvalidBackend {
                value: s.to_string(),
            })
    }
}

/// The backends compiled into this binary, `"local"` first.
///
/// # Example
/// ```
/// let names = cobre_comm::available_backends();
/// assert_eq!(names[0], "local");
/// ```
pub fn available_backends() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut names = vec!["local"];
    #[cfg(feature = "mpi")]
    names.push("mpi");
    #[cfg(feature = "tcp")]
    names.push("tcp");
    #[cfg(feature = "shm")]
    names.push("shm");
    names
}

/// The outcome of backend selection: which backend, and why.
///
/// # Example
/// ```
/// use cobre_comm::{select_backend, BackendKind};
///
/// let selection = select_backend(BackendKind::Local).unwrap();
/// assert_eq!(selection.backend, BackendKind::Local);
/// assert!(selection.reason.contains("requested"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The chosen backend (never [`BackendKind::Auto`]).
    pub backend: BackendKind,
    /// A sentence explaining the choice.
    pub reason: String,
}

/// Reads `COBRE_COMM_BACKEND`: [`BackendKind::Auto`] when unset or empty.
///
/// # Errors
/// [`BackendError::InvalidBackend`] when the value is not a backend name.
///
/// # Example
/// ```
/// // In a test binary the variable is normally unset.
/// let kind = cobre_comm::requested_backend().unwrap();
/// assert!(kind.is_available() || kind != cobre_comm::BackendKind::Auto);
/// ```
pub fn requested_backend() -> Result<BackendKind, BackendError> {
    requested_with(&process_env)
}

pub(crate) fn requested_with(lookup: Lookup<'_>) -> Result<BackendKind, BackendError> {
    lookup(BACKEND_ENV).map_or(Ok(BackendKind::Auto), |v| v.parse())
}

/// Decides which backend `requested` resolves to, reading the launcher variables of the
/// process environment for [`BackendKind::Auto`] (but not `COBRE_COMM_BACKEND`).
///
/// # Errors
/// [`BackendError::BackendNotAvailable`] when an explicitly requested backend is not
/// compiled in.
pub fn select_backend(requested: BackendKind) -> Result<Selection, BackendError> {
    select_with(requested, &process_env)
}

pub(crate) fn select_with(
    requested: BackendKind,
    lookup: Lookup<'_>,
) -> Result<Selection, BackendError> {
    if requested != BackendKind::Auto {
        if !requested.is_available() {
            return Err(BackendError::BackendNotAvailable {
                backend: requested.name().to_string(),
                reason: format!(
                    "rebuild with the Cargo feature `{0}` of cobre-comm (cobre-comm = {{ features = [\"{0}\"] }})",
                    requested.name()
                ),
            });
        }
        return Ok(Selection {
            backend: requested,
            reason: format!("the `{requested}` backend was requested"),
        });
    }
    let set = |name: &str| lookup(name).is_some_and(|v| !v.trim().is_empty());
    let launcher: Vec<&str> = MPI_LAUNCHER_VARS
        .iter()
        .copied()
        .filter(|v| set(v))
        .collect();
    if !launcher.is_empty() && BackendKind::Mpi.is_available() {
        return Ok(Selection {
            backend: BackendKind::Mpi,
            reason: format!("MPI launcher variables are set ({})", launcher.join(", ")),
        });
    }
    if set(crate::tcp_config::ENV_COORDINATOR) && BackendKind::Tcp.is_available() {
        return Ok(Selection {
            backend: BackendKind::Tcp,
            reason: format!("{} is set", crate::tcp_config::ENV_COORDINATOR),
        });
    }
    if set(crate::shm::ENV_NAME) && BackendKind::Shm.is_available() {
        return Ok(Selection {
            backend: BackendKind::Shm,
            reason: format!("{} is set", crate::shm::ENV_NAME),
        });
    }
    let mut reason =
        String::from("no launcher variables of a compiled distributed backend are set");
    if !launcher.is_empty() {
        reason = format!(
            "MPI launcher variables are set ({}) but the `mpi` feature is not compiled in; running as a single process",
            launcher.join(", ")
        );
    }
    Ok(Selection {
        backend: BackendKind::Local,
        reason,
    })
}

/// The communicator type [`create_communicator`] returns in this build:
/// [`LocalBackend`] without distributed features, `CommBackend` with.
#[cfg(not(any(feature = "mpi", feature = "tcp", feature = "shm")))]
pub type SelectedCommunicator = LocalBackend;

/// The communicator type [`create_communicator`] returns in this build:
/// [`LocalBackend`] without distributed features, [`CommBackend`] with.
#[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
pub type SelectedCommunicator = CommBackend;

/// Creates the communicator for this process: the backend named by `COBRE_COMM_BACKEND`,
/// or, when it is unset or `auto`, the one the environment points to (see
/// [`BackendKind::Auto`]).
///
/// Without distributed features this returns [`LocalBackend`] directly;
/// with any of `mpi`, `tcp`, `shm` it returns a `CommBackend`.
///
/// # Errors
/// [`BackendError::InvalidBackend`] for an unknown `COBRE_COMM_BACKEND`,
/// [`BackendError::BackendNotAvailable`] for a backend not compiled in,
/// [`BackendError::MissingConfiguration`] / [`BackendError::InvalidConfiguration`] for
/// missing or bad backend variables, [`BackendError::InitializationFailed`] when the
/// backend cannot start.
///
/// # Example
/// ```
/// use cobre_comm::{create_communicator, Communicator};
///
/// // With COBRE_COMM_BACKEND unset (auto-detect):
/// // - returns the MPI backend if launched via mpirun/mpiexec (and `mpi` is compiled in)
/// // - returns LocalBackend otherwise
/// let comm = create_communicator().expect("backend selection failed");
/// println!("rank {} of {}", comm.rank(), comm.size());
/// ```
pub fn create_communicator() -> Result<SelectedCommunicator, BackendError> {
    create_communicator_with(requested_backend()?)
}

/// Creates a communicator of the given kind, for library callers that choose the backend
/// themselves. Same rules as [`create_communicator`] minus the `COBRE_COMM_BACKEND`
/// variable: `Auto` still looks at the launcher variables.
///
/// # Errors
/// As [`create_communicator`], except `InvalidBackend`.
///
/// # Example
/// ```
/// use cobre_comm::{create_communicator_with, BackendKind, Communicator};
///
/// let comm = create_communicator_with(BackendKind::Local).unwrap();
/// assert_eq!(comm.size(), 1);
/// ```
pub fn create_communicator_with(kind: BackendKind) -> Result<SelectedCommunicator, BackendError> {
    let selection = select_backend(kind)?;
    build(selection.backend, &process_env)
}

#[cfg(not(any(feature = "mpi", feature = "tcp", feature = "shm")))]
fn build(kind: BackendKind, _lookup: Lookup<'_>) -> Result<LocalBackend, BackendError> {
    match kind {
        BackendKind::Local => Ok(LocalBackend),
        other => Err(BackendError::BackendNotAvailable {
            backend: other.name().to_string(),
            reason: "no distributed backend is compiled in".into(),
        }),
    }
}

#[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
pub use dispatch::{CommBackend, CommRegion};

#[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
use dispatch::build;

#[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
mod dispatch {
    use super::{BackendKind, Lookup};
    use crate::local::{HeapRegion, LocalBackend};
    use crate::traits::{
        CommData, Communicator, LocalCommunicator, SharedMemoryProvider, SharedRegion,
    };
    use crate::types::{BackendError, CommError, ReduceOp};

    /// Enum dispatch over the backends compiled into this binary; what
    /// [`create_communicator`](crate::create_communicator) returns when any distributed
    /// feature is on.
    ///
    /// Each method is one `match` on the variant followed by the backend's own code, so the
    /// cost over calling the backend directly is one well-predicted branch.
    ///
    /// # Example
    /// ```
    /// use cobre_comm::{create_communicator, Communicator};
    ///
    /// // With COBRE_COMM_BACKEND=local (or nothing detected), the factory returns CommBackend::Local.
    /// let comm = create_communicator().expect("backend selection failed");
    /// let send = [42.0_f64];
    /// let mut recv = [0.0_f64];
    /// comm.allgatherv(&send, &mut recv, &[1], &[0]).unwrap();
    /// assert_eq!(recv[0], 42.0);
    /// ```
    #[derive(Debug)]
    #[non_exhaustive]
    pub enum CommBackend {
        /// The single-process backend.
        Local(LocalBackend),
        /// The MPI backend.
        #[cfg(feature = "mpi")]
        Mpi(crate::ferrompi::FerrompiBackend),
        /// The TCP backend.
        #[cfg(feature = "tcp")]
        Tcp(crate::tcp::TcpBackend),
        /// The shared-memory backend.
        #[cfg(feature = "shm")]
        Shm(crate::shm::ShmBackend),
    }

    /// The shared region type of [`CommBackend`]: one variant per backend.
    ///
    /// # Example
    /// ```
    /// use cobre_comm::{CommBackend, LocalBackend, SharedMemoryProvider, SharedRegion};
    ///
    /// let comm = CommBackend::Local(LocalBackend);
    /// let mut region = comm.create_shared_region::<u64>(2).unwrap();
    /// region.as_mut_slice()[1] = 5;
    /// region.fence().unwrap();
    /// assert_eq!(region.as_slice(), &[0, 5]);
    /// ```
    #[derive(Debug)]
    #[non_exhaustive]
    pub enum CommRegion<T: CommData> {
        /// A private heap region (local and tcp backends).
        Heap(HeapRegion<T>),
        /// An MPI shared-memory window region.
        #[cfg(feature = "mpi")]
        Mpi(crate::ferrompi::MpiRegion<T>),
        /// A POSIX shared-memory region.
        #[cfg(feature = "shm")]
        Shm(crate::shm::ShmRegion<T>),
    }

    /// Runs `$body` with `$inner` bound to the active backend.
    macro_rules! dispatch {
        ($value:expr, $inner:ident => $body:expr) => {
            match $value {
                CommBackend::Local($inner) => $body,
                #[cfg(feature = "mpi")]
                CommBackend::Mpi($inner) => $body,
                #[cfg(feature = "tcp")]
                CommBackend::Tcp($inner) => $body,
                #[cfg(feature = "shm")]
                CommBackend::Shm($inner) => $body,
            }
        };
    }

    /// Runs `$body` with `$inner` bound to the active region.
    macro_rules! dispatch_region {
        ($value:expr, $inner:ident => $body:expr) => {
            match $value {
                CommRegion::Heap($inner) => $body,
                #[cfg(feature = "mpi")]
                CommRegion::Mpi($inner) => $body,
                #[cfg(feature = "shm")]
                CommRegion::Shm($inner) => $body,
            }
        };
    }

    pub(super) fn build(
        kind: BackendKind,
        lookup: Lookup<'_>,
    ) -> Result<CommBackend, BackendError> {
        let _ = &lookup;
        match kind {
            BackendKind::Local | BackendKind::Auto => Ok(CommBackend::Local(LocalBackend)),
            #[cfg(feature = "mpi")]
            BackendKind::Mpi => {
                crate::ferrompi::FerrompiBackend::new_with(lookup).map(CommBackend::Mpi)
            }
            #[cfg(feature = "tcp")]
            BackendKind::Tcp => crate::tcp::TcpBackend::from_lookup(lookup).map(CommBackend::Tcp),
            #[cfg(feature = "shm")]
            BackendKind::Shm => crate::shm::ShmBackend::from_lookup(lookup).map(CommBackend::Shm),
            // Only reachable for a backend whose feature is off, which selection refuses.
            #[allow(unreachable_patterns)]
            other => Err(BackendError::BackendNotAvailable {
                backend: other.name().to_string(),
                reason: format!("the Cargo feature `{other}` is not enabled"),
            }),
        }
    }

    impl Communicator for CommBackend {
        #[inline]
        fn allgatherv<T: CommData>(
            &self,
            send: &[T],
            recv: &mut [T],
            counts: &[usize],
            displs: &[usize],
        ) -> Result<(), CommError> {
            dispatch!(self, c => c.allgatherv(send, recv, counts, displs))
        }

        #[inline]
        fn allreduce<T: CommData>(
            &self,
            send: &[T],
            recv: &mut [T],
            op: ReduceOp,
        ) -> Result<(), CommError> {
            dispatch!(self, c => c.allreduce(send, recv, op))
        }

        #[inline]
        fn broadcast<T: CommData>(&self, buf: &mut [T], root: usize) -> Result<(), CommError> {
            dispatch!(self, c => c.broadcast(buf, root))
        }

        #[inline]
        fn barrier(&self) -> Result<(), CommError> {
            dispatch!(self, c => Communicator::barrier(c))
        }

        #[inline]
        fn rank(&self) -> usize {
            dispatch!(self, c => Communicator::rank(c))
        }

        #[inline]
        fn size(&self) -> usize {
            dispatch!(self, c => Communicator::size(c))
        }
    }

    impl SharedMemoryProvider for CommBackend {
        type Region<T: CommData> = CommRegion<T>;

        fn create_shared_region<T: CommData>(
            &self,
            count: usize,
        ) -> Result<CommRegion<T>, CommError> {
            match self {
                CommBackend::Local(c) => c.create_shared_region(count).map(CommRegion::Heap),
                #[cfg(feature = "mpi")]
                CommBackend::Mpi(c) => c.create_shared_region(count).map(CommRegion::Mpi),
                #[cfg(feature = "tcp")]
                CommBackend::Tcp(c) => c.create_shared_region(count).map(CommRegion::Heap),
                #[cfg(feature = "shm")]
                CommBackend::Shm(c) => c.create_shared_region(count).map(CommRegion::Shm),
            }
        }

        fn split_local(&self) -> Result<Box<dyn LocalCommunicator>, CommError> {
            dispatch!(self, c => c.split_local())
        }

        fn is_leader(&self) -> bool {
            dispatch!(self, c => c.is_leader())
        }
    }

    impl<T: CommData> SharedRegion<T> for CommRegion<T> {
        fn as_slice(&self) -> &[T] {
            dispatch_region!(self, r => r.as_slice())
        }

        fn as_mut_slice(&mut self) -> &mut [T] {
            dispatch_region!(self, r => r.as_mut_slice())
        }

        fn fence(&self) -> Result<(), CommError> {
            dispatch_region!(self, r => r.fence())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::test_vars as vars;

    #[test]
    fn env_value_parsing() {
        assert_eq!(requested_with(&vars(&[])), Ok(BackendKind::Auto));
        assert_eq!(
            requested_with(&vars(&[(BACKEND_ENV, "Local")])),
            Ok(BackendKind::Local)
        );
        let err = requested_with(&vars(&[(BACKEND_ENV, "gloo")])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"gloo\"") && text.contains("this binary has: local"),
            "{text}"
        );
    }

    #[test]
    fn auto_detection_chain() {
        let none = vars(&[]);
        assert_eq!(
            select_with(BackendKind::Auto, &none).unwrap().backend,
            BackendKind::Local
        );
        let mpi = vars(&[("PMI_RANK", "0"), ("COBRE_SHM_NAME", "/x")]);
        let sel = select_with(BackendKind::Auto, &mpi).unwrap();
        if BackendKind::Mpi.is_available() {
            assert_eq!(sel.backend, BackendKind::Mpi);
            assert!(sel.reason.contains("PMI_RANK"));
        } else if BackendKind::Shm.is_available() {
            assert_eq!(sel.backend, BackendKind::Shm);
        } else {
            assert_eq!(sel.backend, BackendKind::Local);
            assert!(
                sel.reason.contains("`mpi` feature is not compiled in"),
                "{}",
                sel.reason
            );
        }
        let tcp = vars(&[("COBRE_TCP_COORDINATOR", "h"), ("COBRE_SHM_NAME", "/x")]);
        let expected = if BackendKind::Tcp.is_available() {
            BackendKind::Tcp
        } else if BackendKind::Shm.is_available() {
            BackendKind::Shm
        } else {
            BackendKind::Local
        };
        assert_eq!(
            select_with(BackendKind::Auto, &tcp).unwrap().backend,
            expected
        );
    }

    #[test]
    fn explicit_backend_not_compiled_is_not_available() {
        for kind in [BackendKind::Mpi, BackendKind::Tcp, BackendKind::Shm] {
            let result = select_with(kind, &vars(&[]));
            if kind.is_available() {
                assert_eq!(result.unwrap().backend, kind);
            } else {
                let text = result.unwrap_err().to_string();
                assert!(
                    text.contains(&format!("backend `{kind}` is not available")),
                    "{text}"
                );
                assert!(text.contains(&format!("features = [\"{kind}\"]")), "{text}");
                assert!(text.contains("this binary has: local"), "{text}");
            }
        }
    }
}
