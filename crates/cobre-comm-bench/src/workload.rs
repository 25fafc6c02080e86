//! Replay of one SDDP iteration's communication.
//!
//! An SDDP training iteration on `P` ranks, each owning `scenarios` forward scenarios of a
//! problem with `stages` stages and `state` state variables, communicates:
//! 1. the trial points of the forward pass: an `allgatherv` of
//!    `scenarios * stages * state` values per rank;
//! 2. in the backward pass, for each stage, the new cuts: an `allgatherv` of
//!    `scenarios * (state + 1)` values per rank (coefficients and intercept);
//! 3. the convergence test: an `allreduce(Sum)` of 4 values (lower bound, sum and sum of
//!    squares of the upper-bound samples, sample count).

use std::fmt::Write as _;
use std::time::Instant;

use cobre_comm::{CommError, Communicator, ReduceOp};
use serde::{Deserialize, Serialize};

/// The size of the replayed problem.
///
/// ```
/// let config = cobre_comm_bench::SddpConfig::default();
/// assert_eq!(config.bytes_per_iteration(4), 8 * 4 * (10 * 60 * 200 + 60 * 10 * 201) + 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SddpConfig {
    /// Forward scenarios per rank.
    pub scenarios: usize,
    /// State variables (reservoirs, ...).
    pub state: usize,
    /// Stages.
    pub stages: usize,
    /// Timed iterations.
    pub iterations: usize,
    /// Untimed iterations first.
    pub warmup: usize,
}

impl Default for SddpConfig {
    fn default() -> Self {
        SddpConfig {
            scenarios: 10,
            state: 200,
            stages: 60,
            iterations: 20,
            warmup: 2,
        }
    }
}

impl SddpConfig {
    /// Bytes every rank receives in one iteration on `ranks` ranks.
    pub fn bytes_per_iteration(&self, ranks: usize) -> usize {
        let trial = self.scenarios * self.stages * self.state;
        let cuts = self.stages * self.scenarios * (self.state + 1);
        8 * ranks * (trial + cuts) + 8 * 4
    }
}

/// One rank's time per SDDP iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SddpResult {
    /// The rank.
    pub rank: usize,
    /// The number of ranks.
    pub size: usize,
    /// Average wall time of one iteration's communication, in microseconds.
    pub avg_us: f64,
}

fn gather<C: Communicator>(comm: &C, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
    let size = comm.size();
    let counts = vec![send.len(); size];
    let displs: Vec<usize> = (0..size).map(|r| r * send.len()).collect();
    comm.allgatherv(send, recv, &counts, &displs)
}

/// Replays `config.warmup + config.iterations` iterations on this rank and returns the
/// average time of the timed ones. Every rank must call it with the same configuration.
///
/// # Errors
/// The first error a collective returns.
///
/// # Example
/// ```
/// let config = cobre_comm_bench::SddpConfig { iterations: 2, stages: 3, ..Default::default() };
/// let result = cobre_comm_bench::run_sddp(&cobre_comm::LocalBackend, &config).unwrap();
/// assert!(result.avg_us > 0.0);
/// ```
pub fn run_sddp<C: Communicator>(comm: &C, config: &SddpConfig) -> Result<SddpResult, CommError> {
    let size = comm.size();
    let trial_len = config.scenarios * config.stages * config.state;
    let cut_len = config.scenarios * (config.state + 1);
    let mut trial = vec![0.0_f64; trial_len];
    let mut all_trials = vec![0.0_f64; trial_len * size];
    let mut cuts = vec![0.0_f64; cut_len];
    let mut all_cuts = vec![0.0_f64; cut_len * size];
    let mut totals = [0.0_f64; 4];
    comm.barrier()?;
    let mut timed = 0.0;
    for iteration in 0..config.warmup + config.iterations {
        // The "solver" work between collectives is not timed, but it changes the data.
        for (i, x) in trial.iter_mut().enumerate().step_by(8) {
            *x = (iteration + i) as f64;
        }
        let start = Instant::now();
        gather(comm, &trial, &mut all_trials)?;
        for stage in 0..config.stages {
            cuts[0] = (iteration * config.stages + stage) as f64;
            gather(comm, &cuts, &mut all_cuts)?;
        }
        let bounds = [1.0, iteration as f64, 2.0, config.scenarios as f64];
        comm.allreduce(&bounds, &mut totals, ReduceOp::Sum)?;
        if iteration >= config.warmup {
            timed += start.elapsed().as_secs_f64();
        }
    }
    Ok(SddpResult {
        rank: comm.rank(),
        size,
        avg_us: timed * 1e6 / config.iterations.max(1) as f64,
    })
}

/// Renders per-backend iteration times (min/avg/max across ranks) with ratios to the last
/// backend. Each entry is `(backend, results of every rank)`.
///
/// ```
/// use cobre_comm_bench::{render_sddp_table, SddpConfig, SddpResult};
/// let r = |avg_us| vec![SddpResult { rank: 0, size: 1, avg_us }];
/// let table = render_sddp_table(&SddpConfig::default(), &[("shm".into(), r(10.0)), ("mpi".into(), r(20.0))]);
/// assert!(table.contains("0.50"));
/// ```
pub fn render_sddp_table(config: &SddpConfig, runs: &[(String, Vec<SddpResult>)]) -> String {
    let ranks = runs
        .first()
        .and_then(|(_, r)| r.first())
        .map_or(0, |r| r.size);
    let mut out = format!(
        "\n# SDDP iteration, {ranks} ranks: {} scenarios/rank, {} states, {} stages ({:.1} MiB received per rank per iteration)\n",
        config.scenarios,
        config.state,
        config.stages,
        config.bytes_per_iteration(ranks) as f64 / f64::from(1 << 20)
    );
    let _ = writeln!(
        out,
        "{:>10} {:>14} {:>14} {:>14} {:>10}",
        "backend", "avg ms/iter", "min", "max", "ratio"
    );
    let stats: Vec<(f64, f64, f64)> = runs
        .iter()
        .map(|(_, results)| {
            let values: Vec<f64> = results.iter().map(|r| r.avg_us / 1e3).collect();
            let avg = values.iter().sum::<f64>() / values.len().max(1) as f64;
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(0.0, f64::max);
            (avg, min, max)
        })
        .collect();
    let base = stats.last().map_or(1.0, |s| s.0);
    for ((name, _), (avg, min, max)) in runs.iter().zip(&stats) {
        let _ = writeln!(
            out,
            "{name:>10} {avg:>14.3} {min:>14.3} {max:>14.3} {:>10.2}",
            avg / base
        );
    }
    out
}
