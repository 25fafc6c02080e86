//! A rank above 0 connects to each of its neighbours (`tcp/neighbours.rs`) between 0 and
//! itself and accepts its neighbours above it, all at once and without blocking, while it
//! watches its connection to rank 0: an abort notice or the loss of rank 0 ends the
//! start-up at once. Incoming connections wait in a bounded queue with a deadline
//! (`pending.rs`) until they prove the session and the token; anything else (a rank that
//! is not a neighbour included) is refused. The listener is kept for the connections the
//! job opens later (`on_demand.rs`); the connection to rank 0 only when rank 0 is a
//! neighbour.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use socket2::{Domain, Protocol, Socket, Type};

use super::follower::Joined;
use super::on_demand::OnDemand;
use super::pending::{Handshake, Log, Pending};
use super::{
    failed, from_rank_0, handshake_deadline, list, poll_until, readable, send_all, send_small,
};
use crate::tcp::config::{ENV_TIMEOUT, TcpConfig};
use crate::tcp::handshake::{
    KIND_GO, KIND_MESH_ACK, KIND_READY, MESH_HELLO_BYTES, MeshHello, PREFIX_BYTES, Session,
    check_mesh_hello, decode_prefix, prefix,
};
use crate::tcp::neighbours::are_neighbours;
use crate::types::BackendError;

/// First and longest pause between two attempts to connect to a rank.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Where the connection to one lower rank stands.
enum Dial {
    /// Waiting until the instant of the next attempt.
    Idle(Instant),
    /// A non-blocking connect in flight.
    Connecting(Socket),
    /// The mesh hello is sent; the ack is arriving.
    Acking {
        stream: TcpStream,
        ack: [u8; PREFIX_BYTES],
        got: usize,
    },
    Done,
}

/// The connection to one lower rank.
struct Link {
    rank: usize,
    addr: SocketAddr,
    dial: Dial,
    backoff: Duration,
    last_error: String,
}

/// This rank's part of the mesh while it forms.
struct Builder<'a> {
    config: &'a TcpConfig,
    session: Session,
    coordinator: TcpStream,
    listener: TcpListener,
    incoming: Pending<()>,
    links: Vec<Link>,
    streams: Vec<Option<TcpStream>>,
    log: Log,
}

/// What a poll of the builder's connections found.
struct Ready {
    coordinator: bool,
    listener: bool,
    incoming: Vec<usize>,
    links: Vec<usize>,
}

/// Builds the mesh of a rank that rank 0 welcomed; returns its connection to each
/// neighbour, and what it needs to open the others later.
pub(super) fn build(
    config: &TcpConfig,
    joined: Joined,
    deadline: Instant,
) -> Result<(Vec<Option<TcpStream>>, OnDemand), BackendError> {
    let Joined {
        coordinator,
        listener,
        welcome,
    } = joined;
    let (rank, size) = (config.rank, config.size);
    let mut links = Vec::new();
    for r in (1..rank).filter(|&r| are_neighbours(rank, r, size)) {
        let addr = welcome.addrs[r]
            .ok_or_else(|| failed(format!("rank 0's welcome has no address for rank {r}")))?;
        links.push(Link {
            rank: r,
            addr,
            dial: Dial::Idle(Instant::now()),
            backoff: FIRST_BACKOFF,
            last_error: "no attempt".into(),
        });
    }
    let mut builder = Builder {
        config,
        session: welcome.session,
        coordinator,
        listener,
        incoming: Pending::new(MESH_HELLO_BYTES, handshake_deadline(config)),
        links,
        streams: (0..config.size).map(|_| None).collect(),
        log: Log::new(format!("rank {} (mesh)", config.rank)),
    };
    builder.connect_all(deadline).map_err(failed)?;
    builder.ready_and_go(deadline).map_err(failed)?;
    let Builder {
        mut streams,
        coordinator,
        listener,
        session,
        ..
    } = builder;
    if are_neighbours(rank, 0, size) {
        streams[0] = Some(coordinator);
    }
    let on_demand = OnDemand::new(
        (rank, size),
        Some(listener),
        welcome.addrs,
        session,
        config.key(),
        handshake_deadline(config),
    );
    Ok((streams, on_demand))
}

/// Reads the ack of a mesh hello.
fn read_ack(
    stream: TcpStream,
    mut ack: [u8; PREFIX_BYTES],
    mut got: usize,
) -> Result<Step, String> {
    match (&stream).read(&mut ack[got..]) {
        Ok(0) => return Err("the connection closed before the mesh ack".into()),
        Ok(n) => got += n,
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) => return Err(format!("no mesh ack: {e}")),
    }
    if got < PREFIX_BYTES {
        return Ok(Step::Wait(Dial::Acking { stream, ack, got }));
    }
    match decode_prefix(ack) {
        Ok(KIND_MESH_ACK) => Ok(Step::Connected(stream)),
        Ok(kind) => Err(format!(
            "answered the mesh hello with handshake message kind {kind}"
        )),
        Err(e) => Err(format!("answered the mesh hello with {e}")),
    }
}

/// What a link's progress led to.
enum Step {
    Wait(Dial),
    Connected(TcpStream),
}

/// Starts a non-blocking connect to `addr`.
fn start_connect(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(socket),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) =>
        {
            Ok(socket)
        }
        Err(e) => Err(e),
    }
}

impl Builder<'_> {
    fn complete(&self) -> bool {
        self.links.iter().all(|l| matches!(l.dial, Dial::Done))
            && self.neighbours_above().all(|s| self.streams[s].is_some())
    }

    /// The neighbours that connect to this rank.
    fn neighbours_above(&self) -> impl Iterator<Item = usize> + '_ {
        let (rank, size) = (self.config.rank, self.config.size);
        (rank + 1..size).filter(move |&s| are_neighbours(rank, s, size))
    }

    /// Connects to the ranks below and accepts the ranks above, until all are connected.
    fn connect_all(&mut self, deadline: Instant) -> Result<(), String> {
        while !self.complete() {
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timeout_error());
            }
            self.start_due_dials(now);
            let ready = self.poll(self.next_wake(deadline));
            if ready.coordinator {
                // Before this rank says ready, rank 0 only speaks to end the start-up.
                let rank = self.config.rank;
                let kind =
                    from_rank_0(&mut self.coordinator, rank, handshake_deadline(self.config))?;
                return Err(format!(
                    "rank {rank}: rank 0 sent handshake message kind {kind} while the mesh formed"
                ));
            }
            // Progress first: accepting may drop the oldest, shifting the indices polled.
            for handshake in self.incoming.progress(&ready.incoming, &mut self.log) {
                self.accept(handshake);
            }
            if ready.listener {
                self.incoming
                    .accept_all(&self.listener, &mut self.log, |_| Ok(()));
            }
            for i in ready.links {
                self.progress_link(i);
            }
            self.incoming.expire(Instant::now(), &mut self.log);
        }
        Ok(())
    }

    /// When the loop must look again: the deadline, the next dial, the next expiry.
    fn next_wake(&self, deadline: Instant) -> Instant {
        let dials = self.links.iter().filter_map(|l| match l.dial {
            Dial::Idle(at) => Some(at),
            _ => None,
        });
        dials
            .chain(self.incoming.next_expiry())
            .fold(deadline, Instant::min)
    }

    fn poll(&self, until: Instant) -> Ready {
        let mut interest: Vec<(BorrowedFd<'_>, PollFlags)> = vec![
            (self.coordinator.as_fd(), PollFlags::IN),
            (self.listener.as_fd(), PollFlags::IN),
        ];
        interest.extend(self.incoming.streams().map(|s| (s.as_fd(), PollFlags::IN)));
        let incoming = interest.len() - 2;
        let mut link_index = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            let watched = match &link.dial {
                Dial::Connecting(socket) => Some((socket.as_fd(), PollFlags::OUT)),
                Dial::Acking { stream, .. } => Some((stream.as_fd(), PollFlags::IN)),
                Dial::Idle(_) | Dial::Done => None,
            };
            if let Some(w) = watched {
                interest.push(w);
                link_index.push(i);
            }
        }
        let revents = poll_until(&interest, until);
        let flagged = |at: usize| readable(revents[at]) || revents[at].contains(PollFlags::OUT);
        Ready {
            coordinator: readable(revents[0]),
            listener: readable(revents[1]),
            incoming: (0..incoming).filter(|&i| flagged(2 + i)).collect(),
            links: link_index
                .into_iter()
                .enumerate()
                .filter(|&(k, _)| flagged(2 + incoming + k))
                .map(|(_, i)| i)
                .collect(),
        }
    }

    /// Checks a complete incoming mesh hello; acknowledges and keeps it, or refuses it.
    fn accept(&mut self, handshake: Handshake<()>) {
        let (rank, size) = (self.config.rank, self.config.size);
        let Handshake {
            stream,
            addr,
            bytes,
            ..
        } = handshake;
        let checked = <[u8; MESH_HELLO_BYTES]>::try_from(bytes.as_slice())
            .map_err(|_| "incomplete mesh hello".to_string())
            .and_then(|b| {
                check_mesh_hello(&b, &self.session, self.config.key(), rank, size, rank + 1..size)
            })
            .and_then(|from| {
                if !are_neighbours(rank, from, size) {
                    return Err(format!(
                        "rank {from} is not a neighbour of rank {rank}: they connect later, when a collective needs it"
                    ));
                }
                match self.streams[from] {
                    Some(_) => Err(format!("rank {from} is already connected")),
                    None => Ok(from),
                }
            })
            .and_then(|from| {
                send_small(&stream, &prefix(KIND_MESH_ACK))
                    .map(|()| from)
                    .map_err(|e| format!("cannot acknowledge rank {from}: {e}"))
            });
        match checked {
            Ok(from) => self.streams[from] = Some(stream),
            Err(reason) => self.log.refused(addr, &reason),
        }
    }

    /// Starts the connects whose time has come.
    fn start_due_dials(&mut self, now: Instant) {
        for i in 0..self.links.len() {
            if matches!(self.links[i].dial, Dial::Idle(at) if at <= now) {
                match start_connect(self.links[i].addr) {
                    Ok(socket) => self.links[i].dial = Dial::Connecting(socket),
                    Err(e) => self.retry(i, &format!("cannot connect: {e}")),
                }
            }
        }
    }

    /// Moves link `i` on after its poll said it is ready.
    fn progress_link(&mut self, i: usize) {
        let dial = std::mem::replace(&mut self.links[i].dial, Dial::Done);
        let outcome = match dial {
            Dial::Connecting(socket) => self.send_hello(i, socket).map(Step::Wait),
            Dial::Acking { stream, ack, got } => read_ack(stream, ack, got),
            other => Ok(Step::Wait(other)),
        };
        match outcome {
            Ok(Step::Wait(dial)) => self.links[i].dial = dial,
            Ok(Step::Connected(stream)) => self.streams[self.links[i].rank] = Some(stream),
            Err(reason) => self.retry(i, &reason),
        }
    }

    /// A connect finished: check it, and send the mesh hello.
    fn send_hello(&mut self, i: usize, socket: Socket) -> Result<Dial, String> {
        if let Some(e) = socket.take_error().map_err(|e| e.to_string())? {
            return Err(format!("cannot connect: {e}"));
        }
        let stream: TcpStream = socket.into();
        let hello = MeshHello::new(
            self.config.key(),
            self.session,
            self.config.rank as u32,
            self.links[i].rank as u32,
        );
        send_small(&stream, &hello.encode())
            .map_err(|e| format!("cannot send the mesh hello: {e}"))?;
        Ok(Dial::Acking {
            stream,
            ack: [0; PREFIX_BYTES],
            got: 0,
        })
    }

    /// Link `i` failed for `reason`: try again after its backoff.
    fn retry(&mut self, i: usize, reason: &str) {
        let link = &mut self.links[i];
        link.last_error = format!("rank {} at {}: {reason}", link.rank, link.addr);
        link.dial = Dial::Idle(Instant::now() + link.backoff);
        link.backoff = (link.backoff * 2).min(MAX_BACKOFF);
    }

    fn timeout_error(&self) -> String {
        let rank = self.config.rank;
        let below: Vec<&Link> = self
            .links
            .iter()
            .filter(|l| !matches!(l.dial, Dial::Done))
            .collect();
        let above: Vec<usize> = self
            .neighbours_above()
            .filter(|&s| self.streams[s].is_none())
            .collect();
        let mut message = format!(
            "rank {rank} waited {:?} ({ENV_TIMEOUT}) for its connections to its neighbours",
            self.config.timeout
        );
        if !below.is_empty() {
            let errors: Vec<&str> = below.iter().map(|l| l.last_error.as_str()).collect();
            let _ = write!(
                message,
                "; it could not connect to rank(s) {} ({})",
                list(below.iter().map(|l| l.rank)),
                errors.join("; ")
            );
        }
        let above = list(above);
        if !above.is_empty() {
            let _ = write!(message, "; rank(s) {above} did not connect to it");
        }
        message
    }

    /// Tells rank 0 this rank is connected to its neighbours, and waits for the go.
    fn ready_and_go(&mut self, deadline: Instant) -> Result<(), String> {
        let rank = self.config.rank;
        let left = deadline.saturating_duration_since(Instant::now());
        send_all(&self.coordinator, &prefix(KIND_READY), left)
            .map_err(|e| format!("rank {rank}: cannot tell rank 0 it is ready: {e}"))?;
        let left = deadline.saturating_duration_since(Instant::now());
        match from_rank_0(&mut self.coordinator, rank, left)? {
            KIND_GO => Ok(()),
            kind => Err(format!(
                "rank {rank}: rank 0 sent handshake message kind {kind}, expected go (kind {KIND_GO})"
            )),
        }
    }
}
