//! File descriptors: a tcp rank holds one connection per other rank, so a large job needs
//! more descriptors than many systems allow a process by default (a soft limit of 1024 is
//! common). Before joining, the rank raises its soft limit as far as the job needs (never
//! past the hard limit, which only an administrator can raise); when even the hard limit
//! is too low it stops with an error that names the limit and the fix, instead of failing
//! later with "too many open files" in the middle of the rendezvous.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::{MAX_PENDING_HANDSHAKES, failed};
use crate::types::BackendError;

/// Descriptors kept in reserve for the rest of the program (files, pipes, the log).
const RESERVE: u64 = 64;

/// The descriptors rank `rank` of a job of `size` ranks holds at most while joining, on
/// top of those already open: a connection per other rank, rank 0's connection to every
/// other rank (a follower's to rank 0), a listener, and the handshakes waiting in its
/// queue.
pub(super) fn needed_for_job(rank: usize, size: usize) -> u64 {
    let others = size.saturating_sub(1) as u64;
    let rendezvous = if rank == 0 { others } else { 1 };
    let pending = MAX_PENDING_HANDSHAKES.min(size) as u64;
    others + rendezvous + 1 + pending
}

/// The descriptors open in this process now (an estimate when `/proc` cannot be read).
fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(16, |dir| dir.count() as u64)
}

/// Makes sure this process may open what rank `rank` of a job of `size` ranks needs,
/// raising the soft limit when it is too low.
///
/// # Errors
/// [`BackendError::InitializationFailed`] naming the limit, what the job needs and how to
/// raise it, when the hard limit is too low.
pub(super) fn ensure(rank: usize, size: usize) -> Result<(), BackendError> {
    if size <= 1 {
        return Ok(());
    }
    let need = open_now() + needed_for_job(rank, size) + RESERVE;
    let limit = getrlimit(Resource::Nofile);
    let allows = |l: Option<u64>| l.is_none_or(|l| l >= need);
    if allows(limit.current) {
        return Ok(());
    }
    if allows(limit.maximum) {
        let raised = Rlimit {
            current: Some(need),
            maximum: limit.maximum,
        };
        return setrlimit(Resource::Nofile, raised).map_err(|e| {
            failed(format!(
                "rank {rank} of a tcp job of {size} ranks needs about {need} file descriptors; \
                 its soft limit is {} and raising it to {need} failed ({e}); raise it before \
                 starting the job (`ulimit -n {need}`)",
                show(limit.current)
            ))
        });
    }
    Err(failed(format!(
        "rank {rank} of a tcp job of {size} ranks needs about {need} file descriptors (one \
         connection per other rank, plus start-up), but this process may open at most {} \
         (hard limit of RLIMIT_NOFILE); raise it (`ulimit -Hn {need}` as root, `nofile` in \
         /etc/security/limits.conf, `LimitNOFILE=` for a service, or the batch system's \
         limits) or run fewer ranks",
        show(limit.maximum)
    )))
}

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".into(), |l| l.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_needs_a_connection_per_other_rank_and_more_on_rank_0() {
        assert_eq!(needed_for_job(3, 4), 3 + 1 + 1 + 4);
        assert_eq!(needed_for_job(0, 4), 3 + 3 + 1 + 4);
        let big = needed_for_job(5, 1024);
        assert!(big > 1023 && big < 1024 + 200, "{big}");
    }

    #[test]
    fn one_rank_needs_nothing() {
        assert!(ensure(0, 1).is_ok());
    }
}
