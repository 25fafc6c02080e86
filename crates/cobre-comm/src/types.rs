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
/// * `BitwiseOr` (cobre-comm 0.18) ORs the bits of integer elements (`i32 i64 u8 u32 u64`);
///   for `f32` / `f64` `allreduce` returns [`CommError::UnsupportedReduction`] naming the
///   type and the operator.
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
    /// Element-wise bitwise OR, for integer element types only.
    BitwiseOr,
}

impl ReduceOp {
    /// Every operator, in a fixed order (handy for tests and benchmarks).
    ///
    /// ```
    /// assert_eq!(cobre_comm::ReduceOp::ALL.len(), 4);
    /// ```
    pub const ALL: [ReduceOp; 4] = [
        ReduceOp::Sum,
        ReduceOp::Min,
        ReduceOp::Max,
        ReduceOp::BitwiseOr,
    ];

    /// Whether the operator is defined for floating-point elements (`BitwiseOr` is not).
    ///
    /// ```
    /// use cobre_comm::ReduceOp;
    /// assert!(ReduceOp::Sum.applies_to_floats());
    /// assert!(!ReduceOp::BitwiseOr.applies_to_floats());
    /// ```
    pub const fn applies_to_floats(self) -> bool {
        !matches!(self, ReduceOp::BitwiseOr)
    }

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
            ReduceOp::BitwiseOr => "bitwise-or",
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
    ///
    /// The fields are exactly cobre-comm 0.18's, so code that builds this variant compiles
    /// unchanged. `operation` names the collective and, after a colon, the argument that was
    /// wrong (`"allgatherv: counts.len() must equal the communicator size"`).
    #[error("{operation}: expected {expected}, found {actual}")]
    InvalidBufferSize {
        /// The collective whose precondition failed, and which buffer or argument was wrong.
        operation: &'static str,
        /// The length (or count) the call needed.
        expected: usize,
        /// The length (or count) the call was given.
        actual: usize,
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
    #[error("the communicator is no longer valid (it was shut down, or MPI was finalized)")]
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

    /// The reduction operator is not defined for the element type (`BitwiseOr` on `f32` or
    /// `f64`).
    #[error(
        "allreduce: the `{op}` reduction is not defined for element type `{type_name}`: expected an integer type (i32, i64, u8, u32, u64)"
    )]
    UnsupportedOperator {
        /// The operator that was asked for.
        op: ReduceOp,
        /// The element type's name.
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
/// The four variants of cobre-comm 0.18 keep exactly its fields, so code that builds them
/// compiles unchanged; [`InvalidConfiguration`](BackendError::InvalidConfiguration) is ours.
/// Every message names the backend, what was wrong, and the backends this binary has.
///
/// # Example
/// ```
/// use cobre_comm::{Backend, BackendError};
///
/// let err = "carrier-pigeon".parse::<Backend>().unwrap_err();
/// assert!(matches!(err, BackendError::InvalidBackend { .. }));
/// let text = err.to_string();
/// assert!(text.contains("carrier-pigeon") && text.contains("auto, local, mpi, tcp, shm"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend exists but was not compiled into this binary.
    #[error(
        "backend `{requested}` is not available in this binary: {} (this binary has: {})",
        feature_hint(requested),
        available.join(", ")
    )]
    BackendNotAvailable {
        /// The backend that was asked for.
        requested: String,
        /// The backends this binary has ([`available_backends`](crate::available_backends)).
        available: Vec<String>,
    },

    /// `COBRE_COMM_BACKEND` (or a parsed name) is not a backend name.
    #[error(
        "invalid backend name {requested:?}: expected one of auto, local, mpi, tcp, shm (this binary has: {})",
        available.join(", ")
    )]
    InvalidBackend {
        /// The value that was given.
        requested: String,
        /// The backends this binary has ([`available_backends`](crate::available_backends)).
        available: Vec<String>,
    },

    /// The backend was selected but failed to start.
    #[error(
        "backend `{backend}` failed to initialize: {source} (this binary has: {})",
        compiled_list()
    )]
    InitializationFailed {
        /// The backend that failed.
        backend: String,
        /// What went wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Environment variables the backend needs are not set.
    #[error(
        "backend `{backend}` needs {} which {} not set{} (this binary has: {})",
        missing_vars.join(", "),
        if missing_vars.len() == 1 { "is" } else { "are" },
        configuration_hint(backend),
        compiled_list()
    )]
    MissingConfiguration {
        /// The backend being configured.
        backend: String,
        /// The names of the missing variables.
        missing_vars: Vec<String>,
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

impl BackendError {
    /// [`BackendError::BackendNotAvailable`] for `requested`, listing this binary's backends.
    ///
    /// ```
    /// let err = cobre_comm::BackendError::not_available("carrier");
    /// assert!(err.to_string().contains("this binary has: local"));
    /// ```
    pub fn not_available(requested: &str) -> Self {
        BackendError::BackendNotAvailable {
            requested: requested.to_string(),
            available: crate::factory::available_backends(),
        }
    }

    /// [`BackendError::InvalidBackend`] for `requested`, listing this binary's backends.
    ///
    /// ```
    /// let err = cobre_comm::BackendError::invalid("carrier");
    /// assert!(err.to_string().contains("\"carrier\""));
    /// ```
    pub fn invalid(requested: &str) -> Self {
        BackendError::InvalidBackend {
            requested: requested.to_string(),
            available: crate::factory::available_backends(),
        }
    }

    /// [`BackendError::InitializationFailed`] with a message as its source.
    ///
    /// ```
    /// let err = cobre_comm::BackendError::init_failed("shm", "no /dev/shm".into());
    /// assert!(err.to_string().contains("no /dev/shm"));
    /// ```
    pub fn init_failed(backend: &str, message: String) -> Self {
        BackendError::InitializationFailed {
            backend: backend.to_string(),
            source: message.into(),
        }
    }
}

/// What to do about a backend that is not compiled in.
fn feature_hint(backend: &str) -> String {
    match backend {
        "mpi" | "tcp" | "shm" => format!(
            "rebuild with the Cargo feature `{backend}` of cobre-comm (cobre-comm = {{ features = [\"{backend}\"] }})"
        ),
        _ => "it is not a backend of this crate".to_string(),
    }
}

/// How to provide a backend's missing variables.
fn configuration_hint(backend: &str) -> &'static str {
    match backend {
        "shm" => {
            ": start the ranks with `cobre-comm launch -n N --backend shm -- PROG`, or set COBRE_SHM_NAME, COBRE_SHM_RANK and COBRE_SHM_SIZE on every rank"
        }
        "tcp" => {
            ": start the ranks with `cobre-comm launch -n N --backend tcp -- PROG`, or set COBRE_TCP_RANK and COBRE_TCP_SIZE on every rank and COBRE_TCP_COORDINATOR (the host of rank 0) on ranks other than 0"
        }
        _ => "",
    }
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
        };
        assert_eq!(err.to_string(), "allreduce: expected 4, found 3");
        // cobre-sddp 0.18's own tests expect this message to name MPI, as 0.18's does.
        assert!(CommError::InvalidCommunicator.to_string().contains("MPI"));
        let err = BackendError::MissingConfiguration {
            backend: "shm".into(),
            missing_vars: vec!["COBRE_SHM_NAME".into(), "COBRE_SHM_SIZE".into()],
        };
        let text = err.to_string();
        assert!(
            text.starts_with(
                "backend `shm` needs COBRE_SHM_NAME, COBRE_SHM_SIZE which are not set: start the ranks with `cobre-comm launch"
            )
        );
        assert!(text.contains("this binary has: local"));
    }
}
