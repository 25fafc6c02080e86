//! Rank 0: admits every other rank, hands out the session and the mesh addresses, waits
//! until every rank is connected to its neighbours, and starts the job.
//!
//! While it waits, rank 0 watches every connection: a rank that joined and then goes
//! away ends the start-up at once, and rank 0 tells the others which rank it was.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Instant;

use rustix::event::PollFlags;

use super::on_demand::OnDemand;
use super::pending::{Handshake, Log, Pending};
use super::{
    bind_listener, failed, handshake_deadline, list, log, poll_until, readable, send_all,
    send_small,
};
use crate::tcp::config::{ENV_TIMEOUT, TcpConfig};
use crate::tcp::handshake::{
    Challenge, HELLO_BYTES, Hello, KIND_GO, KIND_JOINED, KIND_READY, Nonce, Notice, PREFIX_BYTES,
    SESSION_BYTES, Session, Welcome, check_hello, decode_prefix, prefix, random,
};
use crate::tcp::neighbours::are_neighbours;
use crate::types::BackendError;

/// A rank that has joined.
struct Member {
    stream: TcpStream,
    addr: SocketAddr,
    hello: Hello,
    /// The bytes of its ready message so far.
    ready: [u8; PREFIX_BYTES],
    got: usize,
}

/// The ranks that have joined so far (`None` for rank 0 and the missing ones).
struct Lobby<'a> {
    config: &'a TcpConfig,
    members: Vec<Option<Member>>,
    /// The session id and the mesh addresses, once handed out.
    session: Session,
    addrs: Vec<Option<SocketAddr>>,
}

/// Rank 0's side of the start-up: the connection to every other rank.
pub(super) fn run(config: &TcpConfig) -> Result<(Vec<Option<TcpStream>>, OnDemand), BackendError> {
    let deadline = Instant::now() + config.timeout;
    let mut lobby = Lobby {
        config,
        members: (0..config.size).map(|_| None).collect(),
        session: [0; SESSION_BYTES],
        addrs: Vec::new(),
    };
    let result = listen(config)
        .and_then(|listener| lobby.gather(&listener, deadline))
        .and_then(|()| lobby.welcome(deadline))
        .and_then(|()| lobby.await_ready(deadline));
    match result {
        Ok(()) => lobby.start(),
        Err(message) => {
            lobby.abort(&message);
            Err(failed(message))
        }
    }
}

/// Listens where `config` says (see [`TcpConfig::listen_candidates`]), warning when that is
/// beyond loopback without a token.
fn listen(config: &TcpConfig) -> Result<TcpListener, String> {
    let mut last = None;
    for ip in config.listen_candidates() {
        match bind_listener(ip, config.port) {
            Ok(listener) => {
                if let Some(warning) = listener
                    .local_addr()
                    .ok()
                    .and_then(|addr| config.exposure_warning(addr))
                {
                    log(&warning);
                }
                return Ok(listener);
            }
            Err(e) => last = Some((ip, e)),
        }
    }
    let (ip, e) = last.unwrap_or_else(|| {
        let no_address = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to try");
        (std::net::Ipv4Addr::LOCALHOST.into(), no_address)
    });
    Err(config.listen_error(&ip.to_string(), &e))
}

/// Sends a new connection its challenge and keeps the nonce to check the answer.
fn challenge(stream: &TcpStream) -> Result<Nonce, String> {
    let nonce: Nonce = random()?;
    send_small(stream, &Challenge { nonce }.encode())
        .map_err(|e| format!("cannot send the challenge: {e}"))?;
    Ok(nonce)
}

/// What `rank 0` says when `rank` went away during start-up.
fn left(rank: usize, how: &str) -> String {
    format!("rank {rank} left during start-up: {how}")
}

impl Lobby<'_> {
    fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        (1..self.config.size).filter(|&r| self.members[r].is_none())
    }

    fn joined(&self) -> impl Iterator<Item = (usize, &Member)> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(r, m)| m.as_ref().map(|m| (r, m)))
    }

    /// Accepts connections until every rank has joined, watching the ranks that have.
    fn gather(&mut self, listener: &TcpListener, deadline: Instant) -> Result<(), String> {
        let mut pending = Pending::new(HELLO_BYTES, handshake_deadline(self.config));
        let mut log = Log::new("rank 0".into());
        while self.missing().next().is_some() {
            if Instant::now() >= deadline {
                return Err(self.config.missing_ranks_error(&list(self.missing())));
            }
            let until = pending.next_expiry().map_or(deadline, |t| t.min(deadline));
            let (listener_ready, pending_ready, members_ready) =
                self.poll_gathering(listener, &pending, until);
            // Progress first: accepting may drop the oldest, shifting the indices polled.
            for handshake in pending.progress(&pending_ready, &mut log) {
                self.admit(handshake, &mut log);
            }
            if listener_ready {
                pending.accept_all(listener, &mut log, challenge);
            }
            for r in members_ready {
                self.check_member(r)?;
            }
            pending.expire(Instant::now(), &mut log);
        }
        Ok(())
    }

    /// Polls the listener, the pending handshakes and the joined ranks: whether the
    /// listener has connections, which pending ones and which ranks have something.
    fn poll_gathering(
        &self,
        listener: &TcpListener,
        pending: &Pending<Nonce>,
        until: Instant,
    ) -> (bool, Vec<usize>, Vec<usize>) {
        let members: Vec<(usize, &Member)> = self.joined().collect();
        let mut interest = vec![(listener.as_fd(), PollFlags::IN)];
        interest.extend(pending.streams().map(|s| (s.as_fd(), PollFlags::IN)));
        interest.extend(
            members
                .iter()
                .map(|(_, m)| (m.stream.as_fd(), PollFlags::IN)),
        );
        let revents = poll_until(&interest, until);
        let pending_count = interest.len() - 1 - members.len();
        let pending_ready = (0..pending_count)
            .filter(|&i| readable(revents[1 + i]))
            .collect();
        let members_ready = members
            .iter()
            .enumerate()
            .filter(|&(i, _)| readable(revents[1 + pending_count + i]))
            .map(|(_, (r, _))| *r)
            .collect();
        (readable(revents[0]), pending_ready, members_ready)
    }

    /// Admits or refuses a complete hello.
    fn admit(&mut self, handshake: Handshake<Nonce>, log: &mut Log) {
        let Handshake {
            stream,
            addr,
            bytes,
            state: nonce,
            ..
        } = handshake;
        let Ok(bytes) = <[u8; HELLO_BYTES]>::try_from(bytes.as_slice()) else {
            return log.refused(addr, "incomplete hello");
        };
        let checked =
            check_hello(&bytes, &nonce, self.config.key(), self.config.size).and_then(|hello| {
                match &self.members[hello.rank as usize] {
                    Some(first) => Err(TcpConfig::duplicate_rank_error(
                        hello.rank as usize,
                        first.addr,
                    )),
                    None => Ok(hello),
                }
            });
        let hello = match checked {
            Ok(hello) => hello,
            Err(reason) => {
                let _ = send_small(&stream, &Notice::reject(reason.clone()).encode());
                return log.refused(addr, &reason);
            }
        };
        if let Err(e) = send_small(&stream, &prefix(KIND_JOINED)) {
            return log.refused(addr, &format!("cannot confirm rank {}: {e}", hello.rank));
        }
        self.members[hello.rank as usize] = Some(Member {
            stream,
            addr,
            hello,
            ready: [0; PREFIX_BYTES],
            got: 0,
        });
    }

    /// A joined rank has something to read while it should be silent: it is gone, or it
    /// broke the protocol.
    fn check_member(&mut self, r: usize) -> Result<(), String> {
        let Some(member) = self.members[r].as_mut() else {
            return Ok(());
        };
        let mut byte = [0_u8; 1];
        match (&member.stream).read(&mut byte) {
            Ok(0) => Err(left(
                r,
                "its connection to rank 0 closed (its process ended?)",
            )),
            Ok(_) => Err(format!(
                "rank {r} sent unexpected bytes during start-up (a different protocol?)"
            )),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                Ok(())
            }
            Err(e) => Err(left(r, &format!("its connection to rank 0 failed: {e}"))),
        }
    }

    /// Sends every rank the session and the mesh addresses.
    fn welcome(&mut self, deadline: Instant) -> Result<(), String> {
        let session: Session = random()?;
        let addrs: Vec<Option<SocketAddr>> = self
            .members
            .iter()
            .map(|m| {
                m.as_ref()
                    .map(|m| SocketAddr::new(m.addr.ip().to_canonical(), m.hello.port))
            })
            .collect();
        let key = self.config.key();
        for (r, member) in self.members.iter_mut().enumerate() {
            let Some(member) = member else { continue };
            let welcome = Welcome::new(key, &member.hello.nonce, session, addrs.clone());
            let left_time = deadline.saturating_duration_since(Instant::now());
            send_all(&member.stream, &welcome.encode(), left_time)
                .map_err(|e| left(r, &format!("rank 0 cannot send it the welcome: {e}")))?;
        }
        self.session = session;
        self.addrs = addrs;
        Ok(())
    }

    /// Waits until every rank says it is connected to its neighbours.
    fn await_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            let waiting: Vec<usize> = self
                .joined()
                .filter(|(_, m)| m.got < PREFIX_BYTES)
                .map(|(r, _)| r)
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "rank 0 waited {:?} but rank(s) {} did not connect to the other ranks ({ENV_TIMEOUT})",
                    self.config.timeout,
                    list(waiting)
                ));
            }
            let ranks: Vec<usize> = self.joined().map(|(r, _)| r).collect();
            let interest: Vec<_> = self
                .joined()
                .map(|(_, m)| (m.stream.as_fd(), PollFlags::IN))
                .collect();
            let revents = poll_until(&interest, deadline);
            for (r, revents) in ranks.into_iter().zip(revents) {
                if readable(revents) {
                    self.read_ready(r)?;
                }
            }
        }
    }

    /// Reads rank `r`'s ready message; once it is complete, anything more is an error.
    fn read_ready(&mut self, r: usize) -> Result<(), String> {
        let Some(member) = self.members[r].as_mut() else {
            return Ok(());
        };
        if member.got == PREFIX_BYTES {
            return self.check_member(r);
        }
        match (&member.stream).read(&mut member.ready[member.got..]) {
            Ok(0) => {
                return Err(left(
                    r,
                    "its connection to rank 0 closed (its process ended?)",
                ));
            }
            Ok(n) => member.got += n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(left(r, &format!("its connection to rank 0 failed: {e}"))),
        }
        if member.got == PREFIX_BYTES {
            match decode_prefix(member.ready) {
                Ok(KIND_READY) => {}
                Ok(kind) => {
                    return Err(format!(
                        "rank {r} sent handshake message kind {kind} during start-up, expected ready (kind {KIND_READY})"
                    ));
                }
                Err(e) => return Err(format!("rank {r} sent a bad ready message: {e}")),
            }
        }
        Ok(())
    }

    /// Tells every rank to start and hands over the connections to rank 0's neighbours;
    /// the others close (rank 0 read all they sent: the go arrives before the end).
    fn start(self) -> Result<(Vec<Option<TcpStream>>, OnDemand), BackendError> {
        let size = self.config.size;
        let mut streams = Vec::with_capacity(self.members.len());
        for (r, member) in self.members.into_iter().enumerate() {
            if let Some(member) = &member {
                send_small(&member.stream, &prefix(KIND_GO))
                    .map_err(|e| failed(left(r, &format!("rank 0 cannot start it: {e}"))))?;
            }
            streams.push(
                member
                    .filter(|_| are_neighbours(0, r, size))
                    .map(|m| m.stream),
            );
        }
        let on_demand = OnDemand::new(
            (0, size),
            None,
            self.addrs,
            self.session,
            self.config.key(),
            handshake_deadline(self.config),
        );
        Ok((streams, on_demand))
    }

    /// Tells every joined rank that the start-up failed, and why (best effort: a rank
    /// that misses it sees rank 0's connection close).
    fn abort(&self, reason: &str) {
        let notice = Notice::abort(reason.to_string()).encode();
        for (_, member) in self.joined() {
            let _ = send_small(&member.stream, &notice);
        }
    }
}
