//! The per-rank environment of the cobre-comm backends.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::time::Duration;

use cobre_comm::tcp_config as tcp;
use cobre_comm::{BACKEND_ENV, shm};

/// A random 128-bit value in hex, for segment names and tokens.
///
/// # Panics
/// When the operating system has no randomness to give (it always has on Linux).
///
/// ```
/// let a = cobre_comm_launcher::unique_token();
/// assert_eq!(a.len(), 32);
/// assert_ne!(a, cobre_comm_launcher::unique_token());
/// ```
pub fn unique_token() -> String {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn seconds(timeout: Duration) -> String {
    format!("{}", timeout.as_secs_f64())
}

/// The environment of each of `ranks` ranks of an `shm` job: `COBRE_COMM_BACKEND=shm`, a
/// unique `COBRE_SHM_NAME`, `COBRE_SHM_RANK`, `COBRE_SHM_SIZE`, and
/// `COBRE_SHM_TIMEOUT_SECS` when `timeout` is given (names and formats from
/// `cobre_comm::shm`).
///
/// ```
/// let env = cobre_comm_launcher::shm_env(3, None);
/// assert_eq!(env.len(), 3);
/// assert!(env[2].contains(&("COBRE_SHM_RANK".to_string(), "2".to_string())));
/// assert!(env[0].iter().any(|(k, v)| k == "COBRE_SHM_NAME" && v.starts_with("/cobre-")));
/// ```
pub fn shm_env(ranks: usize, timeout: Option<Duration>) -> Vec<Vec<(String, String)>> {
    let name = format!("/cobre-{}-{}", std::process::id(), &unique_token()[..16]);
    (0..ranks)
        .map(|rank| {
            std::iter::once((BACKEND_ENV, "shm".to_string()))
                .chain(shm::rank_env(&name, rank, ranks, timeout))
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .collect()
}

/// The lowest port the kernel hands out to outgoing connections (the start of
/// `ip_local_port_range`; 32768 when it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A port that is free now on every local address, for a job's rank 0 to listen on.
///
/// It is drawn at random below the kernel's range of ephemeral ports, so that the
/// outgoing connections of other programs (and of the job itself) cannot take it between
/// this call and the moment rank 0 binds it.
///
/// # Errors
/// When no free port is found after many tries.
///
/// ```
/// let port = cobre_comm_launcher::free_port().unwrap();
/// assert!(port >= 1024);
/// ```
pub fn free_port() -> std::io::Result<u16> {
    let high = ephemeral_start().max(2048);
    let low = high.saturating_sub(12_000).max(1024);
    for _ in 0..200 {
        let pick = getrandom::u32().map_err(|e| std::io::Error::other(e.to_string()))?;
        let port = low + (pick % u32::from(high - low)) as u16;
        // One address at a time: a dual-stack `[::]` listener conflicts with `0.0.0.0`.
        let v4_free = TcpListener::bind(("0.0.0.0", port)).is_ok();
        let v6_free = match TcpListener::bind(("::", port)) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::AddrNotAvailable, // no IPv6 here
        };
        if v4_free && v6_free {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port found between {low} and {high}"),
    ))
}

/// The environment of each of `ranks` ranks of a `tcp` job on this machine:
/// `COBRE_COMM_BACKEND=tcp`, `COBRE_TCP_COORDINATOR=127.0.0.1`, a free `COBRE_TCP_PORT`
/// (see [`free_port`]), a random `COBRE_TCP_TOKEN`, `COBRE_TCP_BIND=127.0.0.1`
/// (nothing outside this machine can reach the job), `COBRE_TCP_RANK`, `COBRE_TCP_SIZE`, and
/// `COBRE_TCP_TIMEOUT_SECS` when `timeout` is given.
///
/// # Errors
/// When no local port can be bound.
///
/// ```
/// let a = cobre_comm_launcher::tcp_env(2, None).unwrap();
/// let b = cobre_comm_launcher::tcp_env(2, None).unwrap();
/// let port = |env: &Vec<Vec<(String, String)>>| env[0].iter().find(|(k, _)| k == "COBRE_TCP_PORT").unwrap().1.clone();
/// assert_ne!(port(&a), port(&b));
/// ```
pub fn tcp_env(
    ranks: usize,
    timeout: Option<Duration>,
) -> std::io::Result<Vec<Vec<(String, String)>>> {
    let port = free_port()?;
    let token = unique_token();
    Ok((0..ranks)
        .map(|rank| {
            let mut vars = vec![
                ("COBRE_COMM_BACKEND".to_string(), "tcp".to_string()),
                (tcp::ENV_COORDINATOR.to_string(), "127.0.0.1".to_string()),
                (tcp::ENV_BIND.to_string(), "127.0.0.1".to_string()),
                (tcp::ENV_PORT.to_string(), port.to_string()),
                (tcp::ENV_TOKEN.to_string(), token.clone()),
                (tcp::ENV_RANK.to_string(), rank.to_string()),
                (tcp::ENV_SIZE.to_string(), ranks.to_string()),
            ];
            if let Some(t) = timeout {
                vars.push((tcp::ENV_TIMEOUT.to_string(), seconds(t)));
            }
            vars
        })
        .collect())
}
