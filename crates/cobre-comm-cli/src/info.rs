//! `cobre-comm info`: what this binary and this environment offer.

use std::fmt::Write as _;
use std::process::ExitCode;

use cobre_comm::{
    BACKEND_ENV, MPI_LAUNCHER_VARS, available_backends, requested_backend, select_backend,
};
use serde::Serialize;

use crate::CliError;
use crate::ranks::find_on_path;

/// Arguments of `cobre-comm info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the information as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Everything `info` reports.
#[derive(Debug, Serialize)]
struct Info {
    version: &'static str,
    compiled_backends: Vec<String>,
    requested: String,
    selected: Option<String>,
    reason: String,
    environment: Vec<(String, String)>,
    dev_shm: Option<DevShm>,
    dev_shm_error: Option<String>,
    mpi_library: String,
    mpiexec: Option<String>,
}

#[derive(Debug, Serialize)]
struct DevShm {
    total_bytes: u64,
    free_bytes: u64,
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1 << 30))
}

/// The environment variables that influence backend selection and configuration.
fn relevant_environment() -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("COBRE_")
                || MPI_LAUNCHER_VARS.contains(&k.as_str())
                || k == "SLURM_NTASKS"
                || k == "UCX_TLS"
        })
        .map(|(k, v)| {
            if k == cobre_comm::tcp_config::ENV_SECRET {
                (k, "(set, hidden)".to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    vars.sort();
    vars
}

#[cfg(feature = "mpi")]
fn mpi_library() -> String {
    cobre_comm::ferrompi::library_version()
}

#[cfg(not(feature = "mpi"))]
fn mpi_library() -> String {
    "the mpi backend is not compiled in (build with --features mpi)".to_string()
}

/// Runs `cobre-comm info`.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    let (requested, selected, reason) = match requested_backend() {
        Err(e) => (
            std::env::var(BACKEND_ENV).unwrap_or_default(),
            None,
            e.to_string(),
        ),
        Ok(kind) => {
            let raw = std::env::var(BACKEND_ENV).unwrap_or_default();
            match select_backend(kind) {
                Ok(sel) => (raw, Some(sel.backend.to_string()), sel.reason),
                Err(e) => (raw, None, e.to_string()),
            }
        }
    };
    let (dev_shm, dev_shm_error) = match rustix::fs::statvfs("/dev/shm") {
        Ok(st) => (
            Some(DevShm {
                total_bytes: st.f_blocks * st.f_frsize,
                free_bytes: st.f_bavail * st.f_frsize,
            }),
            None,
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    let info = Info {
        version: env!("CARGO_PKG_VERSION"),
        compiled_backends: available_backends(),
        requested,
        selected,
        reason,
        environment: relevant_environment(),
        dev_shm,
        dev_shm_error,
        mpi_library: mpi_library(),
        mpiexec: find_on_path("mpiexec").map(|p| p.display().to_string()),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).map_err(|e| CliError::new(e.to_string()))?
        );
    } else {
        print!("{}", render(&info));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(info: &Info) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cobre-comm {}", info.version);
    let _ = writeln!(
        out,
        "compiled backends:  {}",
        info.compiled_backends.join(", ")
    );
    let _ = writeln!(
        out,
        "{BACKEND_ENV}: {}",
        if info.requested.is_empty() {
            "(unset)"
        } else {
            &info.requested
        }
    );
    match &info.selected {
        Some(backend) => {
            let _ = writeln!(out, "selected backend:   {backend} ({})", info.reason);
        }
        None => {
            let _ = writeln!(out, "selected backend:   none: {}", info.reason);
        }
    }
    let _ = writeln!(out, "environment:");
    if info.environment.is_empty() {
        let _ = writeln!(out, "  (no COBRE_*, MPI launcher or Slurm variable is set)");
    }
    for (k, v) in &info.environment {
        let _ = writeln!(out, "  {k}={v}");
    }
    match (&info.dev_shm, &info.dev_shm_error) {
        (Some(d), _) => {
            let _ = writeln!(
                out,
                "/dev/shm:           {} free of {}",
                gib(d.free_bytes),
                gib(d.total_bytes)
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(out, "/dev/shm:           unavailable ({e})");
        }
        (None, None) => {}
    }
    let _ = writeln!(out, "MPI library:        {}", info.mpi_library);
    let _ = writeln!(
        out,
        "mpiexec:            {}",
        info.mpiexec.as_deref().unwrap_or("not found on PATH")
    );
    out
}
