//! Where the ranks of a job run: [`ExecutionTopology`] (cobre-comm 0.18), gathered once when
//! a communicator starts and queryable afterwards through [`TopologyProvider`] without
//! further communication.
//!
//! Every backend fills it: `local` with this host, `shm` and `tcp` with the hostname of
//! every rank (an `allgatherv` at start-up), `mpi` from ferrompi's topology query
//! (`MPI_Get_processor_name` of every rank, the MPI library version and thread level).
//! [`ExecutionTopology::slurm`] is filled whenever `SLURM_JOB_ID` is set.
//!
//! [`ExecutionTopology::backend`] is a [`BackendKind`], whose variants are exactly 0.18's
//! (`Auto`, `Mpi`, `Local`), because programs written for 0.18 match on it exhaustively.
//! The `shm` and `tcp` backends have no variant there: their topology says
//! [`BackendKind::Auto`], the label 0.18 itself uses for a backend it has no name for, and
//! `mpi` is `None`. The exact backend is [`CommBackend::backend`](crate::CommBackend::backend)
//! (a [`Backend`](crate::Backend)).
//!
//! [`TopologyProvider`]: crate::TopologyProvider

use crate::factory::BackendKind;
use crate::traits::Communicator;
use crate::types::CommError;

/// The layout of a running job: backend, number of ranks, hosts and their ranks, MPI
/// library and Slurm job (cobre-comm 0.18).
///
/// # Example
/// ```
/// use cobre_comm::{BackendKind, ExecutionTopology, HostInfo, LocalBackend, TopologyProvider};
///
/// let topology = LocalBackend.topology();
/// assert_eq!(topology.backend, BackendKind::Local);
/// assert_eq!(topology.world_size, 1);
/// assert_eq!(topology.hosts[0].ranks, vec![0]);
///
/// let two_nodes = ExecutionTopology {
///     backend: BackendKind::Mpi,
///     world_size: 4,
///     hosts: vec![
///         HostInfo { hostname: "node-a".into(), ranks: vec![0, 1] },
///         HostInfo { hostname: "node-b".into(), ranks: vec![2, 3] },
///     ],
///     mpi: None,
///     slurm: None,
/// };
/// assert_eq!(two_nodes.num_hosts(), 2);
/// assert_eq!(two_nodes.leader_hostname(), "node-a");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionTopology {
    /// Which backend is active: `Local`, `Mpi`, or `Auto` for `shm` and `tcp` (see the
    /// [module documentation](self)).
    pub backend: BackendKind,
    /// Total number of ranks.
    pub world_size: usize,
    /// The hosts and their ranks, ordered by the first rank on each host.
    pub hosts: Vec<HostInfo>,
    /// MPI runtime metadata (`None` for the other backends).
    pub mpi: Option<MpiRuntimeInfo>,
    /// Slurm job metadata (`None` outside a Slurm job).
    pub slurm: Option<SlurmJobInfo>,
}

impl ExecutionTopology {
    /// Number of distinct hosts.
    ///
    /// ```
    /// use cobre_comm::{LocalBackend, TopologyProvider};
    /// assert_eq!(LocalBackend.topology().num_hosts(), 1);
    /// ```
    pub fn num_hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Hostname of the first (or only) host; `"unknown"` when the host list is empty.
    ///
    /// ```
    /// use cobre_comm::{LocalBackend, TopologyProvider};
    /// assert!(!LocalBackend.topology().leader_hostname().is_empty());
    /// ```
    pub fn leader_hostname(&self) -> &str {
        self.hosts
            .first()
            .map_or("unknown", |h| h.hostname.as_str())
    }
}

/// One host and the global ranks that run on it.
///
/// ```
/// let host = cobre_comm::HostInfo { hostname: "node-a".into(), ranks: vec![0, 1] };
/// assert_eq!(host.ranks.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Hostname as reported by the backend (`MPI_Get_processor_name`, or the OS).
    pub hostname: String,
    /// Sorted global ranks on this host.
    pub ranks: Vec<usize>,
}

/// MPI runtime metadata.
///
/// ```
/// let info = cobre_comm::MpiRuntimeInfo {
///     library_version: "MPICH Version: 4.0.2".into(),
///     standard_version: "MPI 4.0".into(),
///     thread_level: "Funneled".into(),
/// };
/// assert!(info.library_version.starts_with("MPICH"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpiRuntimeInfo {
    /// Implementation version, e.g. `"Open MPI v4.1.6"`.
    pub library_version: String,
    /// Standard version, e.g. `"MPI 4.0"`.
    pub standard_version: String,
    /// Negotiated thread level, e.g. `"Funneled"`.
    pub thread_level: String,
}

/// Slurm job metadata, read from `SLURM_JOB_ID`, `SLURM_JOB_NODELIST` and
/// `SLURM_CPUS_PER_TASK`.
///
/// ```
/// let info = cobre_comm::SlurmJobInfo {
///     job_id: "123456".into(),
///     node_list: Some("compute-[01-04]".into()),
///     cpus_per_task: Some(8),
/// };
/// assert_eq!(info.cpus_per_task, Some(8));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmJobInfo {
    /// `SLURM_JOB_ID`.
    pub job_id: String,
    /// Compact node list, e.g. `"compute-[01-04]"`.
    pub node_list: Option<String>,
    /// CPUs allocated per task.
    pub cpus_per_task: Option<u32>,
}

/// The Slurm job this process belongs to, when `SLURM_JOB_ID` is set.
pub(crate) fn slurm_from_env() -> Option<SlurmJobInfo> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let job_id = var("SLURM_JOB_ID")?;
    Some(SlurmJobInfo {
        job_id,
        node_list: var("SLURM_JOB_NODELIST").or_else(|| var("SLURM_NODELIST")),
        cpus_per_task: var("SLURM_CPUS_PER_TASK").and_then(|v| v.parse().ok()),
    })
}

/// This machine's hostname, `"localhost"` when the OS does not say.
pub(crate) fn this_hostname() -> String {
    // Miri's `uname` leaves part of its buffer uninitialised, which it then reports as
    // undefined behaviour in the caller: the tests that run under it have one host anyway.
    if cfg!(miri) {
        return "localhost".to_string();
    }
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// Groups ranks by hostname, hosts ordered by their first rank.
pub(crate) fn hosts_from_names(names: &[String]) -> Vec<HostInfo> {
    let mut hosts: Vec<HostInfo> = Vec::new();
    for (rank, name) in names.iter().enumerate() {
        match hosts.iter_mut().find(|h| &h.hostname == name) {
            Some(host) => host.ranks.push(rank),
            None => hosts.push(HostInfo {
                hostname: name.clone(),
                ranks: vec![rank],
            }),
        }
    }
    hosts
}

/// The topology of a single process on this host.
pub(crate) fn single_process(backend: BackendKind) -> ExecutionTopology {
    ExecutionTopology {
        backend,
        world_size: 1,
        hosts: hosts_from_names(&[this_hostname()]),
        mpi: None,
        slurm: slurm_from_env(),
    }
}

/// Gathers every rank's hostname through `comm` (two `allgatherv`s; collective) and builds
/// the topology. Used by the backends at start-up.
#[cfg_attr(not(feature = "tcp"), allow(dead_code))]
pub(crate) fn gather<C: Communicator>(
    comm: &C,
    backend: BackendKind,
) -> Result<ExecutionTopology, CommError> {
    let size = comm.size();
    let mine = this_hostname().into_bytes();
    let ones = vec![1_usize; size];
    let index: Vec<usize> = (0..size).collect();
    let mut lengths = vec![0_u64; size];
    comm.allgatherv(&[mine.len() as u64], &mut lengths, &ones, &index)?;
    let counts: Vec<usize> = lengths.iter().map(|&l| l as usize).collect();
    let displs = crate::prefix_displs(&counts);
    let mut bytes = vec![0_u8; counts.iter().sum()];
    comm.allgatherv(&mine, &mut bytes, &counts, &displs)?;
    let names: Vec<String> = counts
        .iter()
        .zip(&displs)
        .map(|(&c, &d)| String::from_utf8_lossy(&bytes[d..d + c]).into_owned())
        .collect();
    Ok(ExecutionTopology {
        backend,
        world_size: size,
        hosts: hosts_from_names(&names),
        mpi: None,
        slurm: slurm_from_env(),
    })
}

/// The most CPUs one range of a CPU list may name (far above any machine's count): a
/// larger one is taken for garbage rather than expanded.
const MAX_CPU_RANGE: usize = 1 << 16;

/// The CPUs of a kernel CPU list (`0-3,8-11`, `0,64`; the format of
/// `/sys/devices/system/cpu/online` and `topology/thread_siblings_list`), ascending and
/// without repeats; `None` when it is malformed or empty.
///
/// ```
/// use cobre_comm::topology::parse_cpu_list;
/// assert_eq!(parse_cpu_list("0-3,8\n"), Some(vec![0, 1, 2, 3, 8]));
/// assert_eq!(parse_cpu_list("64,0"), Some(vec![0, 64]));
/// assert_eq!(parse_cpu_list("3-1"), None);
/// ```
#[must_use]
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let (low, high): (usize, usize) = (low.parse().ok()?, high.parse().ok()?);
        if high.checked_sub(low)? >= MAX_CPU_RANGE {
            return None;
        }
        cpus.extend(low..=high);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_group_by_name_in_first_rank_order() {
        let names: Vec<String> = ["b", "a", "b", "a", "c"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let hosts = hosts_from_names(&names);
        let view: Vec<(&str, Vec<usize>)> = hosts
            .iter()
            .map(|h| (h.hostname.as_str(), h.ranks.clone()))
            .collect();
        assert_eq!(
            view,
            vec![("b", vec![0, 2]), ("a", vec![1, 3]), ("c", vec![4])]
        );
    }

    #[test]
    fn gather_on_one_rank_names_this_host() {
        let topology = gather(&crate::LocalBackend, BackendKind::Local).unwrap();
        assert_eq!(topology.world_size, 1);
        assert_eq!(
            topology.hosts,
            vec![HostInfo {
                hostname: this_hostname(),
                ranks: vec![0]
            }]
        );
        assert_eq!(topology.leader_hostname(), this_hostname());
        let empty = ExecutionTopology {
            hosts: vec![],
            ..topology
        };
        assert_eq!(empty.leader_hostname(), "unknown");
    }
}
