//! Starting, watching and stopping the ranks.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long stopped ranks get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// How a rank ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code.
    Exited(i32),
    /// A signal it did not handle ended it (the signal number).
    Signaled(i32),
    /// The launcher stopped it because another rank failed or the timeout expired.
    Stopped,
}

impl Outcome {
    fn from_status(status: ExitStatus) -> Outcome {
        match (status.code(), status.signal()) {
            (Some(code), _) => Outcome::Exited(code),
            (None, Some(signal)) => Outcome::Signaled(signal),
            (None, None) => Outcome::Exited(-1),
        }
    }

    /// Whether the rank exited with code 0.
    ///
    /// ```
    /// assert!(cobre_comm_launcher::Outcome::Exited(0).is_success());
    /// assert!(!cobre_comm_launcher::Outcome::Signaled(9).is_success());
    /// ```
    pub fn is_success(self) -> bool {
        self == Outcome::Exited(0)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(code) => write!(f, "exited with code {code}"),
            Outcome::Signaled(signal) => write!(
                f,
                "was killed by signal {} ({signal})",
                signal_name(*signal)
            ),
            Outcome::Stopped => f.write_str("was stopped by the launcher"),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// What one rank did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankReport {
    /// The rank (0-based).
    pub rank: usize,
    /// How it ended.
    pub outcome: Outcome,
    /// Its standard output, when captured (empty otherwise).
    pub stdout: String,
}

/// The first thing that went wrong in a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A rank failed; the others were stopped.
    Rank {
        /// The rank that failed first.
        rank: usize,
        /// How it failed.
        outcome: Outcome,
    },
    /// The job ran past its timeout; every rank still running was stopped.
    Timeout(Duration),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Rank { rank, outcome } => {
                write!(f, "rank {rank} {outcome}; stopped the other ranks")
            }
            Failure::Timeout(t) => write!(
                f,
                "the job ran longer than its timeout of {t:?}; stopped every rank"
            ),
        }
    }
}

/// The result of [`Launcher::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchReport {
    /// One entry per rank, in rank order.
    pub ranks: Vec<RankReport>,
    /// The first failure, if any.
    pub failure: Option<Failure>,
    /// Wall time of the whole job.
    pub elapsed: Duration,
}

impl LaunchReport {
    /// Whether every rank exited with code 0.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// The exit code a launcher process should end with: 0 on success, the failing rank's
    /// exit code, 128 + the signal number when a signal killed it, 124 on timeout.
    ///
    /// ```
    /// use cobre_comm_launcher::{Failure, LaunchReport, Outcome};
    /// use std::time::Duration;
    ///
    /// let report = LaunchReport {
    ///     ranks: vec![],
    ///     failure: Some(Failure::Rank { rank: 1, outcome: Outcome::Signaled(9) }),
    ///     elapsed: Duration::ZERO,
    /// };
    /// assert_eq!(report.exit_code(), 137);
    /// ```
    pub fn exit_code(&self) -> i32 {
        match &self.failure {
            None => 0,
            Some(Failure::Timeout(_)) => 124,
            Some(Failure::Rank {
                outcome: Outcome::Exited(code),
                ..
            }) => {
                if *code == 0 {
                    1
                } else {
                    *code
                }
            }
            Some(Failure::Rank {
                outcome: Outcome::Signaled(signal),
                ..
            }) => 128 + signal,
            Some(Failure::Rank { .. }) => 1,
        }
    }
}

type RankEnv = Vec<(String, String)>;

/// A started rank: its process group, its stdout reader, its other threads.
struct Spawned {
    pid: Pid,
    stdout: thread::JoinHandle<String>,
    helpers: Vec<thread::JoinHandle<()>>,
}

/// Starts the ranks of a job; see the crate documentation.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // independent builder switches, each with its setter
pub struct Launcher {
    program: OsString,
    args: Vec<OsString>,
    ranks: usize,
    env: RankEnv,
    rank_env: Vec<RankEnv>,
    timeout: Option<Duration>,
    capture_stdout: bool,
    prefix: bool,
    forward_signals: bool,
    stop_on_failure: bool,
}

impl Launcher {
    /// A launcher of one rank of `program` with no arguments.
    pub fn new(program: impl Into<OsString>) -> Launcher {
        Launcher {
            program: program.into(),
            args: Vec::new(),
            ranks: 1,
            env: Vec::new(),
            rank_env: Vec::new(),
            timeout: None,
            capture_stdout: false,
            prefix: true,
            forward_signals: false,
            stop_on_failure: true,
        }
    }

    /// Appends arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Launcher
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The number of ranks (processes) to start.
    #[must_use]
    pub fn ranks(mut self, ranks: usize) -> Launcher {
        self.ranks = ranks;
        self
    }

    /// A variable set in every rank.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Launcher {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Per-rank variables: entry `r` is set in rank `r` (after those of [`Launcher::env`]).
    #[must_use]
    pub fn rank_env(mut self, per_rank: Vec<Vec<(String, String)>>) -> Launcher {
        self.rank_env = per_rank;
        self
    }

    /// Stops every rank when the job runs longer than `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Launcher {
        self.timeout = Some(timeout);
        self
    }

    /// Captures each rank's standard output into its [`RankReport`] instead of printing
    /// it. Standard error is always printed, prefixed.
    #[must_use]
    pub fn capture_stdout(mut self, capture: bool) -> Launcher {
        self.capture_stdout = capture;
        self
    }

    /// Whether printed lines get a `[rank] ` prefix (default: yes). A wrapper such as
    /// `mpiexec` started as a single rank is better left unprefixed.
    #[must_use]
    pub fn prefix_output(mut self, prefix: bool) -> Launcher {
        self.prefix = prefix;
        self
    }

    /// Passes SIGINT, SIGTERM and SIGHUP received by this process on to every rank while
    /// the job runs (the ranks run in their own process groups, so a Ctrl-C at the
    /// terminal reaches them only this way). Meant for launcher programs; off by default
    /// because it installs process-wide signal handlers.
    #[must_use]
    pub fn forward_signals(mut self, forward: bool) -> Launcher {
        self.forward_signals = forward;
        self
    }

    /// Whether the first rank that fails stops the others (default: yes, as `mpiexec`
    /// does). Tests of failure handling turn it off to watch how the surviving ranks
    /// react; the report still names the first failure, and the timeout still applies.
    ///
    /// ```
    /// use cobre_comm_launcher::Launcher;
    ///
    /// let report = Launcher::new("sh")
    ///     .args(["-c", "if [ $R = 0 ]; then exit 3; fi; echo survived"])
    ///     .ranks(2)
    ///     .rank_env(vec![vec![("R".into(), "0".into())], vec![("R".into(), "1".into())]])
    ///     .capture_stdout(true)
    ///     .stop_on_failure(false)
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(report.exit_code(), 3);
    /// assert_eq!(report.ranks[1].stdout, "survived\n");
    /// ```
    #[must_use]
    pub fn stop_on_failure(mut self, stop: bool) -> Launcher {
        self.stop_on_failure = stop;
        self
    }

    /// Starts the ranks and waits for them.
    ///
    /// # Errors
    /// When a rank cannot be started (program not found, not executable); the ranks
    /// already started are stopped first.
    pub fn run(&self) -> io::Result<LaunchReport> {
        let start = Instant::now();
        let (events, inbox) = mpsc::channel::<(usize, Outcome)>();
        let mut pids = Vec::with_capacity(self.ranks);
        let mut readers = Vec::new();
        let mut waiters = Vec::new();
        for rank in 0..self.ranks {
            match self.spawn_rank(rank, &events) {
                Ok(spawned) => {
                    pids.push(spawned.pid);
                    readers.push(spawned.stdout);
                    waiters.extend(spawned.helpers);
                }
                Err(e) => {
                    signal_all(&pids, Signal::KILL);
                    return Err(e);
                }
            }
        }
        drop(events);
        let forwarder = if self.forward_signals {
            Some(forward_signals_to(pids.clone())?)
        } else {
            None
        };
        let (mut outcomes, failure) = self.watch(start, &inbox);
        if failure.is_some() {
            stop_rest(&pids, &mut outcomes, &inbox);
        }
        if let Some((handle, thread)) = forwarder {
            handle.close();
            let _ = thread.join();
        }
        for waiter in waiters {
            let _ = waiter.join();
        }
        let ranks = outcomes
            .into_iter()
            .zip(readers)
            .enumerate()
            .map(|(rank, (outcome, reader))| RankReport {
                rank,
                outcome: outcome.unwrap_or(Outcome::Stopped),
                stdout: reader.join().unwrap_or_default(),
            })
            .collect();
        Ok(LaunchReport {
            ranks,
            failure,
            elapsed: start.elapsed(),
        })
    }

    /// Starts rank `rank` with its output readers and its waiter thread.
    fn spawn_rank(
        &self,
        rank: usize,
        events: &mpsc::Sender<(usize, Outcome)>,
    ) -> io::Result<Spawned> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Each rank leads its own process group, so that stopping it also stops
            // the processes it started (a shell's children, say).
            .process_group(0);
        for (k, v) in self
            .env
            .iter()
            .chain(self.rank_env.get(rank).into_iter().flatten())
        {
            command.env(k, v);
        }
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot start rank {rank} ({}): {e}",
                    self.program.to_string_lossy()
                ),
            )
        })?;
        let pid = Pid::from_child(&child);
        let label = if self.prefix {
            format!("[{rank}] ")
        } else {
            String::new()
        };
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let capture = self.capture_stdout;
        let out_label = label.clone();
        let stdout = thread::spawn(move || {
            if capture {
                let mut text = String::new();
                let _ = BufReader::new(stdout).read_to_string(&mut text);
                text
            } else {
                forward(stdout, &out_label, &mut io::stdout());
                String::new()
            }
        });
        let events = events.clone();
        let helpers = vec![
            thread::spawn(move || forward(stderr, &label, &mut io::stderr())),
            thread::spawn(move || wait_child(rank, child, &events)),
        ];
        Ok(Spawned {
            pid,
            stdout,
            helpers,
        })
    }

    /// Waits for every rank to end, for the first failure, or for the timeout.
    fn watch(
        &self,
        start: Instant,
        inbox: &mpsc::Receiver<(usize, Outcome)>,
    ) -> (Vec<Option<Outcome>>, Option<Failure>) {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.ranks];
        let mut first_failure = None;
        let deadline = self.timeout.map(|t| start + t);
        while outcomes.iter().any(Option::is_none) {
            let received = match deadline {
                Some(d) => inbox.recv_timeout(d.saturating_duration_since(Instant::now())),
                None => inbox
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            };
            match received {
                Ok((rank, outcome)) => {
                    outcomes[rank] = Some(outcome);
                    if !outcome.is_success() && first_failure.is_none() {
                        first_failure = Some(Failure::Rank { rank, outcome });
                        if self.stop_on_failure {
                            return (outcomes, first_failure);
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return (
                        outcomes,
                        Some(Failure::Timeout(self.timeout.unwrap_or_default())),
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        (outcomes, first_failure)
    }
}

/// Starts a thread that re-sends termination signals to every rank's process group.
fn forward_signals_to(
    pids: Vec<Pid>,
) -> io::Result<(signal_hook::iterator::Handle, thread::JoinHandle<()>)> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = signals.handle();
    let thread = thread::spawn(move || {
        for signal in signals.forever() {
            if let Some(signal) = Signal::from_named_raw(signal) {
                signal_all(&pids, signal);
            }
        }
    });
    Ok((handle, thread))
}

fn wait_child(rank: usize, mut child: Child, events: &mpsc::Sender<(usize, Outcome)>) {
    let outcome = match child.wait() {
        Ok(status) => Outcome::from_status(status),
        Err(_) => Outcome::Exited(-1),
    };
    let _ = events.send((rank, outcome));
}

/// Copies `source` line by line to `sink`, each line prefixed; one `write_all` per line so
/// that lines of different ranks never interleave.
fn forward(source: impl Read, label: &str, sink: &mut impl Write) {
    let mut reader = BufReader::new(source);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let mut out = Vec::with_capacity(label.len() + line.len());
                out.extend_from_slice(label.as_bytes());
                out.extend_from_slice(&line);
                let _ = sink.write_all(&out);
                let _ = sink.flush();
            }
        }
    }
}

fn signal_all(pids: &[Pid], signal: Signal) {
    for &pid in pids {
        let _ = kill_process_group(pid, signal);
    }
}

/// Sends SIGTERM to the ranks still running, waits up to [`GRACE`] for them, then SIGKILL.
/// Ranks that end here are recorded as stopped unless they had already failed.
fn stop_rest(
    pids: &[Pid],
    outcomes: &mut [Option<Outcome>],
    inbox: &mpsc::Receiver<(usize, Outcome)>,
) {
    let running = |outcomes: &[Option<Outcome>]| -> Vec<Pid> {
        outcomes
            .iter()
            .zip(pids)
            .filter(|(o, _)| o.is_none())
            .map(|(_, p)| *p)
            .collect()
    };
    signal_all(&running(outcomes), Signal::TERM);
    let deadline = Instant::now() + GRACE;
    let mut killed = false;
    while outcomes.iter().any(Option::is_none) {
        match inbox.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((rank, outcome)) => {
                outcomes[rank] = Some(match outcome {
                    Outcome::Signaled(15 | 9) => Outcome::Stopped,
                    other => other,
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !killed => {
                signal_all(&running(outcomes), Signal::KILL);
                killed = true;
            }
            Err(_) => {
                // After SIGKILL every rank ends; wait for the reports without a deadline.
                if let Ok((rank, _)) = inbox.recv() {
                    outcomes[rank] = Some(Outcome::Stopped);
                } else {
                    return;
                }
            }
        }
    }
}
