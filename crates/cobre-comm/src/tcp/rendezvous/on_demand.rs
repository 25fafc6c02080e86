//! Connections opened during the job, the first time an algorithm needs them.
//!
//! A job starts with a connection to each neighbour only (`tcp/neighbours.rs`). When an
//! exchange involves a rank this rank has no connection to, the lower of the two dials the
//! higher one's mesh listener (the address rank 0 handed out at start-up) and sends the
//! mesh hello, proving the session and the token; the higher one accepts it while it waits
//! in its own exchange. The dialer does not wait for an answer: the kernel completes the
//! connection even while the other rank is busy elsewhere, and the data that follows the
//! hello waits in its socket until it is read.
//!
//! The mesh listener stays open for the whole job, so it meets the same defences as at
//! start-up: a connection that has not proved the session within the handshake deadline is
//! dropped, at most [`MAX_PENDING_HANDSHAKES`](super::MAX_PENDING_HANDSHAKES) wait at once
//! (the oldest goes first), and refusals are logged at a bounded rate. A stranger can
//! neither join the job nor keep a rank from accepting its real peers.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use socket2::{Domain, Protocol, Socket, Type};

use super::pending::{Handshake, Log, Pending, out_of_descriptors};
use super::{descriptors, readable};
use crate::tcp::handshake::{MESH_HELLO_BYTES, MeshHello, Session, check_mesh_hello};

/// What a rank keeps from the start-up to open more connections later.
pub(crate) struct OnDemand {
    rank: usize,
    size: usize,
    /// Where the lower ranks dial this one (`None` on rank 0: it only dials).
    listener: Option<TcpListener>,
    /// Every rank's mesh listener (`None` for rank 0).
    addrs: Vec<Option<SocketAddr>>,
    session: Session,
    key: Vec<u8>,
    incoming: Pending<()>,
    log: Log,
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand")
            .field("rank", &self.rank)
            .field("listener", &self.listener)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// Why [`OnDemand::dial`] failed.
pub(crate) enum DialError {
    /// The other rank cannot be reached (it ended, or its address is unknown).
    Peer(String),
    /// This process has no file descriptor left.
    Exhausted(String),
}

/// A connection this rank accepted and authenticated: from rank `rank`.
pub(crate) struct Accepted {
    pub rank: usize,
    pub stream: TcpStream,
}

impl OnDemand {
    pub(super) fn new(
        (rank, size): (usize, usize),
        listener: Option<TcpListener>,
        addrs: Vec<Option<SocketAddr>>,
        session: Session,
        key: &[u8],
        handshake_deadline: Duration,
    ) -> OnDemand {
        OnDemand {
            rank,
            size,
            listener,
            addrs,
            session,
            key: key.to_vec(),
            incoming: Pending::new(MESH_HELLO_BYTES, handshake_deadline),
            log: Log::new(format!("rank {rank} (mesh)")),
        }
    }

    /// Connects to rank `to` (above this rank) within `timeout` and sends the mesh hello.
    ///
    /// # Errors
    /// Why the connection could not be made: the rank's address is unknown or nobody
    /// listens there any more (the rank ended), or this process has no descriptor left
    /// (the message then names the limit and how to raise it).
    pub(crate) fn dial(&self, to: usize, timeout: Duration) -> Result<TcpStream, DialError> {
        let addr = self.addrs.get(to).copied().flatten().ok_or_else(|| {
            DialError::Peer(format!("rank 0 handed out no address for rank {to}"))
        })?;
        let fail = |e: io::Error| {
            if out_of_descriptors(&e) {
                DialError::Exhausted(descriptors::exhausted(
                    self.rank,
                    self.size,
                    &format!("connect to rank {to}"),
                ))
            } else {
                DialError::Peer(format!("cannot connect to rank {to} at {addr}: {e}"))
            }
        };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(fail)?;
        socket
            .connect_timeout(&addr.into(), timeout.max(Duration::from_millis(1)))
            .map_err(fail)?;
        let mut stream: TcpStream = socket.into();
        let hello = MeshHello::new(&self.key, self.session, self.rank as u32, to as u32);
        stream.write_all(&hello.encode()).map_err(fail)?;
        Ok(stream)
    }

    /// What to poll for incoming connections: the listener, then every connection waiting
    /// for its hello (the order [`OnDemand::progress`] expects).
    pub(crate) fn watched(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.listener
            .iter()
            .map(AsFd::as_fd)
            .chain(self.incoming.streams().map(AsFd::as_fd))
    }

    /// When the oldest waiting connection runs out of time.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.incoming.next_expiry()
    }

    /// Moves the incoming connections on after a poll: `revents` for what
    /// [`OnDemand::watched`] listed, in its order. Returns the connections that proved
    /// they are a lower rank of this job not yet connected (`connected` says which are);
    /// the rest are refused and logged.
    ///
    /// # Errors
    /// This process has no descriptor left for a connection a lower rank opened.
    pub(crate) fn progress(
        &mut self,
        revents: &[PollFlags],
        connected: impl Fn(usize) -> bool,
    ) -> Result<Vec<Accepted>, String> {
        let listener_ready =
            self.listener.is_some() && revents.first().is_some_and(|r| readable(*r));
        let skip = usize::from(self.listener.is_some());
        let ready: Vec<usize> = revents
            .iter()
            .skip(skip)
            .enumerate()
            .filter(|(_, r)| readable(**r))
            .map(|(i, _)| i)
            .collect();
        let mut accepted = Vec::new();
        // Progress first: accepting may drop the oldest, shifting the indices polled.
        for handshake in self.incoming.progress(&ready, &mut self.log) {
            if let Some(a) = self.check(handshake, &connected) {
                if accepted.iter().any(|b: &Accepted| b.rank == a.rank) {
                    continue;
                }
                accepted.push(a);
            }
        }
        if let Some(listener) = &self.listener
            && listener_ready
            && self
                .incoming
                .accept_all(listener, &mut self.log, |_| Ok(()))
                .is_some()
        {
            return Err(descriptors::exhausted(
                self.rank,
                self.size,
                "accept the connection of a lower rank",
            ));
        }
        self.incoming.expire(Instant::now(), &mut self.log);
        Ok(accepted)
    }

    /// Checks a complete hello: a lower rank of this session, proving the token, not yet
    /// connected.
    fn check(
        &mut self,
        handshake: Handshake<()>,
        connected: &impl Fn(usize) -> bool,
    ) -> Option<Accepted> {
        let Handshake {
            stream,
            addr,
            bytes,
            ..
        } = handshake;
        let below: Range<usize> = 0..self.rank;
        let checked = <[u8; MESH_HELLO_BYTES]>::try_from(bytes.as_slice())
            .map_err(|_| "incomplete mesh hello".to_string())
            .and_then(|b| {
                check_mesh_hello(&b, &self.session, &self.key, self.rank, self.size, below)
            })
            .and_then(|from| {
                if connected(from) {
                    Err(format!("rank {from} is already connected"))
                } else {
                    Ok(from)
                }
            });
        match checked {
            Ok(rank) => Some(Accepted { rank, stream }),
            Err(reason) => {
                self.log.refused(addr, &reason);
                None
            }
        }
    }
}
