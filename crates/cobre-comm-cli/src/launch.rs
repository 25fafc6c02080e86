//! `cobre-comm launch`: start N local ranks of a program.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use cobre_comm::Backend;
use cobre_comm_launcher::{Binding, Launcher, shm_env, tcp_env};

use crate::CliError;

/// The backends `launch` can set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LaunchBackend {
    /// POSIX shared memory (a unique segment name per job).
    Shm,
    /// TCP on this machine (a free port and a random token per job).
    Tcp,
}

/// Where `launch` places the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bind {
    /// Leave them to the scheduler.
    None,
    /// Each on a CPU of its own (one per physical core first) when they fit, as
    /// `mpiexec --bind-to core`; as many on each CPU when they are a multiple of the CPUs,
    /// unbound when they outnumber the CPUs otherwise. Every thread of a
    /// rank then shares its one CPU: not for ranks that compute with several threads.
    Core,
}

/// Arguments of `cobre-comm launch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of ranks.
    #[arg(short = 'n', long = "ranks", value_name = "N")]
    ranks: usize,
    /// Backend to set up [default: shm when compiled in, else tcp].
    #[arg(long, value_enum)]
    backend: Option<LaunchBackend>,
    /// Stop every rank after this many seconds; also the ranks' timeout for a silent peer.
    #[arg(long, value_name = "S")]
    timeout: Option<f64>,
    /// Where the ranks run.
    #[arg(long, value_enum, default_value = "none")]
    bind: Bind,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROG [ARGS]")]
    command: Vec<OsString>,
}

/// Runs `cobre-comm launch`.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    if args.ranks == 0 {
        return Err(CliError::usage("-n must be at least 1"));
    }
    let timeout = match args.timeout {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(CliError::usage(format!(
                "--timeout must be a positive number of seconds, got {s}"
            )));
        }
        None => None,
    };
    let backend = match args.backend {
        Some(b) => b,
        None if Backend::Shm.is_available() => LaunchBackend::Shm,
        None if Backend::Tcp.is_available() => LaunchBackend::Tcp,
        None => {
            return Err(CliError::new(format!(
                "launch needs the shm or tcp backend, and this build has only: {} (build the tool with its default features)",
                cobre_comm::available_backends().join(", ")
            )));
        }
    };
    let env = match backend {
        LaunchBackend::Shm => shm_env(args.ranks, timeout),
        LaunchBackend::Tcp => tcp_env(args.ranks, timeout)
            .map_err(|e| CliError::new(format!("cannot find a free local port: {e}")))?,
    };
    let (program, rest) = args.command.split_first().expect("clap requires a program");
    let mut launcher = Launcher::new(program)
        .args(rest)
        .ranks(args.ranks)
        .rank_env(env)
        .bind(match args.bind {
            Bind::None => Binding::None,
            Bind::Core => Binding::Cores,
        })
        .forward_signals(true);
    if let Some(t) = timeout {
        launcher = launcher.timeout(t);
    }
    let report = launcher.run().map_err(|e| CliError::new(e.to_string()))?;
    match &report.failure {
        None => Ok(ExitCode::SUCCESS),
        Some(failure) => {
            eprintln!("cobre-comm: {failure}");
            Ok(ExitCode::from(
                u8::try_from(report.exit_code().clamp(1, 255)).unwrap_or(1),
            ))
        }
    }
}
