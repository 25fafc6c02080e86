//! Connections that have not yet proved who they are.
//!
//! A listener is driven without blocking: every connection it accepts waits here, read
//! without blocking, until its handshake message is complete. Each has
//! [`HANDSHAKE_DEADLINE`](super::HANDSHAKE_DEADLINE) counted from its accept (bytes
//! trickled in do not extend it), and when
//! [`MAX_PENDING_HANDSHAKES`](super::MAX_PENDING_HANDSHAKES) are waiting, the oldest is
//! dropped for the newcomer. A real rank answers within one round trip of its accept, so
//! it is never the oldest for long: silent, slow or garbage connections cannot keep it out.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::MAX_PENDING_HANDSHAKES;

/// Most connections taken from a listener's backlog in one turn of an event loop.
const MAX_ACCEPTS_PER_TURN: usize = 256;
/// Lines a [`Log`] prints per second before it only counts.
const LOG_LINES_PER_SECOND: usize = 20;

/// One accepted connection and the bytes of its handshake message so far.
pub(super) struct Handshake<T> {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    accepted: Instant,
    pub bytes: Vec<u8>,
    filled: usize,
    /// What the listener keeps about the connection (rank 0's challenge).
    pub state: T,
}

enum Step {
    Waiting,
    Complete,
    Failed(String),
}

impl<T> Handshake<T> {
    /// Reads what has arrived, without blocking and never past the expected message.
    fn read_some(&mut self) -> Step {
        loop {
            match (&self.stream).read(&mut self.bytes[self.filled..]) {
                Ok(0) => return Step::Failed("closed before completing the handshake".into()),
                Ok(n) => {
                    self.filled += n;
                    if self.filled == self.bytes.len() {
                        return Step::Complete;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(format!("handshake failed: {e}")),
            }
        }
    }
}

/// The bounded queue of connections waiting for their handshake, oldest first.
pub(super) struct Pending<T> {
    queue: VecDeque<Handshake<T>>,
    expect: usize,
    deadline: Duration,
}

impl<T> Pending<T> {
    /// Connections that must send `expect` bytes within `deadline` of their accept.
    pub(super) fn new(expect: usize, deadline: Duration) -> Pending<T> {
        Pending {
            queue: VecDeque::new(),
            expect,
            deadline,
        }
    }

    /// The waiting connections, oldest first (the order [`Pending::progress`] takes).
    pub(super) fn streams(&self) -> impl Iterator<Item = &TcpStream> {
        self.queue.iter().map(|h| &h.stream)
    }

    /// When the oldest connection runs out of time.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.queue.front().map(|h| h.accepted + self.deadline)
    }

    /// Takes every connection waiting in `listener`'s backlog. `greet` sends each its first
    /// message (or refuses it) and returns what to keep about it. Returns the error of an
    /// accept that failed because this process has no descriptor left (the caller decides
    /// whether that ends its job); other failures are logged.
    pub(super) fn accept_all(
        &mut self,
        listener: &TcpListener,
        log: &mut Log,
        mut greet: impl FnMut(&TcpStream) -> Result<T, String>,
    ) -> Option<io::Error> {
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            let (stream, addr) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log.line(&format!("accept failed: {e}"));
                    return out_of_descriptors(&e).then_some(e);
                }
            };
            let state = stream
                .set_nonblocking(true)
                .map_err(|e| format!("cannot configure the connection: {e}"))
                .and_then(|()| greet(&stream));
            match state {
                Ok(state) => self.admit(stream, addr, state, log),
                Err(reason) => log.refused(addr, &reason),
            }
        }
        None
    }

    fn admit(&mut self, stream: TcpStream, addr: SocketAddr, state: T, log: &mut Log) {
        if self.queue.len() >= MAX_PENDING_HANDSHAKES
            && let Some(oldest) = self.queue.pop_front()
        {
            log.refused(
                oldest.addr,
                &format!(
                    "dropped as the oldest of {MAX_PENDING_HANDSHAKES} connections without a complete handshake, for a newer one"
                ),
            );
        }
        self.queue.push_back(Handshake {
            stream,
            addr,
            accepted: Instant::now(),
            bytes: vec![0; self.expect],
            filled: 0,
            state,
        });
    }

    /// Reads from the connections at `ready` (indices in the order of
    /// [`Pending::streams`]) and returns those whose message is complete; the ones that
    /// failed are logged and dropped.
    pub(super) fn progress(&mut self, ready: &[usize], log: &mut Log) -> Vec<Handshake<T>> {
        let mut complete = Vec::new();
        for &i in ready.iter().rev() {
            let Some(handshake) = self.queue.get_mut(i) else {
                continue;
            };
            match handshake.read_some() {
                Step::Waiting => {}
                Step::Complete => complete.extend(self.queue.remove(i)),
                Step::Failed(reason) => {
                    if let Some(h) = self.queue.remove(i) {
                        log.refused(h.addr, &reason);
                    }
                }
            }
        }
        complete.reverse();
        complete
    }

    /// Drops the connections whose deadline has passed at `now`.
    pub(super) fn expire(&mut self, now: Instant, log: &mut Log) {
        while self
            .queue
            .front()
            .is_some_and(|h| now >= h.accepted + self.deadline)
        {
            if let Some(h) = self.queue.pop_front() {
                log.refused(
                    h.addr,
                    &format!(
                        "no complete handshake within {:?} of its accept ({} of {} bytes)",
                        self.deadline, h.filled, self.expect
                    ),
                );
            }
        }
    }
}

/// Whether `e` says this process (`EMFILE`) or the system (`ENFILE`) has no file
/// descriptor left.
pub(super) fn out_of_descriptors(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::MFILE.raw_os_error())
        || code == Some(rustix::io::Errno::NFILE.raw_os_error())
}

/// The refusals of one listener on standard error, at most [`LOG_LINES_PER_SECOND`]
/// lines a second (the rest are counted), so that a flood cannot flood the log.
pub(super) struct Log {
    who: String,
    window: Instant,
    shown: usize,
    hidden: usize,
}

impl Log {
    /// A log whose lines start with `who` ("rank 0: refused a connection").
    pub(super) fn new(who: String) -> Log {
        Log {
            who,
            window: Instant::now(),
            shown: 0,
            hidden: 0,
        }
    }

    pub(super) fn refused(&mut self, addr: SocketAddr, reason: &str) {
        self.line(&format!("refused {addr}: {reason}"));
    }

    pub(super) fn line(&mut self, text: &str) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.flush();
            self.window = Instant::now();
            self.shown = 0;
        }
        if self.shown < LOG_LINES_PER_SECOND {
            super::log(&format!("{}: {text}", self.who));
            self.shown += 1;
        } else {
            self.hidden += 1;
        }
    }

    /// Prints the count of lines not shown.
    pub(super) fn flush(&mut self) {
        if self.hidden > 0 {
            super::log(&format!(
                "{}: {} more refused connection(s) not shown",
                self.who, self.hidden
            ));
            self.hidden = 0;
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.flush();
    }
}
