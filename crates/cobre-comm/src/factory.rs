//! Backend selection: [`BackendKind`] (cobre-comm 0.18's three kinds) and
//! [`create_communicator`], [`Backend`] (every backend of this crate) and
//! [`create_communicator_with`], [`available_backends`] and, when a distributed backend is
//! compiled in, the enum-dispatched `CommBackend`.

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

/// Which backend to use, among every backend of this crate; [`Backend::Auto`] lets the
/// factory decide. Library callers pass it to [`create_communicator_with`] to ask for `shm`
/// or `tcp`, which 0.18's [`BackendKind`] cannot name.
///
/// Parses from the names accepted by `COBRE_COMM_BACKEND` (case-insensitive).
///
/// # Example
/// ```
/// use cobre_comm::{Backend, BackendKind};
///
/// assert_eq!("shm".parse::<Backend>().unwrap(), Backend::Shm);
/// assert_eq!(" AUTO ".parse::<Backend>().unwrap(), Backend::Auto);
/// assert_eq!(Backend::default(), Backend::Auto);
/// assert_eq!(Backend::Tcp.to_string(), "tcp");
/// assert_eq!(Backend::from(BackendKind::Mpi), Backend::Mpi);
/// assert_eq!(Backend::Shm.kind(), BackendKind::Auto);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Backend {
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

/// The backend kinds of cobre-comm 0.18, exactly: `Auto`, `Mpi`, `Local`.
///
/// Programs written for 0.18 match on it exhaustively, so it has no more variants; the
/// `shm` and `tcp` backends are reached through [`BackendKind::Auto`] (the environment
/// `cobre-comm launch` sets, or `COBRE_COMM_BACKEND`) or, from code, through [`Backend`]
/// and [`create_communicator_with`]. It is also what [`ExecutionTopology::backend`]
/// holds, where `Auto` stands for `shm` and `tcp` (see [`crate::topology`]).
///
/// [`ExecutionTopology::backend`]: crate::ExecutionTopology::backend
///
/// # Example
/// ```
/// use cobre_comm::{create_communicator, BackendKind, Communicator};
///
/// let comm = create_communicator(BackendKind::Local).unwrap();
/// assert_eq!(comm.size(), 1);
/// assert_eq!(BackendKind::Mpi.to_string(), "mpi");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Detect the backend from `COBRE_COMM_BACKEND` and the launch environment; also the
    /// label of `shm` and `tcp` in an [`ExecutionTopology`](crate::ExecutionTopology).
    #[default]
    Auto,
    /// MPI backend; fails at run time if the `mpi` feature is not compiled in.
    Mpi,
    /// Single-process local backend; always available.
    Local,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Backend::from(*self).name())
    }
}

impl From<BackendKind> for Backend {
    fn from(kind: BackendKind) -> Backend {
        match kind {
            BackendKind::Auto => Backend::Auto,
            BackendKind::Mpi => Backend::Mpi,
            BackendKind::Local => Backend::Local,
        }
    }
}

impl Backend {
    /// Every kind, `Auto` first.
    pub const ALL: [Backend; 5] = [
        Backend::Auto,
        Backend::Local,
        Backend::Mpi,
        Backend::Tcp,
        Backend::Shm,
    ];

    /// The name used by `COBRE_COMM_BACKEND` and the command-line tool.
    ///
    /// ```
    /// assert_eq!(cobre_comm::Backend::Mpi.name(), "mpi");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Mpi => "mpi",
            Backend::Tcp => "tcp",
            Backend::Shm => "shm",
            Backend::Local => "local",
        }
    }

    /// Whether this backend is compiled into this binary (`Auto` always is).
    ///
    /// ```
    /// assert!(cobre_comm::Backend::Local.is_available());
    /// ```
    pub fn is_available(self) -> bool {
        self == Backend::Auto || available_backends().iter().any(|n| n == self.name())
    }

    /// The [`BackendKind`] of 0.18 that stands for this backend: `Auto` for `shm` and
    /// `tcp`, which it has no variant for.
    ///
    /// ```
    /// use cobre_comm::{Backend, BackendKind};
    /// assert_eq!(Backend::Local.kind(), BackendKind::Local);
    /// assert_eq!(Backend::Tcp.kind(), BackendKind::Auto);
    /// ```
    pub const fn kind(self) -> BackendKind {
        match self {
            Backend::Mpi => BackendKind::Mpi,
            Backend::Local => BackendKind::Local,
            Backend::Auto | Backend::Tcp | Backend::Shm => BackendKind::Auto,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Backend::ALL
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| BackendError::invalid(s))
    }
}

/// The backends compiled into this binary, `"local"` first (owned strings, as in 0.18).
///
/// # Example
/// ```
/// let names = cobre_comm::available_backends();
/// assert_eq!(names[0], "local");
/// ```
pub fn available_backends() -> Vec<String> {
    #[allow(unused_mut)]
    let mut names = vec!["local"];
    #[cfg(feature = "mpi")]
    names.push("mpi");
    #[cfg(feature = "tcp")]
    names.push("tcp");
    #[cfg(feature = "shm")]
    names.push("shm");
    names.into_iter().map(String::from).collect()
}

/// The outcome of backend selection: which backend, and why.
///
/// # Example
/// ```
/// use cobre_comm::{select_backend, Backend};
///
/// let selection = select_backend(Backend::Local).unwrap();
/// assert_eq!(selection.backend, Backend::Local);
/// assert!(selection.reason.contains("requested"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The chosen backend (never [`Backend::Auto`]).
    pub backend: Backend,
    /// A sentence explaining the choice.
    pub reason: String,
}

/// Reads `COBRE_COMM_BACKEND`: [`Backend::Auto`] when unset or empty.
///
/// # Errors
/// [`BackendError::InvalidBackend`] when the value is not a backend name.
///
/// # Example
/// ```
/// // In a test binary the variable is normally unset.
/// let kind = cobre_comm::requested_backend().unwrap();
/// assert!(kind.is_available() || kind != cobre_comm::Backend::Auto);
/// ```
pub fn requested_backend() -> Result<Backend, BackendError> {
    requested_with(&process_env)
}

pub(crate) fn requested_with(lookup: Lookup<'_>) -> Result<Backend, BackendError> {
    lookup(BACKEND_ENV).map_or(Ok(Backend::Auto), |v| v.parse())
}

/// Decides which backend `requested` resolves to, reading the launcher variables of the
/// process environment for [`Backend::Auto`] (but not `COBRE_COMM_BACKEND`).
///
/// # Errors
/// [`BackendError::BackendNotAvailable`] when an explicitly requested backend is not
/// compiled in.
pub fn select_backend(requested: Backend) -> Result<Selection, BackendError> {
    select_with(requested, &process_env)
}

pub(crate) fn select_with(
    requested: Backend,
    lookup: Lookup<'_>,
) -> Result<Selection, BackendError> {
    if requested != Backend::Auto {
        if !requested.is_available() {
            return Err(BackendError::not_available(requested.name()));
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
    if !launcher.is_empty() && Backend::Mpi.is_available() {
        return Ok(Selection {
            backend: Backend::Mpi,
            reason: format!("MPI launcher variables are set ({})", launcher.join(", ")),
        });
    }
    if set(crate::tcp_config::ENV_COORDINATOR) && Backend::Tcp.is_available() {
        return Ok(Selection {
            backend: Backend::Tcp,
            reason: format!("{} is set", crate::tcp_config::ENV_COORDINATOR),
        });
    }
    if set(crate::shm::ENV_NAME) && Backend::Shm.is_available() {
        return Ok(Selection {
            backend: Backend::Shm,
            reason: format!("{} is set", crate::shm::ENV_NAME),
        });
    }
    if let Some(step) = crate::slurm::SlurmStep::from_lookup(lookup)
        && Backend::Tcp.is_available()
    {
        let what = match step {
            Ok(step) => format!(
                "task {} of {} of Slurm step {}.{}",
                step.rank, step.tasks, step.job_id, step.step_id
            ),
            Err(message) => format!("a Slurm step ({message})"),
        };
        return Ok(Selection {
            backend: Backend::Tcp,
            reason: format!(
                "this process is {what}, and `tcp` is compiled in (not `mpi`): tcp takes its rank, size, \
                 coordinator and port from the step"
            ),
        });
    }
    if let Some((launcher, ranks)) = crate::slurm::declared_ranks(lookup)
        && ranks > 1
    {
        return Err(BackendError::init_failed(
            "auto",
            format!(
                "{launcher} started this process as one of {ranks} ranks, but this binary has no backend that \
                 can join such a job; running it would make {ranks} independent single-process copies, each \
                 computing the whole problem. Build with `--features tcp` (srun, no MPI needed) or \
                 `--features mpi` (mpiexec, srun --mpi=pmi2), or start one task"
            ),
        ));
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
        backend: Backend::Local,
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

/// Creates the communicator for this process (cobre-comm 0.18's form).
///
/// * [`BackendKind::Auto`]: the backend named by `COBRE_COMM_BACKEND`, or, when it is unset
///   or `auto`, the one the environment points to (MPI launcher variables, then
///   `COBRE_TCP_COORDINATOR`, then `COBRE_SHM_NAME`, otherwise `local`). This is how
///   programs written for 0.18 run on `shm` and `tcp` under `cobre-comm launch`.
/// * [`BackendKind::Mpi`], [`BackendKind::Local`]: that backend.
///
/// Without distributed features this returns [`LocalBackend`] directly; with any of
/// `mpi`, `tcp`, `shm` it returns a `CommBackend`.
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
/// use cobre_comm::{create_communicator, BackendKind, Communicator};
///
/// // With COBRE_COMM_BACKEND unset (auto-detect):
/// // - returns the MPI backend if launched via mpirun/mpiexec (and `mpi` is compiled in)
/// // - returns LocalBackend otherwise
/// let comm = create_communicator(BackendKind::Auto).expect("backend selection failed");
/// println!("rank {} of {}", comm.rank(), comm.size());
/// ```
pub fn create_communicator(kind: BackendKind) -> Result<SelectedCommunicator, BackendError> {
    match kind {
        BackendKind::Auto => create_communicator_with(requested_backend()?),
        other => create_communicator_with(other.into()),
    }
}

/// Creates a communicator of the given [`Backend`], for library callers that choose the
/// backend themselves, `shm` and `tcp` included. Same rules as [`create_communicator`]
/// minus the `COBRE_COMM_BACKEND` variable: `Auto` still looks at the launcher variables.
///
/// # Errors
/// As [`create_communicator`], except `InvalidBackend`.
///
/// # Example
/// ```
/// use cobre_comm::{create_communicator_with, Backend, Communicator};
///
/// let comm = create_communicator_with(Backend::Local).unwrap();
/// assert_eq!(comm.size(), 1);
/// ```
pub fn create_communicator_with(kind: Backend) -> Result<SelectedCommunicator, BackendError> {
    let selection = select_backend(kind)?;
    build(selection.backend, &process_env)
}

#[cfg(not(any(feature = "mpi", feature = "tcp", feature = "shm")))]
fn build(kind: Backend, _lookup: Lookup<'_>) -> Result<LocalBackend, BackendError> {
    match kind {
        Backend::Local => Ok(LocalBackend),
        other => Err(BackendError::not_available(other.name())),
    }
}

#[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
pub use dispatch::{CommBackend, CommRegion};

#[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
use dispatch::build;

#[cfg(any(feature = "mpi", feature = "tcp", feature = "shm"))]
mod dispatch {
    use super::{Backend, Lookup};
    use crate::local::{HeapRegion, LocalBackend};
    use crate::topology::ExecutionTopology;
    use crate::traits::{
        CommData, Communicator, LocalCommKind, SharedMemoryProvider, SharedRegion, TopologyProvider,
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
    /// let comm = create_communicator(cobre_comm::BackendKind::Auto).expect("backend selection failed");
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

    pub(super) fn build(kind: Backend, lookup: Lookup<'_>) -> Result<CommBackend, BackendError> {
        let _ = &lookup;
        match kind {
            Backend::Local | Backend::Auto => Ok(CommBackend::Local(LocalBackend)),
            #[cfg(feature = "mpi")]
            Backend::Mpi => {
                crate::ferrompi::FerrompiBackend::new_with(lookup).map(CommBackend::Mpi)
            }
            #[cfg(feature = "tcp")]
            Backend::Tcp => crate::tcp::TcpBackend::from_lookup(lookup).map(CommBackend::Tcp),
            #[cfg(feature = "shm")]
            Backend::Shm => crate::shm::ShmBackend::from_lookup(lookup).map(CommBackend::Shm),
            // Only reachable for a backend whose feature is off, which selection refuses.
            #[allow(unreachable_patterns)]
            other => Err(BackendError::not_available(other.name())),
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

        fn abort(&self, error_code: i32) -> ! {
            dispatch!(self, c => c.abort(error_code))
        }
    }

    impl TopologyProvider for CommBackend {
        fn topology(&self) -> &ExecutionTopology {
            dispatch!(self, c => c.topology())
        }
    }

    impl CommBackend {
        /// Which backend this is (the exact one; the topology's [`BackendKind`](crate::BackendKind)
        /// says `Auto` for `shm` and `tcp`).
        ///
        /// ```
        /// use cobre_comm::{Backend, CommBackend, LocalBackend};
        /// assert_eq!(CommBackend::Local(LocalBackend).backend(), Backend::Local);
        /// ```
        pub fn backend(&self) -> Backend {
            match self {
                CommBackend::Local(_) => Backend::Local,
                #[cfg(feature = "mpi")]
                CommBackend::Mpi(_) => Backend::Mpi,
                #[cfg(feature = "tcp")]
                CommBackend::Tcp(_) => Backend::Tcp,
                #[cfg(feature = "shm")]
                CommBackend::Shm(_) => Backend::Shm,
            }
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

        fn split_local(&self) -> Result<LocalCommKind, CommError> {
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
        assert_eq!(requested_with(&vars(&[])).ok(), Some(Backend::Auto));
        assert_eq!(
            requested_with(&vars(&[(BACKEND_ENV, "Local")])).ok(),
            Some(Backend::Local)
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
            select_with(Backend::Auto, &none).unwrap().backend,
            Backend::Local
        );
        let mpi = vars(&[("PMI_RANK", "0"), ("COBRE_SHM_NAME", "/x")]);
        let sel = select_with(Backend::Auto, &mpi).unwrap();
        if Backend::Mpi.is_available() {
            assert_eq!(sel.backend, Backend::Mpi);
            assert!(sel.reason.contains("PMI_RANK"));
        } else if Backend::Shm.is_available() {
            assert_eq!(sel.backend, Backend::Shm);
        } else {
            assert_eq!(sel.backend, Backend::Local);
            assert!(
                sel.reason.contains("`mpi` feature is not compiled in"),
                "{}",
                sel.reason
            );
        }
        let tcp = vars(&[("COBRE_TCP_COORDINATOR", "h"), ("COBRE_SHM_NAME", "/x")]);
        let expected = if Backend::Tcp.is_available() {
            Backend::Tcp
        } else if Backend::Shm.is_available() {
            Backend::Shm
        } else {
            Backend::Local
        };
        assert_eq!(select_with(Backend::Auto, &tcp).unwrap().backend, expected);
    }

    #[test]
    fn explicit_backend_not_compiled_is_not_available() {
        for kind in [Backend::Mpi, Backend::Tcp, Backend::Shm] {
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

    #[test]
    fn a_slurm_step_picks_tcp_or_mpi_and_never_runs_silent_copies() {
        let step = vars(&[
            ("SLURM_JOB_ID", "12"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "1"),
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_STEP_NODELIST", "n[1-2]"),
        ]);
        match select_with(Backend::Auto, &step) {
            Ok(sel) if Backend::Mpi.is_available() => assert_eq!(sel.backend, Backend::Mpi),
            Ok(sel) => {
                assert!(Backend::Tcp.is_available(), "{sel:?}");
                assert_eq!(sel.backend, Backend::Tcp);
                assert!(
                    sel.reason.contains("task 1 of 4 of Slurm step 12.0"),
                    "{}",
                    sel.reason
                );
            }
            Err(err) => {
                assert!(!Backend::Mpi.is_available() && !Backend::Tcp.is_available());
                let text = err.to_string();
                for needle in [
                    "srun (SLURM_STEP_NUM_TASKS=4)",
                    "one of 4 ranks",
                    "this binary has: local",
                    "--features tcp",
                    "independent single-process copies",
                ] {
                    assert!(text.contains(needle), "{needle:?} not in {text}");
                }
            }
        }
        // A batch script outside srun is one process.
        let batch = vars(&[
            ("SLURM_JOB_ID", "12"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "4"),
        ]);
        let sel = select_with(Backend::Auto, &batch).unwrap();
        assert!(
            matches!(sel.backend, Backend::Local | Backend::Mpi),
            "{sel:?}"
        );
        // Another launcher declaring several ranks, with no backend that can join it.
        let hydra = vars(&[("PMI_RANK", "0"), ("PMI_SIZE", "3")]);
        let result = select_with(Backend::Auto, &hydra);
        if Backend::Mpi.is_available() {
            assert_eq!(result.unwrap().backend, Backend::Mpi);
        } else {
            let text = result.unwrap_err().to_string();
            assert!(text.contains("mpiexec (PMI) (PMI_SIZE=3)"), "{text}");
        }
        // An explicit choice is honoured.
        assert_eq!(
            select_with(Backend::Local, &step).unwrap().backend,
            Backend::Local
        );
    }
}
