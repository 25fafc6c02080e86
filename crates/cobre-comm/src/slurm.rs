//! Slurm steps: what `srun` tells each task, read in one place.
//!
//! `srun` starts the tasks of a *step* and sets, in each, `SLURM_STEP_ID`, `SLURM_PROCID`
//! (the task's rank), `SLURM_STEP_NUM_TASKS` (the step's size) and `SLURM_STEP_NODELIST`
//! (its hosts in Slurm's compressed syntax, `node[01-04,07]`). A batch script outside
//! `srun` also sees `SLURM_PROCID=0` and `SLURM_NTASKS`, but those describe the allocation,
//! not a job of several processes: only a step (with `SLURM_STEP_ID`) declares ranks.
//!
//! With the `tcp` backend and no MPI, a step configures itself from these variables
//! (`TcpConfig::from_env`): rank and size from the step, the coordinator is the
//! step's first host (loopback when the step runs on one host), and the port is derived
//! from the job and step ids, so concurrent steps of one job never share a port.

use crate::env::Lookup;

/// The task's rank in the step.
pub const ENV_PROCID: &str = "SLURM_PROCID";
/// The step's number (absent in a batch script outside `srun`).
pub const ENV_STEP_ID: &str = "SLURM_STEP_ID";
/// The step's number of tasks.
pub const ENV_STEP_NUM_TASKS: &str = "SLURM_STEP_NUM_TASKS";
/// The allocation's number of tasks (older `srun` versions set only this in a step).
pub const ENV_NTASKS: &str = "SLURM_NTASKS";
/// The step's hosts, compressed.
pub const ENV_STEP_NODELIST: &str = "SLURM_STEP_NODELIST";
/// The allocation's hosts, compressed.
pub const ENV_JOB_NODELIST: &str = "SLURM_JOB_NODELIST";
/// The job's number.
pub const ENV_JOB_ID: &str = "SLURM_JOB_ID";
/// Every variable read here, for `cobre-comm info`.
pub const ENV_ALL: [&str; 7] = [
    ENV_JOB_ID,
    ENV_STEP_ID,
    ENV_PROCID,
    ENV_STEP_NUM_TASKS,
    ENV_NTASKS,
    ENV_STEP_NODELIST,
    ENV_JOB_NODELIST,
];

/// The first port a step's rank 0 may listen on (see [`SlurmStep::port`]).
pub const PORT_BASE: u16 = 20_000;
/// How many ports the derived port ranges over: `PORT_BASE..PORT_BASE + PORT_SPAN`, below
/// the kernel's ephemeral ports (32768 and up), so outgoing connections cannot take it.
pub const PORT_SPAN: u16 = 10_000;

/// The step this process is a task of.
///
/// # Example
/// ```
/// use cobre_comm::slurm::SlurmStep;
///
/// let vars = [
///     ("SLURM_JOB_ID", "4242"), ("SLURM_STEP_ID", "3"), ("SLURM_PROCID", "2"),
///     ("SLURM_STEP_NUM_TASKS", "8"), ("SLURM_STEP_NODELIST", "node[01-04]"),
/// ];
/// let lookup = |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
/// let step = SlurmStep::from_lookup(&lookup).unwrap().unwrap();
/// assert_eq!((step.rank, step.tasks), (2, 8));
/// assert_eq!(step.nodes, ["node01", "node02", "node03", "node04"]);
/// assert_eq!(step.coordinator(), "node01");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmStep {
    /// `SLURM_PROCID`.
    pub rank: usize,
    /// `SLURM_STEP_NUM_TASKS` (or `SLURM_NTASKS`).
    pub tasks: usize,
    /// The step's hosts, expanded, in Slurm's order (rank 0 runs on the first).
    pub nodes: Vec<String>,
    /// `SLURM_JOB_ID`.
    pub job_id: u64,
    /// `SLURM_STEP_ID`.
    pub step_id: u64,
}

impl SlurmStep {
    /// The step of the process environment, if this process is a task of one.
    ///
    /// # Errors
    /// As [`SlurmStep::from_lookup`].
    pub fn from_env() -> Option<Result<SlurmStep, String>> {
        Self::from_lookup(&crate::env::process_env)
    }

    /// The step described by `lookup`: `None` outside a step (no `SLURM_STEP_ID` or no
    /// `SLURM_PROCID`), an error naming the variable when a value cannot be used.
    ///
    /// # Errors
    /// A variable that is not a number, a node list that does not parse, or a rank outside
    /// the step.
    pub fn from_lookup(lookup: Lookup<'_>) -> Option<Result<SlurmStep, String>> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let step = get(ENV_STEP_ID)?;
        let rank = get(ENV_PROCID)?;
        Some(Self::parse(&get, &step, &rank))
    }

    fn parse(
        get: &dyn Fn(&str) -> Option<String>,
        step: &str,
        rank: &str,
    ) -> Result<SlurmStep, String> {
        let number = |name: &str, value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{name}={value:?} is not a number"))
        };
        let step_id = number(ENV_STEP_ID, step)?;
        let rank = number(ENV_PROCID, rank)? as usize;
        let (tasks_var, tasks) = match get(ENV_STEP_NUM_TASKS) {
            Some(v) => (ENV_STEP_NUM_TASKS, v),
            None => (
                ENV_NTASKS,
                get(ENV_NTASKS).ok_or_else(|| {
                    format!("a Slurm step ({ENV_STEP_ID}={step}) without {ENV_STEP_NUM_TASKS} or {ENV_NTASKS}")
                })?,
            ),
        };
        let tasks = number(tasks_var, &tasks)? as usize;
        if rank >= tasks {
            return Err(format!(
                "{ENV_PROCID}={rank} is not a task of a step of {tasks} ({tasks_var}={tasks})"
            ));
        }
        let job_id = get(ENV_JOB_ID).map_or(Ok(0), |v| number(ENV_JOB_ID, &v))?;
        let (list_var, list) = get(ENV_STEP_NODELIST)
            .map(|l| (ENV_STEP_NODELIST, l))
            .or_else(|| get(ENV_JOB_NODELIST).map(|l| (ENV_JOB_NODELIST, l)))
            .ok_or_else(|| {
                format!("a Slurm step without {ENV_STEP_NODELIST} or {ENV_JOB_NODELIST}")
            })?;
        let nodes = expand_hostlist(&list).map_err(|e| format!("{list_var}={list:?}: {e}"))?;
        Ok(SlurmStep {
            rank,
            tasks,
            nodes,
            job_id,
            step_id,
        })
    }

    /// The host of rank 0: the step's first host, or `127.0.0.1` when the whole step runs
    /// on one host (then nothing outside it can reach the job).
    pub fn coordinator(&self) -> &str {
        if self.nodes.len() <= 1 {
            "127.0.0.1"
        } else {
            &self.nodes[0]
        }
    }

    /// The port rank 0 listens on: `PORT_BASE + (job_id * 97 + step_id) % PORT_SPAN`.
    /// The steps of one job get different ports (up to `PORT_SPAN` steps).
    ///
    /// ```
    /// use cobre_comm::slurm::{SlurmStep, PORT_BASE};
    /// let step = |step_id| SlurmStep { rank: 0, tasks: 2, nodes: vec!["n1".into()], job_id: 7, step_id };
    /// assert_ne!(step(0).port(), step(1).port());
    /// assert!(step(5).port() >= PORT_BASE);
    /// ```
    pub fn port(&self) -> u16 {
        let offset =
            (self.job_id.wrapping_mul(97).wrapping_add(self.step_id)) % u64::from(PORT_SPAN);
        PORT_BASE + offset as u16
    }
}

/// The most host names a list may expand to (a bound on what a variable can allocate).
const MAX_HOSTS: usize = 1 << 20;

/// Expands Slurm's compressed host list (`node[01-04,07],login1`) into host names, as
/// `scontrol show hostnames` does: commas inside brackets separate ranges, a range keeps the
/// width of its first bound (`[0998-1002]` gives `0998` … `1002`), and several bracket groups
/// in one name multiply out, the first one outermost.
///
/// # Errors
/// A list that is not in the host-list syntax, or that names more than a million hosts.
///
/// # Example
/// ```
/// use cobre_comm::slurm::expand_hostlist;
/// assert_eq!(
///     expand_hostlist("node[01-03,07],gpu1").unwrap(),
///     ["node01", "node02", "node03", "node07", "gpu1"]
/// );
/// ```
pub fn expand_hostlist(list: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for item in split_top_level(list.trim())? {
        if item.is_empty() {
            return Err(format!("an empty name in {list:?}"));
        }
        let mut names = vec![String::new()];
        let mut rest = item;
        while !rest.is_empty() {
            let (text, group, after) = match rest.find('[') {
                Some(open) => {
                    let close = rest[open..]
                        .find(']')
                        .map(|c| open + c)
                        .ok_or_else(|| format!("an unclosed '[' in {item:?}"))?;
                    (
                        &rest[..open],
                        Some(&rest[open + 1..close]),
                        &rest[close + 1..],
                    )
                }
                None => (rest, None, ""),
            };
            if text.contains(']') {
                return Err(format!("a ']' without '[' in {item:?}"));
            }
            let suffixes = match group {
                Some(group) => expand_ranges(group).map_err(|e| format!("{e} in {item:?}"))?,
                None => vec![String::new()],
            };
            if names.len().saturating_mul(suffixes.len()) + hosts.len() > MAX_HOSTS {
                return Err(format!("more than {MAX_HOSTS} hosts in {list:?}"));
            }
            names = names
                .iter()
                .flat_map(|name| suffixes.iter().map(move |s| format!("{name}{text}{s}")))
                .collect();
            rest = after;
        }
        hosts.extend(names);
    }
    if hosts.is_empty() {
        return Err("an empty host list".into());
    }
    Ok(hosts)
}

/// Splits a host list at the commas outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0_u32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' if depth == 0 => depth = 1,
            '[' => return Err(format!("nested '[' in {list:?}")),
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    Ok(items)
}

/// The numbers of one bracket group (`01-04,07`), each with its range's width.
fn expand_ranges(group: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for range in group.split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{range:?} is not a number or a range of numbers"));
            }
            s.parse::<u64>().map_err(|_| format!("{s:?} is too large"))
        };
        let (first, last) = (number(lo)?, number(hi)?);
        if last < first {
            return Err(format!("the range {range:?} runs backwards"));
        }
        if last - first >= MAX_HOSTS as u64 {
            return Err(format!(
                "the range {range:?} names more than {MAX_HOSTS} hosts"
            ));
        }
        let width = lo.len();
        out.extend((first..=last).map(|n| format!("{n:0width$}")));
    }
    Ok(out)
}

/// The number of ranks a launcher declares for this process's job, with the variable that
/// says so: an `srun` step's task count, `PMI_SIZE` (MPICH's Hydra, Intel MPI), or
/// `OMPI_COMM_WORLD_SIZE` (Open MPI).
pub(crate) fn declared_ranks(lookup: Lookup<'_>) -> Option<(String, usize)> {
    if let Some(Ok(step)) = SlurmStep::from_lookup(lookup) {
        let var = if lookup(ENV_STEP_NUM_TASKS).is_some() {
            ENV_STEP_NUM_TASKS
        } else {
            ENV_NTASKS
        };
        return Some((format!("srun ({var}={})", step.tasks), step.tasks));
    }
    ["PMI_SIZE", "OMPI_COMM_WORLD_SIZE"]
        .iter()
        .find_map(|name| {
            let n: usize = lookup(name)?.trim().parse().ok()?;
            let launcher = if *name == "PMI_SIZE" {
                "mpiexec (PMI)"
            } else {
                "Open MPI's mpirun"
            };
            Some((format!("{launcher} ({name}={n})"), n))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn a_batch_script_outside_srun_is_not_a_step() {
        let lookup = lookup_of(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_JOB_ID", "9"),
        ]);
        assert_eq!(SlurmStep::from_lookup(&lookup), None);
        assert_eq!(declared_ranks(&lookup), None);
    }

    #[test]
    fn a_step_gives_rank_size_coordinator_and_port() {
        let lookup = lookup_of(&[
            ("SLURM_JOB_ID", "100"),
            ("SLURM_STEP_ID", "2"),
            ("SLURM_PROCID", "5"),
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_STEP_NODELIST", "cn[7-8]"),
            ("SLURM_JOB_NODELIST", "cn[7-10]"),
        ]);
        let step = SlurmStep::from_lookup(&lookup).unwrap().unwrap();
        assert_eq!(
            (step.rank, step.tasks, step.job_id, step.step_id),
            (5, 8, 100, 2)
        );
        assert_eq!(step.coordinator(), "cn7");
        assert_eq!(
            step.port(),
            PORT_BASE + ((100 * 97 + 2) % u64::from(PORT_SPAN)) as u16
        );
        assert_eq!(declared_ranks(&lookup).unwrap().1, 8);
    }

    #[test]
    fn a_step_on_one_host_uses_loopback() {
        let lookup = lookup_of(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_NODELIST", "vm"),
        ]);
        let step = SlurmStep::from_lookup(&lookup).unwrap().unwrap();
        assert_eq!(step.coordinator(), "127.0.0.1");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let lookup = lookup_of(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "4"),
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_STEP_NODELIST", "n1"),
        ]);
        let err = SlurmStep::from_lookup(&lookup).unwrap().unwrap_err();
        assert!(err.contains("SLURM_PROCID=4"), "{err}");
        let lookup = lookup_of(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "0"),
            ("SLURM_STEP_NUM_TASKS", "2"),
            ("SLURM_STEP_NODELIST", "n[1-"),
        ]);
        let err = SlurmStep::from_lookup(&lookup).unwrap().unwrap_err();
        assert!(err.contains("SLURM_STEP_NODELIST"), "{err}");
    }

    #[test]
    fn host_lists_expand_as_slurm_does() {
        for (list, expected) in [
            ("vm", vec!["vm"]),
            (
                "node[01-04,07]",
                vec!["node01", "node02", "node03", "node04", "node07"],
            ),
            ("n[8-11]", vec!["n8", "n9", "n10", "n11"]),
            (
                "rack[1-2]-n[1-2]",
                vec!["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"],
            ),
            (
                "a,b[3-4],c.example.org",
                vec!["a", "b3", "b4", "c.example.org"],
            ),
        ] {
            assert_eq!(expand_hostlist(list).unwrap(), expected, "{list}");
        }
    }

    #[test]
    fn mpi_launchers_declare_ranks() {
        let lookup = lookup_of(&[("PMI_SIZE", "4"), ("PMI_RANK", "1")]);
        let (what, n) = declared_ranks(&lookup).unwrap();
        assert_eq!(n, 4);
        assert!(what.contains("PMI_SIZE=4"), "{what}");
    }
}
