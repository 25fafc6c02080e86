//! The mesh of connections and its progress engine.
//!
//! A collective is a sequence of *exchanges*: sets of frames to send and frames to receive
//! that all make progress at once (non-blocking sockets and `poll`), so two ranks sending
//! each other megabytes never deadlock on full socket buffers. While it waits, an exchange
//! watches every connection of the mesh, not only the ones it uses: a peer that closes
//! (a `kill -9`), an abort report, or a frame of a different collective is seen at once.
//! It also accepts the connections lower ranks open to it the first time an algorithm
//! needs them, and opens those it needs to higher ranks (`rendezvous/on_demand.rs`).
//! A wait that makes no progress for the configured timeout fails naming the silent ranks.

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};

use super::frame::{
    self, ABORT_EXIT, ABORT_LOST, ABORT_MISMATCH, ABORT_PROTOCOL, AbortReport, DataError, Frame,
    HEADER_BYTES, MAX_ABORT_PAYLOAD,
};
use super::rendezvous::on_demand::{DialError, OnDemand};
use super::scratch::Scratch;
use crate::call::Transport;
use crate::copy::copy;
use crate::cores::{SPIN_WHILE_RANKS_FIT, ranks_fit};
use crate::fingerprint::Fingerprint;
use crate::tcp_config::{SocketBuffers, WITHIN_HOST_CONGESTION, within_host};
use crate::types::CommError;

/// The most bytes buffered from a peer that closed its connection (what the kernel had
/// already received; far above any socket buffer).
const MAX_STASH: usize = 256 << 20;

/// How long a rank that aborts waits for its peers to close their side, so its abort
/// report is not destroyed by a connection reset when the process exits.
const ABORT_LINGER: Duration = Duration::from_millis(300);

/// How long a rank that says goodbye waits for its peers' bye and the end of their
/// streams. Closing a socket with the peer's bye unread makes the kernel reset the
/// connection instead of closing it; ranks that finish together say bye within this.
const GOODBYE_LINGER: Duration = Duration::from_millis(300);

/// The most payload one write to a connection carries before the exchange turns to its
/// receives. A write the socket buffer can take whole (4 MiB) keeps the rank in the kernel
/// while the peer's data for it piles up unread and the peer's own writes stall on a full
/// window; in slices, both directions of a connection keep moving. 2 ranks on loopback,
/// medians of interleaved jobs (`cobre-comm bench`), against whole writes: allgatherv
/// 16 MiB 4235 against 5044 us, 256 MiB 89.8 against 118.1 ms, broadcast 16 MiB 4296
/// against 4942; 4 ranks, allgatherv 16 MiB 13952 against 15868; cells whose frames fit
/// one slice level. Slices of 0.5-2 MiB measured alike, 128 KiB slower
/// (`docs/perf/tcp-send-slices.txt`).
const SEND_SLICE_BYTES: usize = 1 << 20;

/// How long an exchange retries without sleeping when this host's ranks outnumber its
/// cores: the rank it waits for may need this core, so it soon sleeps in `poll`
/// (yielding as it retries meanwhile).
const SPIN_SHARED_CORES: Duration = Duration::from_micros(50);

/// How long an exchange of a rank whose host runs `local_ranks` ranks on `cores` cores
/// retries without sleeping after its last progress.
///
/// When every rank of the host has a core, [`SPIN_WHILE_RANKS_FIT`]. A rank that sleeps
/// in `poll` lets its core go idle, and a virtual machine's idle core is woken late
/// (about 100 us); a peer that spins less than that falls asleep in turn, and the two
/// can go on waking each other late for the rest of the job. Measured on the reference
/// machine, 2 ranks, 8 B allreduce, 20000 iterations per job, jobs alternated: spinning
/// 50 us, jobs took 10.2-68.3 us per call (the slow ones with 1700-15600 context
/// switches); 1 ms, 9.7-12.0; 20 ms, 9.6-11.0 (55-90 context switches each)
/// (`docs/perf/tcp-spinning.txt`). MPI's ranks busy-poll without end.
pub(crate) fn spin_for(local_ranks: usize, cores: usize) -> Duration {
    if ranks_fit(local_ranks, cores) {
        SPIN_WHILE_RANKS_FIT
    } else {
        SPIN_SHARED_CORES
    }
}

/// Whether the connections within a host of `local_ranks` ranks on `cores` cores ask for
/// [`WITHIN_HOST_CONGESTION`]: only while the ranks fit the cores. There the system's
/// pacing only spaces the packets out (2 ranks on 2 cores: 16 MiB allgatherv 3201
/// against 4673 us); with more ranks than cores it spaces the senders too, and the
/// ranks waiting for the core get it: 4 ranks on 2 cores, 1 MiB allgatherv, Reno took
/// 550 us against 376 with BBR (`docs/perf/tcp-congestion.txt`).
pub(crate) fn unpaced_for(local_ranks: usize, cores: usize) -> bool {
    ranks_fit(local_ranks, cores)
}

/// An error of the job, with the report to pass on to the other ranks.
#[derive(Debug)]
pub(crate) struct Fail {
    pub err: CommError,
    pub report: AbortReport,
}

/// One connection of the mesh.
#[derive(Debug)]
pub(crate) struct Peer {
    pub stream: TcpStream,
    /// Bytes received after the peer closed its side, not yet consumed.
    stash: Vec<u8>,
    stash_pos: usize,
    /// Every byte the peer will ever send is in the stash.
    eof: bool,
    /// The peer said bye (dropped its communicator).
    departed: bool,
    /// Where a frame is cut in the middle on this connection.
    partial: Partial,
}

/// The frames of a connection that are partly through: nothing can be sent before the
/// rest of a frame partly sent (no abort report can follow it), and what follows a frame
/// partly received is not a frame's start.
#[derive(Debug, Default, Clone, Copy)]
struct Partial {
    sending: bool,
    receiving: bool,
}

impl Peer {
    /// Configures `stream` for the collectives; `unpaced`: ask for
    /// [`WITHIN_HOST_CONGESTION`] if it stays within the host (see [`Peer::unpace`]).
    pub(crate) fn new(stream: TcpStream, unpaced: bool) -> io::Result<Peer> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let sock = socket2::SockRef::from(&stream);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(10))
            .with_interval(Duration::from_secs(5));
        let _ = sock.set_tcp_keepalive(&keepalive);
        let buffers = SocketBuffers::here();
        // Best effort, as keepalive: a connection keeps the kernel's buffers if refused.
        if let Some(bytes) = buffers.send {
            let _ = sock.set_send_buffer_size(bytes);
        }
        if let Some(bytes) = buffers.recv {
            let _ = sock.set_recv_buffer_size(bytes);
        }
        let peer = Peer {
            stream,
            stash: Vec::new(),
            stash_pos: 0,
            eof: false,
            departed: false,
            partial: Partial::default(),
        };
        if unpaced {
            peer.unpace();
        }
        Ok(peer)
    }

    /// Asks for [`WITHIN_HOST_CONGESTION`] if this connection stays within the host, as
    /// the ranks of a host that fit its cores do ([`unpaced_for`]). Best effort, as the
    /// buffers: a refusal leaves the system's choice.
    fn unpace(&self) {
        if let (Ok(local), Ok(peer)) = (self.stream.local_addr(), self.stream.peer_addr())
            && within_host(local.ip(), peer.ip())
        {
            let sock = socket2::SockRef::from(&self.stream);
            let _ = sock.set_tcp_congestion(WITHIN_HOST_CONGESTION.as_bytes());
        }
    }

    /// Reads from the stash first, then from the socket (non-blocking).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stash_pos < self.stash.len() {
            let n = buf.len().min(self.stash.len() - self.stash_pos);
            copy(
                &mut buf[..n],
                &self.stash[self.stash_pos..self.stash_pos + n],
            );
            self.stash_pos += n;
            if self.stash_pos == self.stash.len() {
                self.stash = Vec::new();
                self.stash_pos = 0;
            }
            return Ok(n);
        }
        if self.eof {
            return Ok(0);
        }
        (&self.stream).read(buf)
    }

    /// Reads into `bufs` in order, from the stash first, then from the socket with one
    /// `readv` (non-blocking).
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        if self.stash_pos < self.stash.len() || self.eof {
            let mut total = 0;
            for buf in bufs.iter_mut() {
                let n = match self.read(buf) {
                    Ok(n) => n,
                    // The stash ran out and the socket has nothing yet (or failed): report
                    // what moved; the next read meets the socket's state again.
                    Err(_) if total > 0 => break,
                    Err(e) => return Err(e),
                };
                total += n;
                if n < buf.len() {
                    break;
                }
            }
            return Ok(total);
        }
        (&self.stream).read_vectored(bufs)
    }

    /// Puts `bytes` back in front of what is still to be read: they were read past a
    /// header, into the payload of a frame the header turned out not to start.
    fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut stash = Vec::with_capacity(bytes.len() + self.stash.len() - self.stash_pos);
        stash.extend_from_slice(bytes);
        stash.extend_from_slice(&self.stash[self.stash_pos..]);
        self.stash = stash;
        self.stash_pos = 0;
    }

    /// The abort report at the head of what is still to be read from this peer, without
    /// consuming anything (`buf` holds the bytes looked at).
    fn report_at_head(
        &self,
        buf: &mut [u8; HEADER_BYTES + MAX_ABORT_PAYLOAD],
    ) -> Option<AbortReport> {
        if self.partial.receiving {
            return None;
        }
        let n = if self.stash_pos < self.stash.len() {
            let rest = &self.stash[self.stash_pos..];
            let n = rest.len().min(buf.len());
            copy(&mut buf[..n], &rest[..n]);
            n
        } else if self.eof {
            return None;
        } else {
            self.stream.peek(buf).ok()?
        };
        let header: &[u8; HEADER_BYTES] = buf.first_chunk()?;
        match frame::decode(header) {
            Ok(Frame::Abort { len, .. }) if n >= HEADER_BYTES + len => {
                AbortReport::decode(&buf[HEADER_BYTES..HEADER_BYTES + len]).ok()
            }
            _ => None,
        }
    }

    fn send(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(sendmsg(
            self.stream.as_fd(),
            parts,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        )?)
    }
}

/// A frame to send. Its payload is one slice, or two sent back to back
/// ([`SendOp::wrapped`]: a run of blocks that wraps past the end of a buffer).
pub(crate) struct SendOp<'a> {
    pub peer: usize,
    header: [u8; HEADER_BYTES],
    payload: &'a [u8],
    tail: &'a [u8],
    done: usize,
}

impl<'a> SendOp<'a> {
    pub(crate) fn new(peer: usize, fp: &Fingerprint, payload: &'a [u8]) -> SendOp<'a> {
        SendOp::wrapped(peer, fp, payload, &[])
    }

    /// One frame whose payload is `payload` followed by `tail`, written with one vectored
    /// write (no copy to join them).
    pub(crate) fn wrapped(
        peer: usize,
        fp: &Fingerprint,
        payload: &'a [u8],
        tail: &'a [u8],
    ) -> SendOp<'a> {
        SendOp {
            peer,
            header: frame::encode_data(fp, payload.len() + tail.len()),
            payload,
            tail,
            done: 0,
        }
    }

    fn finished(&self) -> bool {
        self.done == HEADER_BYTES + self.len()
    }

    /// Payload bytes.
    pub(crate) fn len(&self) -> usize {
        self.payload.len() + self.tail.len()
    }

    /// What is left to send: the rest of the header, then of each payload part.
    fn rest(&self) -> [&'a [u8]; 2] {
        let sent = self.done.saturating_sub(HEADER_BYTES);
        match sent.checked_sub(self.payload.len()) {
            None => [&self.payload[sent..], self.tail],
            Some(in_tail) => [&[], &self.tail[in_tail..]],
        }
    }

    fn rest_of_header(&self) -> &[u8] {
        &self.header[self.done.min(HEADER_BYTES)..]
    }
}

/// A frame to receive into `dest` (whose length is the expected payload length), into
/// two slices filled one after the other ([`RecvOp::wrapped`]), or through a small buffer
/// to a consumer, piece by piece ([`RecvOp::streamed`]).
pub(crate) struct RecvOp<'a> {
    pub peer: usize,
    header: [u8; HEADER_BYTES],
    hdone: usize,
    dest: &'a mut [u8],
    tail: &'a mut [u8],
    done: usize,
    stream: Option<Stream<'a>>,
}

/// What a streamed receive delivers to: the payload's length, and the consumer of each
/// piece staged in the receive's `dest`.
struct Stream<'a> {
    len: usize,
    /// The consumer takes whole multiples of this many bytes (an element), but the last.
    unit: usize,
    /// Bytes in `dest` not handed over yet (less than `unit` between reads).
    staged: usize,
    /// Payload bytes handed over so far.
    delivered: usize,
    consume: &'a mut dyn FnMut(usize, &[u8]),
}

impl<'a> RecvOp<'a> {
    pub(crate) fn new(peer: usize, dest: &'a mut [u8]) -> RecvOp<'a> {
        RecvOp::wrapped(peer, dest, &mut [])
    }

    /// One frame whose payload fills `dest` and then `tail`, read straight into them.
    pub(crate) fn wrapped(peer: usize, dest: &'a mut [u8], tail: &'a mut [u8]) -> RecvOp<'a> {
        RecvOp {
            peer,
            header: [0; HEADER_BYTES],
            hdone: 0,
            dest,
            tail,
            done: 0,
            stream: None,
        }
    }

    /// One frame of `len` payload bytes read into `stage` as they arrive and handed to
    /// `consume(offset, bytes)` after each read, in order, in whole multiples of `unit`
    /// bytes (but the last piece). The consumer works on each piece while it is in cache,
    /// where a receive into place leaves the whole payload to be read again from memory.
    /// `stage` holds at least two units.
    pub(crate) fn streamed(
        peer: usize,
        len: usize,
        unit: usize,
        stage: &'a mut [u8],
        consume: &'a mut dyn FnMut(usize, &[u8]),
    ) -> RecvOp<'a> {
        debug_assert!(unit > 0 && stage.len() >= 2 * unit);
        let mut op = RecvOp::new(peer, stage);
        op.stream = Some(Stream {
            len,
            unit,
            staged: 0,
            delivered: 0,
            consume,
        });
        op
    }

    fn finished(&self) -> bool {
        self.hdone == HEADER_BYTES
            && self.done == self.len()
            && self.stream.as_ref().is_none_or(|s| s.staged == 0)
    }

    /// Payload bytes expected.
    pub(crate) fn len(&self) -> usize {
        self.stream
            .as_ref()
            .map_or(self.dest.len() + self.tail.len(), |s| s.len)
    }

    /// Where the next payload bytes go.
    fn unfilled(&mut self) -> &mut [u8] {
        if let Some(s) = &self.stream {
            let room = (self.dest.len() - s.staged).min(s.len - self.done);
            return &mut self.dest[s.staged..s.staged + room];
        }
        match self.done.checked_sub(self.dest.len()) {
            None => &mut self.dest[self.done..],
            Some(in_tail) => &mut self.tail[in_tail..],
        }
    }

    /// Counts `n` payload bytes just read and, for a streamed receive, hands the whole
    /// units staged to the consumer (everything once the payload is complete), keeping
    /// the rest of a unit at the front of the stage.
    fn received(&mut self, n: usize) {
        self.done += n;
        let Some(s) = &mut self.stream else { return };
        s.staged += n;
        let whole = if self.done == s.len {
            s.staged
        } else {
            s.staged / s.unit * s.unit
        };
        if whole > 0 {
            (s.consume)(s.delivered, &self.dest[..whole]);
            self.dest.copy_within(whole..s.staged, 0);
            s.staged -= whole;
            s.delivered += whole;
        }
    }

    fn started(&self) -> bool {
        self.hdone > 0
    }

    /// Reads the rest of the header and as much of the payload as `peer` has, with one
    /// read: a small frame arrives whole, and this saves the payload's own read call.
    /// Returns the header and payload bytes read.
    fn read_header_and_payload(&mut self, peer: &mut Peer) -> io::Result<(usize, usize)> {
        debug_assert!(self.hdone < HEADER_BYTES && self.done == 0);
        let room = self
            .stream
            .as_ref()
            .map_or(self.dest.len(), |s| s.len.min(self.dest.len()));
        let dest = &mut self.dest[..room];
        let mut bufs = [
            IoSliceMut::new(&mut self.header[self.hdone..]),
            IoSliceMut::new(dest),
            IoSliceMut::new(self.tail),
        ];
        let n = peer.read_vectored(&mut bufs)?;
        let header = n.min(HEADER_BYTES - self.hdone);
        Ok((header, n - header))
    }

    /// The first `n` payload bytes (read with the header).
    fn payload_prefix(&self, n: usize) -> Vec<u8> {
        let in_dest = n.min(self.dest.len());
        let mut out = self.dest[..in_dest].to_vec();
        out.extend_from_slice(&self.tail[..n - in_dest]);
        out
    }
}

/// What woke [`Mesh::wait`]: the peers with events, and the events of what
/// [`OnDemand::watched`] listed.
struct Woken {
    ready: Vec<(usize, PollFlags)>,
    incoming: Vec<PollFlags>,
}

/// Every connection of this rank.
#[derive(Debug)]
pub(crate) struct Mesh {
    pub rank: usize,
    pub size: usize,
    pub timeout: Duration,
    /// One connection per other rank (`None` at this rank's index, and for the ranks not
    /// connected yet).
    pub peers: Vec<Option<Peer>>,
    /// The ranks connected from the start (`tcp/neighbours.rs`).
    pub neighbours: Vec<usize>,
    /// What opens the other connections when an exchange first needs them (`None` in a
    /// job of one rank, and in tests whose mesh is complete).
    pub on_demand: Option<OnDemand>,
    /// Reusable space for the pieces an allreduce receives (kept between calls; as large
    /// as the largest allreduce so far, times `(n - 1) / n` or `(n - 1)`).
    pub scratch: Scratch,
    /// The algorithms this job forces (see [`crate::algorithm`]).
    pub algorithms: crate::algorithm::Forced,
    /// The hosts the job's ranks run on (one until `TcpBackend::new` has gathered them).
    pub hosts: std::sync::Arc<super::hosts::Hosts>,
    /// How long an exchange retries without sleeping after its last progress
    /// ([`spin_for`] this rank's host).
    pub spin: Duration,
    /// Whether connections within the host ask for [`WITHIN_HOST_CONGESTION`]
    /// ([`unpaced_for`] this rank's host; set with [`Mesh::set_unpaced`]).
    pub unpaced: bool,
}

impl Mesh {
    /// Records whether connections within the host ask for [`WITHIN_HOST_CONGESTION`],
    /// and asks on those already open.
    pub(crate) fn set_unpaced(&mut self, unpaced: bool) {
        self.unpaced = unpaced;
        if unpaced {
            self.peers.iter().flatten().for_each(Peer::unpace);
        }
    }

    fn peer(&mut self, p: usize) -> &mut Peer {
        self.peers[p].as_mut().expect("a peer rank")
    }

    fn lost(&self, op: &'static str, p: usize, how: &str) -> Fail {
        let message = format!("rank {}: {how}", self.rank);
        Fail {
            err: CommError::PeerLost {
                operation: op,
                rank: p,
                message: how.to_string(),
            },
            report: AbortReport {
                code: ABORT_LOST,
                rank: p as u32,
                message,
            },
        }
    }

    /// The failure for `p` closing its connection without a report (or in the middle of a
    /// frame). A rank that fails tells its peers, but a report cannot follow a frame cut in
    /// the middle or join a send buffer its peer does not empty: such a peer only sees the
    /// connection close. When another peer's report waits at the head of its connection,
    /// that report says why, and names the rank that failed first; otherwise `p` is lost.
    fn closed(&self, op: &'static str, p: usize, how: &str) -> Fail {
        let mut buf = [0_u8; HEADER_BYTES + MAX_ABORT_PAYLOAD];
        self.peers
            .iter()
            .enumerate()
            .filter(|&(q, _)| q != p)
            .find_map(|(q, peer)| Some((q, peer.as_ref()?.report_at_head(&mut buf)?)))
            .map_or_else(
                || self.lost(op, p, how),
                |(q, report)| Self::from_report(op, q, report),
            )
    }

    fn protocol(&self, op: &'static str, p: usize, what: &str) -> Fail {
        let message = format!("rank {p} sent a bad frame to rank {}: {what}", self.rank);
        Fail {
            err: CommError::Protocol {
                operation: op,
                message: message.clone(),
            },
            report: AbortReport {
                code: ABORT_PROTOCOL,
                rank: p as u32,
                message,
            },
        }
    }

    fn mismatch(&self, fp: &Fingerprint, theirs: &Fingerprint, p: usize) -> Fail {
        let err = fp.mismatch(self.rank, theirs, p);
        let message = match &err {
            CommError::CollectiveMismatch { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Fail {
            err,
            report: AbortReport {
                code: ABORT_MISMATCH,
                rank: self.rank as u32,
                message,
            },
        }
    }

    /// The failure for an abort report received from `p`. A report of `abort` (code
    /// [`ABORT_EXIT`]) keeps its code: [`Transport::broken`] passes it on to every peer
    /// and ends this process with the sender's exit code.
    fn from_report(op: &'static str, p: usize, report: AbortReport) -> Fail {
        let text = format!("reported by rank {p}: {}", report.message);
        let err = match report.code {
            ABORT_MISMATCH => CommError::CollectiveMismatch {
                operation: op,
                message: text,
            },
            ABORT_PROTOCOL => CommError::Protocol {
                operation: op,
                message: text,
            },
            _ => CommError::PeerLost {
                operation: op,
                rank: report.rank as usize,
                message: text,
            },
        };
        Fail { err, report }
    }

    /// Reads exactly `buf` from `p`, waiting at most the timeout (used for abort reports).
    fn read_exact(&mut self, op: &'static str, p: usize, buf: &mut [u8]) -> Result<(), Fail> {
        let deadline = Instant::now() + self.timeout.min(Duration::from_secs(5));
        let mut done = 0;
        while done < buf.len() {
            match self.peer(p).read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(self.closed(op, p, "connection closed in the middle of a frame"));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(self.lost(op, p, "stopped sending in the middle of a frame"));
                    }
                    let mut fds = [PollFd::new(&self.peer(p).stream, PollFlags::IN)];
                    let _ = poll(&mut fds, Some(&timespec(left)));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.lost(op, p, &format!("connection failed: {e}"))),
            }
        }
        Ok(())
    }

    /// Handles a decoded header that is not the expected data.
    fn unexpected(
        &mut self,
        fp: &Fingerprint,
        p: usize,
        frame: Result<Frame, String>,
        expected_len: usize,
    ) -> Fail {
        let op = fp.op.name();
        let frame = match frame {
            Ok(f) => f,
            Err(what) => return self.protocol(op, p, &what),
        };
        match frame::check_data(&frame, fp, expected_len) {
            Ok(()) => unreachable!("only called for unexpected frames"),
            Err(DataError::Mismatch(theirs)) => self.mismatch(fp, &theirs, p),
            Err(DataError::Length(what)) => self.protocol(op, p, &what),
            Err(DataError::NotData) => {
                if let Frame::Abort { len, .. } = frame {
                    let mut buf = [0_u8; MAX_ABORT_PAYLOAD];
                    if let Err(fail) = self.read_exact(op, p, &mut buf[..len]) {
                        return fail;
                    }
                    return match AbortReport::decode(&buf[..len]) {
                        Ok(report) => Self::from_report(op, p, report),
                        Err(what) => self.protocol(op, p, &what),
                    };
                }
                self.peer(p).departed = true;
                self.lost(
                    op,
                    p,
                    &format!(
                        "rank {p} has shut down (dropped its communicator) while rank {} expected its data for {}",
                        self.rank,
                        fp.describe()
                    ),
                )
            }
        }
    }

    /// Advances a receive as far as the socket allows. Returns whether bytes moved.
    fn progress_recv(&mut self, fp: &Fingerprint, r: &mut RecvOp<'_>) -> Result<bool, Fail> {
        let op = fp.op.name();
        let p = r.peer;
        let mut moved = false;
        while !r.finished() {
            let result = if r.hdone < HEADER_BYTES {
                r.read_header_and_payload(self.peer(p))
            } else {
                let into = r.unfilled();
                self.peer(p).read(into).map(|n| (0, n))
            };
            match result {
                Ok((0, 0)) if self.peer(p).departed => {
                    let how = format!("rank {p} has shut down (dropped its communicator)");
                    return Err(self.lost(op, p, &how));
                }
                Ok((0, 0)) => {
                    let how = "connection closed (the process exited or was killed)";
                    return Err(self.closed(op, p, how));
                }
                Ok((header, payload)) => {
                    moved = true;
                    if header > 0 {
                        r.hdone += header;
                        if r.hdone == HEADER_BYTES {
                            let decoded = frame::decode(&r.header);
                            let ok = matches!(&decoded, Ok(f) if frame::check_data(f, fp, r.len()).is_ok());
                            if !ok {
                                // What was read past the header is not this frame's payload.
                                let past = r.payload_prefix(payload);
                                self.peer(p).unread(&past);
                                return Err(self.unexpected(fp, p, decoded, r.len()));
                            }
                        }
                    }
                    r.received(payload);
                    self.peer(p).partial.receiving = !r.finished();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.closed(op, p, &format!("connection failed: {e}"))),
            }
        }
        Ok(moved)
    }

    /// Advances a send by one write of at most [`SEND_SLICE_BYTES`] of payload, as far as
    /// the socket allows. Returns whether bytes moved.
    fn progress_send(&mut self, fp: &Fingerprint, s: &mut SendOp<'_>) -> Result<bool, Fail> {
        let op = fp.op.name();
        let p = s.peer;
        if self.peer(p).departed {
            return Err(self.lost(
                op,
                p,
                &format!("rank {p} has shut down (dropped its communicator)"),
            ));
        }
        let mut moved = false;
        while !s.finished() {
            let [payload, tail] = s.rest();
            let payload = &payload[..payload.len().min(SEND_SLICE_BYTES)];
            let tail = &tail[..tail.len().min(SEND_SLICE_BYTES - payload.len())];
            let parts = [
                IoSlice::new(s.rest_of_header()),
                IoSlice::new(payload),
                IoSlice::new(tail),
            ];
            let result = self.peer(p).send(&parts);
            match result {
                Ok(n) => {
                    moved = true;
                    s.done += n;
                    self.peer(p).partial.sending = !s.finished();
                    // One slice per pass: the receives go next (see `SEND_SLICE_BYTES`).
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(self
                        .diagnose(fp, p, None)
                        .err()
                        .unwrap_or_else(|| self.closed(op, p, &format!("sending failed: {e}"))));
                }
            }
        }
        Ok(moved)
    }

    /// Reads everything `p` sent before closing into its stash and decides: an abort
    /// report, a clean bye (no error), or a lost peer. `active` is the receive in progress
    /// on `p`, completed from the stash first. An abort of a later call is no error yet:
    /// the sender finished this call, and the next call reads its report from the stash.
    fn diagnose(
        &mut self,
        fp: &Fingerprint,
        p: usize,
        active: Option<&mut RecvOp<'_>>,
    ) -> Result<(), Fail> {
        let op = fp.op.name();
        if !self.peer(p).eof {
            let mut chunk = vec![0_u8; 64 << 10];
            loop {
                let peer = self.peer(p);
                match (&peer.stream).read(&mut chunk) {
                    Ok(0) => {
                        peer.eof = true;
                        break;
                    }
                    Ok(n) => {
                        if peer.stash.len() + n > MAX_STASH {
                            return Err(self.protocol(op, p, "too much data after closing"));
                        }
                        peer.stash.extend_from_slice(&chunk[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Not closed after all (an error flag without end of stream).
                        return Ok(());
                    }
                    Err(e) => {
                        return Err(self.closed(op, p, &format!("connection failed: {e}")));
                    }
                }
            }
        }
        if let Some(r) = active {
            self.progress_recv(fp, r)?;
            if !r.finished() {
                return Err(self.closed(op, p, "connection closed in the middle of a frame"));
            }
        }
        // Walk the remaining frames: data for later steps stays stashed.
        let peer = self.peer(p);
        let mut at = peer.stash_pos;
        let stash = &peer.stash;
        loop {
            if at == stash.len() {
                if peer.departed {
                    return Ok(());
                }
                return Err(self.closed(
                    op,
                    p,
                    "connection closed (the process exited or was killed)",
                ));
            }
            let Some(header) = stash.get(at..at + HEADER_BYTES) else {
                return Err(self.closed(op, p, "connection closed in the middle of a frame"));
            };
            let header: &[u8; HEADER_BYTES] = header.try_into().expect("64 bytes");
            match frame::decode(header) {
                Err(what) => return Err(self.protocol(op, p, &what)),
                Ok(Frame::Data { len, .. }) => {
                    at = at
                        .saturating_add(HEADER_BYTES)
                        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
                    if at > stash.len() {
                        return Err(self.closed(
                            op,
                            p,
                            "connection closed in the middle of a frame",
                        ));
                    }
                }
                Ok(Frame::Bye) => {
                    if at + HEADER_BYTES == stash.len() {
                        return Ok(());
                    }
                    return Err(self.protocol(op, p, "data after a bye frame"));
                }
                // As in `peek_idle`: the sender finished this call; the next one reads it.
                Ok(Frame::Abort { seq, .. }) if seq > fp.seq => return Ok(()),
                Ok(Frame::Abort { len, .. }) => {
                    let body = stash
                        .get(at + HEADER_BYTES..at + HEADER_BYTES + len)
                        .unwrap_or(&[]);
                    return Err(match AbortReport::decode(body) {
                        Ok(report) => Self::from_report(op, p, report),
                        Err(what) => self.protocol(op, p, &what),
                    });
                }
            }
        }
    }

    /// Looks at the next frame of a peer this exchange does not read from: an abort or a
    /// frame of another collective is an error now; data for a later step waits.
    /// Returns whether to keep watching the peer for input.
    fn peek_idle(&mut self, fp: &Fingerprint, p: usize) -> Result<bool, Fail> {
        let op = fp.op.name();
        if !self.peer(p).stash.is_empty() {
            // Bytes already taken off the socket come first; the receive will read them.
            return Ok(false);
        }
        let mut header = [0_u8; HEADER_BYTES];
        let n = match self.peer(p).stream.peek(&mut header) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(_) => return self.diagnose(fp, p, None).map(|()| false),
        };
        if n == 0 {
            return self.diagnose(fp, p, None).map(|()| false);
        }
        if n < HEADER_BYTES {
            return Ok(false);
        }
        match frame::decode(&header) {
            Err(what) => Err(self.protocol(op, p, &what)),
            Ok(Frame::Data { fingerprint, .. }) => {
                if fingerprint.seq < fp.seq
                    || (fingerprint.seq == fp.seq && !fp.agrees_with(&fingerprint))
                {
                    Err(self.mismatch(fp, &fingerprint, p))
                } else {
                    Ok(false)
                }
            }
            Ok(Frame::Bye) => {
                let mut sink = [0_u8; HEADER_BYTES];
                self.read_exact(op, p, &mut sink)?;
                self.peer(p).departed = true;
                Ok(false)
            }
            // The sender finished this call (it failed in a later one), so everything it
            // sends this rank for this call came before: finish the call, fail the next.
            Ok(Frame::Abort { seq, .. }) if seq > fp.seq => Ok(false),
            Ok(frame @ Frame::Abort { .. }) => {
                let mut sink = [0_u8; HEADER_BYTES];
                self.read_exact(op, p, &mut sink)?;
                Err(self.unexpected(fp, p, Ok(frame), 0))
            }
        }
    }

    /// Runs `sends` and `recvs` to completion, all at once.
    ///
    /// On failure, frames already begun are finished first (briefly, best effort): a
    /// frame cut in the middle would keep this rank's abort report from reaching that
    /// peer, which would then blame this rank for the failure instead of the rank that
    /// caused it.
    pub(crate) fn exchange(
        &mut self,
        fp: &Fingerprint,
        sends: &mut [SendOp<'_>],
        recvs: &mut [RecvOp<'_>],
    ) -> Result<(), Fail> {
        self.exchange_overlapping(fp, sends, recvs, || {})
    }

    /// [`Mesh::exchange`], doing `work` (copying that touches none of the frames' buffers)
    /// the first time a pass over the connections moves nothing, when this rank would
    /// otherwise wait for its peers, or at the end.
    pub(crate) fn exchange_overlapping(
        &mut self,
        fp: &Fingerprint,
        sends: &mut [SendOp<'_>],
        recvs: &mut [RecvOp<'_>],
        work: impl FnOnce(),
    ) -> Result<(), Fail> {
        let result = self
            .dial_missing(fp, sends, recvs)
            .and_then(|()| self.progress_all(fp, sends, recvs, work));
        if result.is_err() {
            self.finish_started(sends);
        }
        result
    }

    /// Connects to the ranks above this one that the exchange involves and that have no
    /// connection yet (the ranks below dial this one: [`Mesh::progress_all`] accepts them).
    fn dial_missing(
        &mut self,
        fp: &Fingerprint,
        sends: &[SendOp<'_>],
        recvs: &[RecvOp<'_>],
    ) -> Result<(), Fail> {
        let involved = sends
            .iter()
            .map(|s| s.peer)
            .chain(recvs.iter().map(|r| r.peer));
        for p in involved {
            if p <= self.rank || self.peers[p].is_some() {
                continue;
            }
            let Some(on_demand) = &self.on_demand else {
                return Err(self.lost(fp.op.name(), p, "no connection to this rank"));
            };
            // A rank out of descriptors drops out of the job itself: it names itself.
            let stream = on_demand.dial(p, self.timeout).map_err(|e| match e {
                // The rank may have left because of a failure already reported here.
                DialError::Peer(why) => self.closed(fp.op.name(), p, &why),
                DialError::Exhausted(why) => self.lost(fp.op.name(), self.rank, &why),
            })?;
            let peer = Peer::new(stream, self.unpaced).map_err(|e| {
                self.lost(
                    fp.op.name(),
                    p,
                    &format!("cannot configure the connection: {e}"),
                )
            })?;
            self.peers[p] = Some(peer);
        }
        Ok(())
    }

    /// Takes the connections lower ranks opened to this one, after a poll that reported
    /// `revents` for what [`OnDemand::watched`] listed. Returns whether one arrived.
    fn accept_new(&mut self, op: &'static str, revents: &[PollFlags]) -> Result<bool, Fail> {
        let Some(on_demand) = self.on_demand.as_mut() else {
            return Ok(false);
        };
        let peers = &self.peers;
        let accepted = on_demand
            .progress(revents, |p| peers[p].is_some())
            .map_err(|why| self.lost(op, self.rank, &why))?;
        let any = !accepted.is_empty();
        for a in accepted {
            let peer = Peer::new(a.stream, self.unpaced).map_err(|e| {
                self.lost(op, a.rank, &format!("cannot configure the connection: {e}"))
            })?;
            self.peers[a.rank] = Some(peer);
        }
        Ok(any)
    }

    /// Completes the frames of `sends` that are partly sent, within a short deadline.
    /// Their payload is the call's own valid data, so the peer receives a whole frame.
    fn finish_started(&mut self, sends: &[SendOp<'_>]) {
        let deadline = Instant::now() + Duration::from_millis(200);
        for s in sends.iter().filter(|s| s.done > 0 && !s.finished()) {
            let Some(peer) = self.peers[s.peer].as_mut() else {
                continue;
            };
            if peer.departed || peer.eof {
                continue;
            }
            let [payload, tail] = s.rest();
            if send_all(peer, &[s.rest_of_header(), payload, tail], deadline).is_ok() {
                peer.partial.sending = false;
            }
        }
    }

    fn progress_all(
        &mut self,
        fp: &Fingerprint,
        sends: &mut [SendOp<'_>],
        recvs: &mut [RecvOp<'_>],
        work: impl FnOnce(),
    ) -> Result<(), Fail> {
        let op = fp.op.name();
        let mut work = Some(work);
        let mut last_progress = Instant::now();
        let mut watch_input = vec![true; self.size];
        let mut spin_until = last_progress + self.spin;
        loop {
            let mut moved = false;
            // A frame to or from a rank below that has not connected yet waits for it.
            for s in sends.iter_mut().filter(|s| !s.finished()) {
                if self.peers[s.peer].is_some() {
                    moved |= self.progress_send(fp, s)?;
                }
            }
            for r in recvs.iter_mut().filter(|r| !r.finished()) {
                if self.peers[r.peer].is_some() {
                    moved |= self.progress_recv(fp, r)?;
                }
            }
            if sends.iter().all(SendOp::finished) && recvs.iter().all(RecvOp::finished) {
                if let Some(work) = work.take() {
                    work();
                }
                return Ok(());
            }
            if !moved && let Some(work) = work.take() {
                // The peers are busy with what this pass gave them: copy meanwhile.
                work();
                continue;
            }
            let now = Instant::now();
            if moved {
                last_progress = now;
                spin_until = now + self.spin;
            }
            if now < spin_until {
                // Small messages arrive within microseconds: retry a little before
                // sleeping in poll (yielding, so oversubscribed ranks still progress).
                std::thread::yield_now();
                continue;
            }
            let deadline = last_progress + self.timeout;
            if now >= deadline {
                return Err(self.timed_out(fp, sends, recvs));
            }
            let Woken { ready, incoming } = self.wait(op, sends, recvs, &watch_input, deadline)?;
            if self.accept_new(op, &incoming)? {
                last_progress = Instant::now();
                spin_until = last_progress + self.spin;
            }
            for (p, ev) in ready {
                if ev.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::RDHUP) {
                    let active = recvs.iter_mut().find(|r| r.peer == p && !r.finished());
                    self.diagnose(fp, p, active)?;
                    let pending = self.peer(p).eof
                        && (recvs.iter().any(|r| r.peer == p && !r.finished())
                            || sends.iter().any(|s| s.peer == p && !s.finished()));
                    if pending {
                        return Err(self.lost(
                            op,
                            p,
                            &format!("rank {p} has shut down (dropped its communicator)"),
                        ));
                    }
                    last_progress = Instant::now();
                } else if ev.contains(PollFlags::IN)
                    && !recvs.iter().any(|r| r.peer == p && !r.finished())
                {
                    watch_input[p] = self.peek_idle(fp, p)?;
                }
            }
        }
    }

    /// Sleeps in `poll` until a connection of the mesh is ready for what the exchange
    /// needs (or has input while `watch_input` says to look at it), a lower rank connects,
    /// or `deadline` (or the next handshake expiry) comes. Returns the peers with events,
    /// and the events of what [`OnDemand::watched`] listed.
    fn wait(
        &self,
        op: &'static str,
        sends: &[SendOp<'_>],
        recvs: &[RecvOp<'_>],
        watch_input: &[bool],
        deadline: Instant,
    ) -> Result<Woken, Fail> {
        let mut fds_peer: Vec<usize> = Vec::with_capacity(self.size);
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.size);
        for (p, peer) in self.peers.iter().enumerate() {
            let Some(peer) = peer else { continue };
            if peer.eof {
                continue;
            }
            let reading = recvs.iter().any(|r| r.peer == p && !r.finished());
            let writing = sends.iter().any(|s| s.peer == p && !s.finished());
            let mut events = PollFlags::RDHUP;
            if reading || (watch_input[p] && !peer.departed) {
                events |= PollFlags::IN;
            }
            if writing {
                events |= PollFlags::OUT;
            }
            fds.push(PollFd::new(&peer.stream, events));
            fds_peer.push(p);
        }
        // And on what brings the connections of lower ranks not connected yet.
        let peers_polled = fds.len();
        let mut wake = deadline;
        if let Some(on_demand) = &self.on_demand {
            fds.extend(
                on_demand
                    .watched()
                    .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN)),
            );
            wake = on_demand.next_expiry().map_or(wake, |e| e.min(wake));
        }
        let wait = wake.saturating_duration_since(Instant::now());
        match poll(&mut fds, Some(&timespec(wait))) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(self.lost(op, self.rank, &format!("poll failed: {e}")));
            }
        }
        let ready = fds
            .iter()
            .zip(&fds_peer)
            .map(|(fd, &p)| (p, fd.revents()))
            .filter(|(_, ev)| !ev.is_empty())
            .collect();
        let incoming = fds[peers_polled..].iter().map(PollFd::revents).collect();
        Ok(Woken { ready, incoming })
    }

    fn timed_out(&self, fp: &Fingerprint, sends: &[SendOp<'_>], recvs: &[RecvOp<'_>]) -> Fail {
        let mut silent: Vec<usize> = recvs
            .iter()
            .filter(|r| !r.finished())
            .map(|r| r.peer)
            .chain(sends.iter().filter(|s| !s.finished()).map(|s| s.peer))
            .collect();
        silent.sort_unstable();
        silent.dedup();
        let receiving = recvs.iter().any(|r| !r.finished() && r.started());
        let list: Vec<String> = silent.iter().map(ToString::to_string).collect();
        let message = format!(
            "rank {} waited {:?} in {} for rank(s) {} without progress{}; the peer is stopped, cut off, or did not make the same call",
            self.rank,
            self.timeout,
            fp.describe(),
            list.join(", "),
            if receiving {
                " (in the middle of a frame)"
            } else {
                ""
            }
        );
        Fail {
            err: CommError::Timeout {
                operation: fp.op.name(),
                timeout: self.timeout,
                message: message.clone(),
            },
            report: AbortReport {
                code: ABORT_LOST,
                rank: silent.first().copied().unwrap_or(self.rank) as u32,
                message,
            },
        }
    }

    /// Whether a peer called `abort`: looks, without consuming anything, at the next frame
    /// each peer sent; returns the first abort report of code [`ABORT_EXIT`].
    /// Used between collectives; an abort queued behind data this rank has not read yet
    /// is seen by its next collective.
    pub(crate) fn pending_exit(&self) -> Option<AbortReport> {
        let mut buf = [0_u8; HEADER_BYTES + MAX_ABORT_PAYLOAD];
        self.peers
            .iter()
            .flatten()
            .filter_map(|peer| peer.report_at_head(&mut buf))
            .find(|report| report.code == ABORT_EXIT)
    }

    /// Tells every peer that this rank failed in call `seq` (0 for a failure not tied to a
    /// call), then closes the sending side of every connection. Best effort and bounded: a
    /// peer whose buffer is full is just closed.
    pub(crate) fn abort(&mut self, report: &AbortReport, seq: u64) {
        let body = report.encode();
        let header = frame::encode_abort(body.len(), seq);
        let deadline = Instant::now() + Duration::from_millis(200);
        for peer in self.peers.iter_mut().flatten() {
            if !peer.partial.sending && !peer.departed {
                let _ = send_all(peer, &[&header, &body], deadline);
            }
            let _ = peer.stream.shutdown(Shutdown::Write);
        }
        self.drain_until_closed(Instant::now() + ABORT_LINGER);
    }

    /// Reads and discards what the peers still send until each closes its side or
    /// `deadline` passes. A process that exits with unread bytes in a socket makes the
    /// kernel reset the connection, and a reset destroys what the peer has not read yet:
    /// the abort report just sent. Draining first lets the report arrive.
    fn drain_until_closed(&mut self, deadline: Instant) {
        let mut sink = vec![0_u8; 16 << 10];
        let mut open: Vec<usize> = (0..self.peers.len())
            .filter(|&p| self.peers[p].as_ref().is_some_and(|peer| !peer.eof))
            .collect();
        while !open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let mut fds: Vec<PollFd<'_>> = open
                .iter()
                .filter_map(|&p| self.peers[p].as_ref())
                .map(|peer| PollFd::new(&peer.stream, PollFlags::IN | PollFlags::RDHUP))
                .collect();
            let _ = poll(&mut fds, Some(&timespec(left)));
            let ready: Vec<bool> = fds.iter().map(|fd| !fd.revents().is_empty()).collect();
            drop(fds);
            let mut still_open = Vec::with_capacity(open.len());
            for (&p, ready) in open.iter().zip(ready) {
                let Some(peer) = self.peers[p].as_mut() else {
                    continue;
                };
                if !ready {
                    still_open.push(p);
                    continue;
                }
                match (&peer.stream).read(&mut sink) {
                    Ok(n) if n > 0 => still_open.push(p),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        still_open.push(p);
                    }
                    // The end of the stream, or a reset: nothing more will come.
                    _ => peer.eof = true,
                }
            }
            open = still_open;
        }
    }

    /// Says bye to every peer, then reads until each peer has closed its side too (or
    /// [`GOODBYE_LINGER`] has passed), so the connections close without a reset; they
    /// are closed on drop.
    pub(crate) fn goodbye(&mut self) {
        let header = frame::encode_bye();
        let deadline = Instant::now() + self.timeout.min(Duration::from_secs(2));
        for peer in self.peers.iter_mut().flatten() {
            if !peer.partial.sending {
                let _ = send_all(peer, &[&header], deadline);
            }
            let _ = peer.stream.shutdown(Shutdown::Write);
        }
        self.drain_until_closed(Instant::now() + GOODBYE_LINGER);
    }
}

impl Transport for Mesh {
    type Failure = Fail;

    fn error(failure: &Fail) -> CommError {
        failure.err.clone()
    }

    /// Sends the refusal to every neighbour and reads one frame from each: every
    /// neighbour's refusal of the same call, or the first frame of one that made it (a
    /// mismatch), or its abort. Every rank watches all its connections during its calls,
    /// so the neighbours that made the call see the refusal at once, fail, and pass their
    /// abort on to their own connections: it reaches every rank (the neighbours connect
    /// all ranks, within `log2 p` steps).
    fn refuse(&mut self, refusal: &Fingerprint) -> Result<(), Fail> {
        let peers = self.neighbours.clone();
        let mut sends: Vec<SendOp<'_>> = peers
            .iter()
            .map(|&p| SendOp::new(p, refusal, &[]))
            .collect();
        let mut recvs: Vec<RecvOp<'_>> = peers.iter().map(|&p| RecvOp::new(p, &mut [])).collect();
        self.exchange(refusal, &mut sends, &mut recvs)
    }

    fn broken(&mut self, failure: &Fail, call: &Fingerprint) {
        if failure.report.code == ABORT_EXIT {
            self.pass_on_exit(&failure.report);
        }
        self.abort(&failure.report, call.seq);
    }
}

impl Mesh {
    /// Passes a report of `abort` on to every peer, then ends this process with the exit
    /// code it carries. A rank connects only to its neighbours, so the aborting rank tells
    /// only those; and a rank that left without a word would look dead to its other peers,
    /// which would fail with a lost peer instead of exiting with the code. Passed on, the
    /// report reaches every rank within `log2 p` hops (it carries sequence number 0, so it
    /// is never taken for a later call's).
    pub(crate) fn pass_on_exit(&mut self, report: &AbortReport) -> ! {
        self.abort(report, 0);
        let code = report.message.trim().parse::<i32>().unwrap_or(1);
        eprintln!(
            "cobre-comm: rank {} aborted the tcp job with code {code}; exiting with it",
            report.rank
        );
        std::process::exit(code)
    }
}

/// Sends `parts` completely, waiting for buffer space until `deadline`.
fn send_all(peer: &mut Peer, parts: &[&[u8]], deadline: Instant) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    while done < total {
        let mut skip = done;
        let mut slices = Vec::with_capacity(parts.len());
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
            } else {
                slices.push(IoSlice::new(&part[skip..]));
                skip = 0;
            }
        }
        match peer.send(&slices) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    peer.partial.sending = done > 0;
                    return Err(e);
                }
                let mut fds = [PollFd::new(&peer.stream, PollFlags::OUT)];
                let _ = poll(&mut fds, Some(&timespec(left)));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_gets_the_buffers_it_asks_for() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _theirs = listener.accept().unwrap();
        let peer = Peer::new(ours, true).unwrap();
        let sock = socket2::SockRef::from(&peer.stream);
        let buffers = SocketBuffers::here();
        // The kernel reports twice what was asked for (its bookkeeping included).
        if let Some(bytes) = buffers.send {
            assert!(sock.send_buffer_size().unwrap() >= bytes);
        }
        if let Some(bytes) = buffers.recv {
            assert!(sock.recv_buffer_size().unwrap() >= bytes);
        }
    }

    #[test]
    fn a_connection_within_the_host_asks_for_reno() {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(host) else {
                continue; // no IPv6 here: the IPv4 case still runs
            };
            let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let _theirs = listener.accept().unwrap();
            let peer = Peer::new(ours, true).unwrap();
            let name = socket2::SockRef::from(&peer.stream)
                .tcp_congestion()
                .unwrap();
            let name = String::from_utf8_lossy(&name);
            let name = name.trim_end_matches('\0');
            assert_eq!(
                name, WITHIN_HOST_CONGESTION,
                "{host}: expected the connection to use {WITHIN_HOST_CONGESTION}, found {name}"
            );
        }
    }

    #[test]
    fn only_ranks_that_fit_their_cores_go_unpaced() {
        assert!(unpaced_for(2, 2));
        assert!(unpaced_for(1, 64));
        assert!(!unpaced_for(4, 2));
    }

    #[test]
    fn a_connection_stays_paced_unless_asked() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _theirs = listener.accept().unwrap();
        let system = socket2::SockRef::from(&ours).tcp_congestion().unwrap();
        let peer = Peer::new(ours, false).unwrap();
        let kept = socket2::SockRef::from(&peer.stream)
            .tcp_congestion()
            .unwrap();
        assert_eq!(kept, system, "expected the system's choice to stay");
    }

    #[test]
    fn ranks_that_share_cores_spin_briefly() {
        assert_eq!(spin_for(2, 2), SPIN_WHILE_RANKS_FIT);
        assert_eq!(spin_for(1, 64), SPIN_WHILE_RANKS_FIT);
        assert_eq!(spin_for(3, 2), SPIN_SHARED_CORES);
        assert!(SPIN_SHARED_CORES < SPIN_WHILE_RANKS_FIT);
    }
}
