//! # cobre-comm-bench
//!
//! Measurement of cobre-comm collectives, OSU style, and of an SDDP iteration's
//! communication, written once against `C: Communicator` so every backend is measured by
//! the same code.
//!
//! * [`run_rank`] runs inside each rank: for each collective and each message size (powers
//!   of two), a warm-up, then timed iterations whose send buffers change between
//!   iterations; it returns this rank's average latency per size.
//! * [`run_sddp`] replays the communication of SDDP iterations: a trial-point
//!   `allgatherv`, one cut `allgatherv` per stage, a 4-value convergence `allreduce`.
//! * [`aggregate`] turns the per-rank results of one job into rows (min/avg/max across
//!   ranks), [`render_table`] prints several backends side by side with ratio columns,
//!   [`write_plot`] draws latency against size per backend (SVG).
//!
//! The `cobre-comm bench` command starts the ranks and puts these together.
//!
//! # Example
//! ```
//! use cobre_comm::LocalBackend;
//! use cobre_comm_bench::{aggregate, render_table, run_rank, BenchConfig, BenchOp, BenchReport};
//!
//! let config = BenchConfig { ops: vec![BenchOp::Allreduce], min_bytes: 8, max_bytes: 64, iters: 20, warmup: 2 };
//! let rank = run_rank(&LocalBackend, &config).unwrap();
//! let report = BenchReport { ranks: 1, results: aggregate("local", &[rank]) };
//! assert_eq!(report.results.len(), 4); // 8, 16, 32 and 64 bytes
//! assert!(render_table(&report).contains("allreduce"));
//! ```

mod measure;
mod plot;
mod report;
mod workload;

pub use measure::{
    BenchConfig, BenchOp, RankResult, Sample, first_message_size, message_sizes, run_rank,
};
pub use plot::{PlotError, write_plot};
pub use report::{BenchReport, BenchRow, aggregate, render_table};
pub use workload::{SddpConfig, SddpResult, render_sddp_table, run_sddp};
