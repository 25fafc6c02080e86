//! `cobre-comm check`: the conformance suite on N ranks of a backend.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cobre_comm_conformance::Report;
use cobre_comm_launcher::Binding;

use crate::CliError;
use crate::ranks::{JobBackend, algorithm_env, run_self};

/// Arguments of `cobre-comm check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of ranks [default: 1 for local, 2 otherwise].
    #[arg(short = 'n', long = "ranks", value_name = "N")]
    ranks: Option<usize>,
    /// Backend to check [default: shm when compiled in, else tcp, else local].
    #[arg(long, value_enum)]
    backend: Option<JobBackend>,
    /// Stop the job after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 600.0)]
    timeout: f64,
    /// Also write every rank's report to this file (JSON).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Force algorithms (shm and tcp), as `collective=algorithm,...`, to check them at
    /// every size; `cobre-comm info` lists them.
    #[arg(long, value_name = "SPEC")]
    algorithms: Option<String>,
}

/// Runs `cobre-comm check`.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    let backend = args
        .backend
        .unwrap_or_else(JobBackend::default_multi_process);
    let ranks = args
        .ranks
        .unwrap_or(if backend == JobBackend::Local { 1 } else { 2 });
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(CliError::usage(
            "--timeout must be a positive number of seconds",
        ));
    }
    crate::ranks::ensure_available(backend)?;
    println!(
        "cobre-comm check: conformance suite on {ranks} rank(s) of the {} backend",
        backend.name()
    );
    let task = vec![
        "check".to_string(),
        "--backend".to_string(),
        backend.name().to_string(),
    ];
    let extra = algorithm_env(backend, args.algorithms.as_deref())?;
    let lines = run_self(
        backend,
        ranks,
        &task,
        &extra,
        Duration::from_secs_f64(args.timeout),
        Binding::None,
    )?;
    let mut reports = lines
        .iter()
        .map(|l| serde_json::from_str::<Report>(l))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::new(format!("a rank sent an unreadable report: {e}")))?;
    reports.sort_by_key(|r| r.rank);
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&reports).map_err(|e| CliError::new(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
    }
    let (table, failed) = render(&reports);
    print!("{table}");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A table of checks (rows) with the outcome on every rank, and the number of failed checks.
fn render(reports: &[Report]) -> (String, usize) {
    let mut out = String::new();
    let Some(first) = reports.first() else {
        return ("no reports\n".into(), 1);
    };
    let width = first
        .results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(10)
        .max(10);
    let _ = writeln!(
        out,
        "{:width$}  {:>6}  {:>9}  detail",
        "check", "result", "max ms"
    );
    let (mut passed, mut failed) = (0, 0);
    for (i, check) in first.results.iter().enumerate() {
        let per_rank: Vec<_> = reports
            .iter()
            .filter_map(|r| r.results.get(i).map(|c| (r.rank, c)))
            .collect();
        let max_ms = per_rank.iter().map(|(_, c)| c.millis).fold(0.0, f64::max);
        let failures: Vec<String> = per_rank
            .iter()
            .filter(|(_, c)| !c.passed)
            .map(|(rank, c)| format!("rank {rank}: {}", c.detail))
            .collect();
        if failures.is_empty() {
            passed += 1;
            let _ = writeln!(out, "{:width$}  {:>6}  {max_ms:>9.1}", check.name, "pass");
        } else {
            failed += 1;
            let more = if failures.len() > 1 {
                format!(" (and {} more ranks)", failures.len() - 1)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{:width$}  {:>6}  {max_ms:>9.1}  {}{more}",
                check.name, "FAIL", failures[0]
            );
        }
    }
    let _ = writeln!(out, "\n{passed} passed, {failed} failed");
    (out, failed)
}
