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
    /// How the `tcp` backend would join its job, when it is the one selected.
    tcp: Option<TcpView>,
    /// The algorithms of the compiled multi-process backends.
    algorithms: Vec<BackendAlgorithms>,
}

/// One backend's algorithms, and what this machine allows.
#[derive(Debug, Serialize)]
struct BackendAlgorithms {
    backend: &'static str,
    variable: &'static str,
    /// `collective: name, name` lines, the default pick first.
    table: Vec<String>,
    /// Algorithms this machine does not allow, and why.
    unavailable: Option<String>,
    /// How the backend's ranks signal each other on this machine, when it has a choice.
    signalling: Option<String>,
    /// What the backend's transport gets from this machine (tcp: its socket buffers).
    transport: Option<String>,
    /// The congestion control the backend's connections use (tcp).
    congestion: Option<String>,
    /// How long a waiting rank keeps its core busy on this node before it sleeps.
    waiting: Option<String>,
}

/// A short duration in the unit that reads best: `20 ms`, `50 us`.
#[cfg(any(feature = "shm", feature = "tcp"))]
fn short_duration(d: std::time::Duration) -> String {
    if d.as_micros() >= 1000 && d.as_micros().is_multiple_of(1000) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} us", d.as_micros())
    }
}

/// How a waiting rank (`who`) spends its time on a node of `cores` cores before it
/// `rest`s: `spin(ranks, cores)` is its backend's rule, asked for a job that fits the
/// cores and for one that outnumbers them.
#[cfg(any(feature = "shm", feature = "tcp"))]
fn waiting(
    who: &str,
    rest: &str,
    cores: usize,
    spin: impl Fn(usize, usize) -> std::time::Duration,
) -> String {
    let crowded = spin(cores + 1, cores);
    let crowded = if crowded.is_zero() {
        "at once".to_string()
    } else {
        format!("after {}", short_duration(crowded))
    };
    format!(
        "waiting: {who} busy-polls up to {} before it {rest}, while the ranks fit this node's {cores} cores; {crowded} with more ranks",
        short_duration(spin(cores, cores))
    )
}

/// The shm signalling a job of this node gets, by size.
#[cfg(feature = "shm")]
fn shm_signalling() -> String {
    use cobre_comm::shm::{ENV_SIGNALLING, FLAT_MAX_RANKS, Signalling};
    let cores = cobre_comm::node_cores();
    let large = FLAT_MAX_RANKS + 1;
    let above = if cores >= large {
        format!(
            "{} from {large} to {cores} ranks, {} above (more ranks than cores)",
            Signalling::pick(large, cores),
            Signalling::pick(cores + 1, cores)
        )
    } else {
        format!(
            "{} above (more ranks than cores)",
            Signalling::pick(large, cores)
        )
    };
    format!(
        "steps signal {} up to {FLAT_MAX_RANKS} ranks, {above}; this node gives a job {cores} cores \
         (force with {ENV_SIGNALLING}=flat|dissemination)",
        Signalling::pick(1, cores)
    )
}

/// What a tcp connection of this machine asks of the kernel, and what to change when it
/// asks nothing.
#[cfg(feature = "tcp")]
fn socket_buffers(buffers: cobre_comm::tcp_config::SocketBuffers) -> String {
    use cobre_comm::tcp_config::{SOCKET_BUFFER_BYTES, SOCKET_BUFFER_MIN_LIMIT};
    let mib = |bytes: usize| format!("{:.1} MiB", bytes as f64 / f64::from(1_u32 << 20));
    let limit = |name: &str, value: Option<usize>| match value {
        Some(bytes) => format!("net.core.{name} {}", mib(bytes)),
        None => format!("net.core.{name} unreadable"),
    };
    let limits = format!(
        "{}, {}",
        limit("wmem_max", buffers.send_limit),
        limit("rmem_max", buffers.recv_limit)
    );
    let way = |asked: Option<usize>| asked.map_or_else(|| "autotuned".to_string(), mib);
    let fix = if buffers.send.is_some() && buffers.recv.is_some() {
        String::new()
    } else {
        format!(
            "; large messages go faster with fixed buffers: raise both limits to at least {} \
             (sysctl -w net.core.wmem_max={SOCKET_BUFFER_BYTES} net.core.rmem_max={SOCKET_BUFFER_BYTES})",
            mib(SOCKET_BUFFER_MIN_LIMIT)
        )
    };
    format!(
        "socket buffers: send {}, receive {} ({limits}){fix}",
        way(buffers.send),
        way(buffers.recv)
    )
}

/// The congestion control of tcp connections: fixed within a host whose ranks fit its
/// cores, the system's (`system`, when it could be read) otherwise.
#[cfg(feature = "tcp")]
fn congestion(system: Option<&str>) -> String {
    use cobre_comm::tcp_config::WITHIN_HOST_CONGESTION;
    let between = system.map_or_else(
        || "the system's default (net.ipv4.tcp_congestion_control unreadable)".to_string(),
        |name| format!("the system's default, {name}"),
    );
    format!(
        "congestion control: {WITHIN_HOST_CONGESTION} between ranks of one host while they fit its cores, \
         otherwise {between}"
    )
}

fn algorithms() -> Vec<BackendAlgorithms> {
    #[allow(unused_mut)] // empty when neither shm nor tcp is compiled in
    let mut out = Vec::new();
    let lines = |table| {
        cobre_comm::algorithm::describe(table)
            .lines()
            .map(str::to_string)
            .collect::<Vec<String>>()
    };
    #[cfg(feature = "shm")]
    out.push(BackendAlgorithms {
        backend: "shm",
        variable: cobre_comm::shm::ENV_ALGORITHMS,
        table: lines(cobre_comm::shm::ALGORITHMS),
        unavailable: cobre_comm::shm::single_copy_available()
            .err()
            .map(|why| format!("single-copy: {why}")),
        signalling: Some(shm_signalling()),
        transport: None,
        congestion: None,
        waiting: Some(waiting(
            "a rank",
            "yields its core and then sleeps on a futex",
            cobre_comm::node_cores(),
            cobre_comm::shm::spin_before_yield,
        )),
    });
    #[cfg(feature = "tcp")]
    out.push(BackendAlgorithms {
        backend: "tcp",
        variable: cobre_comm::tcp_config::ENV_ALGORITHMS,
        table: lines(cobre_comm::tcp_config::ALGORITHMS),
        unavailable: None,
        signalling: None,
        transport: Some(socket_buffers(cobre_comm::tcp_config::SocketBuffers::here())),
        congestion: Some(congestion(
            cobre_comm::tcp_config::system_congestion().as_deref(),
        )),
        waiting: Some(waiting(
            "an exchange",
            "sleeps in poll",
            cobre_comm::node_cores(),
            cobre_comm::tcp::spin_before_sleep,
        )),
    });
    let _ = lines;
    out
}

/// The `tcp` configuration derived from the environment (and the Slurm step).
#[derive(Debug, Serialize)]
struct TcpView {
    rank: Option<usize>,
    size: Option<usize>,
    coordinator: Option<String>,
    port: Option<u16>,
    from_slurm_step: bool,
    authenticated: bool,
    error: Option<String>,
}

fn tcp_view() -> TcpView {
    let from_slurm_step = matches!(cobre_comm::slurm::SlurmStep::from_env(), Some(Ok(_)));
    let authenticated =
        std::env::var(cobre_comm::tcp_config::ENV_TOKEN).is_ok_and(|t| !t.is_empty());
    match cobre_comm::TcpConfig::from_env() {
        Ok(config) => TcpView {
            rank: Some(config.rank),
            size: Some(config.size),
            coordinator: config.coordinator.clone(),
            port: Some(config.port),
            from_slurm_step,
            authenticated,
            error: None,
        },
        Err(e) => TcpView {
            rank: None,
            size: None,
            coordinator: None,
            port: None,
            from_slurm_step,
            authenticated,
            error: Some(e.to_string()),
        },
    }
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
                || cobre_comm::slurm::ENV_ALL.contains(&k.as_str())
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
        tcp: None,
        algorithms: algorithms(),
    };
    let info = Info {
        tcp: (info.selected.as_deref() == Some("tcp")).then(tcp_view),
        ..info
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
    if let Some(tcp) = &info.tcp {
        render_tcp(&mut out, tcp);
    }
    for backend in &info.algorithms {
        let _ = writeln!(
            out,
            "{} algorithms (default first; force with {}=collective=name,...):",
            backend.backend, backend.variable
        );
        for line in &backend.table {
            let _ = writeln!(out, "  {line}");
        }
        match &backend.unavailable {
            Some(why) => {
                let _ = writeln!(out, "  not on this machine: {why}");
            }
            None if backend.backend == "shm" => {
                let _ = writeln!(out, "  single-copy transfers: allowed on this machine");
            }
            None => {}
        }
        if let Some(signalling) = &backend.signalling {
            let _ = writeln!(out, "  {signalling}");
        }
        if let Some(transport) = &backend.transport {
            let _ = writeln!(out, "  {transport}");
        }
        if let Some(congestion) = &backend.congestion {
            let _ = writeln!(out, "  {congestion}");
        }
        if let Some(waiting) = &backend.waiting {
            let _ = writeln!(out, "  {waiting}");
        }
    }
    let _ = writeln!(out, "MPI library:        {}", info.mpi_library);
    let _ = writeln!(
        out,
        "mpiexec:            {}",
        info.mpiexec.as_deref().unwrap_or("not found on PATH")
    );
    out
}

fn render_tcp(out: &mut String, tcp: &TcpView) {
    let source = if tcp.from_slurm_step {
        "from the Slurm step, COBRE_TCP_* variables overriding"
    } else {
        "from the COBRE_TCP_* variables"
    };
    if let Some(error) = &tcp.error {
        let _ = writeln!(out, "tcp ({source}): cannot configure: {error}");
        return;
    }
    let show = |v: Option<String>| v.unwrap_or_else(|| "(unset)".into());
    let _ = writeln!(
        out,
        "tcp ({source}): rank {} of {}, coordinator {}, port {}",
        show(tcp.rank.map(|r| r.to_string())),
        show(tcp.size.map(|s| s.to_string())),
        show(tcp.coordinator.clone()),
        show(tcp.port.map(|p| p.to_string()))
    );
    if tcp.authenticated {
        let _ = writeln!(
            out,
            "tcp token:          set: peers must prove they know it"
        );
    } else {
        let _ = writeln!(
            out,
            "tcp token:          NOT SET: the job is unauthenticated; anyone who can reach the coordinator's port \
             can take a rank (set COBRE_TCP_TOKEN to the same secret for every rank)"
        );
    }
}

#[cfg(all(test, feature = "tcp"))]
mod tests {
    use super::{congestion, socket_buffers, waiting};
    use cobre_comm::tcp_config::SocketBuffers;

    #[test]
    fn waiting_says_how_long_a_rank_keeps_its_core() {
        use std::time::Duration;
        let shm_like = |ranks: usize, cores: usize| {
            if ranks <= cores {
                Duration::from_millis(20)
            } else {
                Duration::ZERO
            }
        };
        assert_eq!(
            waiting("a rank", "sleeps", 2, shm_like),
            "waiting: a rank busy-polls up to 20 ms before it sleeps, while the ranks fit this node's 2 cores; at once with more ranks"
        );
        let tcp = waiting(
            "an exchange",
            "sleeps in poll",
            8,
            cobre_comm::tcp::spin_before_sleep,
        );
        assert!(
            tcp.ends_with("up to 20 ms before it sleeps in poll, while the ranks fit this node's 8 cores; after 50 us with more ranks"),
            "{tcp}"
        );
    }

    #[test]
    fn congestion_names_both_kinds_of_connection() {
        assert_eq!(
            congestion(Some("bbr")),
            "congestion control: reno between ranks of one host while they fit its cores, otherwise the system's default, bbr"
        );
        assert!(congestion(None).contains("unreadable"));
    }

    #[test]
    fn socket_buffers_show_what_is_asked_and_how_to_get_more() {
        let roomy = socket_buffers(SocketBuffers::under(Some(4 << 20), Some(4 << 20)));
        assert_eq!(
            roomy,
            "socket buffers: send 4.0 MiB, receive 4.0 MiB (net.core.wmem_max 4.0 MiB, net.core.rmem_max 4.0 MiB)"
        );
        let tight = socket_buffers(SocketBuffers::under(Some(212_992), None));
        assert!(
            tight.starts_with("socket buffers: send autotuned, receive autotuned (net.core.wmem_max 0.2 MiB, net.core.rmem_max unreadable); ")
                && tight.contains("sysctl -w net.core.wmem_max=4194304 net.core.rmem_max=4194304"),
            "{tight}"
        );
    }
}
