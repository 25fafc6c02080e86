//! Where things are in the job's segment.
//!
//! ```text
//! [0, 4096)                     header: magic, version, size, chunk, length, counters
//! [4096, 4096 + 128 * size)     one 128-byte control line per rank (two cache lines)
//! [slots, ...)                  two slots of `chunk` bytes per rank (double buffer):
//!                               the step's full fingerprint, then its data
//! ```
//!
//! Every rank writes only its own control line and its own slots; all other accesses
//! are reads. Counters are atomics; fingerprints and data are published by the owner's
//! `arrive` counter (release) and read after it (acquire).

use crate::fingerprint::FINGERPRINT_BYTES;

/// "cobrecom" in ASCII: the segment was made by this backend.
pub(crate) const MAGIC: u64 = 0x636F_6272_6563_6F6D;
/// Bumped whenever the layout changes: ranks of different builds refuse each other.
pub(crate) const VERSION: u32 = 2;

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
/// Each slot starts with the full fingerprint of its step (read only on a mismatch).
pub(crate) const SLOT_HEADER: usize = 64;

const _: () = assert!(L_INLINE + 2 * INLINE_BYTES <= 64);
const _: () = assert!(FINGERPRINT_BYTES <= SLOT_HEADER);

/// Offsets of one job's segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub size: usize,
    pub chunk: usize,
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

    /// The full fingerprint `rank` published at `generation`.
    pub(crate) fn fingerprint(&self, rank: usize, generation: u64) -> usize {
        self.slot_base(rank, generation)
    }

    /// Bytes of data a step can carry.
    pub(crate) fn payload(&self) -> usize {
        self.chunk - SLOT_HEADER
    }

    fn slots_start(&self) -> usize {
        (HEADER_BYTES + self.size * LINE_BYTES).next_multiple_of(4096)
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
