//! How many cores the node gives a job: the online CPUs, capped by a cgroup v2 CPU quota
//! (a container limited to two CPUs of a large machine has two). Not the affinity of this
//! process: launchers bind each rank to one core before it joins, and the job as a whole
//! may still have many.

use std::path::Path;
use std::time::Duration;

/// How long a waiting rank keeps polling before it sleeps, when the ranks of its node
/// fit its cores ([`ranks_fit`]); both backends wait this way. The rank waited for is
/// running, so its signal comes soon; a rank that sleeps instead lets its core go idle,
/// and a virtual machine's idle core is woken late, so the two ranks can go on waking
/// each other late. What it cost each backend is measured beside its waiting loop
/// (`shm/backoff.rs`, `tcp/transport.rs`).
pub(crate) const SPIN_WHILE_RANKS_FIT: Duration = Duration::from_millis(20);

/// Whether `ranks` ranks of one node each have one of its `cores`. Where they do not,
/// the rank a waiter waits for may need the waiter's core, and waiters poll only briefly.
pub(crate) fn ranks_fit(ranks: usize, cores: usize) -> bool {
    ranks <= cores
}

/// The cores of this node a job may use: its online CPUs, capped by a cgroup v2 CPU
/// quota (not this process's affinity, which a launcher may have narrowed to one core);
/// 1 when nothing can be read. The `shm` and `tcp` backends decide from it how
/// long their waiting ranks busy-poll (`shm::spin_before_yield`, `tcp::spin_before_sleep`).
///
/// ```
/// assert!(cobre_comm::node_cores() >= 1);
/// ```
#[must_use]
pub fn node_cores() -> usize {
    node_cores_in(Path::new("/"))
}

/// As [`node_cores`], reading the system files under `root` (for tests).
fn node_cores_in(root: &Path) -> usize {
    let read = |path: &str| std::fs::read_to_string(root.join(path)).ok();
    let online = read("sys/devices/system/cpu/online")
        .and_then(|text| cpu_list_len(&text))
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let quota = read("sys/fs/cgroup/cpu.max").and_then(|text| quota_cores(&text));
    quota.map_or(online, |q| q.min(online)).max(1)
}

/// The number of CPUs in a kernel CPU list such as `0-3,8-11` or `0`.
fn cpu_list_len(text: &str) -> Option<usize> {
    crate::topology::parse_cpu_list(text).map(|cpus| cpus.len())
}

/// The whole cores a cgroup v2 `cpu.max` (`<quota> <period>` or `max <period>`) allows,
/// rounded up; `None` for no limit.
fn quota_cores(text: &str) -> Option<usize> {
    let mut fields = text.split_whitespace();
    let quota: u64 = fields.next()?.parse().ok()?;
    let period: u64 = fields.next()?.parse().ok()?;
    (period > 0).then(|| usize::try_from(quota.div_ceil(period)).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(cpu_list_len("0-1\n"), Some(2));
        assert_eq!(cpu_list_len("0"), Some(1));
        assert_eq!(cpu_list_len("0-3,8-11"), Some(8));
        assert_eq!(cpu_list_len("0,2,4"), Some(3));
        assert_eq!(cpu_list_len("3-1"), None);
        assert_eq!(cpu_list_len(""), None);
        assert_eq!(cpu_list_len("a-b"), None);
    }

    #[test]
    fn cgroup_quotas_are_whole_cores() {
        assert_eq!(quota_cores("max 100000\n"), None);
        assert_eq!(quota_cores("200000 100000"), Some(2));
        assert_eq!(quota_cores("150000 100000"), Some(2));
        assert_eq!(quota_cores("50000 100000"), Some(1));
        assert_eq!(quota_cores("100000 0"), None);
        assert_eq!(quota_cores(""), None);
    }

    #[test]
    fn the_quota_caps_the_online_cpus() {
        let root = std::env::temp_dir().join(format!("cobre-cores-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sys/devices/system/cpu")).unwrap();
        std::fs::create_dir_all(root.join("sys/fs/cgroup")).unwrap();
        std::fs::write(root.join("sys/devices/system/cpu/online"), "0-63\n").unwrap();
        assert_eq!(node_cores_in(&root), 64);
        std::fs::write(root.join("sys/fs/cgroup/cpu.max"), "200000 100000\n").unwrap();
        assert_eq!(node_cores_in(&root), 2);
        std::fs::write(root.join("sys/fs/cgroup/cpu.max"), "max 100000\n").unwrap();
        assert_eq!(node_cores_in(&root), 64);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
