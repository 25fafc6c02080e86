//! `cobre-comm bench`: OSU-style latency per message size, or the SDDP workload, on one or
//! several backends side by side.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use cobre_comm_bench::{
    BenchConfig, BenchOp, BenchReport, RankResult, SddpConfig, SddpResult, aggregate,
    render_sddp_table, render_table, write_plot,
};
use cobre_comm_launcher::Binding;
use indicatif::{ProgressBar, ProgressStyle};

use crate::CliError;
use crate::ranks::{JobBackend, algorithm_env, run_self};

/// A workload to replay instead of the per-size latency sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// One SDDP iteration: trial-point allgatherv, one cut allgatherv per stage, a
    /// 4-value convergence allreduce.
    Sddp,
}

/// How `bench` places shm and tcp ranks: one per core when they fit, as the MPI launchers
/// the benchmarks compare with do by default (Open MPI binds to cores for small jobs,
/// Intel MPI pins), so that two ranks do not share a core until the scheduler moves one.
const BENCH_BINDING: Binding = Binding::Cores;

/// Arguments of `cobre-comm bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of ranks. shm and tcp ranks are bound one per core when they fit, as the MPI
    /// launchers bind theirs.
    #[arg(short = 'n', long = "ranks", value_name = "N", default_value_t = 2)]
    ranks: usize,
    /// Backends, comma-separated; ratio columns compare each with the last one
    /// [default: shm when compiled in, else tcp]. `local` always runs one rank: its
    /// allgatherv row is the time of one memcpy of the same bytes.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "B1,B2,..")]
    backend: Vec<JobBackend>,
    #[command(flatten)]
    cells: Cells,
    /// Timed iterations per size (fewer above 64 KiB, at least 10).
    #[arg(long, value_name = "K", default_value_t = 1000)]
    iters: usize,
    /// Write the results as JSON: {"ranks": N, "results": [...]}.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Draw latency against message size per backend (SVG).
    #[arg(long, value_name = "PATH")]
    plot: Option<PathBuf>,
    /// Replay a workload instead of the latency sweep.
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// SDDP workload: forward scenarios per rank.
    #[arg(long, default_value_t = 10)]
    scenarios: usize,
    /// SDDP workload: state variables.
    #[arg(long, default_value_t = 200)]
    state: usize,
    /// SDDP workload: stages.
    #[arg(long, default_value_t = 60)]
    stages: usize,
    /// SDDP workload: timed iterations.
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Stop a job that runs longer than this many seconds.
    #[arg(long, value_name = "S", default_value_t = 1800.0)]
    timeout: f64,
    /// Force algorithms on the shm and tcp backends, as `collective=algorithm,...` (for
    /// example `allreduce=reduce-scatter-allgather`); `cobre-comm info` lists them.
    #[arg(long, value_name = "SPEC")]
    algorithms: Option<String>,
}

/// The collectives and message sizes of a sweep (`bench` and `model`).
#[derive(Debug, clap::Args)]
pub struct Cells {
    /// Collectives, comma-separated [default: all four].
    #[arg(long, value_delimiter = ',', value_name = "OP,..", value_parser = parse_op)]
    op: Vec<BenchOp>,
    /// Smallest message in bytes (per rank for allreduce and broadcast, total for allgatherv).
    #[arg(long, value_name = "X", default_value_t = 8)]
    min_bytes: usize,
    /// Largest message in bytes.
    #[arg(long, value_name = "Y", default_value_t = 16 << 20)]
    max_bytes: usize,
}

impl Cells {
    /// The collectives asked for, all four by default.
    pub fn ops(&self) -> Vec<BenchOp> {
        if self.op.is_empty() {
            BenchOp::ALL.to_vec()
        } else {
            self.op.clone()
        }
    }

    /// A usage error unless `--min-bytes` is at most `--max-bytes` and the range holds a
    /// message size (a whole number of 8-byte elements).
    pub fn check(&self) -> Result<(), CliError> {
        if self.min_bytes > self.max_bytes {
            return Err(CliError::usage(format!(
                "--min-bytes ({}) is larger than --max-bytes ({})",
                self.min_bytes, self.max_bytes
            )));
        }
        let first = cobre_comm_bench::first_message_size(self.min_bytes);
        if first > self.max_bytes {
            return Err(CliError::usage(format!(
                "no message size from --min-bytes {} to --max-bytes {}: sizes are whole 8-byte \
                 elements, so the smallest here would be {first}",
                self.min_bytes, self.max_bytes
            )));
        }
        Ok(())
    }

    /// A configuration with these sizes (and the default iterations).
    #[cfg(feature = "tcp")] // for `model`, which runs the tcp schedules
    pub fn config(&self) -> BenchConfig {
        BenchConfig {
            min_bytes: self.min_bytes,
            max_bytes: self.max_bytes,
            ..BenchConfig::default()
        }
    }
}

fn parse_op(s: &str) -> Result<BenchOp, String> {
    s.parse()
}

/// Runs `cobre-comm bench`.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    let backends = if args.backend.is_empty() {
        vec![JobBackend::default_multi_process()]
    } else {
        args.backend.clone()
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(CliError::usage(
            "--timeout must be a positive number of seconds",
        ));
    }
    args.cells.check()?;
    let timeout = Duration::from_secs_f64(args.timeout);
    match args.workload {
        Some(Workload::Sddp) => sddp(args, &backends, timeout),
        None => sweep(args, &backends, timeout),
    }
}

fn progress(steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

fn sweep(args: &Args, backends: &[JobBackend], timeout: Duration) -> Result<ExitCode, CliError> {
    let ops = args.cells.ops();
    let bar = progress(backends.len() * ops.len());
    let mut report = BenchReport {
        ranks: args.ranks,
        results: Vec::new(),
    };
    for &backend in backends {
        for &op in &ops {
            bar.set_message(format!("{} {op}", backend.name()));
            let config = BenchConfig {
                ops: vec![op],
                min_bytes: args.cells.min_bytes,
                max_bytes: args.cells.max_bytes,
                iters: args.iters.max(1),
                warmup: (args.iters / 5).clamp(10, 1000),
            };
            let json = serde_json::to_string(&config).map_err(|e| CliError::new(e.to_string()))?;
            let task =
                ["bench", "--backend", backend.name(), "--config", &json].map(str::to_string);
            // `local` is one rank: its allgatherv is one memcpy of the whole payload, the
            // floor the other backends are compared with.
            let ranks = if backend == JobBackend::Local {
                1
            } else {
                args.ranks
            };
            let extra = algorithm_env(backend, args.algorithms.as_deref())?;
            let lines = run_self(backend, ranks, &task, &extra, timeout, BENCH_BINDING)?;
            let results = parse::<RankResult>(&lines)?;
            report.results.extend(aggregate(backend.name(), &results));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    print!("{}", render_table(&report));
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::new(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.plot {
        write_plot(&report, path).map_err(|e| CliError::new(e.to_string()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn sddp(args: &Args, backends: &[JobBackend], timeout: Duration) -> Result<ExitCode, CliError> {
    let config = SddpConfig {
        scenarios: args.scenarios,
        state: args.state,
        stages: args.stages,
        iterations: args.iterations.max(1),
        warmup: 2,
    };
    let json = serde_json::to_string(&config).map_err(|e| CliError::new(e.to_string()))?;
    let bar = progress(backends.len());
    let mut runs = Vec::new();
    for &backend in backends {
        bar.set_message(format!("{} sddp", backend.name()));
        let task = ["sddp", "--backend", backend.name(), "--config", &json].map(str::to_string);
        let extra = algorithm_env(backend, args.algorithms.as_deref())?;
        let lines = run_self(backend, args.ranks, &task, &extra, timeout, BENCH_BINDING)?;
        runs.push((backend.name().to_string(), parse::<SddpResult>(&lines)?));
        bar.inc(1);
    }
    bar.finish_and_clear();
    print!("{}", render_sddp_table(&config, &runs));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&runs).map_err(|e| CliError::new(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses each rank's result line, sorted by rank.
fn parse<T: serde::de::DeserializeOwned + HasRank>(lines: &[String]) -> Result<Vec<T>, CliError> {
    let mut results = lines
        .iter()
        .map(|l| serde_json::from_str::<T>(l))
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| CliError::new(format!("a rank sent an unreadable result: {e}")))?;
    results.sort_by_key(HasRank::rank);
    Ok(results)
}

/// Results that know which rank produced them.
trait HasRank {
    fn rank(&self) -> usize;
}

impl HasRank for RankResult {
    fn rank(&self) -> usize {
        self.rank
    }
}

impl HasRank for SddpResult {
    fn rank(&self) -> usize {
        self.rank
    }
}
