//! The OSU-style latency loop, run inside every rank.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cobre_comm::{CommError, Communicator, ReduceOp};
use serde::{Deserialize, Serialize};

/// A collective to measure.
///
/// ```
/// use cobre_comm_bench::BenchOp;
/// assert_eq!("allgatherv".parse::<BenchOp>().unwrap(), BenchOp::Allgatherv);
/// assert!("gather".parse::<BenchOp>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchOp {
    /// `allreduce(Sum)` of `bytes / 8` f64 per rank.
    Allreduce,
    /// `allgatherv` gathering `bytes` in total (f64, spread evenly over the ranks).
    Allgatherv,
    /// `broadcast` of `bytes` from rank 0.
    Broadcast,
    /// `barrier` (reported with 0 bytes).
    Barrier,
}

impl BenchOp {
    /// Every collective, in report order.
    pub const ALL: [BenchOp; 4] = [
        BenchOp::Allreduce,
        BenchOp::Allgatherv,
        BenchOp::Broadcast,
        BenchOp::Barrier,
    ];

    /// The lower-case name used on the command line and in JSON.
    ///
    /// ```
    /// assert_eq!(cobre_comm_bench::BenchOp::Barrier.name(), "barrier");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            BenchOp::Allreduce => "allreduce",
            BenchOp::Allgatherv => "allgatherv",
            BenchOp::Broadcast => "broadcast",
            BenchOp::Barrier => "barrier",
        }
    }
}

impl fmt::Display for BenchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BenchOp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        BenchOp::ALL
            .into_iter()
            .find(|op| op.name() == wanted)
            .ok_or_else(|| format!("unknown collective {s:?}: expected one of allreduce, allgatherv, broadcast, barrier"))
    }
}

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// The collectives, in order.
    pub ops: Vec<BenchOp>,
    /// The smallest message, in bytes (rounded up to a power of two, at least 8).
    pub min_bytes: usize,
    /// The largest message, in bytes.
    pub max_bytes: usize,
    /// Timed iterations for messages up to 64 KiB; larger messages get proportionally
    /// fewer, at least 10.
    pub iters: usize,
    /// Untimed iterations before the timed ones (at least 1).
    pub warmup: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            ops: BenchOp::ALL.to_vec(),
            min_bytes: 8,
            max_bytes: 16 << 20,
            iters: 1000,
            warmup: 20,
        }
    }
}

impl BenchConfig {
    /// Timed iterations for a message of `bytes`.
    ///
    /// ```
    /// let config = cobre_comm_bench::BenchConfig { iters: 1000, ..Default::default() };
    /// assert_eq!(config.iters_for(8), 1000);
    /// assert_eq!(config.iters_for(16 << 20), 10);
    /// ```
    pub fn iters_for(&self, bytes: usize) -> usize {
        const FULL: usize = 64 << 10;
        if bytes <= FULL {
            self.iters.max(1)
        } else {
            (self.iters * FULL / bytes).max(10).min(self.iters.max(1))
        }
    }
}

/// The smallest message size a sweep from `min_bytes` measures: `min_bytes` rounded up to
/// whole 8-byte elements, at least one.
///
/// ```
/// assert_eq!(cobre_comm_bench::first_message_size(0), 8);
/// assert_eq!(cobre_comm_bench::first_message_size(12), 16);
/// assert_eq!(cobre_comm_bench::first_message_size(1_966_080), 1_966_080);
/// ```
pub fn first_message_size(min_bytes: usize) -> usize {
    min_bytes.max(8).next_multiple_of(8)
}

/// The message sizes measured for `op`: `[0]` for barrier, otherwise
/// [`first_message_size`] doubled while at most `max_bytes`, as the OSU
/// micro-benchmarks step from their minimum size. Empty when no such size fits.
///
/// ```
/// use cobre_comm_bench::{message_sizes, BenchConfig, BenchOp};
/// let config = BenchConfig { min_bytes: 5, max_bytes: 40, ..Default::default() };
/// assert_eq!(message_sizes(&config, BenchOp::Broadcast), [8, 16, 32]);
/// let one = BenchConfig { min_bytes: 1_966_080, max_bytes: 1_966_080, ..Default::default() };
/// assert_eq!(message_sizes(&one, BenchOp::Allgatherv), [1_966_080]);
/// assert_eq!(message_sizes(&config, BenchOp::Barrier), [0]);
/// ```
pub fn message_sizes(config: &BenchConfig, op: BenchOp) -> Vec<usize> {
    if op == BenchOp::Barrier {
        return vec![0];
    }
    let mut sizes = Vec::new();
    let mut bytes = first_message_size(config.min_bytes);
    while bytes <= config.max_bytes {
        sizes.push(bytes);
        bytes *= 2;
    }
    sizes
}

/// One rank's measurement of one collective at one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The collective.
    pub op: BenchOp,
    /// Message size (see [`BenchOp`]).
    pub bytes: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Average latency of one call on this rank, in microseconds.
    pub avg_us: f64,
}

/// Everything one rank measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankResult {
    /// The rank.
    pub rank: usize,
    /// The number of ranks.
    pub size: usize,
    /// One sample per (collective, size), in order.
    pub samples: Vec<Sample>,
}

/// Runs the measurement on this rank; every rank of the job must call it with the same
/// configuration.
///
/// # Errors
/// The first error a collective returns.
pub fn run_rank<C: Communicator>(comm: &C, config: &BenchConfig) -> Result<RankResult, CommError> {
    let (rank, size) = (comm.rank(), comm.size());
    let mut samples = Vec::new();
    for &op in &config.ops {
        for bytes in message_sizes(config, op) {
            let iters = config.iters_for(bytes);
            let warmup = config.warmup.max(1);
            comm.barrier()?;
            let elapsed = match op {
                BenchOp::Allreduce => time_allreduce(comm, bytes / 8, warmup, iters)?,
                BenchOp::Allgatherv => time_allgatherv(comm, bytes / 8, warmup, iters)?,
                BenchOp::Broadcast => time_broadcast(comm, bytes / 8, warmup, iters)?,
                BenchOp::Barrier => {
                    time_loop(&mut (), warmup, iters, |(), _| {}, |()| comm.barrier())?
                }
            };
            samples.push(Sample {
                op,
                bytes,
                iters,
                avg_us: elapsed.as_secs_f64() * 1e6 / iters as f64,
            });
        }
    }
    comm.barrier()?;
    Ok(RankResult {
        rank,
        size,
        samples,
    })
}

/// Runs `prepare` (untimed) then `call` (timed) `warmup + iters` times on `state`;
/// returns the time spent in the timed calls after the warm-up.
fn time_loop<S>(
    state: &mut S,
    warmup: usize,
    iters: usize,
    prepare: impl Fn(&mut S, usize),
    call: impl Fn(&mut S) -> Result<(), CommError>,
) -> Result<Duration, CommError> {
    let mut total = Duration::ZERO;
    for i in 0..warmup + iters {
        prepare(state, i);
        let start = Instant::now();
        call(state)?;
        if i >= warmup {
            total += start.elapsed();
        }
    }
    Ok(total)
}

/// Changes one value per cache line, so that every iteration sends different data.
fn vary(buf: &mut [f64], iteration: usize) {
    for x in buf.iter_mut().step_by(8) {
        *x = iteration as f64 + 0.5;
    }
}

fn time_allreduce<C: Communicator>(
    comm: &C,
    len: usize,
    warmup: usize,
    iters: usize,
) -> Result<Duration, CommError> {
    let mut buffers = (vec![1.0_f64; len], vec![0.0_f64; len]);
    time_loop(
        &mut buffers,
        warmup,
        iters,
        |(send, _), i| vary(send, i),
        |(send, recv)| comm.allreduce(send, recv, ReduceOp::Sum),
    )
}

fn time_allgatherv<C: Communicator>(
    comm: &C,
    total: usize,
    warmup: usize,
    iters: usize,
) -> Result<Duration, CommError> {
    let size = comm.size();
    let counts = cobre_comm::per_rank_counts(total, size);
    let displs = cobre_comm::prefix_displs(&counts);
    let mut buffers = (
        vec![comm.rank() as f64; counts[comm.rank()]],
        vec![0.0_f64; total],
    );
    time_loop(
        &mut buffers,
        warmup,
        iters,
        |(send, _), i| vary(send, i),
        |(send, recv)| comm.allgatherv(send, recv, &counts, &displs),
    )
}

fn time_broadcast<C: Communicator>(
    comm: &C,
    len: usize,
    warmup: usize,
    iters: usize,
) -> Result<Duration, CommError> {
    let mut buf = vec![0.0_f64; len];
    let root = comm.rank() == 0;
    time_loop(
        &mut buf,
        warmup,
        iters,
        |buf, i| {
            if root {
                vary(buf, i);
            }
        },
        |buf| comm.broadcast(buf, 0),
    )
}
