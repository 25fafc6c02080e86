//! The access rule of node-shared regions, enforced across processes.
//!
//! A region's life is a sequence of *epochs* separated by its collective `fence`s. In each
//! epoch, either the leader writes (and nobody else touches the region), or any ranks
//! read (and nobody writes): whichever comes first in the epoch claims it, in a word of
//! the shared memory itself, and the other kind of access panics with a message naming
//! the rule. So safe code cannot race across processes: a follower never writes, the
//! leader never writes while another rank may be reading, and a follower never reads
//! while the leader may be writing. The leader's own reads are not claims (within one
//! process the borrow checker already orders them).
//!
//! The usual pattern claims epochs in turn: allocate (epoch 0), the leader writes,
//! `fence` (epoch 1), everyone reads; to rewrite, `fence` (epoch 2), the leader writes,
//! `fence` (epoch 3), everyone reads.

use std::sync::atomic::{AtomicU64, Ordering};

/// A claim in the shared word: `epoch << 2 | mode`.
const READERS: u64 = 1;
const WRITER: u64 = 2;

/// This process's side of a region's access rule.
#[derive(Debug)]
pub(crate) struct AccessRule {
    leader: bool,
    rank: usize,
    /// Fences this process has completed on the region: the current epoch.
    epoch: AtomicU64,
}

impl AccessRule {
    pub(crate) fn new(leader: bool, rank: usize) -> AccessRule {
        AccessRule {
            leader,
            rank,
            epoch: AtomicU64::new(0),
        }
    }

    /// Claims the current epoch for `mode` in `word`, or says who holds it.
    fn claim(&self, word: &AtomicU64, mode: u64) -> Result<(), u64> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let mine = epoch << 2 | mode;
        let mut seen = word.load(Ordering::Acquire);
        loop {
            if seen == mine {
                return Ok(());
            }
            // A claim of an earlier epoch is over: every rank has fenced since.
            if seen >> 2 == epoch && seen & 3 != 0 {
                return Err(seen & 3);
            }
            match word.compare_exchange(seen, mine, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => seen = now,
            }
        }
    }

    /// Checks a read of the region by this process.
    ///
    /// # Panics
    /// When this rank is a follower and the leader writes in this epoch.
    pub(crate) fn read(&self, word: &AtomicU64) {
        if self.leader {
            return;
        }
        assert!(
            self.claim(word, READERS).is_ok(),
            "shared region: rank {} (a follower) read the region while the leader may be writing it \
                 (the leader wrote since the last fence, epoch {}): followers read only after the fence that \
                 follows the leader's writes",
            self.rank,
            self.epoch.load(Ordering::Acquire)
        );
    }

    /// Checks a write of the region by this process.
    ///
    /// # Panics
    /// When this rank is a follower, or another rank reads in this epoch.
    pub(crate) fn write(&self, word: &AtomicU64) {
        assert!(
            self.leader,
            "shared region: rank {} is not the node's leader, and only the leader writes a shared region \
             (check is_leader() before as_mut_slice())",
            self.rank
        );
        assert!(
            self.claim(word, WRITER).is_ok(),
            "shared region: the leader (rank {}) wrote the region while other ranks may be reading it \
                 (they read since the last fence, epoch {}): call fence() on every rank before writing again",
            self.rank,
            self.epoch.load(Ordering::Acquire)
        );
    }

    /// Records a completed fence: a new epoch begins.
    pub(crate) fn fenced(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics(f: impl FnOnce()) -> String {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let payload = result.expect_err("expected a panic");
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn epochs_alternate_between_the_leader_writing_and_everyone_reading() {
        let word = AtomicU64::new(0);
        let leader = AccessRule::new(true, 0);
        let follower = AccessRule::new(false, 1);
        // Epoch 0: everyone reads the zeros.
        follower.read(&word);
        leader.read(&word);
        let text = panics(|| leader.write(&word));
        assert!(text.contains("may be reading"), "{text}");
        leader.fenced();
        follower.fenced();
        // Epoch 1: the leader writes, reads its own writes; a follower may not read.
        leader.write(&word);
        leader.read(&word);
        let text = panics(|| follower.read(&word));
        assert!(text.contains("may be writing"), "{text}");
        leader.fenced();
        follower.fenced();
        // Epoch 2: reads again.
        follower.read(&word);
        follower.read(&word);
    }

    #[test]
    fn the_leader_may_write_first() {
        let word = AtomicU64::new(0);
        let leader = AccessRule::new(true, 0);
        leader.write(&word);
        let text = panics(|| AccessRule::new(false, 1).read(&word));
        assert!(text.contains("rank 1"), "{text}");
    }

    #[test]
    fn a_follower_never_writes() {
        let word = AtomicU64::new(0);
        let text = panics(|| AccessRule::new(false, 3).write(&word));
        assert!(text.contains("rank 3 is not the node's leader"), "{text}");
    }
}
