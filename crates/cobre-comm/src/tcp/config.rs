//! Configuration of the TCP backend: [`TcpConfig`], from code or from the `COBRE_TCP_*`
//! environment variables.
//!
//! This module is the one place that names those variables, their defaults, their parsers
//! and the advice given about them. It is compiled with or without the `tcp` feature
//! (as `cobre_comm::tcp_config`), so that backend auto-detection, the launcher and the
//! `cobre-comm` tool name the variables from here too.
#![cfg_attr(not(feature = "tcp"), allow(dead_code))]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::algorithm::{Algorithm, Forced, Op, Table};
use crate::env::{EnvReader, process_env};
use crate::slurm::SlurmStep;
use crate::types::BackendError;

/// Host name or address of rank 0 (required on ranks > 0).
pub const ENV_COORDINATOR: &str = "COBRE_TCP_COORDINATOR";
/// TCP port rank 0 listens on (default [`DEFAULT_PORT`]).
pub const ENV_PORT: &str = "COBRE_TCP_PORT";
/// This process's rank, `0..size` (required).
pub const ENV_RANK: &str = "COBRE_TCP_RANK";
/// The number of ranks (required).
pub const ENV_SIZE: &str = "COBRE_TCP_SIZE";
/// Seconds to wait for a silent peer, and for the rendezvous (default 60).
pub const ENV_TIMEOUT: &str = "COBRE_TCP_TIMEOUT_SECS";
/// Optional shared secret every rank must know (proved with HMAC-SHA256, never sent).
pub const ENV_TOKEN: &str = "COBRE_TCP_TOKEN";
/// Optional IP address rank 0 listens on (default: loopback, unless the coordinator is
/// another host; see [`TcpConfig::bind`](TcpConfig#structfield.bind)).
pub const ENV_BIND: &str = "COBRE_TCP_BIND";
/// Optional forced collective algorithms (see [`crate::algorithm`]), such as
/// `allreduce=reduce-scatter-allgather`; must be the same on every rank.
pub const ENV_ALGORITHMS: &str = "COBRE_TCP_ALGORITHMS";
/// Every `COBRE_TCP_*` variable, in the order the documentation lists them.
pub const ENV_ALL: [&str; 8] = [
    ENV_COORDINATOR,
    ENV_PORT,
    ENV_RANK,
    ENV_SIZE,
    ENV_TIMEOUT,
    ENV_TOKEN,
    ENV_BIND,
    ENV_ALGORITHMS,
];

/// The algorithms of the tcp backend, per collective (the default pick first). What each
/// does, and when the backend picks it, is documented in `docs/ARCHITECTURE.md`.
pub const ALGORITHMS: &Table = &[
    (
        Op::Allreduce,
        &[
            Algorithm::Direct,
            Algorithm::ReduceScatterAllgather,
            Algorithm::Bruck,
            Algorithm::ReduceScatterBruck,
            Algorithm::Ring,
            Algorithm::ReduceScatterGrid,
            Algorithm::HostBruck,
        ],
    ),
    (
        Op::Allgatherv,
        &[Algorithm::Direct, Algorithm::Bruck, Algorithm::Ring],
    ),
    (
        Op::Broadcast,
        &[
            Algorithm::Direct,
            Algorithm::ScatterAllgather,
            Algorithm::Binomial,
            Algorithm::ScatterBruck,
        ],
    ),
    (Op::Barrier, &[Algorithm::Dissemination]),
];
/// The variable whose value is secret (shown as set or unset, never printed).
pub const ENV_SECRET: &str = ENV_TOKEN;

/// The port rank 0 listens on when `COBRE_TCP_PORT` is not set.
pub const DEFAULT_PORT: u16 = 29500;
/// The timeout when `COBRE_TCP_TIMEOUT_SECS` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest job the backend accepts (every rank keeps one connection to every other).
pub const MAX_SIZE: usize = 4096;

/// The socket buffers a connection asks for, each way, where the system allows it
/// ([`SocketBuffers`]). Left to the kernel's autotuning they start at 16 KiB (send) and
/// 128 KiB (receive), and a 512 KiB frame goes out in pieces; asked for, this much can
/// be in flight, and a frame of up to 1 MiB goes in one write (2 ranks on loopback:
/// allgatherv 1 MiB 72-99 us in most jobs against 180-233, allreduce 16 MiB 4.2-5.8 ms
/// against 5.1-10.0; docs/PERFORMANCE.md, "Socket buffers").
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Below this system limit on asked-for socket buffers (`net.core.wmem_max`,
/// `net.core.rmem_max`; 208 KiB by default on many systems) a connection asks for none:
/// autotuning, which may grow past the limit, does better than a small fixed buffer.
pub const SOCKET_BUFFER_MIN_LIMIT: usize = 1 << 20;

/// The socket buffers every tcp connection of this machine asks for, and the system's
/// limits that decide it.
///
/// ```
/// use cobre_comm::tcp_config::{SOCKET_BUFFER_BYTES, SocketBuffers};
///
/// // Limits of 4 MiB: 4 MiB each way. Many systems' default of 208 KiB: autotuning.
/// let roomy = SocketBuffers::under(Some(4 << 20), Some(64 << 20));
/// assert_eq!((roomy.send, roomy.recv), (Some(SOCKET_BUFFER_BYTES), Some(SOCKET_BUFFER_BYTES)));
/// let tight = SocketBuffers::under(Some(212_992), Some(212_992));
/// assert_eq!((tight.send, tight.recv), (None, None));
/// // What this machine gives.
/// let here = SocketBuffers::here();
/// assert!(here.recv.is_none_or(|bytes| bytes <= SOCKET_BUFFER_BYTES));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketBuffers {
    /// Bytes asked for each connection's send buffer; `None`: left to the kernel.
    pub send: Option<usize>,
    /// Bytes asked for each connection's receive buffer; `None`: left to the kernel.
    pub recv: Option<usize>,
    /// `net.core.wmem_max`, when it could be read.
    pub send_limit: Option<usize>,
    /// `net.core.rmem_max`, when it could be read.
    pub recv_limit: Option<usize>,
}

impl SocketBuffers {
    /// What a connection asks for under these system limits.
    #[must_use]
    pub fn under(send_limit: Option<usize>, recv_limit: Option<usize>) -> SocketBuffers {
        let request = |limit: Option<usize>| {
            limit
                .filter(|&l| l >= SOCKET_BUFFER_MIN_LIMIT)
                .map(|l| l.min(SOCKET_BUFFER_BYTES))
        };
        SocketBuffers {
            send: request(send_limit),
            recv: request(recv_limit),
            send_limit,
            recv_limit,
        }
    }

    /// What a connection asks for on this machine (its limits read once, from
    /// `/proc/sys/net/core`).
    #[must_use]
    pub fn here() -> SocketBuffers {
        static HERE: std::sync::OnceLock<SocketBuffers> = std::sync::OnceLock::new();
        *HERE.get_or_init(|| {
            let read =
                |name: &str| sysctl(&format!("net/core/{name}")).and_then(|text| text.parse().ok());
            SocketBuffers::under(read("wmem_max"), read("rmem_max"))
        })
    }
}

/// The congestion control a connection between two ranks of one host asks for
/// (`TCP_CONGESTION`; Reno is built into every Linux kernel and open to every user).
/// Such a connection runs over the host's loopback path, where nothing is lost and no
/// queue builds up, so congestion control has nothing to do; but a system default that
/// paces its sender (BBR, the default of many cloud images) spaces the packets out with
/// timers. 2 ranks on loopback with BBR as the system's default, medians of interleaved
/// jobs (`cobre-comm bench`), Reno against BBR: allgatherv 16 MiB 2963 against 4491 us,
/// broadcast 16 MiB 3577 against 5194, allreduce 1 MiB 325 against 415; 8 B and the
/// 16 MiB ring allreduce level (`docs/perf/tcp-congestion.txt`). Only while the host's
/// ranks fit its cores: with more ranks than cores the pacing measured faster (4 ranks on
/// 2 cores, 1 MiB allgatherv 376 against 550 us). Connections to other hosts keep the
/// system's choice, made for its network.
pub const WITHIN_HOST_CONGESTION: &str = "reno";

/// Whether a connection from `local` to `peer` stays within one host: the peer is a
/// loopback address or this host's own address on the connection. Those connections ask
/// for [`WITHIN_HOST_CONGESTION`] while the host's ranks fit its cores.
///
/// ```
/// use cobre_comm::tcp_config::within_host;
///
/// let ip = |s: &str| s.parse().unwrap();
/// assert!(within_host(ip("127.0.0.1"), ip("127.0.0.1")));
/// assert!(within_host(ip("10.0.0.7"), ip("10.0.0.7")));
/// assert!(within_host(ip("::1"), ip("::1")));
/// assert!(!within_host(ip("10.0.0.7"), ip("10.0.0.8")));
/// ```
#[must_use]
pub fn within_host(local: IpAddr, peer: IpAddr) -> bool {
    peer.is_loopback() || local == peer
}

/// The system's default congestion control (`net.ipv4.tcp_congestion_control`), which
/// connections between hosts keep; `None` where it cannot be read.
///
/// ```
/// let default = cobre_comm::tcp_config::system_congestion();
/// assert!(default.is_none_or(|name| !name.is_empty()));
/// ```
#[must_use]
pub fn system_congestion() -> Option<String> {
    sysctl("net/ipv4/tcp_congestion_control").filter(|name| !name.is_empty())
}

/// The value of the kernel setting at `/proc/sys/{path}`, trimmed; `None` where it
/// cannot be read.
fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()
        .map(|text| text.trim().to_owned())
}

const BACKEND: &str = "tcp";
/// What to do about missing required variables.
const HINT_REQUIRED: &str =
    "set them for every rank, or start the ranks with `cobre-comm launch -n N --backend tcp`";
/// What to do about a missing coordinator.
const HINT_COORDINATOR: &str = "ranks other than 0 need the host of rank 0";
/// What `COBRE_TCP_BIND` must look like.
const EXPECTED_BIND: &str = "an IP address such as 127.0.0.1, 0.0.0.0 or ::";

/// Parses a `COBRE_TCP_BIND` value (brackets around an IPv6 address allowed).
///
/// ```
/// use cobre_comm::tcp_config::parse_bind;
/// assert_eq!(parse_bind("[::1]"), Some("::1".parse().unwrap()));
/// assert_eq!(parse_bind("eth0"), None);
/// ```
pub fn parse_bind(value: &str) -> Option<IpAddr> {
    strip_brackets(value).parse().ok()
}

fn strip_brackets(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// How a `TcpBackend` (feature `tcp`) joins its job.
///
/// Every rank of a job needs the same `size`, `port`, `token`, and each its own `rank`.
/// Rank 0 listens on `bind:port`; the other ranks connect to `coordinator:port`.
///
/// * `bind` (rank 0 only): the address to listen on. `None` (the default) listens on
///   loopback (`127.0.0.1`, or the loopback address given as `coordinator`) when
///   `coordinator` is unset, `localhost` or a loopback address: nothing outside this
///   machine can reach the job. When `coordinator` names another host, rank 0 must be
///   reachable from the network, so it listens on every interface (`[::]` accepting IPv4
///   and IPv6, or `0.0.0.0` where IPv6 is off); without a `token` it then prints a
///   warning on standard error, since any host that can reach the port can take a rank.
///   Set `bind` to a private interface to narrow it.
/// * `token`: without a token anyone who can reach the port can take a free rank; with
///   one, peers prove they know it (HMAC-SHA256 over random nonces) and it never travels.
/// * `timeout`: how long the rendezvous may take, and how long a collective waits for a
///   silent peer before failing with [`CommError::Timeout`](crate::CommError::Timeout).
///
/// # Example
/// ```
/// use std::time::Duration;
/// use cobre_comm::TcpConfig;
///
/// let config = TcpConfig {
///     coordinator: Some("node01".into()),
///     token: Some("s3cret".into()),
///     timeout: Duration::from_secs(30),
///     ..TcpConfig::new(1, 4)
/// };
/// assert_eq!(config.port, 29500);
///
/// let vars = [("COBRE_TCP_RANK", "0"), ("COBRE_TCP_SIZE", "2")];
/// let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
/// let parsed = TcpConfig::from_lookup(&lookup).unwrap();
/// assert_eq!((parsed.rank, parsed.size), (0, 2));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// This process's rank, `0..size`.
    pub rank: usize,
    /// The number of ranks, `1..=MAX_SIZE`.
    pub size: usize,
    /// Host name or address of rank 0; required on ranks > 0, ignored on rank 0.
    pub coordinator: Option<String>,
    /// The port rank 0 listens on.
    pub port: u16,
    /// The rendezvous deadline and the longest wait for a silent peer.
    pub timeout: Duration,
    /// Shared secret; `None` accepts any peer that speaks the protocol.
    pub token: Option<String>,
    /// Listen address of rank 0; `None` listens on loopback unless `coordinator` names
    /// another host (then on every interface).
    pub bind: Option<IpAddr>,
    /// The algorithms forced for this job (none by default: the backend picks by size).
    pub algorithms: Forced,
}

impl std::fmt::Debug for TcpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConfig")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("coordinator", &self.coordinator)
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("bind", &self.bind)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

impl TcpConfig {
    /// Rank `rank` of a job of `size` ranks, with the defaults: no coordinator, port
    /// 29500, a 60 s timeout, no token, no bind address (so rank 0 listens on loopback).
    ///
    /// ```
    /// let config = cobre_comm::TcpConfig::new(0, 1);
    /// assert!(config.token.is_none() && config.bind.is_none());
    /// ```
    pub fn new(rank: usize, size: usize) -> TcpConfig {
        TcpConfig {
            rank,
            size,
            coordinator: None,
            port: DEFAULT_PORT,
            timeout: DEFAULT_TIMEOUT,
            token: None,
            algorithms: Forced::NONE,
            bind: None,
        }
    }

    /// Reads the `COBRE_TCP_*` variables of the process environment.
    ///
    /// # Errors
    /// [`BackendError::MissingConfiguration`] naming the unset required variables,
    /// [`BackendError::InvalidConfiguration`] naming a variable whose value is unusable.
    ///
    /// ```no_run
    /// let config = cobre_comm::TcpConfig::from_env().unwrap();
    /// ```
    pub fn from_env() -> Result<TcpConfig, BackendError> {
        Self::from_lookup(&process_env)
    }

    /// Reads the `COBRE_TCP_*` variables through `lookup` (a map in tests, the process
    /// environment in [`TcpConfig::from_env`]).
    ///
    /// # Errors
    /// As [`TcpConfig::from_env`].
    ///
    /// # Example
    /// ```
    /// use cobre_comm::TcpConfig;
    ///
    /// let lookup = |name: &str| match name {
    ///     "COBRE_TCP_RANK" => Some("1".to_string()),
    ///     "COBRE_TCP_SIZE" => Some("2".to_string()),
    ///     _ => None,
    /// };
    /// let err = TcpConfig::from_lookup(&lookup).unwrap_err();
    /// assert!(err.to_string().contains("COBRE_TCP_COORDINATOR"));
    /// ```
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<TcpConfig, BackendError> {
        let env = EnvReader::new(BACKEND, lookup);
        let step = Self::slurm_step(&env, lookup)?;
        if step.is_none() {
            env.require(&[ENV_RANK, ENV_SIZE], HINT_REQUIRED)?;
        }
        let size = env
            .usize_in(ENV_SIZE, 1, MAX_SIZE)?
            .or(step.as_ref().map(|s| s.tasks))
            .expect("checked by require, or the step's");
        let rank = env
            .usize_in(ENV_RANK, 0, size.saturating_sub(1))?
            .or(step.as_ref().map(|s| s.rank))
            .expect("checked by require, or the step's");
        let coordinator = env
            .get(ENV_COORDINATOR)
            .or_else(|| step.as_ref().map(|s| s.coordinator().to_string()));
        if rank > 0 && coordinator.is_none() {
            env.require(&[ENV_COORDINATOR], HINT_COORDINATOR)?;
        }
        let port = env
            .usize_in(ENV_PORT, 1, usize::from(u16::MAX))?
            .map(|p| p as u16)
            .or(step.as_ref().map(SlurmStep::port))
            .unwrap_or(DEFAULT_PORT);
        let timeout = env.seconds(ENV_TIMEOUT, DEFAULT_TIMEOUT)?;
        let token = env.get(ENV_TOKEN);
        let bind = env.parsed(ENV_BIND, EXPECTED_BIND, parse_bind)?;
        let algorithms = env.algorithms(ENV_ALGORITHMS, ALGORITHMS)?;
        Ok(TcpConfig {
            rank,
            size,
            coordinator,
            port,
            timeout,
            token,
            bind,
            algorithms,
        })
    }

    /// The Slurm step to take defaults from, when this process is a task of one and the
    /// `COBRE_TCP_*` variables do not say everything (each one set still wins).
    fn slurm_step(
        env: &EnvReader<'_>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SlurmStep>, BackendError> {
        let explicit = env.get(ENV_RANK).is_some() && env.get(ENV_SIZE).is_some();
        match SlurmStep::from_lookup(lookup) {
            Some(Ok(step)) => Ok(Some(step)),
            Some(Err(message)) if !explicit => Err(BackendError::init_failed(
                BACKEND,
                format!(
                    "this process is a task of a Slurm step, but the step cannot configure the job: {message}; \
                     set {ENV_RANK}, {ENV_SIZE} and {ENV_COORDINATOR} by hand"
                ),
            )),
            _ => Ok(None),
        }
    }

    /// Checks the fields set from code.
    pub(crate) fn validate(&self) -> Result<(), BackendError> {
        let invalid =
            |variable: &str, value: String, expected: &str| BackendError::InvalidConfiguration {
                backend: BACKEND.into(),
                variable: variable.into(),
                value,
                expected: expected.into(),
            };
        if self.size == 0 || self.size > MAX_SIZE {
            return Err(invalid(
                "size",
                self.size.to_string(),
                &format!("an integer from 1 to {MAX_SIZE}"),
            ));
        }
        if self.rank >= self.size {
            return Err(invalid(
                "rank",
                self.rank.to_string(),
                &format!("a rank from 0 to {}", self.size - 1),
            ));
        }
        if self.rank > 0 && self.coordinator.as_deref().is_none_or(str::is_empty) {
            return Err(BackendError::MissingConfiguration {
                backend: BACKEND.into(),
                missing_vars: vec![ENV_COORDINATOR.into()],
            });
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                "timeout",
                format!("{:?}", self.timeout),
                "a positive duration",
            ));
        }
        let forced = self.algorithms.to_string();
        if let Err(why) = Forced::parse(&forced, ALGORITHMS) {
            return Err(invalid(ENV_ALGORITHMS, forced, &why));
        }
        Ok(())
    }

    /// The key of the HMAC proofs: the token's bytes (empty without a token).
    pub(crate) fn key(&self) -> &[u8] {
        self.token.as_deref().map_or(&[], str::as_bytes)
    }

    /// The coordinator's host name or address, without brackets (empty when unset).
    pub(crate) fn coordinator_host(&self) -> &str {
        strip_brackets(self.coordinator.as_deref().unwrap_or_default())
    }

    /// The addresses rank 0 tries to listen on, in order (the first that binds is used):
    /// `bind` when set; otherwise loopback when the coordinator is unset, `localhost` or a
    /// loopback address; otherwise every interface, IPv6 and IPv4 then IPv4 only.
    pub(crate) fn listen_candidates(&self) -> Vec<IpAddr> {
        if let Some(ip) = self.bind {
            return vec![ip];
        }
        let host = self.coordinator_host();
        let loopback = if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        } else {
            host.parse::<IpAddr>().ok().filter(IpAddr::is_loopback)
        };
        match loopback {
            Some(ip) => vec![ip],
            None => vec![
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ],
        }
    }

    /// What rank 0 says when it cannot listen on `shown`.
    pub(crate) fn listen_error(&self, shown: &str, error: &std::io::Error) -> String {
        format!(
            "rank 0 cannot listen on {shown} port {} ({error}); is another job using {ENV_PORT}={}? \
             ({ENV_BIND} chooses the address)",
            self.port, self.port
        )
    }

    /// The warning rank 0 prints when it listens at `addr`, beyond loopback, without a
    /// token; `None` when there is nothing to warn about.
    pub(crate) fn exposure_warning(&self, addr: SocketAddr) -> Option<String> {
        if self.token.is_some() || addr.ip().is_loopback() {
            return None;
        }
        Some(format!(
            "WARNING: rank 0 listens on {addr} without {ENV_TOKEN}: any host that can reach \
             port {} can take a rank of this job or disturb its start-up. Set {ENV_TOKEN} to the \
             same secret on every rank (`cobre-comm launch` does), or {ENV_BIND} to a private \
             address",
            addr.port()
        ))
    }

    /// Advice for a rank that cannot reach rank 0.
    pub(crate) fn unreachable_hint() -> String {
        format!(
            "rank 0 listens on loopback only unless its own {ENV_COORDINATOR} names another \
             host or {ENV_BIND} is set; every rank needs the same {ENV_PORT}"
        )
    }

    /// What a rank says when rank 0 did not hear from every rank in time.
    pub(crate) fn missing_ranks_error(&self, missing: &str) -> String {
        format!(
            "rank 0 waited {:?} on port {} but rank(s) {missing} did not join ({ENV_TIMEOUT})",
            self.timeout, self.port
        )
    }

    /// What a rank says when two processes claim `rank`.
    pub(crate) fn duplicate_rank_error(rank: usize, first: SocketAddr) -> String {
        format!(
            "rank {rank} is already taken by the peer at {first}; every rank must have its own \
             {ENV_RANK}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_ask_for_large_buffers_only_where_the_system_allows_them() {
        let asked = |limit| SocketBuffers::under(limit, limit).recv;
        assert_eq!(asked(None), None);
        assert_eq!(asked(Some(212_992)), None);
        assert_eq!(
            asked(Some(SOCKET_BUFFER_MIN_LIMIT)),
            Some(SOCKET_BUFFER_MIN_LIMIT)
        );
        assert_eq!(asked(Some(64 << 20)), Some(SOCKET_BUFFER_BYTES));
        let mixed = SocketBuffers::under(Some(212_992), Some(8 << 20));
        assert_eq!((mixed.send, mixed.recv), (None, Some(SOCKET_BUFFER_BYTES)));
    }
    use crate::env::test_vars as vars;

    #[test]
    fn parses_and_defaults() {
        let c = TcpConfig::from_lookup(&vars(&[
            (ENV_RANK, "2"),
            (ENV_SIZE, "4"),
            (ENV_COORDINATOR, "::1"),
            (ENV_PORT, "4000"),
            (ENV_TIMEOUT, "2.5"),
            (ENV_TOKEN, "abc"),
            (ENV_BIND, "[::]"),
        ]))
        .unwrap();
        assert_eq!((c.rank, c.size, c.port), (2, 4, 4000));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.bind, Some("::".parse().unwrap()));
        assert!(!format!("{c:?}").contains("abc"));
        let c = TcpConfig::from_lookup(&vars(&[(ENV_RANK, "0"), (ENV_SIZE, "1")])).unwrap();
        assert_eq!(c, TcpConfig::new(0, 1));
    }

    #[test]
    fn errors_name_the_variable() {
        let text = |pairs: &[(&str, &str)]| {
            TcpConfig::from_lookup(&vars(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(text(&[]).contains("COBRE_TCP_RANK, COBRE_TCP_SIZE"));
        assert!(text(&[(ENV_RANK, "1"), (ENV_SIZE, "2")]).contains(ENV_COORDINATOR));
        assert!(text(&[(ENV_RANK, "2"), (ENV_SIZE, "2")]).contains("from 0 to 1"));
        assert!(text(&[(ENV_RANK, "0"), (ENV_SIZE, "0")]).contains(ENV_SIZE));
        assert!(
            text(&[
                (ENV_RANK, "0"),
                (ENV_SIZE, "1"),
                (ENV_ALGORITHMS, "barrier=ring")
            ])
            .contains("COBRE_TCP_ALGORITHMS=\"barrier=ring\" is invalid: expected one of")
        );
        assert!(text(&[(ENV_RANK, "0"), (ENV_SIZE, "1"), (ENV_PORT, "70000")]).contains(ENV_PORT));
        assert!(text(&[(ENV_RANK, "0"), (ENV_SIZE, "1"), (ENV_BIND, "eth0")]).contains(ENV_BIND));
        assert!(
            text(&[(ENV_RANK, "0"), (ENV_SIZE, "1"), (ENV_TIMEOUT, "0")]).contains(ENV_TIMEOUT)
        );
        assert!(
            text(&[(ENV_RANK, "0"), (ENV_SIZE, "1"), (ENV_BIND, "eth0")])
                .contains("such as 127.0.0.1")
        );
        assert!(TcpConfig::new(3, 2).validate().is_err());
        assert!(TcpConfig::new(1, 2).validate().is_err());
    }

    #[test]
    fn rank_0_listens_on_loopback_unless_the_coordinator_is_another_host() {
        let with = |coordinator: Option<&str>, bind: Option<&str>| TcpConfig {
            coordinator: coordinator.map(String::from),
            bind: bind.and_then(parse_bind),
            ..TcpConfig::new(0, 2)
        };
        let ips = |c: TcpConfig| c.listen_candidates();
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(ips(with(None, None)), vec![v4]);
        assert_eq!(ips(with(Some("localhost"), None)), vec![v4]);
        assert_eq!(
            ips(with(Some("[::1]"), None)),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            ips(with(Some("127.0.0.2"), None)),
            vec!["127.0.0.2".parse::<IpAddr>().unwrap()]
        );
        let everywhere = ips(with(Some("node01"), None));
        assert!(
            everywhere.iter().all(IpAddr::is_unspecified),
            "{everywhere:?}"
        );
        assert!(
            ips(with(Some("10.0.0.1"), None))
                .iter()
                .all(IpAddr::is_unspecified)
        );
        assert_eq!(
            ips(with(Some("node01"), Some("10.1.2.3"))),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn listening_beyond_loopback_without_a_token_warns() {
        let open = TcpConfig::new(0, 2);
        let outside: SocketAddr = "[::]:4000".parse().unwrap();
        let warning = open.exposure_warning(outside).expect("a warning");
        assert!(
            warning.contains(ENV_TOKEN) && warning.contains("4000"),
            "{warning}"
        );
        assert!(
            open.exposure_warning("127.0.0.1:4000".parse().unwrap())
                .is_none()
        );
        let closed = TcpConfig {
            token: Some("t".into()),
            ..open
        };
        assert!(closed.exposure_warning(outside).is_none());
    }

    #[test]
    fn a_slurm_step_configures_the_job_and_explicit_variables_win() {
        let step = [
            ("SLURM_JOB_ID", "77"),
            ("SLURM_STEP_ID", "1"),
            ("SLURM_PROCID", "2"),
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_STEP_NODELIST", "cn[03-04]"),
        ];
        let lookup = crate::env::test_vars(&step);
        let config = TcpConfig::from_lookup(&lookup).unwrap();
        assert_eq!((config.rank, config.size), (2, 4));
        assert_eq!(config.coordinator.as_deref(), Some("cn03"));
        assert_eq!(
            config.port,
            crate::slurm::PORT_BASE + 77 * 97 + 1 // (job * 97 + step) % PORT_SPAN
        );
        let mut with_port = step.to_vec();
        with_port.push((ENV_PORT, "4000"));
        with_port.push((ENV_COORDINATOR, "head"));
        let config = TcpConfig::from_lookup(&crate::env::test_vars(&with_port)).unwrap();
        assert_eq!(
            (config.port, config.coordinator.as_deref()),
            (4000, Some("head"))
        );
        assert_eq!(config.rank, 2);
    }
}
