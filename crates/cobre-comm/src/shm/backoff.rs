//! How a waiting rank spends its time before it sleeps on the futex: spinning, then
//! yielding its core. Kept apart from the futex and the liveness checks (`exchange.rs`),
//! which take over when this gives up.

use std::time::{Duration, Instant};

use crate::cores::{SPIN_WHILE_RANKS_FIT, ranks_fit};

/// Spins between looks at the clock (about 11 us here): a wait that ends sooner, as
/// most do, never reads it.
const SPINS_PER_LOOK: u32 = 256;
/// Yields before sleeping. Yielding early keeps ranks that outnumber the cores fast: the
/// rank being waited for gets the core (measured: 8 B allreduce at 4 ranks on 2 cores,
/// 72 us with 2000 spins and 50 yields, 4.4 us with 100 and 5000).
const YIELDS: u32 = 5000;
/// The longest the yields may go on, however few of them were made (counted from the
/// first look at the clock, [`YIELDS_PER_LOOK`] yields in: a wait that ends within them,
/// as most do, never reads it). On an idle node 5000
/// yields take a few milliseconds; on one loaded with other work each can give the core
/// away for a whole time slice, and 5000 of them took 2.4 s in a test run beside a
/// compiler: seconds in which the waiter neither sleeps nor checks its peers' processes,
/// so a dead peer went unreported for that long. Past this the waiter sleeps on the
/// futex, where it checks them.
const YIELD_FOR: Duration = Duration::from_millis(10);
/// Yields between looks at the clock (a look costs about a tenth of a yield).
const YIELDS_PER_LOOK: u32 = 16;

/// A waiter's spin-then-yield policy, fixed for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    spin_for: Duration,
    yields: u32,
}

impl Backoff {
    /// The policy for a job of `size` ranks on a node that gives it `cores` cores. When
    /// the ranks outnumber the cores a waiter yields at once: the rank it waits for may
    /// be waiting for this core, and every spin delays it (measured, 4 ranks on 2 cores,
    /// interleaved: barrier 2.9-5.6 us with spins first, 1.5-2.6 us without).
    ///
    /// When every rank has a core, a waiter spins for [`SPIN_WHILE_RANKS_FIT`]: the rank
    /// waited for is running, and its signal arrives within a cache-line transfer (2 ranks
    /// on 2 cores: 0.18 us barrier) or, in a large transfer, within a piece's copy.
    /// Measured in a noisy spell on the reference machine (a guest with up to 25% of its
    /// time taken by the host), 2 ranks, 16 MiB broadcast, avg us over six or four jobs
    /// each: 100 spins (about 5 us) 3779-15174, 20000 (about 1 ms) 3794-11225, spinning
    /// without end 3563-5064, Intel MPI's busy-polling ranks 4286-6814
    /// (`docs/perf/shm-spinning.txt`).
    pub(crate) fn for_job(size: usize, cores: usize) -> Backoff {
        Backoff {
            spin_for: if ranks_fit(size, cores) {
                SPIN_WHILE_RANKS_FIT
            } else {
                Duration::ZERO
            },
            yields: YIELDS,
        }
    }

    /// How long a waiter spins before it starts yielding.
    pub(crate) fn spin_for(self) -> Duration {
        self.spin_for
    }

    /// Polls `done` (spinning, then yielding) until it holds, or until this policy gives
    /// up (its time spent spinning, then its count of yields made or [`YIELD_FOR`] spent
    /// yielding); returns whether it holds.
    pub(crate) fn poll(self, done: impl Fn() -> bool) -> bool {
        if !self.spin_for.is_zero() {
            let mut until = None;
            for i in 0_u32.. {
                if done() {
                    return true;
                }
                std::hint::spin_loop();
                if i % SPINS_PER_LOOK == SPINS_PER_LOOK - 1 {
                    let now = Instant::now();
                    if now >= *until.get_or_insert(now + self.spin_for) {
                        break;
                    }
                }
            }
        }
        let mut until = None;
        for i in 0..self.yields {
            if done() {
                return true;
            }
            std::thread::yield_now();
            if i % YIELDS_PER_LOOK == YIELDS_PER_LOOK - 1 {
                let now = Instant::now();
                if now >= *until.get_or_insert(now + YIELD_FOR) {
                    break;
                }
            }
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
        assert_eq!(Backoff::for_job(2, 2).spin_for, SPIN_WHILE_RANKS_FIT);
        assert_eq!(Backoff::for_job(3, 2).spin_for, Duration::ZERO);
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
            spin_for: Duration::ZERO,
            yields: 2,
        };
        assert!(!policy.poll(count));
        assert_eq!(polls.get(), 2 + 1);
        polls.set(0);
        assert!(policy.poll(|| {
            polls.set(polls.get() + 1);
            polls.get() == 2
        }));
        assert_eq!(polls.get(), 2);
    }

    /// Spinning ends at its time limit, then the yields follow.
    #[test]
    fn spinning_stops_at_its_time_limit() {
        let polls = Cell::new(0_u32);
        let policy = Backoff {
            spin_for: Duration::from_millis(2),
            yields: 3,
        };
        let start = Instant::now();
        assert!(!policy.poll(|| {
            polls.set(polls.get() + 1);
            false
        }));
        assert!(start.elapsed() >= Duration::from_millis(2));
        // At least one round of spins before the first look at the clock, then the
        // yields and the last look.
        assert!(polls.get() > SPINS_PER_LOOK + 3, "{} polls", polls.get());
        polls.set(0);
        assert!(policy.poll(|| {
            polls.set(polls.get() + 1);
            polls.get() == 10
        }));
        assert_eq!(polls.get(), 10);
    }

    /// On a loaded node each yield can take a time slice: the yields stop at their time
    /// limit, not at their count, so the waiter goes on to sleep and check its peers.
    #[test]
    fn slow_yields_stop_at_the_time_limit() {
        let polls = Cell::new(0_u32);
        let slow = || {
            polls.set(polls.get() + 1);
            // What a yield to a busy core costs (a time slice), in the poll instead.
            std::thread::sleep(Duration::from_millis(1));
            false
        };
        let policy = Backoff {
            spin_for: Duration::ZERO,
            yields: YIELDS,
        };
        assert!(!policy.poll(slow));
        // 1 ms a poll: about 10 within the limit, and at most one round of looks more
        // (the first look starts the clock). The count would have been 5001.
        assert!(
            polls.get() <= 2 * YIELDS_PER_LOOK + 1 + YIELD_FOR.as_millis() as u32,
            "{} polls",
            polls.get()
        );
    }
}
