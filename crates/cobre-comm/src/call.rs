//! The call layer: the one path every collective of a multi-process backend (`shm`, `tcp`)
//! takes, whatever the transport and the algorithm.
//!
//! ```text
//!  Communicator::allreduce(send, recv, op)            (one entry point per collective)
//!        │  check the preconditions (precondition.rs, reduce.rs)
//!        │  build the fingerprint (fingerprint.rs)
//!        ▼
//!  Calls::run ── poisoned? ─────────────▶ the error that broke the communicator
//!        │  take the next sequence number (always: every call consumes one)
//!        ├─ preconditions failed here ──▶ Transport::refuse, then the precondition error
//!        ▼
//!  the named algorithm, over the transport ── failure ──▶ poison, Transport::broken
//! ```
//!
//! The rules, written once:
//!
//! * **Every call consumes one sequence number on every rank**, whether it succeeds, fails
//!   its preconditions, or fails on the way. So ranks never pair one call with another:
//!   fingerprints carry the number, and a rank's next call cannot be taken for the one it
//!   refused.
//! * **A call that fails its preconditions on a rank is refused, not skipped.** Before any
//!   data moves, the rank publishes a refusal (its fingerprint, marked with the reason) in
//!   place of its part of the call, and learns what the others did:
//!   * every rank refused the call (the same invalid call everywhere): each returns its
//!     own precondition error and the communicator goes on working;
//!   * some ranks made the call: every rank's call fails — the refusing ranks with their
//!     precondition error, the others with [`CommError::CollectiveMismatch`] naming the
//!     refusing rank and its reason — and the communicator is poisoned on every rank.
//!     Never does a rank return data from another call.
//! * **A failure during the algorithm** (a lost or silent peer, a mismatch, a protocol
//!   error) **poisons the communicator**: the transport tells the other ranks
//!   ([`Transport::broken`]), and every later call returns the same error at once.

use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use crate::fingerprint::Fingerprint;
use crate::precondition::{check_allgatherv, check_allreduce, check_broadcast};
use crate::reduce::check_reduction;
use crate::traits::CommData;
use crate::types::{CommError, ReduceOp};

/// What a transport gives the call layer, besides the algorithms that run over it.
pub(crate) trait Transport {
    /// A failure of the job, with whatever the transport needs to tell the other ranks.
    type Failure;

    /// The error a failure is reported as.
    fn error(failure: &Self::Failure) -> CommError;

    /// Publishes `refusal` as this rank's part of the call it describes, and waits until
    /// every rank has published its part. `Ok` when every rank refused the call too (so
    /// the communicator stays usable); a failure naming a rank that made the call
    /// otherwise.
    fn refuse(&mut self, refusal: &Fingerprint) -> Result<(), Self::Failure>;

    /// Tells the other ranks (best effort, bounded in time) that this rank's communicator
    /// is broken by `failure`, which happened in `call`.
    fn broken(&mut self, failure: &Self::Failure, call: &Fingerprint);
}

/// The per-process state of a communicator's calls, behind one lock: collectives of one
/// communicator called from several threads run one at a time, in the order they take it.
#[derive(Debug)]
pub(crate) struct Calls<X> {
    rank: usize,
    size: usize,
    state: Mutex<State<X>>,
}

#[derive(Debug)]
struct State<X> {
    transport: X,
    /// Sequence number of the next call.
    seq: u64,
    /// The error that broke the communicator, returned by every later call.
    poison: Option<CommError>,
}

impl<X: Transport> Calls<X> {
    /// The calls of rank `rank` of a job of `size` ranks.
    pub(crate) fn new(rank: usize, size: usize, transport: X) -> Calls<X> {
        Calls {
            rank,
            size,
            state: Mutex::new(State {
                transport,
                seq: 0,
                poison: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<X>> {
        // A panic inside a call (a bug) leaves the state as consistent as an error would.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one call: `checked` is the outcome of its precondition checks on this rank,
    /// `fingerprint` builds its fingerprint from the sequence number, and `algorithm`
    /// carries it out over the transport. An `Err` inside the algorithm's `Ok` is a
    /// failure every rank agreed on (the communicator stays usable).
    pub(crate) fn run<R>(
        &self,
        checked: Result<(), CommError>,
        fingerprint: impl FnOnce(u64) -> Fingerprint,
        algorithm: impl FnOnce(&mut X, &Fingerprint) -> Result<R, X::Failure>,
    ) -> Result<R, CommError> {
        let mut state = self.lock();
        if let Some(error) = &state.poison {
            return Err(error.clone());
        }
        let fp = fingerprint(state.seq);
        state.seq += 1;
        let outcome = match checked {
            Err(reason) => match state.transport.refuse(&fp.refusal(&reason)) {
                Ok(()) => return Err(reason),
                Err(failure) => {
                    state.poison(&failure, &fp);
                    return Err(reason);
                }
            },
            Ok(()) => algorithm(&mut state.transport, &fp),
        };
        outcome.map_err(|failure| state.poison(&failure, &fp))
    }

    /// `allgatherv`: checks the arguments (`recv_len` is `recv.len()`), then runs
    /// `algorithm`.
    pub(crate) fn allgatherv<T: CommData>(
        &self,
        send: &[T],
        recv_len: usize,
        counts: &[usize],
        displs: &[usize],
        algorithm: impl FnOnce(&mut X, &Fingerprint) -> Result<(), X::Failure>,
    ) -> Result<(), CommError> {
        let checked = check_allgatherv(self.rank, self.size, send.len(), recv_len, counts, displs);
        self.run(
            checked.map(drop),
            |seq| Fingerprint::allgatherv::<T>(seq, counts),
            algorithm,
        )
    }

    /// `allreduce` of `len` elements of `T` into a `recv` of `recv_len`.
    pub(crate) fn allreduce<T: CommData>(
        &self,
        len: usize,
        recv_len: usize,
        op: ReduceOp,
        algorithm: impl FnOnce(&mut X, &Fingerprint) -> Result<(), X::Failure>,
    ) -> Result<(), CommError> {
        let checked =
            check_allreduce(len, recv_len).and_then(|()| check_reduction::<T>(op).map(drop));
        self.run(
            checked,
            |seq| Fingerprint::allreduce::<T>(seq, len, op),
            algorithm,
        )
    }

    /// `broadcast` of `len` elements of `T` from `root`.
    pub(crate) fn broadcast<T: CommData>(
        &self,
        len: usize,
        root: usize,
        algorithm: impl FnOnce(&mut X, &Fingerprint) -> Result<(), X::Failure>,
    ) -> Result<(), CommError> {
        self.run(
            check_broadcast(root, self.size),
            |seq| Fingerprint::broadcast::<T>(seq, len, root),
            algorithm,
        )
    }

    /// `barrier` (it has no preconditions).
    pub(crate) fn barrier(
        &self,
        algorithm: impl FnOnce(&mut X, &Fingerprint) -> Result<(), X::Failure>,
    ) -> Result<(), CommError> {
        self.run(Ok(()), Fingerprint::barrier, algorithm)
    }

    /// Runs `f` on the transport outside any call (shutdown), with whether the
    /// communicator is still healthy.
    #[cfg_attr(not(any(feature = "tcp", test)), allow(dead_code))] // tcp says goodbye on drop
    pub(crate) fn with_transport<R>(&self, f: impl FnOnce(&mut X, bool) -> R) -> R {
        let mut state = self.lock();
        let healthy = state.poison.is_none();
        f(&mut state.transport, healthy)
    }

    /// Runs `f` on the transport unless a call holds it now (a watcher thread, `abort`).
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))] // tcp's abort and its watcher
    pub(crate) fn try_with_transport<R>(&self, f: impl FnOnce(&mut X) -> R) -> Option<R> {
        match self.state.try_lock() {
            Ok(mut state) => Some(f(&mut state.transport)),
            Err(TryLockError::Poisoned(poisoned)) => Some(f(&mut poisoned.into_inner().transport)),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

impl<X: Transport> State<X> {
    /// Records a failure: every later call returns its error; the peers are told.
    fn poison(&mut self, failure: &X::Failure, call: &Fingerprint) -> CommError {
        let error = X::error(failure);
        self.transport.broken(failure, call);
        self.poison = Some(error.clone());
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ReduceOp;

    /// A transport that records what the call layer asked of it.
    #[derive(Default)]
    struct Recorder {
        refusals: Vec<Fingerprint>,
        broken: Vec<CommError>,
        /// Whether the peers refuse too.
        peers_refuse: bool,
    }

    impl Transport for Recorder {
        type Failure = CommError;

        fn error(failure: &CommError) -> CommError {
            failure.clone()
        }

        fn refuse(&mut self, refusal: &Fingerprint) -> Result<(), CommError> {
            self.refusals.push(*refusal);
            if self.peers_refuse {
                Ok(())
            } else {
                let theirs = Fingerprint::allreduce::<f64>(refusal.seq, 4, ReduceOp::Sum);
                Err(refusal.mismatch(0, &theirs, 1))
            }
        }

        fn broken(&mut self, failure: &CommError, _call: &Fingerprint) {
            self.broken.push(failure.clone());
        }
    }

    fn bad_length() -> CommError {
        crate::precondition::check_allreduce(3, 4).unwrap_err()
    }

    fn allreduce_fp(seq: u64) -> Fingerprint {
        Fingerprint::allreduce::<f64>(seq, 4, ReduceOp::Sum)
    }

    #[test]
    fn every_call_takes_a_sequence_number_even_a_refused_one() {
        let calls = Calls::new(
            0,
            2,
            Recorder {
                peers_refuse: true,
                ..Recorder::default()
            },
        );
        let mut seen = Vec::new();
        calls
            .run(Ok(()), allreduce_fp, |_, fp| {
                seen.push(fp.seq);
                Ok(())
            })
            .unwrap();
        assert_eq!(
            calls.run(Err(bad_length()), allreduce_fp, |_, _| Ok(())),
            Err(bad_length())
        );
        calls
            .run(Ok(()), allreduce_fp, |_, fp| {
                seen.push(fp.seq);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, [0, 2]);
        calls.with_transport(|t, healthy| {
            assert!(healthy, "a unanimous refusal keeps the communicator");
            assert_eq!(t.refusals.len(), 1);
            assert_eq!(t.refusals[0].seq, 1);
            assert_ne!(t.refusals[0].refused, 0);
            assert!(t.broken.is_empty());
        });
    }

    #[test]
    fn a_refusal_the_peers_did_not_share_poisons() {
        let calls = Calls::new(0, 2, Recorder::default());
        assert_eq!(
            calls.run(Err(bad_length()), allreduce_fp, |_, _| Ok(())),
            Err(bad_length())
        );
        let later = calls.run(Ok(()), allreduce_fp, |_, _| -> Result<(), CommError> {
            panic!("a poisoned communicator runs no algorithm")
        });
        let Err(CommError::CollectiveMismatch { message, .. }) = later else {
            panic!("expected the poison, got {later:?}");
        };
        assert!(message.contains("rank 0 refused call #0"), "{message}");
        assert!(message.contains("rank 1 went on"), "{message}");
        calls.with_transport(|t, healthy| {
            assert!(!healthy);
            assert_eq!(t.broken.len(), 1, "the peers are told once");
        });
    }

    #[test]
    fn an_algorithm_failure_poisons_and_is_reported_once() {
        let calls = Calls::new(0, 2, Recorder::default());
        let lost = CommError::PeerLost {
            operation: "allreduce",
            rank: 2,
            message: "gone".into(),
        };
        let first = calls.run(Ok(()), allreduce_fp, |_, _| Err::<(), _>(lost.clone()));
        assert_eq!(first, Err(lost.clone()));
        assert_eq!(
            calls.run(Ok(()), allreduce_fp, |_, _| Ok(())),
            Err(lost.clone())
        );
        assert_eq!(
            calls.run(Err(bad_length()), allreduce_fp, |_, _| Ok(())),
            Err(lost)
        );
        calls.with_transport(|t, _| {
            assert_eq!(t.broken.len(), 1);
            assert!(
                t.refusals.is_empty(),
                "a poisoned communicator refuses nothing"
            );
        });
    }
}
