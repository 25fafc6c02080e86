//! Jobs of this executable: `check` and `bench` start N ranks of `cobre-comm __rank ...`
//! on a backend, and each rank prints one result line that the driver collects.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use cobre_comm::{Backend, Communicator, create_communicator_with};
use cobre_comm_launcher::{Binding, Launcher, shm_env, tcp_env};

use crate::CliError;

/// The directory where each rank writes its result, as `<rank>.json` (files rather than
/// standard output, which `mpiexec` may interleave between ranks).
const RESULT_DIR_ENV: &str = "COBRE_COMM_RESULT_DIR";

/// A backend a job can run on. `mpi-tcp` is MPI with its transport forced onto TCP
/// (`UCX_TLS=tcp,self`), the fair reference for the tcp backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobBackend {
    /// One process.
    Local,
    /// POSIX shared memory.
    Shm,
    /// TCP sockets.
    Tcp,
    /// MPI, started through `mpiexec`.
    Mpi,
    /// MPI with UCX restricted to TCP, started through `mpiexec`.
    #[value(name = "mpi-tcp")]
    MpiTcp,
}

impl JobBackend {
    /// The library backend the ranks create.
    pub fn kind(self) -> Backend {
        match self {
            JobBackend::Local => Backend::Local,
            JobBackend::Shm => Backend::Shm,
            JobBackend::Tcp => Backend::Tcp,
            JobBackend::Mpi | JobBackend::MpiTcp => Backend::Mpi,
        }
    }

    /// The name shown in tables.
    pub fn name(self) -> &'static str {
        match self {
            JobBackend::Local => "local",
            JobBackend::Shm => "shm",
            JobBackend::Tcp => "tcp",
            JobBackend::Mpi => "mpi",
            JobBackend::MpiTcp => "mpi-tcp",
        }
    }

    /// The default: shm when compiled in, else tcp, else local.
    pub fn default_multi_process() -> JobBackend {
        if Backend::Shm.is_available() {
            JobBackend::Shm
        } else if Backend::Tcp.is_available() {
            JobBackend::Tcp
        } else {
            JobBackend::Local
        }
    }
}

/// What a rank of a job does.
#[derive(Debug, clap::Args)]
pub struct RankArgs {
    #[command(subcommand)]
    task: RankTask,
}

#[derive(Debug, Subcommand)]
enum RankTask {
    /// Run the conformance suite.
    Check {
        #[arg(long, value_enum)]
        backend: JobBackend,
    },
    /// Run the latency measurement described by a JSON configuration.
    Bench {
        #[arg(long, value_enum)]
        backend: JobBackend,
        #[arg(long)]
        config: String,
    },
    /// Replay SDDP iterations described by a JSON configuration.
    Sddp {
        #[arg(long, value_enum)]
        backend: JobBackend,
        #[arg(long)]
        config: String,
    },
}

/// Entry point of a rank.
pub fn rank_main(args: &RankArgs) -> Result<ExitCode, CliError> {
    let backend = match &args.task {
        RankTask::Check { backend }
        | RankTask::Bench { backend, .. }
        | RankTask::Sddp { backend, .. } => *backend,
    };
    let comm =
        create_communicator_with(backend.kind()).map_err(|e| CliError::new(e.to_string()))?;
    let line = match &args.task {
        RankTask::Check { .. } => {
            let report = cobre_comm_conformance::run_suite(
                &comm,
                &cobre_comm_conformance::options_for(backend.kind()),
            );
            serde_json::to_string(&report)
        }
        RankTask::Bench { config, .. } => {
            let config: cobre_comm_bench::BenchConfig = serde_json::from_str(config)
                .map_err(|e| CliError::new(format!("bad bench configuration: {e}")))?;
            let result = cobre_comm_bench::run_rank(&comm, &config)
                .map_err(|e| CliError::new(e.to_string()))?;
            serde_json::to_string(&result)
        }
        RankTask::Sddp { config, .. } => {
            let config: cobre_comm_bench::SddpConfig = serde_json::from_str(config)
                .map_err(|e| CliError::new(format!("bad workload configuration: {e}")))?;
            let result = cobre_comm_bench::run_sddp(&comm, &config)
                .map_err(|e| CliError::new(e.to_string()))?;
            serde_json::to_string(&result)
        }
    }
    .map_err(|e| CliError::new(e.to_string()))?;
    let dir = std::env::var_os(RESULT_DIR_ENV)
        .ok_or_else(|| CliError::new(format!("{RESULT_DIR_ENV} is not set: this command is started by `cobre-comm check` and `cobre-comm bench`")))?;
    let path = PathBuf::from(dir).join(format!("{}.json", comm.rank()));
    std::fs::write(&path, line)
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
    Ok(ExitCode::SUCCESS)
}

/// A private temporary directory, removed on drop.
struct ResultDir {
    path: PathBuf,
}

impl ResultDir {
    fn new() -> Result<ResultDir, CliError> {
        let path = std::env::temp_dir().join(format!(
            "cobre-comm-{}-{}",
            std::process::id(),
            cobre_comm_launcher::unique_token()
        ));
        std::fs::create_dir(&path)
            .map_err(|e| CliError::new(format!("cannot create {}: {e}", path.display())))?;
        Ok(ResultDir { path })
    }
}

impl Drop for ResultDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Finds `program` on `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The MPI launcher to use: `$MPIEXEC`, else `mpiexec` on `PATH`.
pub fn mpiexec() -> Result<PathBuf, CliError> {
    if let Some(explicit) = std::env::var_os("MPIEXEC") {
        return Ok(PathBuf::from(explicit));
    }
    find_on_path("mpiexec").ok_or_else(|| {
        CliError::new("the mpi backend needs `mpiexec` on PATH (install MPICH: apt-get install mpich libmpich-dev), or set MPIEXEC")
    })
}

/// Fails with the library's explanation, plus how to build this tool with the backend,
/// when `backend` is not compiled in.
pub fn ensure_available(backend: JobBackend) -> Result<(), CliError> {
    if backend.kind().is_available() {
        return Ok(());
    }
    let reason = cobre_comm::select_backend(backend.kind())
        .err()
        .map_or_else(
            || format!("backend {} is not available", backend.name()),
            |e| e.to_string(),
        );
    Err(CliError::new(format!(
        "{reason}; for this tool: cargo install --path crates/cobre-comm-cli --features {}",
        backend.kind()
    )))
}

/// The variable that forces `spec` (`collective=algorithm,...`, see
/// `cobre_comm::algorithm`) on `backend`, checked against that backend's algorithms.
///
/// # Errors
/// A usage error naming what `backend` accepts, or saying that it has no choice of
/// algorithms (`local`, `mpi`).
pub fn algorithm_env(
    backend: JobBackend,
    spec: Option<&str>,
) -> Result<Vec<(&'static str, String)>, CliError> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    let (variable, table) = match backend {
        JobBackend::Shm => (cobre_comm::shm::ENV_ALGORITHMS, cobre_comm::shm::ALGORITHMS),
        JobBackend::Tcp => (
            cobre_comm::tcp_config::ENV_ALGORITHMS,
            cobre_comm::tcp_config::ALGORITHMS,
        ),
        other => {
            return Err(CliError::usage(format!(
                "--algorithms applies to the shm and tcp backends, not {}",
                other.name()
            )));
        }
    };
    cobre_comm::algorithm::Forced::parse(spec, table).map_err(|why| {
        CliError::usage(format!(
            "--algorithms {spec:?} for {}: expected {why}",
            backend.name()
        ))
    })?;
    Ok(vec![(variable, spec.to_string())])
}

/// Starts `ranks` ranks of this executable running `cobre-comm __rank <task...>` on
/// `backend` with the `extra` variables, and returns each rank's result line (JSON), in
/// rank order. shm and tcp ranks are placed by `binding` (`mpiexec` places its own).
pub fn run_self(
    backend: JobBackend,
    ranks: usize,
    task: &[String],
    extra: &[(&'static str, String)],
    timeout: Duration,
    binding: Binding,
) -> Result<Vec<String>, CliError> {
    if ranks == 0 {
        return Err(CliError::usage("-n must be at least 1"));
    }
    ensure_available(backend)?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(format!("cannot find this executable: {e}")))?;
    let results = ResultDir::new()?;
    let mut args = vec!["__rank".to_string()];
    args.extend_from_slice(task);
    let launcher = match backend {
        JobBackend::Local => {
            if ranks != 1 {
                return Err(CliError::usage(format!(
                    "the local backend has exactly one rank: use -n 1 (got -n {ranks}), or another backend"
                )));
            }
            Launcher::new(&exe)
                .args(&args)
                .env("COBRE_COMM_BACKEND", "local")
        }
        JobBackend::Shm => Launcher::new(&exe)
            .args(&args)
            .ranks(ranks)
            .rank_env(shm_env(ranks, None))
            .bind(binding),
        JobBackend::Tcp => {
            let env = tcp_env(ranks, None)
                .map_err(|e| CliError::new(format!("cannot find a free local port: {e}")))?;
            Launcher::new(&exe)
                .args(&args)
                .ranks(ranks)
                .rank_env(env)
                .bind(binding)
        }
        JobBackend::Mpi | JobBackend::MpiTcp => {
            let mut mpi_args = vec![
                "-n".to_string(),
                ranks.to_string(),
                exe.to_string_lossy().into_owned(),
            ];
            mpi_args.extend(args);
            let launcher = Launcher::new(mpiexec()?)
                .args(mpi_args)
                .prefix_output(false)
                .env("COBRE_COMM_BACKEND", "mpi");
            if backend == JobBackend::MpiTcp {
                launcher.env("UCX_TLS", "tcp,self")
            } else {
                launcher
            }
        }
    };
    let launcher = extra
        .iter()
        .fold(launcher, |l, (k, v)| l.env(*k, v.clone()));
    let report = launcher
        .env(RESULT_DIR_ENV, results.path.to_string_lossy())
        .forward_signals(true)
        .timeout(timeout)
        .run()
        .map_err(|e| CliError::new(e.to_string()))?;
    let lines: Vec<String> = (0..ranks)
        .filter_map(|rank| std::fs::read_to_string(results.path.join(format!("{rank}.json"))).ok())
        .collect();
    if let Some(failure) = &report.failure {
        let what = if matches!(backend, JobBackend::Mpi | JobBackend::MpiTcp) {
            format!("mpiexec: {failure}")
        } else {
            failure.to_string()
        };
        return Err(CliError::new(format!(
            "{} job on {ranks} ranks failed: {what}",
            backend.name()
        )));
    }
    if lines.len() != ranks {
        return Err(CliError::new(format!(
            "expected one result from each of {ranks} ranks, got {}",
            lines.len()
        )));
    }
    Ok(lines)
}
