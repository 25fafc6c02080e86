//! Shared types: the reduction operators and the two error enums.
//!
//! Every error message is written for the person reading it in a log: it names the
//! operation (or backend), what was expected and what was found.

use std::time::Duration;

/// The element-wise reduction applied by [`Communicator::allreduce`](crate::Communicator::allreduce).
///
/// Defined for `f32`, `f64`, `i32`, `i64`, `u8`, `u32` and `u64` on every backend; any other
/// element type makes `allreduce` return [`CommError::UnsupportedReduction`].
///
/// * `Sum` adds; integers wrap on overflow (as MPI implementations do), floats follow IEEE 754.
///   On the `local`, `shm` and `tcp` backends the result is exactly the rank-order fold
///   `((x0 + x1) + x2) + ...`, so those backends agree bit for bit.
/// * `Min` / `Max` pick the smallest / largest value. For floats a NaN loses against a number
///   (IEEE 754 `minNum` / `maxNum`, as [`f64::min`] does).
///
/// # Example
/// ```
/// use cobre_comm::{Communicator, LocalBackend, ReduceOp};
///
/// let comm = LocalBackend;
/// let mut out = [0_i64; 2];
/// comm.allreduce(&[3, -4], &mut out, ReduceOp::Max).unwrap();
/// assert_eq!(out, [3, -4]); // one rank: the reduction of a single operand is itself
/// assert_eq!(ReduceOp::Sum.name(), "sum");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise minimum.
    Min,
    /// Element-wise maximum.
    Max,
}

impl ReduceOp {
    /// Every operator, in a fixed order (handy for tests and benchmarks).
    ///
    /// ```
    /// assert_eq!(cobre_comm::ReduceOp::ALL.len(), 3);
    /// ```
    pub const ALL: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Min, ReduceOp::Max];

    /// Lower-case name, as used in messages and on the command line.
    ///
    /// ```
    /// assert_eq!(cobre_comm::ReduceOp::Min.name(), "min");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Min => "min",
            ReduceOp::Max => "max",
        }
    }
}

impl std::fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The error returned by every fallible method of [`Communicator`](crate::Communicator),
/// [`SharedMemoryProvider`](crate::SharedMemoryProvider) and
/// [`SharedRegion`](crate::SharedRegion).
///
/// Precondition errors ([`InvalidBufferSize`](CommError::InvalidBufferSize),
/// [`InvalidRoot`](CommError::InvalidRoot),
/// [`UnsupportedReduction`](CommError::UnsupportedReduction)) are detected before any data
/// moves, and the communicator stays usable after them. Errors that report a broken job
/// ([`PeerLost`](CommError::PeerLost), [`Timeout`](CommError::Timeout),
/// [`CollectiveMismatch`](CommError::CollectiveMismatch), [`Protocol`](CommError::Protocol))
/// leave the communicator unusable: later calls fail fast with the same cause.
///
/// # Example
/// ```
/// use cobre_comm::{CommError, Communicator, LocalBackend};
///
/// let comm = LocalBackend;
/// let err = comm.broadcast(&mut [1.0_f64], 3).unwrap_err();
/// assert_eq!(err, CommError::InvalidRoot { root: 3, size: 1 });
/// assert!(err.to_string().contains("expected a rank in 0..1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommError {
    /// The underlying library (MPI) reported a failure.
    #[error("{operation} failed in the MPI library (error code {mpi_error_code}): {message}")]
    CollectiveFailed {
        /// The collective that failed (`"allreduce"`, ...).
        operation: &'static str,
        /// The MPI error code, or `-1` when the failure did not come from MPI.
        mpi_error_code: i32,
        /// The library's description of the failure.
        message: String,
    },

    /// Buffer lengths, counts or displacements are inconsistent (see the precondition table
    /// in the crate documentation).
    #[error("{operation}: {message}: expected {expected}, found {actual}")]
    InvalidBufferSize {
        /// The collective whose precondition failed.
        operation: &'static str,
        /// The length (or count) the call needed.
        expected: usize,
        /// The length (or count) the call was given.
        actual: usize,
        /// Which buffer or argument was wrong.
        message: String,
    },

    /// The root of a broadcast is not a rank of the communicator.
    #[error("broadcast: invalid root {root}: expected a rank in 0..{size}")]
    InvalidRoot {
        /// The root that was passed.
        root: usize,
        /// The communicator size.
        size: usize,
    },

    /// The communicator can no longer be used (for instance MPI was finalized).
    #[error("the communicator is no longer valid (it was finalized or shut down)")]
    InvalidCommunicator,

    /// A shared-memory allocation was refused by the operating system.
    #[error("shared-memory allocation of {requested_bytes} bytes failed: {message}")]
    AllocationFailed {
        /// The number of bytes requested.
        requested_bytes: usize,
        /// What the operating system said.
        message: String,
    },

    /// `allreduce` was called with an element type that has no reduction kernel.
    #[error(
        "allreduce: no reduction is defined for element type `{type_name}`: expected one of f32, f64, i32, i64, u8, u32, u64"
    )]
    UnsupportedReduction {
        /// The Rust name of the element type.
        type_name: &'static str,
    },

    /// Ranks entered different collectives, or the same collective with different
    /// arguments (detected by the `shm` and `tcp` backends).
    #[error("{operation}: collective mismatch: {message}")]
    CollectiveMismatch {
        /// The collective this rank was executing.
        operation: &'static str,
        /// Which ranks disagreed, and on what.
        message: String,
    },

    /// A peer rank died or its connection closed.
    #[error("{operation}: lost rank {rank}: {message}")]
    PeerLost {
        /// The collective this rank was executing.
        operation: &'static str,
        /// The rank that was lost.
        rank: usize,
        /// How the loss was noticed.
        message: String,
    },

    /// A peer did not answer within the configured timeout.
    #[error("{operation}: timed out after {timeout:?}: {message}")]
    Timeout {
        /// The collective this rank was executing.
        operation: &'static str,
        /// The configured timeout.
        timeout: Duration,
        /// Which ranks were being waited for.
        message: String,
    },

    /// A peer sent data that does not follow the wire or segment protocol (a malformed
    /// frame, a foreign shared-memory segment).
    #[error("{operation}: protocol error: {message}")]
    Protocol {
        /// The collective (or phase) this rank was executing.
        operation: &'static str,
        /// What was expected and what arrived.
        message: String,
    },
}

/// The error returned when a backend cannot be selected or started
/// ([`create_communicator`](crate::create_communicator) and the backends' constructors).
///
/// Every message names the backend, what was wrong, and the backends this binary has.
///
/// # Example
/// ```
/// use cobre_comm::{BackendError, BackendKind};
///
/// let err = "carrier-pigeon".parse::<BackendKind>().unwrap_err();
/// assert!(matches!(err, BackendError::InvalidBackend { .. }));
/// let text = err.to_string();
/// assert!(text.contains("carrier-pigeon") && text.contains("auto, local, mpi, tcp, shm"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend exists but was not compiled into this binary.
    #[error(
        "backend `{backend}` is not available in this binary: {reason} (this binary has: {})",
        compiled_list()
    )]
    BackendNotAvailable {
        /// The backend that was asked for.
        backend: String,
        /// Why it is missing (for instance the Cargo feature to enable).
        reason: String,
    },

    /// `COBRE_COMM_BACKEND` (or a parsed name) is not a backend name.
    #[error(
        "invalid backend name {value:?}: expected one of auto, local, mpi, tcp, shm (this binary has: {})",
        compiled_list()
    )]
    InvalidBackend {
        /// The value that was given.
        value: String,
    },

    /// The backend was selected but failed to start.
    #[error(
        "backend `{backend}` failed to initialize: {message} (this binary has: {})",
        compiled_list()
    )]
    InitializationFailed {
        /// The backend that failed.
        backend: String,
        /// What went wrong.
        message: String,
    },

    /// Environment variables the backend needs are not set.
    #[error(
        "backend `{backend}` needs {} which {} not set{}{} (this binary has: {})",
        missing.join(", "),
        if missing.len() == 1 { "is" } else { "are" },
        if hint.is_empty() { "" } else { ": " },
        hint,
        compiled_list()
    )]
    MissingConfiguration {
        /// The backend being configured.
        backend: String,
        /// The names of the missing variables.
        missing: Vec<String>,
        /// How to provide them (for instance, use `cobre-comm launch`).
        hint: String,
    },

    /// An environment variable (or configuration field) holds a value the backend cannot use.
    #[error(
        "backend `{backend}`: {variable}={value:?} is invalid: expected {expected} (this binary has: {})",
        compiled_list()
    )]
    InvalidConfiguration {
        /// The backend being configured.
        backend: String,
        /// The variable (or field) name.
        variable: String,
        /// The value that was found.
        value: String,
        /// A description of the accepted values.
        expected: String,
    },
}

fn compiled_list() -> String {
    crate::factory::available_backends().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_expected_and_found() {
        let err = CommError::InvalidBufferSize {
            operation: "allreduce",
            expected: 4,
            actual: 3,
            message: "recv.len() must equal send.len()".into(),
        };
        assert_eq!(
            err.to_string(),
            "allreduce: recv.len() must equal send.len(): expected 4, found 3"
        );
        let err = BackendError::MissingConfiguration {
            backend: "shm".into(),
            missing: vec!["COBRE_SHM_NAME".into(), "COBRE_SHM_SIZE".into()],
            hint: String::new(),
        };
        let text = err.to_string();
        assert!(
            text.starts_with(
                "backend `shm` needs COBRE_SHM_NAME, COBRE_SHM_SIZE which are not set ("
            )
        );
        assert!(text.contains("this binary has: local"));
    }
}
