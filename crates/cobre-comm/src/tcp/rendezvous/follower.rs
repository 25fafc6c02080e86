//! Ranks above 0: join rank 0 (retrying until the deadline, so a rank may start before
//! rank 0 listens), then connect to the neighbours (`mesh.rs`).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use super::on_demand::OnDemand;
use super::{
    bind_listener, failed, from_rank_0, handshake_deadline, mesh, read_exact_timeout, read_notice,
};
use crate::tcp::config::{ENV_TIMEOUT, TcpConfig};
use crate::tcp::handshake::{
    CHALLENGE_BYTES, Challenge, ENTRY_BYTES, Hello, KIND_JOINED, KIND_REJECT, KIND_WELCOME, Nonce,
    PREFIX_BYTES, WELCOME_FIXED, Welcome, decode_prefix, random,
};
use crate::types::BackendError;

/// Longest pause between two attempts to join.
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// The outcome of one failed attempt to join.
enum JoinError {
    /// Worth another attempt (nobody listening yet, dropped before being admitted).
    Retry(String),
    /// Rank 0 refused this rank, ended the start-up, or cannot prove the token.
    Fatal(String),
}

/// What a rank has once rank 0 welcomed it.
pub(super) struct Joined {
    pub coordinator: TcpStream,
    pub listener: TcpListener,
    pub welcome: Welcome,
}

/// A rank above 0's side of the start-up: the connection to each neighbour, and what it
/// needs to open the others later.
pub(super) fn run(config: &TcpConfig) -> Result<(Vec<Option<TcpStream>>, OnDemand), BackendError> {
    let deadline = Instant::now() + config.timeout;
    let joined = join_rank_0(config, deadline)?;
    mesh::build(config, joined, deadline)
}

/// Joins rank 0, retrying until `deadline`.
fn join_rank_0(config: &TcpConfig, deadline: Instant) -> Result<Joined, BackendError> {
    let mut backoff = Duration::from_millis(10);
    let mut last_error = String::from("no attempt");
    loop {
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "rank {} could not join rank 0 at {}:{} within {:?} ({ENV_TIMEOUT}): {last_error} ({})",
                config.rank,
                config.coordinator_host(),
                config.port,
                config.timeout,
                TcpConfig::unreachable_hint()
            )));
        }
        match try_join(config, deadline) {
            Ok(joined) => return Ok(joined),
            Err(JoinError::Fatal(message)) => return Err(failed(message)),
            Err(JoinError::Retry(message)) => last_error = message,
        }
        thread::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One attempt: connect, answer the challenge, be admitted, be welcomed.
fn try_join(config: &TcpConfig, deadline: Instant) -> Result<Joined, JoinError> {
    let mut coordinator = connect(config, deadline)?;
    let listener = mesh_listener(&coordinator, config.rank)?;
    let nonce = present(config, &mut coordinator, &listener, deadline)?;
    await_admission(config, &mut coordinator, deadline)?;
    let welcome = await_welcome(config, &mut coordinator, &nonce, deadline)?;
    Ok(Joined {
        coordinator,
        listener,
        welcome,
    })
}

fn retry(what: &str, e: &dyn std::fmt::Display) -> JoinError {
    JoinError::Retry(format!("{what}: {e}"))
}

/// Connects to the first address of the coordinator that answers.
fn connect(config: &TcpConfig, deadline: Instant) -> Result<TcpStream, JoinError> {
    let host = config.coordinator_host();
    let addrs: Vec<SocketAddr> = (host, config.port)
        .to_socket_addrs()
        .map_err(|e| retry(&format!("cannot resolve {host}"), &e))?
        .collect();
    let mut last = JoinError::Retry(format!("{host} resolves to no address"));
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = left.clamp(Duration::from_millis(1), Duration::from_secs(2));
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = retry(&format!("cannot connect to {addr}"), &e),
        }
    }
    Err(last)
}

/// The mesh listener, on the interface that reaches rank 0.
fn mesh_listener(coordinator: &TcpStream, rank: usize) -> Result<TcpListener, JoinError> {
    let local = coordinator
        .local_addr()
        .map_err(|e| retry("no local address", &e))?;
    bind_listener(local.ip(), 0)
        .map_err(|e| JoinError::Fatal(format!("rank {rank} cannot listen on {}: {e}", local.ip())))
}

/// Reads rank 0's challenge and answers with this rank's hello; returns this rank's nonce.
fn present(
    config: &TcpConfig,
    stream: &mut TcpStream,
    listener: &TcpListener,
    deadline: Instant,
) -> Result<Nonce, JoinError> {
    let port = listener
        .local_addr()
        .map_err(|e| retry("no listener address", &e))?
        .port();
    let limit = handshake_deadline(config).min(deadline.saturating_duration_since(Instant::now()));
    let mut buf = [0_u8; CHALLENGE_BYTES];
    read_exact_timeout(stream, &mut buf, limit)
        .map_err(|e| retry("rank 0 sent no challenge", &e))?;
    let challenge = Challenge::decode(&buf).map_err(|e| {
        JoinError::Fatal(format!(
            "the process at {}:{} is not a cobre-comm rank 0: {e}",
            config.coordinator_host(),
            config.port
        ))
    })?;
    let nonce: Nonce = random().map_err(JoinError::Fatal)?;
    let (rank, size) = (config.rank as u32, config.size as u32);
    let hello = Hello::new(config.key(), &challenge.nonce, rank, size, port, nonce);
    stream
        .set_write_timeout(Some(limit.max(Duration::from_millis(1))))
        .and_then(|()| stream.write_all(&hello.encode()))
        .map_err(|e| retry("cannot send the hello", &e))?;
    Ok(nonce)
}

/// Waits for rank 0 to admit or refuse the hello. A connection closed before an answer
/// (rank 0 dropped it, as the oldest of a flood, say) is worth another attempt.
fn await_admission(
    config: &TcpConfig,
    stream: &mut TcpStream,
    deadline: Instant,
) -> Result<(), JoinError> {
    let rank = config.rank;
    let limit = handshake_deadline(config).min(deadline.saturating_duration_since(Instant::now()));
    let mut head = [0_u8; PREFIX_BYTES];
    read_exact_timeout(stream, &mut head, limit)
        .map_err(|e| retry("rank 0 did not answer the hello", &e))?;
    let fatal = |what: String| JoinError::Fatal(format!("rank {rank}: {what}"));
    match decode_prefix(head).map_err(fatal)? {
        KIND_JOINED => Ok(()),
        KIND_REJECT => {
            let reason = read_notice(stream, limit)
                .map_err(|e| fatal(format!("rank 0 refused this rank ({e})")))?;
            Err(fatal(format!("rank 0 refused this rank: {reason}")))
        }
        other => Err(fatal(format!(
            "rank 0 answered the hello with handshake message kind {other}, expected joined or a refusal"
        ))),
    }
}

/// Waits for the welcome (every rank has joined), or for rank 0 to end the start-up.
fn await_welcome(
    config: &TcpConfig,
    stream: &mut TcpStream,
    nonce: &Nonce,
    deadline: Instant,
) -> Result<Welcome, JoinError> {
    let (rank, size) = (config.rank, config.size);
    let fatal = |what: String| JoinError::Fatal(format!("rank {rank}: {what}"));
    let left = deadline.saturating_duration_since(Instant::now());
    match from_rank_0(stream, rank, left).map_err(JoinError::Fatal)? {
        KIND_WELCOME => {}
        other => {
            return Err(fatal(format!(
                "rank 0 sent handshake message kind {other}, expected the welcome (kind {KIND_WELCOME})"
            )));
        }
    }
    let limit = handshake_deadline(config);
    let incomplete = |e: io::Error| fatal(format!("incomplete welcome: {e}"));
    let mut fixed = [0_u8; WELCOME_FIXED];
    read_exact_timeout(stream, &mut fixed, limit).map_err(incomplete)?;
    let (session, mac) = Welcome::decode_fixed(&fixed, size).map_err(fatal)?;
    let mut entries = vec![0_u8; size * ENTRY_BYTES];
    read_exact_timeout(stream, &mut entries, limit).map_err(incomplete)?;
    let addrs = Welcome::decode_entries(&entries).map_err(fatal)?;
    let welcome = Welcome {
        session,
        addrs,
        mac,
    };
    if !welcome.verify(config.key(), nonce) {
        return Err(fatal(format!(
            "rank 0 did not prove the shared token ({} differs)",
            crate::tcp::config::ENV_TOKEN
        )));
    }
    Ok(welcome)
}
