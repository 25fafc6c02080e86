//! Where things are in the job's segment.
//!
//! ```text
//! [0, 4096)                     header: magic, version, size, chunk, length, counters
//! [4096, 4096 + 128 * size)     one 128-byte control line per rank (two cache lines:
//!                               arrival, digests, inline data; pid, streamed progress)
//! [rounds, rounds + 320 * size) the words of the dissemination rounds 1.., per rank
//! [slots, ...)                  two slots of `chunk` bytes per rank (double buffer):
//!                               the step's full fingerprint, then its data
//! ```
//!
//! Every rank writes only its own control line and its own slots; all other accesses
//! are reads. Counters are atomics; fingerprints and data are published by the owner's
//! `arrive` counter (release) and read after it (acquire).

use super::config::{MAX_SIZE, Signalling};

use crate::fingerprint::FINGERPRINT_BYTES;

/// "cobrecom" in ASCII: the segment was made by this backend.
pub(crate) const MAGIC: u64 = 0x636F_6272_6563_6F6D;
/// Bumped whenever the layout changes: ranks of different builds refuse each other.
pub(crate) const VERSION: u32 = 5;

pub(crate) const HEADER_BYTES: usize = 4096;
pub(crate) const LINE_BYTES: usize = 128;

// Header fields.
pub(crate) const H_MAGIC: usize = 0;
pub(crate) const H_VERSION: usize = 8;
pub(crate) const H_SIZE: usize = 12;
pub(crate) const H_CHUNK: usize = 16;
pub(crate) const H_LEN: usize = 24;
/// Ranks attached so far.
pub(crate) const H_ATTACHED: usize = 32;
/// 0, or 1 + the rank that was lost.
pub(crate) const H_FAILED: usize = 36;
/// Futex word: bumped whenever something happens that a sleeper may wait for.
pub(crate) const H_WAKE: usize = 40;
/// How many ranks sleep (or are about to) on `H_WAKE`.
pub(crate) const H_SLEEPERS: usize = 44;
/// Process id of rank 0.
pub(crate) const H_CREATOR: usize = 48;
/// 1 once the name has been unlinked.
pub(crate) const H_UNLINKED: usize = 52;
/// 0, or 1 + the rank that called `abort` (the first one, if several did).
pub(crate) const H_ABORT: usize = 56;
/// The exit code of that `abort`.
pub(crate) const H_ABORT_CODE: usize = 60;
/// Futex word: 1 once `H_ABORT_CODE` holds the code; every rank then exits with it.
pub(crate) const H_ABORT_READY: usize = 64;
/// The job's [`Signalling`] code: every rank must use the same.
pub(crate) const H_SIGNALLING: usize = 68;

// Control-line fields, relative to the line. The first cache line holds everything a
// peer reads in a small step: the generation, the fingerprint digest and up to
// `INLINE_BYTES` of data, each double-buffered by generation parity.
/// Generation this rank last published (u64).
pub(crate) const L_ARRIVE: usize = 0;
/// Digests of the fingerprints of the two buffers (2 x u64).
pub(crate) const L_DIGEST: usize = 8;
/// Small payloads of the two buffers.
pub(crate) const L_INLINE: usize = 24;
/// Payloads up to this size travel in the control line instead of the slot.
pub(crate) const INLINE_BYTES: usize = 16;
/// Process id of the rank (u32), 0 until attached; in the second cache line.
pub(crate) const L_PID: usize = 64;
/// Bytes of a streamed step's data already in the slot, for each of the two buffers
/// (2 x u64): readers copy behind it (see `Job::publish_streamed`).
pub(crate) const L_PROGRESS: usize = 72;
/// The step (generation) in whose single-copy call this rank is writing into a peer's
/// buffer at this moment, 0 between writes (u64; see `Job::begin_write`).
pub(crate) const L_WRITING: usize = 88;
/// The step (generation) of a single-copy call this rank left with an error: from then
/// on, nobody may write into the buffer it announced there (u64; see `Job::abandon`).
pub(crate) const L_ABANDONED: usize = 96;
/// Each slot starts with the full fingerprint of its step (read only on a mismatch).
pub(crate) const SLOT_HEADER: usize = 64;

/// Dissemination rounds after the first (which uses the control line's arrival word and
/// digests): enough for [`MAX_SIZE`] ranks.
pub(crate) const MAX_LATER_ROUNDS: usize =
    MAX_SIZE.next_power_of_two().trailing_zeros() as usize - 1;
/// One round's words: the generation reached (u64), then the digest passed on, for each
/// of the two buffers (2 x u64); two rounds per cache line.
const ROUND_BYTES: usize = 32;
/// Each rank's round words, whole cache lines.
const ROUNDS_BYTES: usize = (MAX_LATER_ROUNDS * ROUND_BYTES).next_multiple_of(64);

const _: () = assert!(L_INLINE + 2 * INLINE_BYTES <= 64);
const _: () = assert!(L_PROGRESS + 16 <= L_WRITING);
const _: () = assert!(L_WRITING + 8 <= L_ABANDONED);
const _: () = assert!(L_ABANDONED + 8 <= LINE_BYTES);
const _: () = assert!(FINGERPRINT_BYTES <= SLOT_HEADER);

/// Offsets of one job's segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub size: usize,
    pub chunk: usize,
    pub signalling: Signalling,
}

impl Layout {
    #[allow(clippy::unused_self)] // a method like the others, so every offset comes from the layout
    pub(crate) fn line(&self, rank: usize) -> usize {
        HEADER_BYTES + rank * LINE_BYTES
    }

    pub(crate) fn digest(&self, rank: usize, generation: u64) -> usize {
        self.line(rank) + L_DIGEST + (generation % 2) as usize * 8
    }

    pub(crate) fn inline(&self, rank: usize, generation: u64) -> usize {
        self.line(rank) + L_INLINE + (generation % 2) as usize * INLINE_BYTES
    }

    /// How many bytes of the data `rank` streams at `generation` are in place.
    pub(crate) fn progress(&self, rank: usize, generation: u64) -> usize {
        self.line(rank) + L_PROGRESS + (generation % 2) as usize * 8
    }

    fn rounds_start(&self) -> usize {
        HEADER_BYTES + self.size * LINE_BYTES
    }

    /// The generation `rank` reached in dissemination round `round` (1-based: round 0 is
    /// its arrival word).
    pub(crate) fn round(&self, rank: usize, round: usize) -> usize {
        debug_assert!((1..=MAX_LATER_ROUNDS).contains(&round));
        self.rounds_start() + rank * ROUNDS_BYTES + (round - 1) * ROUND_BYTES
    }

    /// The digest `rank` passed on in round `round` of `generation`.
    pub(crate) fn round_digest(&self, rank: usize, round: usize, generation: u64) -> usize {
        self.round(rank, round) + 8 + (generation % 2) as usize * 8
    }

    /// The full fingerprint `rank` published at `generation`.
    pub(crate) fn fingerprint(&self, rank: usize, generation: u64) -> usize {
        self.slot_base(rank, generation)
    }

    /// Bytes of data a step can carry.
    pub(crate) fn payload(&self) -> usize {
        self.chunk - SLOT_HEADER
    }

    fn slots_start(&self) -> usize {
        (self.rounds_start() + self.size * ROUNDS_BYTES).next_multiple_of(4096)
    }

    fn slot_base(&self, rank: usize, generation: u64) -> usize {
        self.slots_start() + (rank * 2 + (generation % 2) as usize) * self.chunk
    }

    /// Where the data `rank` publishes at `generation` goes: the control line for
    /// payloads of at most [`INLINE_BYTES`], the slot otherwise.
    pub(crate) fn data(&self, rank: usize, generation: u64, len: usize) -> usize {
        if len <= INLINE_BYTES {
            self.inline(rank, generation)
        } else {
            self.slot_base(rank, generation) + SLOT_HEADER
        }
    }

    /// The total length of the segment.
    pub(crate) fn len(&self) -> usize {
        self.slots_start() + self.size * 2 * self.chunk
    }
}

/// The header of a segment as read from it: any values at all, since the segment may be
/// corrupt or not ours. [`Header::check`] says whether they describe the expected job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub magic: u64,
    pub version: u32,
    pub size: u32,
    pub chunk: u64,
    pub len: u64,
    pub attached: u32,
    pub failed: u32,
    pub creator: u32,
    pub unlinked: u32,
    pub signalling: u32,
}

impl Header {
    /// The header a creator writes for `layout`.
    #[cfg(test)]
    pub(crate) fn of(layout: &Layout, creator: u32) -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            size: layout.size as u32,
            chunk: layout.chunk as u64,
            len: layout.len() as u64,
            attached: 0,
            failed: 0,
            creator,
            unlinked: 0,
            signalling: layout.signalling.code(),
        }
    }

    /// Checks every field against the job this process expects (`expected`) and the
    /// `mapped` length of the segment. The error says what was found and what was
    /// expected; it never panics, whatever the values.
    pub(crate) fn check(&self, expected: &Layout, mapped: usize) -> Result<(), String> {
        if self.magic != MAGIC {
            return Err(format!(
                "its first word is {:#x}, expected {MAGIC:#x}: it was not made by cobre-comm",
                self.magic
            ));
        }
        if self.version != VERSION {
            return Err(format!(
                "it has layout version {}, this build expects {VERSION}: every rank must run the same build",
                self.version
            ));
        }
        if usize::try_from(self.size).ok() != Some(expected.size) {
            return Err(format!(
                "it is for a job of {} ranks, expected {}: every rank must be given the same size",
                self.size, expected.size
            ));
        }
        let expected_len = expected.len();
        if usize::try_from(self.chunk).ok() != Some(expected.chunk)
            || usize::try_from(self.len).ok() != Some(expected_len)
            || mapped < expected_len
        {
            return Err(format!(
                "it has chunk {} and length {} ({mapped} bytes mapped), expected chunk {} and length \
                 {expected_len}: every rank must use the same configuration",
                self.chunk, self.len, expected.chunk
            ));
        }
        if Signalling::from_code(self.signalling).is_none() {
            return Err(format!(
                "its signalling word holds {}, expected {}: the segment is corrupted",
                self.signalling,
                Signalling::ALL.map(|s| s.code().to_string()).join(" or ")
            ));
        }
        let counters = [
            ("ranks attached", self.attached, expected.size),
            ("failed rank", self.failed, expected.size),
            ("unlinked flag", self.unlinked, 1),
        ];
        for (what, value, max) in counters {
            if usize::try_from(value).map_or(true, |v| v > max) {
                return Err(format!(
                    "its {what} word holds {value}, expected at most {max}: the segment is corrupted"
                ));
            }
        }
        match pid(self.creator) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("its creator's process id is 0: the segment is corrupted".into()),
            Err(e) => Err(format!("its creator's {e}")),
        }
    }
}

/// The rank recorded in the failed-rank word `word` (0 for none, else 1 + the rank) of a
/// job of `size` ranks.
pub(crate) fn failed_rank(word: u32, size: usize) -> Result<Option<usize>, String> {
    match usize::try_from(word) {
        Ok(0) => Ok(None),
        Ok(n) if n <= size => Ok(Some(n - 1)),
        _ => Err(format!(
            "the failed-rank word holds {word}, expected 0 or 1 + a rank below {size}: the segment is corrupted"
        )),
    }
}

/// The process id in a control line's pid word: `None` while the rank has not claimed its
/// line, an error for a value no process can have.
pub(crate) fn pid(word: u32) -> Result<Option<u32>, String> {
    match word {
        0 => Ok(None),
        p if i32::try_from(p).is_ok() => Ok(Some(p)),
        p => Err(format!(
            "process id word holds {p}, which no process can have: the segment is corrupted"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXPECTED: Layout = Layout {
        size: 4,
        chunk: 8192,
        signalling: Signalling::Flat,
    };

    fn header() -> impl Strategy<Value = Header> {
        // Half the values near the expected ones, so that every check is reached.
        let near = |v: u64| prop_oneof![Just(v), any::<u64>(), v.saturating_sub(2)..v + 2];
        (
            near(MAGIC),
            near(u64::from(VERSION)),
            near(4),
            near(8192),
            near(EXPECTED.len() as u64),
            near(2),
            near(1),
            near(1000),
            near(0),
            near(1),
        )
            .prop_map(
                |(
                    magic,
                    version,
                    size,
                    chunk,
                    len,
                    attached,
                    failed,
                    creator,
                    unlinked,
                    signalling,
                )| Header {
                    magic,
                    version: version as u32,
                    size: size as u32,
                    chunk,
                    len,
                    attached: attached as u32,
                    failed: failed as u32,
                    creator: creator as u32,
                    unlinked: unlinked as u32,
                    signalling: signalling as u32,
                },
            )
    }

    proptest! {
        #[test]
        fn any_header_is_checked_without_panicking(h in header(), mapped in any::<usize>()) {
            if h.check(&EXPECTED, mapped).is_ok() {
                // Accepted: every value is one the job can use for offsets and indexing.
                prop_assert_eq!(h.magic, MAGIC);
                prop_assert_eq!(h.size as usize, EXPECTED.size);
                prop_assert_eq!(h.chunk as usize, EXPECTED.chunk);
                prop_assert!(h.len as usize == EXPECTED.len() && EXPECTED.len() <= mapped);
                prop_assert!(failed_rank(h.failed, EXPECTED.size).is_ok());
                prop_assert!(h.attached as usize <= EXPECTED.size && h.unlinked <= 1);
                prop_assert!(matches!(pid(h.creator), Ok(Some(_))));
                prop_assert!(Signalling::from_code(h.signalling).is_some());
            }
        }

        #[test]
        fn a_failed_rank_word_names_a_rank_of_the_job_or_is_an_error(word in any::<u32>(), size in 1_usize..=1024) {
            match failed_rank(word, size) {
                Ok(None) => prop_assert_eq!(word, 0),
                Ok(Some(rank)) => prop_assert!(rank < size && rank + 1 == word as usize),
                Err(e) => {
                    prop_assert!(word as usize > size);
                    prop_assert!(e.contains(&word.to_string()), "{}", e);
                }
            }
        }

        #[test]
        fn a_pid_word_is_a_process_id_or_an_error(word in any::<u32>()) {
            match pid(word) {
                Ok(None) => prop_assert_eq!(word, 0),
                Ok(Some(p)) => prop_assert!(p == word && i32::try_from(p).is_ok()),
                Err(e) => prop_assert!(e.contains(&word.to_string())),
            }
        }
    }

    #[test]
    fn the_header_a_creator_writes_is_accepted() {
        let h = Header::of(&EXPECTED, 1234);
        assert_eq!(h.check(&EXPECTED, EXPECTED.len()), Ok(()));
        let short = h.check(&EXPECTED, EXPECTED.len() - 1).unwrap_err();
        assert!(short.contains("bytes mapped"), "{short}");
        let other = Layout {
            size: 3,
            ..EXPECTED
        };
        let size = h.check(&other, usize::MAX).unwrap_err();
        assert!(size.contains("job of 4 ranks, expected 3"), "{size}");
        let unknown = Header { signalling: 7, ..h };
        let signalling = unknown.check(&EXPECTED, usize::MAX).unwrap_err();
        assert!(
            signalling.contains("signalling word holds 7, expected 1 or 2"),
            "{signalling}"
        );
        let corrupt = Header {
            failed: u32::MAX,
            ..h
        };
        let failed = corrupt.check(&EXPECTED, usize::MAX).unwrap_err();
        assert!(
            failed.contains("failed rank word holds 4294967295"),
            "{failed}"
        );
    }
}
