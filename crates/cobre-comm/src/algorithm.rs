//! Named collective algorithms, and how a user forces one.
//!
//! Every collective of the `shm` and `tcp` backends runs one named [`Algorithm`], picked by
//! the backend from the message size and the number of ranks (the thresholds are
//! documented next to each backend's pick). A job can force the algorithm of any
//! collective through the backend's `*_ALGORITHMS` variable (`COBRE_SHM_ALGORITHMS`,
//! `COBRE_TCP_ALGORITHMS`): a comma-separated list of `collective=algorithm` pairs, such
//! as `allreduce=reduce-scatter-allgather,broadcast=direct`. A forced algorithm runs at
//! every size, so the conformance suite and the benchmarks can exercise each one.
//!
//! The algorithm a rank runs is part of the call's fingerprint: ranks that were given
//! different choices fail with a mismatch that names both, instead of exchanging data
//! they would misread.

use std::fmt;

/// One of the four collectives whose algorithm can be chosen.
///
/// ```
/// use cobre_comm::algorithm::Op;
/// assert_eq!(Op::from_name("allreduce"), Some(Op::Allreduce));
/// assert_eq!(Op::Allreduce.name(), "allreduce");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`crate::Communicator::allgatherv`].
    Allgatherv,
    /// [`crate::Communicator::allreduce`].
    Allreduce,
    /// [`crate::Communicator::broadcast`].
    Broadcast,
    /// [`crate::Communicator::barrier`].
    Barrier,
}

impl Op {
    /// Every collective, in a fixed order.
    pub const ALL: [Op; 4] = [Op::Allgatherv, Op::Allreduce, Op::Broadcast, Op::Barrier];

    /// The collective's name, as in the `*_ALGORITHMS` variables.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Op::Allgatherv => "allgatherv",
            Op::Allreduce => "allreduce",
            Op::Broadcast => "broadcast",
            Op::Barrier => "barrier",
        }
    }

    /// The collective named `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A named algorithm. Which collectives a backend runs it for is the backend's table
/// (`cobre_comm::shm::ALGORITHMS`, `cobre_comm::tcp_config::ALGORITHMS`).
///
/// ```
/// use cobre_comm::algorithm::Algorithm;
/// let a = Algorithm::from_name("reduce-scatter-allgather").unwrap();
/// assert_eq!(a, Algorithm::ReduceScatterAllgather);
/// assert_eq!(a.to_string(), "reduce-scatter-allgather");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive] // algorithms will be added; a match outside this crate needs a `_` arm
pub enum Algorithm {
    /// Every rank reads (`shm`) or receives (`tcp`) what it needs from every other rank in
    /// one step; a reduction folds all contributions in rank order on every rank.
    Direct = 1,
    /// Each rank owns a slice of the buffer: it folds that slice of every contribution in
    /// rank order, then every rank gathers the reduced slices.
    ReduceScatterAllgather = 2,
    /// Large payloads copied once, straight from the owner's buffer into each reader's
    /// (Linux cross-memory attach), instead of through shared slots.
    SingleCopy = 3,
    /// Rounds of pairwise exchanges at distances 1, 2, 4, ...: `ceil(log2 p)` rounds.
    Dissemination = 4,
    /// The root's data split among the ranks, then gathered by all.
    ScatterAllgather = 5,
    /// Pairwise exchanges at distances 1, 2, 4, ... with whole buffers.
    RecursiveDoubling = 6,
    /// A binomial tree from the root: `ceil(log2 p)` rounds.
    Binomial = 7,
    /// Neighbours in a ring pass pieces along: bandwidth-optimal, `p - 1` rounds.
    Ring = 8,
    /// Bruck's allgather: in round `k` each rank sends everything it has gathered so far
    /// to rank `r - 2^k` and receives as much from rank `r + 2^k`; `ceil(log2 p)` rounds
    /// for any `p`, not only powers of two.
    Bruck = 9,
    /// The root's data scattered down a binomial tree, then gathered by Bruck's
    /// allgather: every message between ranks at distance `2^k`.
    ScatterBruck = 10,
    /// A reduce-scatter whose pieces travel in Bruck's rounds (to rank `r + 2^k` in round
    /// `k`) until each reaches its chunk's owner, which folds them in rank order; then
    /// Bruck's allgather of the reduced chunks. Every message between ranks at distance
    /// `2^k`.
    ReduceScatterBruck = 11,
    /// A reduce-scatter-allgather over the grid of hosts and ranks within a host: pieces
    /// go first to the rank of their own host that deals with the owner's host, then to
    /// the owner, which folds them in rank order; the reduced chunks come back the same
    /// way. Each rank talks to the ranks of its host and to one rank per other host.
    ReduceScatterGrid = 12,
    /// Bruck's allgather among one rank per host: each host's contributions are gathered
    /// by its first rank, those ranks gather every host's in `ceil(log2 h)` rounds, fold
    /// them in rank order and send the result to their hosts' other ranks.
    HostBruck = 13,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::Direct,
        Algorithm::ReduceScatterAllgather,
        Algorithm::SingleCopy,
        Algorithm::Dissemination,
        Algorithm::ScatterAllgather,
        Algorithm::RecursiveDoubling,
        Algorithm::Binomial,
        Algorithm::Ring,
        Algorithm::Bruck,
        Algorithm::ScatterBruck,
        Algorithm::ReduceScatterBruck,
        Algorithm::ReduceScatterGrid,
        Algorithm::HostBruck,
    ];

    /// The algorithm's name, as in the `*_ALGORITHMS` variables and in messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Direct => "direct",
            Algorithm::ReduceScatterAllgather => "reduce-scatter-allgather",
            Algorithm::SingleCopy => "single-copy",
            Algorithm::Dissemination => "dissemination",
            Algorithm::ScatterAllgather => "scatter-allgather",
            Algorithm::RecursiveDoubling => "recursive-doubling",
            Algorithm::Binomial => "binomial",
            Algorithm::Ring => "ring",
            Algorithm::Bruck => "bruck",
            Algorithm::ScatterBruck => "scatter-bruck",
            Algorithm::ReduceScatterBruck => "reduce-scatter-bruck",
            Algorithm::ReduceScatterGrid => "reduce-scatter-grid",
            Algorithm::HostBruck => "host-bruck",
        }
    }

    /// The algorithm named `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The code carried by fingerprints.
    #[cfg(any(feature = "shm", feature = "tcp"))]
    pub(crate) const fn code(self) -> u8 {
        self as u8
    }

    /// The algorithm of a fingerprint's code (0: none recorded).
    #[cfg(any(feature = "shm", feature = "tcp"))]
    pub(crate) fn from_code(code: u8) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.code() == code)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The algorithms a backend can run, per collective.
pub type Table = [(Op, &'static [Algorithm])];

/// The algorithms a job forces, per collective (none by default: the backend picks).
///
/// ```
/// use cobre_comm::algorithm::{Algorithm, Forced, Op};
/// let table: &[(Op, &[Algorithm])] = &[(Op::Allreduce, &[Algorithm::Direct])];
/// let forced = Forced::parse("allreduce=direct", table).unwrap();
/// assert_eq!(forced.get(Op::Allreduce), Some(Algorithm::Direct));
/// assert_eq!(forced.get(Op::Barrier), None);
/// assert!(Forced::parse("allreduce=ring", table).unwrap_err().contains("direct"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forced([Option<Algorithm>; 4]);

impl Forced {
    /// Nothing forced.
    pub const NONE: Forced = Forced([None; 4]);

    /// The algorithm forced for `op`, if any.
    #[must_use]
    pub const fn get(&self, op: Op) -> Option<Algorithm> {
        self.0[op.index()]
    }

    /// Forces `algorithm` for `op` (or lets the backend pick again with `None`).
    #[must_use]
    pub const fn with(mut self, op: Op, algorithm: Option<Algorithm>) -> Forced {
        self.0[op.index()] = algorithm;
        self
    }

    /// Parses `collective=algorithm[,collective=algorithm...]` (an empty text forces
    /// nothing), accepting only the pairs of `table`.
    ///
    /// # Errors
    /// What would have been accepted, naming the bad part (phrased to follow
    /// "expected", as in [`BackendError::InvalidConfiguration`](crate::BackendError)).
    pub fn parse(text: &str, table: &Table) -> Result<Forced, String> {
        let mut forced = Forced::NONE;
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((op, name)) = pair.split_once('=') else {
                return Err(format!(
                    "`collective=algorithm` pairs separated by commas, such as {} (`{pair}` has no `=`)",
                    example(table)
                ));
            };
            let (op, name) = (op.trim(), name.trim());
            let Some((op, known)) = table.iter().find(|(o, _)| o.name() == op) else {
                let ops: Vec<&str> = table.iter().map(|(o, _)| o.name()).collect();
                return Err(format!(
                    "one of {} before `=` (`{op}` is not one)",
                    ops.join(", ")
                ));
            };
            let Some(algorithm) = known.iter().copied().find(|a| a.name() == name) else {
                let names: Vec<&str> = known.iter().map(|a| a.name()).collect();
                return Err(format!(
                    "one of {} for {} (`{name}` is not one)",
                    names.join(", "),
                    op.name()
                ));
            };
            forced = forced.with(*op, Some(algorithm));
        }
        Ok(forced)
    }

    /// Whether nothing is forced.
    ///
    /// ```
    /// use cobre_comm::algorithm::{Algorithm, Forced, Op};
    /// assert!(Forced::NONE.is_none());
    /// let forced = Forced::NONE.with(Op::Broadcast, Some(Algorithm::Direct));
    /// assert!(!forced.is_none());
    /// // Displayed as the variable's text, which `parse` reads back.
    /// assert_eq!(forced.to_string(), "broadcast=direct");
    /// ```
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

impl fmt::Display for Forced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = Op::ALL
            .into_iter()
            .filter_map(|op| self.get(op).map(|a| format!("{}={a}", op.name())))
            .collect();
        f.write_str(&pairs.join(","))
    }
}

/// The bounds of `parts` near-equal chunks of `len` elements: chunk `c` is
/// `bounds[c]..bounds[c + 1]` (the slices that reduce-scatter algorithms give their owners).
#[cfg_attr(not(any(feature = "shm", feature = "tcp")), allow(dead_code))]
pub(crate) fn chunk_bounds(len: usize, parts: usize) -> Vec<usize> {
    (0..=parts).map(|c| c * len / parts).collect()
}

/// Forcing choices that together run every algorithm of `table`: the `i`-th forces the
/// `i`-th algorithm of every collective (its last one when it has fewer), so a test that
/// runs the conformance suite under each covers every algorithm in as few runs as the
/// longest list.
///
/// ```
/// use cobre_comm::algorithm::{every_algorithm, Algorithm, Op};
/// let table: &[(Op, &[Algorithm])] = &[
///     (Op::Allreduce, &[Algorithm::Direct, Algorithm::Ring]),
///     (Op::Barrier, &[Algorithm::Dissemination]),
/// ];
/// let texts: Vec<String> = every_algorithm(table).iter().map(ToString::to_string).collect();
/// assert_eq!(texts, ["allreduce=direct,barrier=dissemination", "allreduce=ring,barrier=dissemination"]);
/// ```
#[must_use]
pub fn every_algorithm(table: &Table) -> Vec<Forced> {
    let rounds = table
        .iter()
        .map(|(_, known)| known.len())
        .max()
        .unwrap_or(0);
    (0..rounds)
        .map(|i| {
            table.iter().fold(Forced::NONE, |forced, (op, known)| {
                forced.with(*op, known.get(i).or(known.last()).copied())
            })
        })
        .collect()
}

/// `collective=algorithm` for the first entry of `table`, for messages.
fn example(table: &Table) -> String {
    table
        .iter()
        .find_map(|(op, known)| known.first().map(|a| format!("{}={a}", op.name())))
        .unwrap_or_else(|| "allreduce=direct".into())
}

/// Every `(collective, algorithm)` pair of `table`, one per line, for `cobre-comm info`.
///
/// ```
/// use cobre_comm::algorithm::{describe, Algorithm, Op};
/// let text = describe(&[(Op::Barrier, &[Algorithm::Dissemination])]);
/// assert_eq!(text, "barrier: dissemination");
/// ```
#[must_use]
pub fn describe(table: &Table) -> String {
    table
        .iter()
        .map(|(op, known)| {
            let names: Vec<&str> = known.iter().map(|a| a.name()).collect();
            format!("{}: {}", op.name(), names.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &Table = &[
        (Op::Allreduce, &[Algorithm::Direct, Algorithm::Ring]),
        (Op::Barrier, &[Algorithm::Dissemination]),
    ];

    #[test]
    fn chunks_cover_the_buffer() {
        assert_eq!(chunk_bounds(10, 3), vec![0, 3, 6, 10]);
        assert_eq!(chunk_bounds(1, 4), vec![0, 0, 0, 0, 1]);
    }

    #[cfg(any(feature = "shm", feature = "tcp"))]
    #[test]
    fn codes_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_code(a.code()), Some(a));
        }
        assert_eq!(Algorithm::from_code(0), None);
        assert_eq!(Algorithm::Bruck.code(), 9);
    }

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        assert_eq!(Algorithm::from_name("bruck"), Some(Algorithm::Bruck));
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
    }

    #[test]
    fn parse_accepts_the_table_and_prints_back() {
        let forced = Forced::parse(" allreduce = ring , barrier=dissemination,", TABLE).unwrap();
        assert_eq!(forced.get(Op::Allreduce), Some(Algorithm::Ring));
        assert_eq!(forced.to_string(), "allreduce=ring,barrier=dissemination");
        assert_eq!(Forced::parse(&forced.to_string(), TABLE), Ok(forced));
        assert!(Forced::parse("", TABLE).unwrap().is_none());
    }

    #[test]
    fn parse_errors_say_what_was_expected() {
        let e = Forced::parse("allreduce", TABLE).unwrap_err();
        assert!(
            e.contains("collective=algorithm") && e.contains("allreduce=direct"),
            "{e}"
        );
        let e = Forced::parse("broadcast=direct", TABLE).unwrap_err();
        assert!(e.contains("one of allreduce, barrier before `=`"), "{e}");
        let e = Forced::parse("barrier=ring", TABLE).unwrap_err();
        assert!(e.contains("`ring`") && e.contains("dissemination"), "{e}");
    }
}
