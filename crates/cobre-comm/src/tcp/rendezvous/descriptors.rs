//! File descriptors: a tcp rank starts with a connection per neighbour (`O(log p)`, see
//! `tcp/neighbours.rs`), rank 0 with one per rank while the job forms, and any rank may
//! later open one to every other rank (the large allreduce, and the large broadcast below
//! 256 ranks, talk to everyone). A soft limit of 1024 descriptors per process is common;
//! before joining, the rank raises its soft limit as far as a connection to every rank
//! would need (never past the hard limit, which only an administrator can raise). When even the hard limit is
//! below what the start-up needs it stops at once with an error that names the limit and
//! the fix; when a connection opened later finds no descriptor left, the collective fails
//! with the same advice instead of "too many open files".

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::{MAX_PENDING_HANDSHAKES, failed};
use crate::tcp::neighbours::neighbours;
use crate::types::BackendError;

/// Descriptors kept in reserve for the rest of the program (files, pipes, the log).
const RESERVE: u64 = 64;

/// The descriptors rank `rank` of a job of `size` ranks holds at most while joining, on
/// top of those already open: a connection per neighbour, rank 0's connection to every
/// other rank (a follower's to rank 0), a listener, and the handshakes waiting in its
/// queue.
pub(super) fn needed_to_start(rank: usize, size: usize) -> u64 {
    let rendezvous = if rank == 0 { size - 1 } else { 1 };
    let pending = MAX_PENDING_HANDSHAKES.min(size) as u64;
    (neighbours(rank, size).len() + rendezvous) as u64 + 1 + pending
}

/// The descriptors rank `rank` holds at most once it is connected to every other rank.
pub(super) fn needed_for_every_rank(rank: usize, size: usize) -> u64 {
    needed_to_start(rank, size).max(size as u64 - 1 + 1 + MAX_PENDING_HANDSHAKES.min(size) as u64)
}

/// The descriptors open in this process now (an estimate when `/proc` cannot be read).
fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(16, |dir| dir.count() as u64)
}

/// Makes sure this process may open what rank `rank` of a job of `size` ranks needs to
/// start, raising the soft limit towards what a connection to every rank needs.
///
/// # Errors
/// [`BackendError::InitializationFailed`] naming the limit, what the job needs and how to
/// raise it, when the hard limit is below what the start-up needs.
pub(super) fn ensure(rank: usize, size: usize) -> Result<(), BackendError> {
    if size <= 1 {
        return Ok(());
    }
    let open = open_now();
    let need = open + needed_to_start(rank, size) + RESERVE;
    let want = open + needed_for_every_rank(rank, size) + RESERVE;
    let limit = getrlimit(Resource::Nofile);
    let allows = |l: Option<u64>, n: u64| l.is_none_or(|l| l >= n);
    if allows(limit.current, want) {
        return Ok(());
    }
    if !allows(limit.maximum, need) {
        return Err(failed(format!(
            "rank {rank} of a tcp job of {size} ranks needs about {need} file descriptors to \
             start (a connection per neighbour{}, plus start-up), but this process may open \
             at most {} (hard limit of RLIMIT_NOFILE); raise it (`ulimit -Hn {want}` as root, \
             `nofile` in /etc/security/limits.conf, `LimitNOFILE=` for a service, or the \
             batch system's limits) or run fewer ranks",
            if rank == 0 { " and to every rank" } else { "" },
            show(limit.maximum)
        )));
    }
    let target = limit.maximum.map_or(want, |hard| hard.min(want));
    if allows(limit.current, target) {
        return Ok(());
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).map_err(|e| {
        failed(format!(
            "rank {rank} of a tcp job of {size} ranks needs about {need} file descriptors; \
             its soft limit is {} and raising it to {target} failed ({e}); raise it before \
             starting the job (`ulimit -n {want}`)",
            show(limit.current)
        ))
    })
}

/// The error of a rank that needs one more connection (`doing`) but has no descriptor
/// left.
pub(super) fn exhausted(rank: usize, size: usize, doing: &str) -> String {
    let limit = getrlimit(Resource::Nofile);
    // What is open cannot be counted now (that needs a descriptor): the job may need a
    // connection per rank on top of what the soft limit allows.
    let want = limit.current.map_or(0, |soft| soft + size as u64 + RESERVE);
    format!(
        "rank {rank} of a tcp job of {size} ranks cannot {doing}: this process has no file \
         descriptor left (RLIMIT_NOFILE: soft limit {}, hard limit {}); a rank holds a \
         connection to every other rank once a large allreduce (or, below 256 ranks, a large \
         broadcast) has run: raise the limit to about {want} (`ulimit -n {want}`, `ulimit -Hn {want}` as \
         root, `nofile` in /etc/security/limits.conf, `LimitNOFILE=`), run fewer ranks, or \
         keep every message between neighbours with \
         `COBRE_TCP_ALGORITHMS=allreduce=ring,broadcast=scatter-bruck`",
        show(limit.current),
        show(limit.maximum)
    )
}

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".into(), |l| l.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_starts_with_a_connection_per_neighbour_and_more_on_rank_0() {
        assert_eq!(needed_to_start(3, 4), 3 + 1 + 1 + 4);
        assert_eq!(needed_to_start(0, 4), 3 + 3 + 1 + 4);
        let follower = needed_to_start(5, 1024);
        assert_eq!(follower, 19 + 1 + 1 + MAX_PENDING_HANDSHAKES as u64);
        let coordinator = needed_to_start(0, 1024);
        assert!(coordinator > 1023 + 19, "{coordinator}");
        let everyone = needed_for_every_rank(5, 1024);
        assert!(everyone > 1023 && everyone < 1024 + 200, "{everyone}");
    }

    #[test]
    fn one_rank_needs_nothing() {
        assert!(ensure(0, 1).is_ok());
    }

    #[test]
    fn the_exhausted_message_names_the_limit_and_the_fix() {
        let text = exhausted(3, 2000, "connect to rank 9");
        assert!(text.contains("rank 3 of a tcp job of 2000 ranks cannot connect to rank 9"));
        assert!(
            text.contains("RLIMIT_NOFILE")
                && text.contains("ulimit -n")
                && text.contains("allreduce=ring"),
            "{text}"
        );
    }
}
