//! Binding ranks to CPUs: [`Binding`], and the order in which a job's ranks take the CPUs
//! the launcher may use.

use std::io;
use std::path::Path;

use cobre_comm::topology::parse_cpu_list;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// Where the launcher places its ranks ([`crate::Launcher::bind`]).
///
/// ```
/// use cobre_comm_launcher::{Binding, Launcher};
///
/// let report = Launcher::new("true").ranks(2).bind(Binding::Cores).run().unwrap();
/// assert!(report.success());
/// assert_eq!(Binding::default(), Binding::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Binding {
    /// The scheduler places the ranks and may move them.
    #[default]
    None,
    /// Each rank on a CPU of its own, as `mpiexec --bind-to core` does: rank `r` on the
    /// `r`-th of the CPUs the launcher may use (its own affinity), one per physical core
    /// before the second hardware thread of any. When the ranks are a multiple of those
    /// CPUs, rank `r` goes on the CPU of rank `r mod cpus`, the same number on each (4
    /// ranks on 2 CPUs, 1 MiB shm allgatherv, six jobs each: 276-320 us bound against
    /// 264-414 left to the scheduler, `docs/perf/bind-shared-cpus.txt`). Otherwise, when the
    /// ranks outnumber the CPUs, nothing is bound: some CPU would get more ranks than
    /// another, and the scheduler balances them.
    ///
    /// Two ranks that talk through loopback or shared memory and are left to the
    /// scheduler are often moved onto one CPU, the waker's, and then take turns instead
    /// of running side by side.
    Cores,
}

/// Whether [`Binding::Cores`] binds `ranks` ranks on `cpus` CPUs: when each gets a CPU of
/// its own, or every CPU the same number of ranks.
pub(crate) fn fits(ranks: usize, cpus: usize) -> bool {
    cpus > 0 && (ranks <= cpus || ranks.is_multiple_of(cpus))
}

/// The CPUs this process may use, in the order ranks take them: the first hardware
/// thread of every core, then the second, and so on (each group by CPU number). `None`
/// when the affinity cannot be read.
pub(crate) fn cpu_order() -> Option<Vec<usize>> {
    let allowed = sched_getaffinity(None).ok()?;
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    Some(order_by_thread(&cpus, |cpu| {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
        std::fs::read_to_string(Path::new(&path)).ok()
    }))
}

/// `cpus` sorted by their index among their core's hardware threads (`siblings(cpu)`, a
/// kernel CPU list such as `0,64` or `0-1`; index 0 when unknown), then by number.
fn order_by_thread(cpus: &[usize], siblings: impl Fn(usize) -> Option<String>) -> Vec<usize> {
    let mut keyed: Vec<(usize, usize)> = cpus
        .iter()
        .map(|&cpu| {
            let index = siblings(cpu)
                .and_then(|list| parse_cpu_list(&list))
                .and_then(|list| list.iter().position(|&c| c == cpu))
                .unwrap_or(0);
            (index, cpu)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, cpu)| cpu).collect()
}

/// Runs `spawn` with the calling thread bound to `cpu`, so that the process it starts
/// inherits that binding from its first instruction, then gives the thread back its own
/// affinity. When the binding cannot be set, `spawn` runs unbound and the error is
/// returned beside its result.
pub(crate) fn spawn_bound<T>(cpu: usize, spawn: impl FnOnce() -> T) -> (T, Option<io::Error>) {
    let own = match sched_getaffinity(None) {
        Ok(own) => own,
        Err(e) => return (spawn(), Some(e.into())),
    };
    let mut one = CpuSet::new();
    one.set(cpu);
    if let Err(e) = sched_setaffinity(None, &one) {
        return (spawn(), Some(e.into()));
    }
    let result = spawn();
    // The thread had this affinity a moment ago: setting it back cannot be refused.
    let _ = sched_setaffinity(None, &own);
    (result, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_bound_when_each_cpu_gets_as_many() {
        assert!(fits(1, 2) && fits(2, 2));
        assert!(fits(4, 2) && fits(6, 2) && fits(8, 4));
        assert!(!fits(3, 2) && !fits(6, 4));
        assert!(!fits(1, 0));
    }

    #[test]
    fn ranks_take_one_thread_of_every_core_first() {
        // Two cores of two threads: CPUs 0 and 2 on core 0, 1 and 3 on core 1.
        let siblings =
            |cpu: usize| Some(if cpu.is_multiple_of(2) { "0,2" } else { "1,3" }.to_string());
        assert_eq!(order_by_thread(&[0, 1, 2, 3], siblings), [0, 1, 2, 3]);
        // Threads numbered next to each other: 0-1 on core 0, 2-3 on core 1.
        let adjacent = |cpu: usize| Some(if cpu < 2 { "0-1" } else { "2-3" }.to_string());
        assert_eq!(order_by_thread(&[0, 1, 2, 3], adjacent), [0, 2, 1, 3]);
        // Unknown topology: by number.
        assert_eq!(order_by_thread(&[5, 1], |_| None), [1, 5]);
    }

    #[test]
    fn a_spawned_process_inherits_the_binding_and_the_thread_gets_its_own_back() {
        let order = cpu_order().expect("affinity readable");
        let cpu = *order.last().expect("at least one CPU");
        let before = sched_getaffinity(None).unwrap();
        let (child, err) = spawn_bound(cpu, || {
            std::process::Command::new("sh")
                .args(["-c", "grep Cpus_allowed_list /proc/self/status"])
                .output()
                .unwrap()
        });
        assert!(err.is_none(), "{err:?}");
        let text = String::from_utf8_lossy(&child.stdout);
        assert_eq!(
            text.split_whitespace().nth(1),
            Some(cpu.to_string().as_str()),
            "{text}"
        );
        let after = sched_getaffinity(None).unwrap();
        assert!((0..CpuSet::MAX_CPU).all(|c| before.is_set(c) == after.is_set(c)));
    }
}
