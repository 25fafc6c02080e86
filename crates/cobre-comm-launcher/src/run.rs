//! Starting, watching and stopping the ranks.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use rustix::process::{Pid, kill_process_group};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::bind::{self, Binding};

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
    /// It was never started (a job made with [`Launcher::prepare`] whose rank was not
    /// given to [`RunningJob::start_rank`]). Not a failure of the job.
    NotStarted,
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
            Outcome::NotStarted => f.write_str("was never started"),
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
    /// Its standard error, when captured (empty otherwise).
    pub stderr: String,
    /// When the launcher saw it end (`None` when it was never started).
    pub ended_at: Option<Instant>,
}

impl RankReport {
    /// Its captured standard output followed by its captured standard error.
    ///
    /// ```
    /// use cobre_comm_launcher::Launcher;
    ///
    /// let report = Launcher::new("sh")
    ///     .args(["-c", "echo out; echo err >&2"])
    ///     .capture_stdout(true)
    ///     .capture_stderr(true)
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(report.ranks[0].output(), "out\nerr\n");
    /// ```
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
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

/// The result of [`Launcher::run`], [`RunningJob::finish`] and [`RunningJob::wait`].
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

/// Starts the ranks of a job; see the crate documentation.
///
/// [`Launcher::run`] starts every rank and waits for the job; [`Launcher::spawn`] and
/// [`Launcher::prepare`] hand back a [`RunningJob`] to watch and drive while it runs (what
/// `run` does is `spawn` then [`RunningJob::wait`]).
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // independent builder switches, each with its setter
pub struct Launcher {
    program: OsString,
    args: Vec<OsString>,
    ranks: usize,
    env: RankEnv,
    env_remove: Vec<String>,
    rank_env: Vec<RankEnv>,
    timeout: Option<Duration>,
    capture_stdout: bool,
    capture_stderr: bool,
    piped_stdin: bool,
    prefix: bool,
    forward_signals: bool,
    stop_on_failure: bool,
    binding: Binding,
}

impl Launcher {
    /// A launcher of one rank of `program` with no arguments.
    pub fn new(program: impl Into<OsString>) -> Launcher {
        Launcher {
            program: program.into(),
            args: Vec::new(),
            ranks: 1,
            env: Vec::new(),
            env_remove: Vec::new(),
            rank_env: Vec::new(),
            timeout: None,
            capture_stdout: false,
            capture_stderr: false,
            piped_stdin: false,
            prefix: true,
            forward_signals: false,
            stop_on_failure: true,
            binding: Binding::None,
        }
    }

    /// Where the ranks run: [`Binding::None`] (the default) leaves them to the scheduler,
    /// [`Binding::Cores`] puts each on a CPU of its own when they fit (and the same number
    /// on every CPU when they are a multiple of the CPUs).
    ///
    /// ```
    /// use cobre_comm_launcher::{Binding, Launcher};
    ///
    /// let report = Launcher::new("sh")
    ///     .args(["-c", "grep Cpus_allowed_list /proc/self/status"])
    ///     .bind(Binding::Cores)
    ///     .capture_stdout(true)
    ///     .run()
    ///     .unwrap();
    /// // One rank: the first CPU this process may use, alone.
    /// let cpu = report.ranks[0].stdout.split_whitespace().nth(1).unwrap().to_string();
    /// assert!(cpu.parse::<usize>().is_ok(), "{cpu}");
    /// ```
    #[must_use]
    pub fn bind(mut self, binding: Binding) -> Launcher {
        self.binding = binding;
        self
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

    /// A variable of this process that the ranks do not inherit (variables given with
    /// [`Launcher::env`] or [`Launcher::rank_env`] are still set).
    ///
    /// ```
    /// use cobre_comm_launcher::Launcher;
    ///
    /// let report = Launcher::new("sh")
    ///     .args(["-c", "echo ${HOME:-unset}"])
    ///     .env_remove("HOME")
    ///     .capture_stdout(true)
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(report.ranks[0].stdout, "unset\n");
    /// ```
    #[must_use]
    pub fn env_remove(mut self, key: impl Into<String>) -> Launcher {
        self.env_remove.push(key.into());
        self
    }

    /// Per-rank variables: entry `r` is set in rank `r` (after those of [`Launcher::env`]).
    #[must_use]
    pub fn rank_env(mut self, per_rank: Vec<Vec<(String, String)>>) -> Launcher {
        self.rank_env = per_rank;
        self
    }

    /// Stops every rank when the job runs longer than `timeout` ([`Launcher::run`] and
    /// [`RunningJob::wait`]; [`RunningJob::finish`] takes its own limit).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Launcher {
        self.timeout = Some(timeout);
        self
    }

    /// Captures each rank's standard output into its [`RankReport`] instead of printing
    /// it (and makes it readable with [`RunningJob::read_until`] while the job runs).
    #[must_use]
    pub fn capture_stdout(mut self, capture: bool) -> Launcher {
        self.capture_stdout = capture;
        self
    }

    /// Captures each rank's standard error into its [`RankReport`] instead of printing it
    /// prefixed (the default).
    ///
    /// ```
    /// use cobre_comm_launcher::Launcher;
    ///
    /// let report = Launcher::new("sh")
    ///     .args(["-c", "echo oops >&2"])
    ///     .capture_stderr(true)
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(report.ranks[0].stderr, "oops\n");
    /// ```
    #[must_use]
    pub fn capture_stderr(mut self, capture: bool) -> Launcher {
        self.capture_stderr = capture;
        self
    }

    /// Gives each rank a pipe as standard input, written with [`RunningJob::send_line`]
    /// (default: no input, `/dev/null`). The pipes close when the job is finished.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cobre_comm_launcher::Launcher;
    ///
    /// let mut job = Launcher::new("sh")
    ///     .args(["-c", "read word; echo got $word"])
    ///     .piped_stdin(true)
    ///     .capture_stdout(true)
    ///     .spawn()
    ///     .unwrap();
    /// job.send_line(0, "go").unwrap();
    /// let report = job.finish(Duration::from_secs(30));
    /// assert_eq!(report.ranks[0].stdout, "got go\n");
    /// ```
    #[must_use]
    pub fn piped_stdin(mut self, piped: bool) -> Launcher {
        self.piped_stdin = piped;
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

    /// Starts the ranks and waits for them: [`Launcher::spawn`], then [`RunningJob::wait`].
    ///
    /// # Errors
    /// When a rank cannot be started (program not found, not executable); the ranks
    /// already started are stopped first.
    pub fn run(&self) -> io::Result<LaunchReport> {
        Ok(self.spawn()?.wait())
    }

    /// Starts every rank, in rank order, and returns the running job without waiting.
    ///
    /// # Errors
    /// When a rank cannot be started (program not found, not executable); the ranks
    /// already started are stopped first.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use cobre_comm_launcher::{Launcher, Signal};
    ///
    /// let mut job = Launcher::new("sh")
    ///     .args(["-c", "echo ready; sleep 60"])
    ///     .ranks(2)
    ///     .capture_stdout(true)
    ///     .stop_on_failure(false)
    ///     .spawn()
    ///     .unwrap();
    /// let deadline = Instant::now() + Duration::from_secs(30);
    /// assert_eq!(job.read_until(1, "ready", deadline).as_deref(), Some("ready"));
    /// job.kill(1, Signal::KILL).unwrap();
    /// assert!(job.wait_rank(1, deadline).is_some());
    /// let report = job.finish(Duration::from_millis(200)); // rank 0 is stopped
    /// assert_eq!(report.ranks[1].outcome, cobre_comm_launcher::Outcome::Signaled(9));
    /// ```
    pub fn spawn(&self) -> io::Result<RunningJob> {
        let mut job = self.prepare()?;
        for rank in 0..self.ranks {
            if let Err(e) = job.start_rank(rank) {
                job.signal_running(Signal::KILL);
                return Err(e);
            }
        }
        Ok(job)
    }

    /// A job whose ranks are started one by one, when the caller says, with
    /// [`RunningJob::start_rank`] (staggered starts; ranks never started are reported as
    /// [`Outcome::NotStarted`]).
    ///
    /// # Errors
    /// When signal forwarding is asked for and the handlers cannot be installed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cobre_comm_launcher::{Launcher, Outcome};
    ///
    /// let mut job = Launcher::new("sh")
    ///     .args(["-c", "echo started"])
    ///     .ranks(2)
    ///     .capture_stdout(true)
    ///     .prepare()
    ///     .unwrap();
    /// job.start_rank(1).unwrap();
    /// let report = job.finish(Duration::from_secs(30));
    /// assert_eq!(report.ranks[0].outcome, Outcome::NotStarted);
    /// assert_eq!(report.ranks[1].stdout, "started\n");
    /// ```
    pub fn prepare(&self) -> io::Result<RunningJob> {
        let (events, inbox) = mpsc::channel();
        let pids = Arc::new(Mutex::new(Vec::new()));
        let forwarder = if self.forward_signals {
            Some(forward_signals_to(Arc::clone(&pids))?)
        } else {
            None
        };
        let cpus = match self.binding {
            Binding::Cores => bind::cpu_order().filter(|cpus| bind::fits(self.ranks, cpus.len())),
            Binding::None => None,
        };
        Ok(RunningJob {
            launcher: self.clone(),
            cpus,
            start: Instant::now(),
            slots: (0..self.ranks).map(|_| None).collect(),
            events,
            inbox,
            pids,
            forwarder,
            first_failure: None,
        })
    }

    /// Starts rank `rank` (bound to `cpu`, if any) with its output readers and its waiter
    /// thread.
    fn spawn_rank(
        &self,
        rank: usize,
        cpu: Option<usize>,
        events: &mpsc::Sender<Event>,
    ) -> io::Result<Started> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(if self.piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Each rank leads its own process group, so that stopping it also stops
            // the processes it started (a shell's children, say).
            .process_group(0);
        for key in &self.env_remove {
            command.env_remove(key);
        }
        for (k, v) in self
            .env
            .iter()
            .chain(self.rank_env.get(rank).into_iter().flatten())
        {
            command.env(k, v);
        }
        let spawned = match cpu {
            Some(cpu) => {
                let (spawned, refused) = bind::spawn_bound(cpu, || command.spawn());
                if let Some(e) = refused {
                    eprintln!(
                        "cobre-comm-launcher: rank {rank} runs unbound: cannot bind it to CPU {cpu}: {e}"
                    );
                }
                spawned
            }
            None => command.spawn(),
        };
        let mut child = spawned.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot start rank {rank} ({}): {e}",
                    self.program.to_string_lossy()
                ),
            )
        })?;
        let id = child.id();
        let pid = Pid::from_child(&child);
        let label = if self.prefix {
            format!("[{rank}] ")
        } else {
            String::new()
        };
        let stdin = child.stdin.take();
        let stdout = Arc::new(Stream::default());
        let stderr = Arc::new(Stream::default());
        let out_source = child.stdout.take().expect("piped");
        let err_source = child.stderr.take().expect("piped");
        let (out_sink, err_sink) = (Arc::clone(&stdout), Arc::clone(&stderr));
        let (capture_out, capture_err) = (self.capture_stdout, self.capture_stderr);
        let out_label = label.clone();
        thread::spawn(move || {
            read_stream(
                out_source,
                capture_out,
                &out_label,
                &mut io::stdout(),
                &out_sink,
            );
        });
        thread::spawn(move || {
            read_stream(
                err_source,
                capture_err,
                &label,
                &mut io::stderr(),
                &err_sink,
            );
        });
        let events = events.clone();
        thread::spawn(move || wait_child(rank, child, &events));
        Ok(Started {
            id,
            pid,
            stdin,
            stdout,
            stderr,
            cursor: 0,
            exit: None,
        })
    }
}

/// A rank's end as its waiter thread saw it.
type Event = (usize, Outcome, Instant);

/// One output stream of a rank: what was captured, and whether it has ended.
#[derive(Default)]
struct Stream {
    state: Mutex<(String, bool)>,
    changed: Condvar,
}

impl Stream {
    fn lock(&self) -> MutexGuard<'_, (String, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, text: &str) {
        self.lock().0.push_str(text);
        self.changed.notify_all();
    }

    fn end(&self) {
        self.lock().1 = true;
        self.changed.notify_all();
    }

    /// Waits until the stream has ended, at most until `deadline`; returns its text.
    fn text_by(&self, deadline: Instant) -> String {
        let mut state = self.lock();
        while !state.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.0.clone()
    }
}

/// A started rank.
struct Started {
    id: u32,
    pid: Pid,
    stdin: Option<ChildStdin>,
    stdout: Arc<Stream>,
    stderr: Arc<Stream>,
    /// How far [`RunningJob::read_until`] has read its standard output.
    cursor: usize,
    exit: Option<(Outcome, Instant)>,
}

/// The ranks of a job while they run, from [`Launcher::spawn`] or [`Launcher::prepare`]:
/// start ranks, write to their input, read their output, signal them, wait for them, and
/// finally [`RunningJob::finish`] for the [`LaunchReport`].
///
/// Every wait takes a deadline. Dropping a job that was not finished kills its ranks.
///
/// ```
/// use std::time::Duration;
/// use cobre_comm_launcher::Launcher;
///
/// let job = Launcher::new("sh").args(["-c", "echo $R"]).env("R", "x").capture_stdout(true).spawn().unwrap();
/// let report = job.finish(Duration::from_secs(30));
/// assert!(report.success());
/// assert_eq!(report.ranks[0].stdout, "x\n");
/// ```
pub struct RunningJob {
    launcher: Launcher,
    /// The CPU of each rank, when they are bound.
    cpus: Option<Vec<usize>>,
    start: Instant,
    slots: Vec<Option<Started>>,
    events: mpsc::Sender<Event>,
    inbox: mpsc::Receiver<Event>,
    /// The process groups signals are forwarded to.
    pids: Arc<Mutex<Vec<Pid>>>,
    forwarder: Option<(signal_hook::iterator::Handle, thread::JoinHandle<()>)>,
    first_failure: Option<Failure>,
}

impl fmt::Debug for RunningJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningJob")
            .field("program", &self.launcher.program)
            .field(
                "pids",
                &(0..self.slots.len())
                    .map(|r| self.pid(r))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RunningJob {
    /// The number of ranks of the job (started or not).
    ///
    /// ```
    /// let job = cobre_comm_launcher::Launcher::new("true").ranks(3).prepare().unwrap();
    /// assert_eq!(job.ranks(), 3);
    /// ```
    pub fn ranks(&self) -> usize {
        self.slots.len()
    }

    /// Starts rank `rank` of a job made with [`Launcher::prepare`].
    ///
    /// # Errors
    /// When `rank` is out of range or already started, or its process cannot be started.
    ///
    /// ```
    /// let mut job = cobre_comm_launcher::Launcher::new("true").ranks(2).prepare().unwrap();
    /// job.start_rank(0).unwrap();
    /// assert!(job.start_rank(0).is_err()); // already started
    /// assert!(job.start_rank(2).is_err()); // no such rank
    /// ```
    pub fn start_rank(&mut self, rank: usize) -> io::Result<()> {
        match self.slots.get(rank) {
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the job has no rank {rank} (it has {})", self.slots.len()),
                ));
            }
            Some(Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("rank {rank} was already started"),
                ));
            }
            Some(None) => {}
        }
        let cpu = self.cpus.as_ref().map(|cpus| cpus[rank % cpus.len()]);
        let started = self.launcher.spawn_rank(rank, cpu, &self.events)?;
        lock(&self.pids).push(started.pid);
        self.slots[rank] = Some(started);
        Ok(())
    }

    /// The process id of rank `rank` (`None` when it was not started).
    ///
    /// ```
    /// let job = cobre_comm_launcher::Launcher::new("true").spawn().unwrap();
    /// assert!(job.pid(0).is_some());
    /// ```
    pub fn pid(&self, rank: usize) -> Option<u32> {
        self.slots.get(rank)?.as_ref().map(|s| s.id)
    }

    /// Writes `line` and a newline to rank `rank`'s standard input (see
    /// [`Launcher::piped_stdin`]).
    ///
    /// # Errors
    /// When the rank was not started, has no input pipe, or the write fails (it exited).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut job = cobre_comm_launcher::Launcher::new("cat")
    ///     .piped_stdin(true)
    ///     .capture_stdout(true)
    ///     .spawn()
    ///     .unwrap();
    /// job.send_line(0, "hello").unwrap();
    /// let report = job.finish(Duration::from_secs(30)); // closes the pipe: cat ends
    /// assert_eq!(report.ranks[0].stdout, "hello\n");
    /// ```
    pub fn send_line(&mut self, rank: usize, line: &str) -> io::Result<()> {
        let stdin = self
            .started_mut(rank)?
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other(format!("rank {rank} has no input pipe")))?;
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        stdin.write_all(&bytes)?;
        stdin.flush()
    }

    /// Waits for a line of rank `rank`'s captured standard output that contains `text`
    /// and returns it; `None` when the output ends first or `deadline` passes. Each call
    /// reads on from where the previous one stopped (see [`Launcher::capture_stdout`];
    /// without capture there is nothing to read and the answer is `None`).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let mut job = cobre_comm_launcher::Launcher::new("sh")
    ///     .args(["-c", "echo one; echo two"])
    ///     .capture_stdout(true)
    ///     .spawn()
    ///     .unwrap();
    /// let deadline = Instant::now() + Duration::from_secs(30);
    /// assert_eq!(job.read_until(0, "tw", deadline).as_deref(), Some("two"));
    /// assert_eq!(job.read_until(0, "one", deadline), None); // already read past it
    /// ```
    pub fn read_until(&mut self, rank: usize, text: &str, deadline: Instant) -> Option<String> {
        let capture = self.launcher.capture_stdout;
        let started = self.slots.get_mut(rank)?.as_mut()?;
        if !capture {
            return None;
        }
        let stream = Arc::clone(&started.stdout);
        let mut state = stream.lock();
        loop {
            let (captured, ended) = (&state.0, state.1);
            while started.cursor < captured.len() {
                let rest = &captured[started.cursor..];
                let (line, used) = match rest.find('\n') {
                    Some(at) => (&rest[..at], at + 1),
                    // A last line without its newline counts once the stream has ended.
                    None if ended => (rest, rest.len()),
                    None => break,
                };
                started.cursor += used;
                if line.contains(text) {
                    return Some(line.to_string());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if ended || left.is_zero() {
                return None;
            }
            state = stream
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// What rank `rank` has printed so far, captured standard output then captured
    /// standard error (empty when nothing is captured or the rank was not started).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let mut job = cobre_comm_launcher::Launcher::new("sh")
    ///     .args(["-c", "echo hi; sleep 60"])
    ///     .capture_stdout(true)
    ///     .spawn()
    ///     .unwrap();
    /// job.read_until(0, "hi", Instant::now() + Duration::from_secs(30));
    /// assert_eq!(job.output(0), "hi\n");
    /// ```
    pub fn output(&self, rank: usize) -> String {
        self.slots
            .get(rank)
            .and_then(Option::as_ref)
            .map(|s| format!("{}{}", s.stdout.lock().0, s.stderr.lock().0))
            .unwrap_or_default()
    }

    /// Sends `signal` to rank `rank` (its whole process group: what it started too).
    ///
    /// # Errors
    /// When the rank was not started or has already ended, or the signal cannot be sent.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use cobre_comm_launcher::{Launcher, Outcome, Signal};
    ///
    /// let mut job = Launcher::new("sleep").args(["60"]).spawn().unwrap();
    /// job.kill(0, Signal::KILL).unwrap();
    /// let outcome = job.wait_rank(0, Instant::now() + Duration::from_secs(30));
    /// assert_eq!(outcome, Some(Outcome::Signaled(9)));
    /// assert!(job.kill(0, Signal::KILL).is_err()); // it has ended
    /// ```
    pub fn kill(&mut self, rank: usize, signal: Signal) -> io::Result<()> {
        self.drain();
        let started = self.started_mut(rank)?;
        if started.exit.is_some() {
            return Err(io::Error::other(format!("rank {rank} has already ended")));
        }
        kill_process_group(started.pid, signal).map_err(io::Error::from)
    }

    /// Waits until rank `rank` ends, at most until `deadline`, and returns how it ended;
    /// `None` when it is still running at the deadline (or was never started). The time
    /// it ended is in the final report ([`RankReport::ended_at`]).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use cobre_comm_launcher::{Launcher, Outcome};
    ///
    /// let mut job = Launcher::new("sh").args(["-c", "exit 4"]).spawn().unwrap();
    /// let outcome = job.wait_rank(0, Instant::now() + Duration::from_secs(30));
    /// assert_eq!(outcome, Some(Outcome::Exited(4)));
    /// ```
    pub fn wait_rank(&mut self, rank: usize, deadline: Instant) -> Option<Outcome> {
        loop {
            let started = self.slots.get(rank)?.as_ref()?;
            if let Some((outcome, _)) = started.exit {
                return Some(outcome);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.inbox.recv_timeout(left) {
                Ok(event) => self.record(event),
                Err(_) => return None,
            }
        }
    }

    /// When rank `rank` was seen to end (`None` while it runs, or when it was not
    /// started); the exits [`RunningJob::wait_rank`] has not yet waited for are looked at
    /// first.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let before = Instant::now();
    /// let mut job = cobre_comm_launcher::Launcher::new("true").spawn().unwrap();
    /// job.wait_rank(0, Instant::now() + Duration::from_secs(30));
    /// assert!(job.ended_at(0).unwrap() >= before);
    /// ```
    pub fn ended_at(&mut self, rank: usize) -> Option<Instant> {
        self.drain();
        self.slots.get(rank)?.as_ref()?.exit.map(|(_, at)| at)
    }

    /// Closes the ranks' input pipes ([`Launcher::piped_stdin`]), waits for every started
    /// rank to end, at most `limit` from now, then stops those still running (SIGTERM,
    /// and SIGKILL 2 s later) and reports on every rank. When
    /// [`Launcher::stop_on_failure`] is on (the default), the first rank that fails ends
    /// the wait too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cobre_comm_launcher::{Failure, Launcher, Outcome};
    ///
    /// let job = Launcher::new("sleep").args(["60"]).spawn().unwrap();
    /// let report = job.finish(Duration::from_millis(100));
    /// assert_eq!(report.failure, Some(Failure::Timeout(Duration::from_millis(100))));
    /// assert_eq!(report.ranks[0].outcome, Outcome::Stopped);
    /// ```
    pub fn finish(self, limit: Duration) -> LaunchReport {
        self.finish_by(Some(limit))
    }

    /// [`RunningJob::finish`] with the launcher's [`Launcher::timeout`], counted from the
    /// start of the job (no limit without one): what [`Launcher::run`] does.
    ///
    /// ```
    /// let job = cobre_comm_launcher::Launcher::new("true").ranks(2).spawn().unwrap();
    /// assert!(job.wait().success());
    /// ```
    pub fn wait(self) -> LaunchReport {
        let timeout = self.launcher.timeout;
        let left = timeout.map(|t| t.saturating_sub(self.start.elapsed()));
        let mut report = self.finish_by(left);
        // The failure names the launcher's timeout, not what was left of it.
        if let (Some(Failure::Timeout(t)), Some(timeout)) = (&mut report.failure, timeout) {
            *t = timeout;
        }
        report
    }

    fn started_mut(&mut self, rank: usize) -> io::Result<&mut Started> {
        self.slots
            .get_mut(rank)
            .and_then(Option::as_mut)
            .ok_or_else(|| io::Error::other(format!("rank {rank} was not started")))
    }

    /// Records the exits reported so far.
    fn drain(&mut self) {
        while let Ok(event) = self.inbox.try_recv() {
            self.record(event);
        }
    }

    fn record(&mut self, (rank, outcome, at): Event) {
        if let Some(Some(started)) = self.slots.get_mut(rank) {
            started.exit = Some((outcome, at));
            if !outcome.is_success() && self.first_failure.is_none() {
                self.first_failure = Some(Failure::Rank { rank, outcome });
            }
        }
    }

    fn running(&self) -> Vec<Pid> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.exit.is_none())
            .map(|s| s.pid)
            .collect()
    }

    fn signal_running(&self, signal: Signal) {
        signal_all(&self.running(), signal);
    }

    /// Waits for the started ranks, for the first failure (when it stops the job), or
    /// until `limit` has passed; returns the failure to report.
    fn watch(&mut self, limit: Option<Duration>) -> Option<Failure> {
        let deadline = limit.map(|t| Instant::now() + t);
        self.drain();
        loop {
            if self.launcher.stop_on_failure && self.first_failure.is_some() {
                return self.first_failure.clone();
            }
            if self.running().is_empty() {
                return self.first_failure.clone();
            }
            let received = match deadline {
                Some(d) => self
                    .inbox
                    .recv_timeout(d.saturating_duration_since(Instant::now())),
                None => self
                    .inbox
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(event) => self.record(event),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Some(Failure::Timeout(limit.unwrap_or_default()));
                }
                // The job holds a sender: this does not happen.
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.first_failure.clone(),
            }
        }
    }

    /// Sends SIGTERM to the ranks still running, waits up to [`GRACE`] for them, then
    /// SIGKILL. Ranks that end here are recorded as stopped unless they had failed.
    fn stop_rest(&mut self) {
        let stopping: Vec<usize> = (0..self.slots.len())
            .filter(|&r| self.slots[r].as_ref().is_some_and(|s| s.exit.is_none()))
            .collect();
        self.signal_running(Signal::TERM);
        let deadline = Instant::now() + GRACE;
        let mut killed = false;
        while !self.running().is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .inbox
                .recv_timeout(if killed { GRACE * 5 } else { left })
            {
                Ok((rank, outcome, at)) => {
                    let outcome = match outcome {
                        Outcome::Signaled(15 | 9) if stopping.contains(&rank) => Outcome::Stopped,
                        Outcome::Signaled(9) if killed => Outcome::Stopped,
                        other => other,
                    };
                    if let Some(Some(started)) = self.slots.get_mut(rank) {
                        started.exit = Some((outcome, at));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !killed => {
                    self.signal_running(Signal::KILL);
                    killed = true;
                }
                // SIGKILL ends every process; a rank not reported by now never will be.
                Err(_) => return,
            }
        }
    }

    fn finish_by(mut self, limit: Option<Duration>) -> LaunchReport {
        // Finishing ends the input: a rank that reads its standard input to the end (`cat`)
        // ends only once its pipe is closed.
        for started in self.slots.iter_mut().flatten() {
            started.stdin = None;
        }
        let failure = self.watch(limit);
        if !self.running().is_empty() {
            self.stop_rest();
        }
        if let Some((handle, thread)) = self.forwarder.take() {
            handle.close();
            let _ = thread.join();
        }
        // The output that is still in the pipes when a rank ends is read within GRACE.
        let drained = Instant::now() + GRACE;
        let ranks = std::mem::take(&mut self.slots)
            .into_iter()
            .enumerate()
            .map(|(rank, slot)| match slot {
                None => RankReport {
                    rank,
                    outcome: Outcome::NotStarted,
                    stdout: String::new(),
                    stderr: String::new(),
                    ended_at: None,
                },
                Some(started) => {
                    let (outcome, ended_at) = match started.exit {
                        Some((outcome, at)) => (outcome, Some(at)),
                        None => (Outcome::Stopped, None),
                    };
                    RankReport {
                        rank,
                        outcome,
                        stdout: started.stdout.text_by(drained),
                        stderr: started.stderr.text_by(drained),
                        ended_at,
                    }
                }
            })
            .collect();
        LaunchReport {
            ranks,
            failure,
            elapsed: self.start.elapsed(),
        }
    }
}

impl Drop for RunningJob {
    /// Kills the ranks still running (a job dropped without [`RunningJob::finish`], say
    /// by a failed assertion).
    fn drop(&mut self) {
        self.drain();
        self.signal_running(Signal::KILL);
        if let Some((handle, _)) = self.forwarder.take() {
            handle.close();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts a thread that re-sends termination signals to every rank's process group.
fn forward_signals_to(
    pids: Arc<Mutex<Vec<Pid>>>,
) -> io::Result<(signal_hook::iterator::Handle, thread::JoinHandle<()>)> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = signals.handle();
    let thread = thread::spawn(move || {
        for signal in signals.forever() {
            if let Some(signal) = Signal::from_named_raw(signal) {
                signal_all(&lock(&pids), signal);
            }
        }
    });
    Ok((handle, thread))
}

fn wait_child(rank: usize, mut child: Child, events: &mpsc::Sender<Event>) {
    let outcome = match child.wait() {
        Ok(status) => Outcome::from_status(status),
        Err(_) => Outcome::Exited(-1),
    };
    let _ = events.send((rank, outcome, Instant::now()));
}

/// Reads `source` line by line to its end: into `stream` when capturing, otherwise to
/// `sink`, each line prefixed with `label` (one `write_all` per line, so that lines of
/// different ranks never interleave). Marks `stream` ended at the end.
fn read_stream(
    source: impl Read,
    capture: bool,
    label: &str,
    sink: &mut impl Write,
    stream: &Stream,
) {
    let mut reader = BufReader::new(source);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if capture => stream.push(&String::from_utf8_lossy(&line)),
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
    stream.end();
}

fn signal_all(pids: &[Pid], signal: Signal) {
    for &pid in pids {
        let _ = kill_process_group(pid, signal);
    }
}
