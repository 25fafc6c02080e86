//! Rendezvous at rank 0 and construction of the full mesh.
//!
//! Rank 0 listens; every other rank connects (retrying until the deadline, so it may start
//! first), answers rank 0's challenge, and announces the port of its own mesh listener.
//! A connection that fails the handshake (bad magic or version, a rank out of range or
//! already taken, a different job size, a wrong token, garbage, silence) is refused,
//! logged on standard error, and does not disturb the job. When every rank has joined,
//! rank 0 sends each the session id and everyone's mesh address; each rank `s` then
//! connects to every rank `0 < r < s` and accepts the ranks above it, authenticating each
//! connection with the session id and the token.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::config::TcpConfig;
use super::handshake::{
    CHALLENGE_BYTES, Challenge, ENTRY_BYTES, HELLO_BYTES, Hello, KIND_MESH_ACK, KIND_REJECT,
    KIND_WELCOME, MESH_HELLO_BYTES, MeshHello, Nonce, PREFIX_BYTES, Reject, Session, WELCOME_FIXED,
    Welcome, decode_prefix, prefix, random,
};
use super::transport::{Mesh, Peer};
use crate::types::BackendError;

/// Handshakes rank 0 runs at once; more connections are closed straight away.
const MAX_PENDING_HANDSHAKES: usize = 64;
/// How long one connection may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn failed(message: String) -> BackendError {
    BackendError::InitializationFailed {
        backend: "tcp".into(),
        source: message.into(),
    }
}

fn log(message: &str) {
    eprintln!("cobre-comm tcp: {message}");
}

/// Joins the job described by `config` and returns the connected mesh.
pub(crate) fn join(config: &TcpConfig) -> Result<Mesh, BackendError> {
    config.validate()?;
    let mut peers: Vec<Option<Peer>> = (0..config.size).map(|_| None).collect();
    if config.size > 1 {
        let streams = if config.rank == 0 {
            coordinate(config)?
        } else {
            follow(config)?
        };
        for (r, stream) in streams.into_iter().enumerate() {
            if let Some(stream) = stream {
                peers[r] = Some(Peer::new(stream).map_err(|e| {
                    failed(format!("cannot configure the connection to rank {r}: {e}"))
                })?);
            }
        }
    }
    Ok(Mesh {
        rank: config.rank,
        size: config.size,
        timeout: config.timeout,
        peers,
        scratch: Vec::new(),
    })
}

fn bind_listener(ip: IpAddr, port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn read_exact_timeout(stream: &mut TcpStream, buf: &mut [u8], timeout: Duration) -> io::Result<()> {
    stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    stream.read_exact(buf)
}

/// The outcome of one handshake thread at rank 0.
type Joined = Result<(Hello, TcpStream, SocketAddr), (SocketAddr, String)>;

/// Rank 0: accept every other rank.
#[allow(clippy::too_many_lines)] // one linear sequence of steps
fn coordinate(config: &TcpConfig) -> Result<Vec<Option<TcpStream>>, BackendError> {
    let listener = match config.bind {
        Some(ip) => bind_listener(ip, config.port),
        None => bind_listener(IpAddr::V6(Ipv6Addr::UNSPECIFIED), config.port)
            .or_else(|_| bind_listener(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.port)),
    }
    .map_err(|e| {
        failed(format!(
            "rank 0 cannot listen on {}:{} ({e}); is another job using COBRE_TCP_PORT={}?",
            config
                .bind
                .map_or_else(|| "every interface".to_string(), |ip| ip.to_string()),
            config.port,
            config.port
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| failed(format!("cannot configure the listener: {e}")))?;
    let deadline = Instant::now() + config.timeout;
    let (tx, rx) = mpsc::channel::<Joined>();
    let pending = Arc::new(AtomicUsize::new(0));
    let key: Arc<[u8]> = Arc::from(config.key());
    let size = config.size;
    let mut joined: Vec<Option<(Hello, TcpStream, SocketAddr)>> = (0..size).map(|_| None).collect();
    let mut count = 1;
    while count < size {
        let now = Instant::now();
        if now >= deadline {
            let missing: Vec<String> = (1..size)
                .filter(|&r| joined[r].is_none())
                .map(|r| r.to_string())
                .collect();
            return Err(failed(format!(
                "rank 0 waited {:?} on port {} but rank(s) {} did not join (COBRE_TCP_TIMEOUT_SECS)",
                config.timeout,
                config.port,
                missing.join(", ")
            )));
        }
        let mut idle = true;
        match listener.accept() {
            Ok((stream, addr)) => {
                idle = false;
                if pending.load(Ordering::SeqCst) >= MAX_PENDING_HANDSHAKES {
                    log(&format!(
                        "refused a connection from {addr}: too many pending handshakes"
                    ));
                } else {
                    pending.fetch_add(1, Ordering::SeqCst);
                    let (tx, pending, key) = (tx.clone(), Arc::clone(&pending), Arc::clone(&key));
                    let timeout = HANDSHAKE_TIMEOUT.min(config.timeout);
                    thread::spawn(move || {
                        let result = greet(stream, addr, &key, size, timeout);
                        pending.fetch_sub(1, Ordering::SeqCst);
                        let _ = tx.send(result);
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => log(&format!("accept failed: {e}")),
        }
        while let Ok(result) = rx.try_recv() {
            idle = false;
            match result {
                Ok((hello, mut stream, addr)) => {
                    let r = hello.rank as usize;
                    if let Some((_, _, first)) = &joined[r] {
                        let reason = format!(
                            "rank {r} is already taken by the peer at {first}; every rank must have its own COBRE_TCP_RANK"
                        );
                        log(&format!("refused a connection from {addr}: {reason}"));
                        let _ = stream.write_all(&Reject { reason }.encode());
                    } else {
                        joined[r] = Some((hello, stream, addr));
                        count += 1;
                    }
                }
                Err((addr, reason)) => {
                    log(&format!("refused a connection from {addr}: {reason}"));
                }
            }
        }
        if idle {
            thread::sleep(Duration::from_millis(2));
        }
    }
    // Everyone is here: hand out the session and the mesh addresses.
    let session: Session = random().map_err(failed)?;
    let addrs: Vec<Option<SocketAddr>> = joined
        .iter()
        .map(|j| {
            j.as_ref()
                .map(|(hello, _, addr)| SocketAddr::new(addr.ip().to_canonical(), hello.port))
        })
        .collect();
    let mut streams = Vec::with_capacity(size);
    for (r, entry) in joined.into_iter().enumerate() {
        let Some((hello, mut stream, _)) = entry else {
            streams.push(None);
            continue;
        };
        let welcome = Welcome::new(&key, &hello.nonce, session, addrs.clone());
        stream
            .set_write_timeout(Some(config.timeout))
            .and_then(|()| stream.write_all(&welcome.encode()))
            .map_err(|e| failed(format!("rank 0 cannot send the welcome to rank {r}: {e}")))?;
        streams.push(Some(stream));
    }
    Ok(streams)
}

/// Rank 0's side of one handshake, in its own thread.
fn greet(
    mut stream: TcpStream,
    addr: SocketAddr,
    key: &[u8],
    size: usize,
    timeout: Duration,
) -> Joined {
    let refuse = |stream: &mut TcpStream, reason: String| {
        let _ = stream.write_all(
            &Reject {
                reason: reason.clone(),
            }
            .encode(),
        );
        Err((addr, reason))
    };
    let io_err = |e: io::Error| (addr, format!("handshake failed: {e}"));
    stream.set_nonblocking(false).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let nonce: Nonce = random().map_err(|e| (addr, e))?;
    stream
        .write_all(&Challenge { nonce }.encode())
        .map_err(io_err)?;
    let mut buf = [0_u8; HELLO_BYTES];
    read_exact_timeout(&mut stream, &mut buf, timeout).map_err(io_err)?;
    let hello = match Hello::decode(&buf) {
        Ok(h) => h,
        Err(reason) => return refuse(&mut stream, reason),
    };
    if hello.size as usize != size {
        return refuse(
            &mut stream,
            format!(
                "the peer claims a job of {} ranks, expected {size} (COBRE_TCP_SIZE differs)",
                hello.size
            ),
        );
    }
    if hello.rank == 0 || hello.rank as usize >= size {
        return refuse(
            &mut stream,
            format!(
                "the peer claims rank {}, expected a rank from 1 to {}",
                hello.rank,
                size - 1
            ),
        );
    }
    if !hello.verify(key, &nonce) {
        return refuse(
            &mut stream,
            format!(
                "the peer claiming rank {} did not prove the shared token (COBRE_TCP_TOKEN differs)",
                hello.rank
            ),
        );
    }
    Ok((hello, stream, addr))
}

/// Ranks > 0: join at rank 0, then build the mesh.
#[allow(clippy::too_many_lines)] // one linear sequence of steps
fn follow(config: &TcpConfig) -> Result<Vec<Option<TcpStream>>, BackendError> {
    let deadline = Instant::now() + config.timeout;
    let key = config.key();
    let (rank, size) = (config.rank, config.size);
    let host = config.coordinator.as_deref().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut backoff = Duration::from_millis(10);
    let mut last_error = String::from("no attempt");
    let (coordinator, listener, my_nonce, welcome) = loop {
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "rank {rank} could not join rank 0 at {host}:{} within {:?} (COBRE_TCP_TIMEOUT_SECS): {last_error}",
                config.port, config.timeout
            )));
        }
        match try_join(config, host, deadline) {
            Ok(joined) => break joined,
            Err(JoinError::Fatal(message)) => return Err(failed(message)),
            Err(JoinError::Retry(message)) => last_error = message,
        }
        thread::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())));
        backoff = (backoff * 2).min(Duration::from_millis(250));
    };
    let _ = my_nonce;
    let mut streams: Vec<Option<TcpStream>> = (0..size).map(|_| None).collect();
    coordinator.set_read_timeout(None).ok();
    streams[0] = Some(coordinator);
    // Connect to the ranks below.
    for (r, slot) in streams.iter_mut().enumerate().take(rank).skip(1) {
        let addr = welcome.addrs[r]
            .ok_or_else(|| failed(format!("rank 0's welcome has no address for rank {r}")))?;
        let mut stream = connect_until(addr, deadline).map_err(|e| {
            failed(format!(
                "rank {rank} cannot connect to rank {r} at {addr}: {e}"
            ))
        })?;
        let hello = MeshHello::new(key, welcome.session, rank as u32, r as u32);
        let mut ack = [0_u8; PREFIX_BYTES];
        stream
            .write_all(&hello.encode())
            .and_then(|()| {
                read_exact_timeout(
                    &mut stream,
                    &mut ack,
                    deadline.saturating_duration_since(Instant::now()),
                )
            })
            .map_err(|e| {
                failed(format!(
                    "rank {r} at {addr} did not accept rank {rank}: {e}"
                ))
            })?;
        if decode_prefix(ack) != Ok(KIND_MESH_ACK) {
            return Err(failed(format!(
                "rank {r} at {addr} answered rank {rank}'s mesh hello with something else"
            )));
        }
        stream.set_read_timeout(None).ok();
        *slot = Some(stream);
    }
    // Accept the ranks above.
    let mut missing = size - rank - 1;
    listener
        .set_nonblocking(true)
        .map_err(|e| failed(format!("cannot configure the mesh listener: {e}")))?;
    while missing > 0 {
        if Instant::now() >= deadline {
            let list: Vec<String> = (rank + 1..size)
                .filter(|&s| streams[s].is_none())
                .map(|s| s.to_string())
                .collect();
            return Err(failed(format!(
                "rank {rank} waited {:?} for rank(s) {} to connect to it",
                config.timeout,
                list.join(", ")
            )));
        }
        let (mut stream, addr) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) => {
                log(&format!("rank {rank}: accept failed: {e}"));
                continue;
            }
        };
        let mut buf = [0_u8; MESH_HELLO_BYTES];
        let checked = stream
            .set_nonblocking(false)
            .and_then(|()| read_exact_timeout(&mut stream, &mut buf, Duration::from_secs(5)))
            .map_err(|e| format!("handshake failed: {e}"))
            .and_then(|()| MeshHello::decode(&buf))
            .and_then(|h| {
                let from = h.from as usize;
                if h.session != welcome.session {
                    Err("the peer belongs to another job (session differs)".into())
                } else if h.to as usize != rank || from <= rank || from >= size {
                    Err(format!(
                        "the peer says it is rank {from} connecting to rank {}, expected a rank from {} to {} connecting to rank {rank}",
                        h.to,
                        rank + 1,
                        size - 1
                    ))
                } else if streams[from].is_some() {
                    Err(format!("rank {from} is already connected"))
                } else if !h.verify(key) {
                    Err("the peer did not prove the shared token".into())
                } else {
                    Ok(from)
                }
            });
        match checked {
            Ok(from) => {
                stream
                    .write_all(&prefix(KIND_MESH_ACK))
                    .map_err(|e| failed(format!("cannot acknowledge rank {from}: {e}")))?;
                stream.set_read_timeout(None).ok();
                streams[from] = Some(stream);
                missing -= 1;
            }
            Err(reason) => log(&format!(
                "rank {rank} refused a mesh connection from {addr}: {reason}"
            )),
        }
    }
    Ok(streams)
}

enum JoinError {
    /// Worth another attempt (nobody listening yet, connection dropped).
    Retry(String),
    /// Rank 0 refused this rank, or cannot prove the token.
    Fatal(String),
}

type JoinOk = (TcpStream, TcpListener, Nonce, Welcome);

fn try_join(config: &TcpConfig, host: &str, deadline: Instant) -> Result<JoinOk, JoinError> {
    let (rank, size) = (config.rank, config.size);
    let key = config.key();
    let retry = |what: &str, e: &dyn std::fmt::Display| JoinError::Retry(format!("{what}: {e}"));
    let addrs: Vec<SocketAddr> = (host, config.port)
        .to_socket_addrs()
        .map_err(|e| retry(&format!("cannot resolve {host}"), &e))?
        .collect();
    let mut last = JoinError::Retry(format!("{host} resolves to no address"));
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = retry(&format!("cannot connect to {addr}"), &e),
        }
    }
    let Some(mut stream) = stream else {
        return Err(last);
    };
    let local = stream
        .local_addr()
        .map_err(|e| retry("no local address", &e))?;
    // The mesh listener sits on the interface that reaches rank 0.
    let listener = bind_listener(local.ip(), 0).map_err(|e| {
        JoinError::Fatal(format!("rank {rank} cannot listen on {}: {e}", local.ip()))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| retry("no listener address", &e))?
        .port();
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut buf = [0_u8; CHALLENGE_BYTES];
    read_exact_timeout(&mut stream, &mut buf, left().min(HANDSHAKE_TIMEOUT))
        .map_err(|e| retry("rank 0 sent no challenge", &e))?;
    let challenge = Challenge::decode(&buf).map_err(|e| {
        JoinError::Fatal(format!(
            "the process at {host}:{} is not a cobre-comm rank 0: {e}",
            config.port
        ))
    })?;
    let nonce: Nonce = random().map_err(JoinError::Fatal)?;
    let hello = Hello::new(key, &challenge.nonce, rank as u32, size as u32, port, nonce);
    stream
        .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
        .and_then(|()| stream.write_all(&hello.encode()))
        .map_err(|e| retry("cannot send the hello", &e))?;
    // Rank 0 answers once every rank has joined.
    let mut head = [0_u8; PREFIX_BYTES];
    read_exact_timeout(&mut stream, &mut head, config.timeout)
        .map_err(|e| JoinError::Fatal(format!("rank 0 did not complete the rendezvous: {e}")))?;
    let fatal = |what: String| JoinError::Fatal(format!("rank {rank}: {what}"));
    match decode_prefix(head).map_err(fatal)? {
        KIND_REJECT => {
            let mut len = [0_u8; 4];
            let mut text = [0_u8; super::handshake::MAX_REASON];
            read_exact_timeout(&mut stream, &mut len, HANDSHAKE_TIMEOUT)
                .map_err(|e| fatal(format!("rank 0 refused this rank: {e}")))?;
            let n = Reject::decode_len(len).map_err(fatal)?;
            read_exact_timeout(&mut stream, &mut text[..n], HANDSHAKE_TIMEOUT)
                .map_err(|e| fatal(format!("rank 0 refused this rank: {e}")))?;
            Err(fatal(format!(
                "rank 0 refused this rank: {}",
                String::from_utf8_lossy(&text[..n])
            )))
        }
        KIND_WELCOME => {
            let mut fixed = [0_u8; WELCOME_FIXED];
            read_exact_timeout(&mut stream, &mut fixed, HANDSHAKE_TIMEOUT)
                .map_err(|e| fatal(format!("incomplete welcome: {e}")))?;
            let (session, mac) = Welcome::decode_fixed(&fixed, size).map_err(fatal)?;
            let mut entries = vec![0_u8; size * ENTRY_BYTES];
            read_exact_timeout(&mut stream, &mut entries, HANDSHAKE_TIMEOUT)
                .map_err(|e| fatal(format!("incomplete welcome: {e}")))?;
            let addrs = Welcome::decode_entries(&entries).map_err(fatal)?;
            let welcome = Welcome {
                session,
                addrs,
                mac,
            };
            if !welcome.verify(key, &nonce) {
                return Err(fatal(
                    "rank 0 did not prove the shared token (COBRE_TCP_TOKEN differs)".into(),
                ));
            }
            Ok((stream, listener, nonce, welcome))
        }
        other => Err(fatal(format!(
            "rank 0 answered with handshake message kind {other}, expected a welcome or a reject"
        ))),
    }
}

/// Connects to `addr`, retrying until `deadline`.
fn connect_until(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    let mut backoff = Duration::from_millis(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(
            &addr,
            left.clamp(Duration::from_millis(1), Duration::from_secs(2)),
        ) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() + backoff >= deadline => return Err(e),
            Err(_) => {
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
        }
    }
}
