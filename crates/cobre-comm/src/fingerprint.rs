//! Collective fingerprints: what each rank believes the current collective is.
//!
//! The `shm` and `tcp` backends attach a [`Fingerprint`] to every collective. Before data is
//! combined, each rank compares the fingerprints it sees with its own; ranks that disagree
//! (different collective, element type, length, counts, root or operator, or a different
//! position in the sequence of calls) get [`CommError::CollectiveMismatch`] naming the
//! ranks and the difference, instead of a hang or corrupted data.

use std::hash::{Hash, Hasher};

use crate::algorithm::Algorithm;
use crate::datatype::{ElementType, type_digest};
use crate::types::{CommError, ReduceOp};

/// The collective a fingerprint describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Collective {
    Allgatherv = 1,
    Allreduce = 2,
    Broadcast = 3,
    Barrier = 4,
    /// A collective of the shared-region machinery (allocation, fence).
    Region = 5,
}

impl Collective {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Collective::Allgatherv => "allgatherv",
            Collective::Allreduce => "allreduce",
            Collective::Broadcast => "broadcast",
            Collective::Barrier => "barrier",
            Collective::Region => "shared region",
        }
    }

    const fn from_code(code: u8) -> Option<Collective> {
        Some(match code {
            1 => Collective::Allgatherv,
            2 => Collective::Allreduce,
            3 => Collective::Broadcast,
            4 => Collective::Barrier,
            5 => Collective::Region,
            _ => return None,
        })
    }
}

/// What one rank believes the current collective is. Two ranks agree when their
/// fingerprints are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// Position of the collective in this communicator's sequence of calls (from 0).
    pub seq: u64,
    pub op: Collective,
    pub elem: ElementType,
    /// `size_of::<T>()`, 0 for barrier.
    pub elem_size: u32,
    /// Digest of the element type's name, to tell apart non-primitive types.
    pub type_digest: u64,
    /// Elements: `len` for allreduce/broadcast, the sum of counts for allgatherv, or the
    /// element count of a region.
    pub count: u64,
    /// Digest of the allgatherv counts (0 otherwise).
    pub counts_digest: u64,
    /// Broadcast root (0 otherwise).
    pub root: u32,
    /// Reduce operator code (0 when not a reduction).
    pub reduce: u8,
    /// Why this rank refused the call ([`Refusal`] code), or 0 for a call it makes. A
    /// refusal's `count` and `counts_digest` hold the expected and found values.
    pub refused: u8,
    /// The [`Algorithm`] code this rank runs the call with (0 until one is picked).
    pub algorithm: u8,
}

/// Why a rank refused a call: the precondition it failed, as carried by a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Refusal {
    /// A buffer length, count or displacement (expected, found).
    BufferSize = 1,
    /// A broadcast root (root, size).
    Root = 2,
    /// An element type without a reduction kernel.
    Reduction = 3,
    /// Any other local error.
    Other = 4,
}

/// The size of [`Fingerprint::encode`]'s output.
pub(crate) const FINGERPRINT_BYTES: usize = 48;

impl Fingerprint {
    fn typed<T: 'static>(seq: u64, op: Collective, count: usize) -> Fingerprint {
        let elem = ElementType::of::<T>();
        Fingerprint {
            seq,
            op,
            elem,
            elem_size: std::mem::size_of::<T>() as u32,
            // The primitives are told apart by `elem`; hashing a type name is only needed
            // (and only paid for) for the others.
            type_digest: if elem == ElementType::Other {
                type_digest::<T>()
            } else {
                0
            },
            count: count as u64,
            counts_digest: 0,
            root: 0,
            reduce: 0,
            refused: 0,
            algorithm: 0,
        }
    }

    pub(crate) fn allgatherv<T: 'static>(seq: u64, counts: &[usize]) -> Fingerprint {
        let mut hasher = rustc_hash::FxHasher::default();
        counts.hash(&mut hasher);
        Fingerprint {
            counts_digest: hasher.finish(),
            ..Self::typed::<T>(seq, Collective::Allgatherv, counts.iter().sum())
        }
    }

    pub(crate) fn allreduce<T: 'static>(seq: u64, len: usize, op: ReduceOp) -> Fingerprint {
        Fingerprint {
            reduce: reduce_code(op),
            ..Self::typed::<T>(seq, Collective::Allreduce, len)
        }
    }

    pub(crate) fn broadcast<T: 'static>(seq: u64, len: usize, root: usize) -> Fingerprint {
        Fingerprint {
            root: root as u32,
            ..Self::typed::<T>(seq, Collective::Broadcast, len)
        }
    }

    pub(crate) fn barrier(seq: u64) -> Fingerprint {
        Fingerprint {
            elem: ElementType::Other,
            elem_size: 0,
            type_digest: 0,
            ..Self::typed::<()>(seq, Collective::Barrier, 0)
        }
    }

    #[cfg_attr(not(feature = "shm"), allow(dead_code))] // shared regions are shm's
    pub(crate) fn region<T: 'static>(seq: u64, count: usize) -> Fingerprint {
        Self::typed::<T>(seq, Collective::Region, count)
    }

    /// This fingerprint for a call run with `algorithm`: ranks that picked different
    /// algorithms disagree.
    #[must_use]
    pub(crate) fn with_algorithm(mut self, algorithm: Algorithm) -> Fingerprint {
        self.algorithm = algorithm.code();
        self
    }

    /// The fingerprint this rank publishes instead of `self` when the call failed its
    /// preconditions here: same sequence number and collective, and the reason.
    pub(crate) fn refusal(&self, reason: &CommError) -> Fingerprint {
        let (code, first, second) = match reason {
            CommError::InvalidBufferSize {
                expected, actual, ..
            } => (Refusal::BufferSize, *expected as u64, *actual as u64),
            CommError::InvalidRoot { root, size } => (Refusal::Root, *root as u64, *size as u64),
            CommError::UnsupportedReduction { .. } => (Refusal::Reduction, 0, 0),
            _ => (Refusal::Other, 0, 0),
        };
        Fingerprint {
            count: first,
            counts_digest: second,
            root: 0,
            reduce: 0,
            refused: code as u8,
            algorithm: 0,
            ..*self
        }
    }

    /// Whether a peer that published `other` takes part in the same call as this rank:
    /// equal fingerprints, or two refusals of the same call (whatever their reasons).
    pub(crate) fn agrees_with(&self, other: &Fingerprint) -> bool {
        self == other || (self.refused != 0 && other.refused != 0 && self.seq == other.seq)
    }

    /// The reason of a refusal, for messages.
    fn refusal_reason(&self) -> String {
        let (first, second) = (self.count, self.counts_digest);
        match self.refused {
            1 => {
                format!("a buffer length, count or displacement: expected {first}, found {second}")
            }
            2 => format!("root {first} is not a rank of the {second} ranks"),
            3 => "its element type has no reduction".into(),
            _ => "a local error".into(),
        }
    }

    /// Little-endian wire form.
    pub(crate) fn encode(&self) -> [u8; FINGERPRINT_BYTES] {
        let mut out = [0_u8; FINGERPRINT_BYTES];
        out[0..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..16].copy_from_slice(&self.type_digest.to_le_bytes());
        out[16..24].copy_from_slice(&self.count.to_le_bytes());
        out[24..32].copy_from_slice(&self.counts_digest.to_le_bytes());
        out[32..36].copy_from_slice(&self.elem_size.to_le_bytes());
        out[36..40].copy_from_slice(&self.root.to_le_bytes());
        out[40] = self.op as u8;
        out[41] = self.elem.code();
        out[42] = self.reduce;
        out[43] = self.refused;
        out[44] = self.algorithm;
        out
    }

    /// Parses [`Fingerprint::encode`]'s output.
    pub(crate) fn decode(bytes: &[u8; FINGERPRINT_BYTES]) -> Result<Fingerprint, String> {
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let op = Collective::from_code(bytes[40])
            .ok_or_else(|| format!("unknown collective code {} in fingerprint", bytes[40]))?;
        let elem = ElementType::from_code(bytes[41])
            .ok_or_else(|| format!("unknown element type code {} in fingerprint", bytes[41]))?;
        if bytes[42] > 4 {
            return Err(format!(
                "unknown reduce operator code {} in fingerprint",
                bytes[42]
            ));
        }
        if bytes[43] > Refusal::Other as u8 {
            return Err(format!("unknown refusal code {} in fingerprint", bytes[43]));
        }
        if bytes[44] != 0 && Algorithm::from_code(bytes[44]).is_none() {
            return Err(format!(
                "unknown algorithm code {} in fingerprint",
                bytes[44]
            ));
        }
        if bytes[45..].iter().any(|&b| b != 0) {
            return Err("non-zero reserved bytes in fingerprint".into());
        }
        Ok(Fingerprint {
            seq: u64_at(0),
            op,
            elem,
            elem_size: u32_at(32),
            type_digest: u64_at(8),
            count: u64_at(16),
            counts_digest: u64_at(24),
            root: u32_at(36),
            reduce: bytes[42],
            refused: bytes[43],
            algorithm: bytes[44],
        })
    }

    /// A short description, for messages: `allreduce #12 of 4 x f64 (sum)`.
    pub(crate) fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut text = format!("{} #{}", self.op.name(), self.seq);
        if self.refused != 0 {
            let _ = write!(text, " (refused: {})", self.refusal_reason());
            return text;
        }
        if self.op != Collective::Barrier {
            let ty = if self.elem == ElementType::Other {
                format!("{}-byte elements", self.elem_size)
            } else {
                self.elem.name().to_string()
            };
            let _ = write!(text, " of {} x {ty}", self.count);
        }
        match self.op {
            Collective::Allreduce => {
                let _ = write!(text, " ({})", reduce_name(self.reduce));
            }
            Collective::Broadcast => {
                let _ = write!(text, " from root {}", self.root);
            }
            _ => {}
        }
        text
    }

    /// What differs between `self` (this rank's) and `other` (a peer's).
    pub(crate) fn difference(&self, other: &Fingerprint) -> String {
        if self.seq != other.seq {
            return format!("call #{} here, call #{} there", self.seq, other.seq);
        }
        if self.op != other.op {
            return "different collectives".into();
        }
        if self.elem != other.elem
            || self.elem_size != other.elem_size
            || self.type_digest != other.type_digest
        {
            return "different element types".into();
        }
        if self.count != other.count {
            return "different element counts".into();
        }
        if self.counts_digest != other.counts_digest {
            return "different counts arrays".into();
        }
        if self.root != other.root {
            return "different roots".into();
        }
        if self.reduce != other.reduce {
            return "different reduce operators".into();
        }
        if self.algorithm != other.algorithm {
            let name = |code| Algorithm::from_code(code).map_or("none", Algorithm::name);
            return format!(
                "different algorithms: {} here, {} there; force the same one on every rank, or none",
                name(self.algorithm),
                name(other.algorithm)
            );
        }
        "identical fingerprints".into()
    }

    /// The error for a disagreement between this rank and `peer`.
    pub(crate) fn mismatch(&self, my_rank: usize, other: &Fingerprint, peer: usize) -> CommError {
        let operation = self.op.name();
        if other.refused != 0 && self.refused == 0 && other.seq == self.seq {
            return CommError::CollectiveMismatch {
                operation,
                message: format!(
                    "rank {peer} refused {} because of {}; the call fails on every rank and the \
                     communicator can no longer be used",
                    self.describe(),
                    other.refusal_reason()
                ),
            };
        }
        if self.refused != 0 && other.refused == 0 && other.seq == self.seq {
            return CommError::CollectiveMismatch {
                operation,
                message: format!(
                    "rank {my_rank} refused call #{} because of {}, but rank {peer} went on with {}; \
                     the communicator can no longer be used",
                    self.seq,
                    self.refusal_reason(),
                    other.describe()
                ),
            };
        }
        CommError::CollectiveMismatch {
            operation: self.op.name(),
            message: format!(
                "rank {my_rank} called {} but rank {peer} called {} ({}); every rank must make the same collective calls in the same order with matching arguments",
                self.describe(),
                other.describe(),
                self.difference(other)
            ),
        }
    }
}

const fn reduce_code(op: ReduceOp) -> u8 {
    match op {
        ReduceOp::Sum => 1,
        ReduceOp::Min => 2,
        ReduceOp::Max => 3,
        ReduceOp::BitwiseOr => 4,
    }
}

fn reduce_name(code: u8) -> &'static str {
    match code {
        1 => "sum",
        2 => "min",
        3 => "max",
        4 => "bitwise-or",
        _ => "no operator",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject_garbage() {
        let fps = [
            Fingerprint::allgatherv::<f64>(3, &[1, 0, 2]),
            Fingerprint::allreduce::<u8>(u64::MAX, 9, ReduceOp::Max),
            Fingerprint::broadcast::<[u16; 3]>(0, 4, 2),
            Fingerprint::barrier(7),
            Fingerprint::region::<i64>(1, 10),
        ];
        for fp in fps {
            assert_eq!(Fingerprint::decode(&fp.encode()), Ok(fp));
        }
        let mut bad = fps[0].encode();
        bad[40] = 77;
        assert!(
            Fingerprint::decode(&bad)
                .unwrap_err()
                .contains("collective code 77")
        );
        let mut bad = fps[0].encode();
        bad[47] = 1;
        assert!(Fingerprint::decode(&bad).is_err());
    }

    #[test]
    fn mismatch_names_ranks_and_difference() {
        let mine = Fingerprint::allreduce::<f64>(5, 4, ReduceOp::Sum);
        let theirs = Fingerprint::broadcast::<f64>(5, 4, 0);
        let text = mine.mismatch(0, &theirs, 2).to_string();
        assert!(
            text.contains("rank 0 called allreduce #5 of 4 x f64 (sum)"),
            "{text}"
        );
        assert!(
            text.contains("rank 2 called broadcast #5 of 4 x f64 from root 0"),
            "{text}"
        );
        assert!(text.contains("different collectives"), "{text}");
        let other_len = Fingerprint::allreduce::<f64>(5, 3, ReduceOp::Sum);
        assert_eq!(mine.difference(&other_len), "different element counts");
        let other_counts = Fingerprint::allgatherv::<f64>(5, &[2, 1]);
        assert_eq!(
            Fingerprint::allgatherv::<f64>(5, &[1, 2]).difference(&other_counts),
            "different counts arrays"
        );
    }
}
