//! Rows of results across ranks, and the side-by-side table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::measure::{BenchOp, RankResult};

/// One line of results: a backend, a collective, a size; latency across ranks.
///
/// The JSON form is the one `cobre-comm bench --json` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// The backend name.
    pub backend: String,
    /// The collective name.
    pub op: String,
    /// Payload per rank for allreduce and broadcast, total gathered for allgatherv, 0 for
    /// barrier.
    pub bytes: usize,
    /// Mean over ranks of each rank's average latency, in microseconds.
    pub avg_us: f64,
    /// The smallest rank average.
    pub min_us: f64,
    /// The largest rank average.
    pub max_us: f64,
    /// Timed iterations.
    pub iters: usize,
    /// Connections the call needs on the rank that needs most (`cobre-comm model` only;
    /// absent from measured rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
}

/// All results of a run: `{"ranks": N, "results": [...]}`.
///
/// ```
/// let report = cobre_comm_bench::BenchReport { ranks: 2, results: vec![] };
/// assert_eq!(serde_json::to_string(&report).unwrap(), r#"{"ranks":2,"results":[]}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The number of ranks of every job in the run.
    pub ranks: usize,
    /// Every row, backends in the order they ran.
    pub results: Vec<BenchRow>,
}

/// Combines the results of every rank of one job into rows (OSU style: each rank's
/// average, then min/avg/max across ranks).
///
/// ```
/// use cobre_comm_bench::{aggregate, BenchOp, RankResult, Sample};
///
/// let sample = |avg_us| Sample { op: BenchOp::Barrier, bytes: 0, iters: 10, avg_us };
/// let ranks = [
///     RankResult { rank: 0, size: 2, samples: vec![sample(1.0)] },
///     RankResult { rank: 1, size: 2, samples: vec![sample(3.0)] },
/// ];
/// let rows = aggregate("shm", &ranks);
/// assert_eq!((rows[0].min_us, rows[0].avg_us, rows[0].max_us), (1.0, 2.0, 3.0));
/// ```
pub fn aggregate(backend: &str, ranks: &[RankResult]) -> Vec<BenchRow> {
    let Some(first) = ranks.first() else {
        return Vec::new();
    };
    first
        .samples
        .iter()
        .enumerate()
        .map(|(i, sample)| {
            let values: Vec<f64> = ranks
                .iter()
                .filter_map(|r| r.samples.get(i))
                .map(|s| s.avg_us)
                .collect();
            BenchRow {
                backend: backend.to_string(),
                op: sample.op.name().to_string(),
                bytes: sample.bytes,
                avg_us: values.iter().sum::<f64>() / values.len() as f64,
                min_us: values.iter().copied().fold(f64::INFINITY, f64::min),
                max_us: values.iter().copied().fold(0.0, f64::max),
                iters: sample.iters,
                connections: None,
            }
        })
        .collect()
}

/// Formats a byte count: `8`, `4 KiB`, `16 MiB`.
pub(crate) fn human_bytes(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

/// The backends of a report, in the order they first appear.
pub(crate) fn backends(report: &BenchReport) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for row in &report.results {
        if !names.contains(&row.backend) {
            names.push(row.backend.clone());
        }
    }
    names
}

/// Renders one table per collective: a row per size, the average latency of each backend
/// (with the min-max spread across ranks), and, with several backends, the ratio of each
/// to the last one (below 1 means faster than the last backend).
///
/// ```
/// use cobre_comm_bench::{render_table, BenchReport, BenchRow};
///
/// let row = |backend: &str, avg_us| BenchRow {
///     backend: backend.into(), op: "allreduce".into(), bytes: 8,
///     avg_us, min_us: avg_us, max_us: avg_us, iters: 100, connections: None,
/// };
/// let report = BenchReport { ranks: 2, results: vec![row("shm", 0.5), row("mpi", 2.0)] };
/// let table = render_table(&report);
/// assert!(table.contains("shm/mpi"));
/// assert!(table.contains("0.25"));
/// ```
pub fn render_table(report: &BenchReport) -> String {
    let names = backends(report);
    let last = names.last().cloned().unwrap_or_default();
    let mut by_op: BTreeMap<BenchOp, BTreeMap<usize, BTreeMap<&str, &BenchRow>>> = BTreeMap::new();
    for row in &report.results {
        let Ok(op) = row.op.parse::<BenchOp>() else {
            continue;
        };
        by_op
            .entry(op)
            .or_default()
            .entry(row.bytes)
            .or_default()
            .insert(row.backend.as_str(), row);
    }
    let mut out = String::new();
    for (op, sizes) in by_op {
        let _ = writeln!(
            out,
            "\n# {op}, {} ranks: latency in us, average over ranks (min-max across ranks)",
            report.ranks
        );
        let _ = write!(out, "{:>10}", "bytes");
        for name in &names {
            let _ = write!(out, " {name:>24}");
        }
        if names.len() > 1 {
            for name in &names[..names.len() - 1] {
                let _ = write!(out, " {:>10}", format!("{name}/{last}"));
            }
        }
        out.push('\n');
        for (bytes, rows) in sizes {
            let _ = write!(out, "{:>10}", human_bytes(bytes));
            for name in &names {
                match rows.get(name.as_str()) {
                    Some(r) => {
                        let cell = format!("{:.2} ({:.2}-{:.2})", r.avg_us, r.min_us, r.max_us);
                        let _ = write!(out, " {cell:>24}");
                    }
                    None => {
                        let _ = write!(out, " {:>24}", "-");
                    }
                }
            }
            if names.len() > 1 {
                let base = rows.get(last.as_str()).map(|r| r.avg_us);
                for name in &names[..names.len() - 1] {
                    match (rows.get(name.as_str()), base) {
                        (Some(r), Some(b)) if b > 0.0 => {
                            let _ = write!(out, " {:>10.2}", r.avg_us / b);
                        }
                        _ => {
                            let _ = write!(out, " {:>10}", "-");
                        }
                    }
                }
            }
            out.push('\n');
        }
    }
    out
}
