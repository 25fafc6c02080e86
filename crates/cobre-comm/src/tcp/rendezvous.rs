//! Rendezvous at rank 0 and construction of the mesh.
//!
//! Rank 0 listens (`coordinator.rs`); every other rank connects (`follower.rs`, retrying
//! until the deadline, so it may start first), answers rank 0's challenge, and announces
//! the port of its own mesh listener. Rank 0 admits or refuses each hello at once; when
//! every rank has joined it sends each the session id and everyone's mesh address. Each
//! rank `s` then connects to each of its neighbours `0 < r < s` (`tcp/neighbours.rs`:
//! `O(log p)` of them) and accepts its neighbours above it, authenticating each connection
//! with the session id and the token (`mesh.rs`), and tells rank 0 it is ready; when every
//! rank is ready rank 0 says go, keeps its connections to its own neighbours, closes the
//! others, and the job starts. Connections between ranks that are not neighbours are
//! opened later, when an algorithm first needs them (`on_demand.rs`).
//!
//! Defences (threat model and tests in `docs/RELIABILITY.md`):
//! * Connections that have not proved who they are wait in a bounded queue
//!   (`pending.rs`): every listener is driven without blocking, each connection gets
//!   [`HANDSHAKE_DEADLINE`] from its accept (bytes trickled in do not extend it), and when
//!   [`MAX_PENDING_HANDSHAKES`] are waiting the oldest is dropped for the newcomer. A real
//!   rank answers within one round trip, so silent, slow or garbage connections cannot
//!   keep it out. Refusals are logged on standard error, at a bounded rate.
//! * A rank lost during start-up (its connection to rank 0 closes) is seen by rank 0 at
//!   once, and rank 0 tells every other rank (an abort notice naming it); a rank that
//!   loses rank 0 fails at once too. Nobody waits for the timeout.

mod coordinator;
mod descriptors;
mod follower;
mod mesh;
pub(crate) mod on_demand;
mod pending;

use std::io::{self, Read};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::SendFlags;
use socket2::{Domain, Protocol, Socket, Type};

use super::config::TcpConfig;
use super::handshake::{KIND_ABORT, MAX_REASON, Notice, PREFIX_BYTES, decode_prefix};
use super::neighbours::neighbours;
use super::scratch::Scratch;
use super::transport::{Mesh, Peer};
use crate::types::BackendError;

/// Most connections a listener keeps waiting for their handshake; one more drops the
/// oldest.
pub(crate) const MAX_PENDING_HANDSHAKES: usize = 128;
/// How long a connection may take, counted from its accept, to complete its handshake.
pub(crate) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);
/// Longest wait of an event loop between two looks at its deadlines.
const TICK: Duration = Duration::from_millis(100);

/// Joins the job described by `config` and returns the connected mesh, its waits set
/// for a host of `cores` cores running every rank of the job (until the hosts are known).
pub(crate) fn join(config: &TcpConfig, cores: usize) -> Result<Mesh, BackendError> {
    config.validate()?;
    descriptors::ensure(config.rank, config.size)?;
    let (streams, on_demand) = match (config.size, config.rank) {
        (1, _) => (vec![None], None),
        (_, 0) => coordinator::run(config).map(|(s, o)| (s, Some(o)))?,
        _ => follower::run(config).map(|(s, o)| (s, Some(o)))?,
    };
    // Every rank on this host until the hosts are gathered (`TcpBackend::new` decides
    // again then): if they all fit its cores, so do this host's.
    let unpaced = super::transport::unpaced_for(config.size, cores);
    Ok(Mesh {
        rank: config.rank,
        size: config.size,
        timeout: config.timeout,
        peers: into_peers(streams, unpaced)?,
        neighbours: neighbours(config.rank, config.size),
        on_demand,
        scratch: Scratch::default(),
        algorithms: config.algorithms,
        hosts: std::sync::Arc::new(super::hosts::Hosts::one(config.size)),
        // Every rank on this host until the hosts are gathered.
        spin: super::transport::spin_for(config.size, cores),
        unpaced,
    })
}

/// The connections, configured for the collectives.
fn into_peers(
    streams: Vec<Option<TcpStream>>,
    unpaced: bool,
) -> Result<Vec<Option<Peer>>, BackendError> {
    streams
        .into_iter()
        .enumerate()
        .map(|(r, stream)| {
            stream
                .map(|s| {
                    s.set_read_timeout(None)
                        .and_then(|()| s.set_write_timeout(None))
                        .and_then(|()| Peer::new(s, unpaced))
                        .map_err(|e| {
                            failed(format!("cannot configure the connection to rank {r}: {e}"))
                        })
                })
                .transpose()
        })
        .collect()
}

fn failed(message: String) -> BackendError {
    BackendError::InitializationFailed {
        backend: "tcp".into(),
        source: message.into(),
    }
}

fn log(message: &str) {
    eprintln!("cobre-comm tcp: {message}");
}

/// The handshake deadline of `config`'s job (never longer than its timeout).
fn handshake_deadline(config: &TcpConfig) -> Duration {
    HANDSHAKE_DEADLINE.min(config.timeout)
}

/// A non-blocking listener on `ip:port` (`[::]` also accepts IPv4).
fn bind_listener(ip: IpAddr, port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Waits until one of `interest` is ready or `until` (at most [`TICK`]) and returns what
/// each is ready for. A failed poll reports nothing ready: callers look at their
/// deadlines and poll again.
fn poll_until(interest: &[(BorrowedFd<'_>, PollFlags)], until: Instant) -> Vec<PollFlags> {
    let mut fds: Vec<PollFd<'_>> = interest
        .iter()
        .map(|(fd, flags)| PollFd::from_borrowed_fd(*fd, *flags))
        .collect();
    let wait = until
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(1), TICK);
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(_) => fds.iter().map(PollFd::revents).collect(),
        Err(_) => vec![PollFlags::empty(); fds.len()],
    }
}

/// Whether `revents` says there is something to read (data, an end, an error).
fn readable(revents: PollFlags) -> bool {
    revents.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
}

/// Sends on `stream` without raising `SIGPIPE` if the peer is gone.
fn send(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(stream, bytes, SendFlags::NOSIGNAL) {
            Err(e) if e == rustix::io::Errno::INTR => {}
            result => return result.map_err(io::Error::from),
        }
    }
}

/// Writes a small handshake message on a non-blocking connection with nothing queued: a
/// short write means the peer does not read, and is an error.
fn send_small(stream: &TcpStream, bytes: &[u8]) -> io::Result<()> {
    let n = send(stream, bytes)?;
    if n == bytes.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("the peer took {n} of {} bytes", bytes.len()),
        ))
    }
}

/// Writes all of `bytes` within `timeout`, whatever the blocking mode of `stream`
/// (which it leaves non-blocking).
fn send_all(stream: &TcpStream, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let mut done = 0;
    while done < bytes.len() {
        match send(stream, &bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) => return Err(e),
        }
    }
    stream.set_nonblocking(true)
}

/// Reads exactly `buf.len()` bytes within `timeout` (leaving `stream` blocking).
fn read_exact_timeout(stream: &mut TcpStream, buf: &mut [u8], timeout: Duration) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    stream.read_exact(buf)
}

/// Reads the next message prefix rank 0 sends this rank (`rank`) on a blocking stream,
/// within `timeout`, and returns its kind. An abort notice, the end of the connection,
/// silence or a malformed prefix are errors saying so.
fn from_rank_0(stream: &mut TcpStream, rank: usize, timeout: Duration) -> Result<u8, String> {
    let mut head = [0_u8; PREFIX_BYTES];
    read_exact_timeout(stream, &mut head, timeout).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => format!(
            "rank {rank}: rank 0 closed its connection during start-up (rank 0 ended?): {e}"
        ),
        _ => format!("rank {rank}: no word from rank 0 within {timeout:?}: {e}"),
    })?;
    let kind = decode_prefix(head).map_err(|e| format!("rank {rank}: from rank 0: {e}"))?;
    if kind == KIND_ABORT {
        let reason = read_notice(stream, timeout)
            .map_err(|e| format!("rank {rank}: rank 0 ended the start-up ({e})"))?;
        return Err(format!("rank {rank}: rank 0 ended the start-up: {reason}"));
    }
    Ok(kind)
}

/// Reads the body of a notice (its prefix already read) within `timeout`.
fn read_notice(stream: &mut TcpStream, timeout: Duration) -> Result<String, String> {
    let mut len = [0_u8; 4];
    let mut text = [0_u8; MAX_REASON];
    read_exact_timeout(stream, &mut len, timeout).map_err(|e| format!("incomplete notice: {e}"))?;
    let n = Notice::decode_len(len)?;
    read_exact_timeout(stream, &mut text[..n], timeout)
        .map_err(|e| format!("incomplete notice: {e}"))?;
    Ok(Notice::decode_reason(&text[..n]))
}

/// `ranks` as a list for messages: "1, 3".
fn list(ranks: impl IntoIterator<Item = usize>) -> String {
    ranks
        .into_iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
