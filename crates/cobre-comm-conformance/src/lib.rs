//! # cobre-comm-conformance
//!
//! The conformance suite of cobre-comm: checks that run inside every rank of a job and
//! verify a backend against the contract, using only the public API. It is generic over
//! `C: Communicator + SharedMemoryProvider`, so one suite serves every backend:
//! `tests/conformance.rs` of the library runs it on `LocalBackend`, each backend's tests run
//! it on 1 to 4 real processes, and `cobre-comm check` runs it on demand.
//!
//! Every rank executes the same sequence of collectives whatever its local outcome, so a
//! failing check never leaves the other ranks waiting. Each rank returns a [`Report`];
//! the job passes when every rank's report passes.
//!
//! What it covers: `allgatherv` with uneven counts, zero-length contributions and
//! non-contiguous (reversed, gapped) displacements, up to [`Options::max_len`] elements;
//! `allreduce` with each [`ReduceOp`](cobre_comm::ReduceOp) on each of the seven primitive
//! types at lengths from 1 to [`Options::max_len`], compared with the rank-order fold
//! computed by the kit's own oracle ([`TestValue::combine`], plain loops in rank order,
//! never the library's kernels, so a wrong kernel cannot pass unnoticed)
//! (bit-exact when [`Options::bit_exact_sum`]) and identical on every rank; `broadcast`
//! from every root; `barrier`; a long mixed sequence of collectives checked against a
//! reference; every precondition error row (and the communicator still works after each);
//! the shared-region lifecycle and `split_local`.
//!
//! # Example
//! ```
//! use cobre_comm::LocalBackend;
//! use cobre_comm_conformance::{run_suite, Options};
//!
//! let options = Options { max_len: 4096, sequence_len: 200, ..Options::default() };
//! let report = run_suite(&LocalBackend, &options);
//! assert!(report.passed(), "{}", report.failures().join("\n"));
//! ```

mod bitwise;
mod collectives;
mod errors;
mod region;
mod sequence;
mod values;

use std::fmt::Write as _;
use std::time::Instant;

use cobre_comm::{Backend, CommError, Communicator, SharedMemoryProvider};
use serde::{Deserialize, Serialize};

pub use values::TestValue;

/// What the suite exercises and what it expects of the backend.
///
/// # Example
/// ```
/// use cobre_comm::Backend;
/// let options = cobre_comm_conformance::options_for(Backend::Mpi);
/// assert!(!options.bit_exact_sum);
/// assert!(options.true_shared_memory);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// The largest buffer, in elements, used by the allgatherv, allreduce and broadcast
    /// checks (default 1 Mi elements).
    pub max_len: usize,
    /// How many collectives the mixed-sequence check runs (default 3000).
    pub sequence_len: usize,
    /// Whether `allreduce(Sum)` must equal the rank-order fold bit for bit (`local`, `shm`,
    /// `tcp`); otherwise float sums are checked against a rounding bound (`mpi`).
    pub bit_exact_sum: bool,
    /// Whether followers must see the leader's writes to a shared region after the fence
    /// (`shm`, `mpi`); otherwise each rank sees its own copy (`HeapRegion`).
    pub true_shared_memory: bool,
    /// Seed of all generated data and of the mixed sequence.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_len: 1 << 20,
            sequence_len: 3000,
            bit_exact_sum: true,
            true_shared_memory: false,
            seed: 0x5EED_C0B7E,
        }
    }
}

/// The options that match what each backend promises.
///
/// ```
/// use cobre_comm::Backend;
/// assert!(cobre_comm_conformance::options_for(Backend::Shm).true_shared_memory);
/// assert!(cobre_comm_conformance::options_for(Backend::Tcp).bit_exact_sum);
/// ```
pub fn options_for(backend: Backend) -> Options {
    let defaults = Options::default();
    match backend {
        Backend::Mpi => Options {
            bit_exact_sum: false,
            true_shared_memory: true,
            ..defaults
        },
        Backend::Shm => Options {
            true_shared_memory: true,
            ..defaults
        },
        Backend::Tcp | Backend::Local | Backend::Auto => defaults,
    }
}

/// The outcome of one check on one rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name, such as `allreduce sum f64`.
    pub name: String,
    /// Whether every expectation held on this rank.
    pub passed: bool,
    /// The first failures (empty when passed).
    pub detail: String,
    /// Wall time of the check on this rank, in milliseconds.
    pub millis: f64,
}

/// One rank's results.
///
/// # Example
/// ```
/// let report = cobre_comm_conformance::run_suite(
///     &cobre_comm::LocalBackend,
///     &cobre_comm_conformance::Options { max_len: 64, sequence_len: 10, ..Default::default() },
/// );
/// assert_eq!((report.rank, report.size), (0, 1));
/// assert!(report.results.iter().any(|r| r.name == "barrier"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The rank that produced the report.
    pub rank: usize,
    /// The communicator size.
    pub size: usize,
    /// One entry per check, in the order they ran.
    pub results: Vec<CheckResult>,
}

impl Report {
    /// Whether every check passed on this rank.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }

    /// `name: detail` for each failed check.
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}: {}", r.name, r.detail))
            .collect()
    }
}

/// The state of one check on one rank: the communicator, the options, and what failed.
pub(crate) struct Ctx<'a, C> {
    pub comm: &'a C,
    pub opts: &'a Options,
    pub rank: usize,
    pub size: usize,
    failures: Vec<String>,
    extra_failures: usize,
}

impl<C: Communicator> Ctx<'_, C> {
    /// Records a failed expectation (keeps the first few).
    pub fn fail(&mut self, message: String) {
        if self.failures.len() < 4 {
            self.failures.push(message);
        } else {
            self.extra_failures += 1;
        }
    }

    /// Records `message` unless `condition` holds.
    pub fn expect(&mut self, condition: bool, message: impl FnOnce() -> String) {
        if !condition {
            self.fail(message());
        }
    }

    /// The value of a call that must succeed, recording its error otherwise.
    pub fn ok<T>(&mut self, what: &str, result: Result<T, CommError>) -> Option<T> {
        result
            .map_err(|e| self.fail(format!("{what} failed: {e}")))
            .ok()
    }

    /// Checks that every rank holds the same `values` (by digest).
    pub fn expect_identical_everywhere<T: cobre_comm::CommData>(
        &mut self,
        what: &str,
        values: &[T],
    ) {
        let mine = [values::digest(values)];
        let mut all = vec![0_u64; self.size];
        let counts = vec![1; self.size];
        let displs: Vec<usize> = (0..self.size).collect();
        if let Some(()) = self.ok(
            "allgatherv of result digests",
            self.comm.allgatherv(&mine, &mut all, &counts, &displs),
        ) && let Some(r) = all.iter().position(|&d| d != mine[0])
        {
            self.fail(format!(
                "{what}: rank {r}'s result differs from rank {}'s",
                self.rank
            ));
        }
    }
}

type CheckFn<C> = fn(&mut Ctx<'_, C>);

/// Every check, in the order the suite runs them.
fn checks<C: Communicator + SharedMemoryProvider>() -> Vec<(String, CheckFn<C>)> {
    let mut all: Vec<(String, CheckFn<C>)> = vec![
        ("rank and size".into(), collectives::rank_and_size::<C>),
        ("barrier".into(), collectives::barrier::<C>),
    ];
    all.extend(collectives::allgatherv_checks::<C>());
    all.extend(collectives::allreduce_checks::<C>());
    all.extend(bitwise::bitwise_checks::<C>());
    all.extend(collectives::broadcast_checks::<C>());
    all.push(("mixed sequence".into(), sequence::mixed_sequence::<C>));
    all.extend(errors::error_checks::<C>());
    all.push(("shared region lifecycle".into(), region::lifecycle::<C>));
    all.push(("split_local".into(), region::split_local::<C>));
    all
}

/// The names of the checks, in order.
///
/// ```
/// let names = cobre_comm_conformance::check_names();
/// assert!(names.iter().any(|n| n == "allreduce sum f64"));
/// ```
pub fn check_names() -> Vec<String> {
    checks::<cobre_comm::LocalBackend>()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Runs every check on this rank. Every rank of the job must call it with the same options.
pub fn run_suite<C: Communicator + SharedMemoryProvider>(comm: &C, options: &Options) -> Report {
    let (rank, size) = (comm.rank(), comm.size());
    let mut results = Vec::new();
    for (name, check) in checks::<C>() {
        let mut ctx = Ctx {
            comm,
            opts: options,
            rank,
            size,
            failures: Vec::new(),
            extra_failures: 0,
        };
        let start = Instant::now();
        check(&mut ctx);
        let millis = start.elapsed().as_secs_f64() * 1e3;
        let mut detail = ctx.failures.join("; ");
        if ctx.extra_failures > 0 {
            let _ = write!(detail, "; and {} more", ctx.extra_failures);
        }
        results.push(CheckResult {
            name,
            passed: ctx.failures.is_empty(),
            detail,
            millis,
        });
    }
    Report {
        rank,
        size,
        results,
    }
}
