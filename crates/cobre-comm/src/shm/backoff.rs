//! How a waiting rank spends its time before it sleeps on the futex: spinning, then
//! yielding its core. Kept apart from the futex and the liveness checks (`exchange.rs`),
//! which take over when this gives up.

/// Polls before yielding, when every rank has a core: the rank waited for is running, and
/// its signal arrives within a cache-line transfer (2 ranks on 2 cores: 0.18 us barrier).
const SPINS: u32 = 100;
/// Yields before sleeping. Yielding early keeps ranks that outnumber the cores fast: the
/// rank being waited for gets the core (measured: 8 B allreduce at 4 ranks on 2 cores,
/// 72 us with 2000 spins and 50 yields, 4.4 us with 100 and 5000).
const YIELDS: u32 = 5000;

/// A waiter's spin-then-yield policy, fixed for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    spins: u32,
    yields: u32,
}

impl Backoff {
    /// The policy for a job of `size` ranks on a node that gives it `cores` cores. When
    /// the ranks outnumber the cores a waiter yields at once: the rank it waits for may
    /// be waiting for this core, and every spin delays it (measured, 4 ranks on 2 cores,
    /// interleaved: barrier 2.9-5.6 us with spins first, 1.5-2.6 us without).
    pub(crate) fn for_job(size: usize, cores: usize) -> Backoff {
        Backoff {
            spins: if size > cores { 0 } else { SPINS },
            yields: YIELDS,
        }
    }

    /// Polls `done` (spinning, then yielding) until it holds, or until this policy gives
    /// up; returns whether it holds.
    pub(crate) fn poll(self, done: impl Fn() -> bool) -> bool {
        for _ in 0..self.spins {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        for _ in 0..self.yields {
            if done() {
                return true;
            }
            std::thread::yield_now();
        }
        done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn ranks_that_outnumber_the_cores_do_not_spin() {
        assert_eq!(Backoff::for_job(2, 2).spins, SPINS);
        assert_eq!(Backoff::for_job(3, 2).spins, 0);
        assert_eq!(Backoff::for_job(3, 2).yields, YIELDS);
    }

    #[test]
    fn polling_stops_when_done_or_after_every_try() {
        let polls = Cell::new(0_u32);
        let count = || {
            polls.set(polls.get() + 1);
            false
        };
        let policy = Backoff {
            spins: 3,
            yields: 2,
        };
        assert!(!policy.poll(count));
        assert_eq!(polls.get(), 3 + 2 + 1);
        polls.set(0);
        assert!(policy.poll(|| {
            polls.set(polls.get() + 1);
            polls.get() == 4
        }));
        assert_eq!(polls.get(), 4);
    }
}
