//! Configuration of the shared-memory backend: [`ShmConfig`], from code or from the
//! `COBRE_SHM_*` environment variables.
//!
//! This file is the one place where those variables are named, given defaults, parsed and
//! written: auto-detection and the launcher (and through it the `cobre-comm` tool) use the
//! constants and functions here.
//! It is compiled even without the `shm` feature, so that they can.

use std::time::Duration;

use crate::algorithm::{Algorithm, Forced, Op, Table};
use crate::env::{EnvReader, Lookup};
use crate::types::BackendError;

const BACKEND: &str = "shm";
/// The variable naming the job's segment (required; setting it selects `shm` in `auto`).
pub const ENV_NAME: &str = "COBRE_SHM_NAME";
/// The variable holding this process's rank (required).
pub const ENV_RANK: &str = "COBRE_SHM_RANK";
/// The variable holding the number of ranks (required).
pub const ENV_SIZE: &str = "COBRE_SHM_SIZE";
/// The variable holding the timeout in seconds (optional, [`DEFAULT_TIMEOUT`]).
pub const ENV_TIMEOUT: &str = "COBRE_SHM_TIMEOUT_SECS";
/// The variable forcing collective algorithms (optional; see [`crate::algorithm`]), such
/// as `allreduce=reduce-scatter-allgather`. Must be the same on every rank.
pub const ENV_ALGORITHMS: &str = "COBRE_SHM_ALGORITHMS";
/// The variable forcing how the ranks of a step signal their arrival (optional; see
/// [`Signalling`]): `flat` or `dissemination`. Must be the same on every rank.
pub const ENV_SIGNALLING: &str = "COBRE_SHM_SIGNALLING";
/// Every variable of the shm backend.
pub const ENV_VARS: [&str; 6] = [
    ENV_NAME,
    ENV_RANK,
    ENV_SIZE,
    ENV_TIMEOUT,
    ENV_ALGORITHMS,
    ENV_SIGNALLING,
];

/// How the ranks of an exchange step learn that every rank has published its part.
///
/// Every collective of the shm backend is a sequence of exchange steps; in each, every
/// rank publishes its part and must know that all others have published theirs (and that
/// all run the same call) before it reads. Rank 0 picks one for the job
/// ([`Signalling::pick`]) unless [`ENV_SIGNALLING`] forces one, and the other ranks
/// follow (a rank given another one by the variable is refused at start-up).
///
/// ```
/// use cobre_comm::shm::Signalling;
/// assert_eq!(Signalling::pick(4, 64), Signalling::Flat);
/// assert_eq!(Signalling::pick(64, 128), Signalling::Dissemination);
/// assert_eq!(Signalling::pick(64, 2), Signalling::Flat); // more ranks than cores
/// assert_eq!(Signalling::from_name("flat"), Some(Signalling::Flat));
/// assert_eq!(Signalling::Dissemination.to_string(), "dissemination");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive] // other ways (a tree) may be added; a match outside this crate needs a `_` arm
pub enum Signalling {
    /// Every waiting rank polls every other rank's arrival word and compares every
    /// fingerprint digest: one cache-line transfer of latency, `p - 1` words polled.
    Flat = 1,
    /// Rounds at distances 1, 2, 4, ...: in round `k` a rank passes on what it has seen
    /// (arrivals, and whether every digest so far agrees with its own) to rank `r + 2^k`
    /// and waits for rank `r - 2^k`'s. `ceil(log2 p)` rounds, one word polled per round;
    /// after the last, each rank has heard (through the others) from every rank.
    Dissemination = 2,
}

/// The largest job whose steps use [`Signalling::Flat`] when every rank has a core.
///
/// Measured on 2 cores: at 2 ranks, one per core, flat and dissemination are the same
/// (barrier 0.18 and 0.17 us, 8 B allreduce 0.21 both); with more ranks than cores flat
/// is faster at every size tried, 3 to 64 ranks (dissemination 1.2-2.2x slower: each
/// round waits for one partner, which may not be running). Larger jobs with a core each
/// cannot be measured here; 16 is where dissemination's `log2 p` transfers in sequence
/// (4) should cost less than `p - 1` ranks all fetching the line the last rank wrote.
pub const FLAT_MAX_RANKS: usize = 16;

impl Signalling {
    /// Both ways, in a fixed order.
    pub const ALL: [Signalling; 2] = [Signalling::Flat, Signalling::Dissemination];

    /// The default for a job of `size` ranks on a node that gives it `cores` cores:
    /// flat up to [`FLAT_MAX_RANKS`] ranks and whenever the ranks outnumber the cores,
    /// dissemination otherwise.
    #[must_use]
    pub const fn pick(size: usize, cores: usize) -> Signalling {
        if size <= FLAT_MAX_RANKS || size > cores {
            Signalling::Flat
        } else {
            Signalling::Dissemination
        }
    }

    /// The name, as in [`ENV_SIGNALLING`] and in messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Signalling::Flat => "flat",
            Signalling::Dissemination => "dissemination",
        }
    }

    /// The way named `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Signalling> {
        Signalling::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The number a segment's header records.
    pub(crate) const fn code(self) -> u32 {
        self as u32
    }

    /// The way a segment's header records as `code`, if any.
    pub(crate) fn from_code(code: u32) -> Option<Signalling> {
        Signalling::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl std::fmt::Display for Signalling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The algorithms of the shm backend, per collective (the default pick first). What each
/// does, and when the backend picks it, is documented in `docs/ARCHITECTURE.md`.
pub const ALGORITHMS: &Table = &[
    (
        Op::Allreduce,
        &[
            Algorithm::Direct,
            Algorithm::ReduceScatterAllgather,
            Algorithm::SingleCopy,
        ],
    ),
    (Op::Allgatherv, &[Algorithm::Direct, Algorithm::SingleCopy]),
    (Op::Broadcast, &[Algorithm::Direct, Algorithm::SingleCopy]),
    (Op::Barrier, &[Algorithm::Direct]),
];
/// What to do when a required variable is missing.
const MISSING_HINT: &str =
    "set them for every rank, or start the ranks with `cobre-comm launch -n N --backend shm`";

/// The largest job the shm backend accepts.
pub const MAX_SIZE: usize = 1024;
/// Default timeout for a silent peer (and for the start-up rendezvous).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default size of each rank's data slot (payloads larger than this are pipelined).
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// The largest data slot: keeps every offset in the segment far from overflowing.
pub const MAX_CHUNK_BYTES: usize = 1 << 30;

/// The value of [`ENV_TIMEOUT`] that `ShmConfig::from_env` reads back as `timeout`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(cobre_comm::shm::timeout_value(Duration::from_millis(1500)), "1.5");
/// ```
pub fn timeout_value(timeout: Duration) -> String {
    format!("{}", timeout.as_secs_f64())
}

/// The variables that make a process rank `rank` of the `size`-rank job whose segment is
/// `name` (and its timeout, when given), as a launcher sets them.
///
/// ```
/// let vars = cobre_comm::shm::rank_env("/job-1", 2, 4, None);
/// assert!(vars.contains(&(cobre_comm::shm::ENV_RANK, "2".to_string())));
/// ```
pub fn rank_env(
    name: &str,
    rank: usize,
    size: usize,
    timeout: Option<Duration>,
) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        (ENV_NAME, name.to_string()),
        (ENV_RANK, rank.to_string()),
        (ENV_SIZE, size.to_string()),
    ];
    if let Some(t) = timeout {
        vars.push((ENV_TIMEOUT, timeout_value(t)));
    }
    vars
}

/// How to join a shared-memory job.
///
/// # Example
/// ```
/// use cobre_comm::ShmConfig;
///
/// // Rank 1 of a 4-rank job whose segment is named /my-job; with the `shm` feature,
/// // `ShmBackend::new(&config)` joins it.
/// let config = ShmConfig::new("/my-job", 1, 4);
/// assert_eq!((config.rank, config.size), (1, 4));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmConfig {
    /// The segment name: starts with `/`, unique per job, no other `/`.
    pub name: String,
    /// This process's rank, `0..size`.
    pub rank: usize,
    /// The number of ranks.
    pub size: usize,
    /// The longest wait for a silent peer, and for the others to join at start-up.
    pub timeout: Duration,
    /// Bytes of each rank's data slot; larger payloads go through in chunks of this size.
    pub chunk_bytes: usize,
    /// The algorithms forced for this job (none by default: the backend picks by size).
    pub algorithms: Forced,
    /// How the ranks of a step signal their arrival (`None`, the default: rank 0 picks,
    /// see [`Signalling::pick`], and the others follow).
    pub signalling: Option<Signalling>,
}

impl ShmConfig {
    /// A configuration with the default timeout and chunk size.
    ///
    /// ```
    /// let config = cobre_comm::ShmConfig::new("/job", 0, 2);
    /// assert_eq!(config.timeout.as_secs(), 60);
    /// ```
    pub fn new(name: impl Into<String>, rank: usize, size: usize) -> ShmConfig {
        ShmConfig {
            name: name.into(),
            rank,
            size,
            timeout: DEFAULT_TIMEOUT,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            algorithms: Forced::NONE,
            signalling: None,
        }
    }

    /// Reads `COBRE_SHM_NAME`, `COBRE_SHM_RANK`, `COBRE_SHM_SIZE`,
    /// `COBRE_SHM_TIMEOUT_SECS`, `COBRE_SHM_ALGORITHMS` and `COBRE_SHM_SIGNALLING` from the
    /// process environment.
    ///
    /// # Errors
    /// [`BackendError::MissingConfiguration`] naming the unset variables,
    /// [`BackendError::InvalidConfiguration`] naming a bad value and what was expected.
    ///
    /// ```no_run
    /// let config = cobre_comm::ShmConfig::from_env().unwrap();
    /// ```
    pub fn from_env() -> Result<ShmConfig, BackendError> {
        Self::from_lookup(&crate::env::process_env)
    }

    /// As [`ShmConfig::from_env`], with variables looked up by `lookup`.
    ///
    /// # Errors
    /// As [`ShmConfig::from_env`].
    ///
    /// ```
    /// use cobre_comm::ShmConfig;
    /// let vars = |name: &str| match name {
    ///     "COBRE_SHM_NAME" => Some("/job".to_string()),
    ///     "COBRE_SHM_RANK" => Some("1".to_string()),
    ///     "COBRE_SHM_SIZE" => Some("3".to_string()),
    ///     _ => None,
    /// };
    /// let config = ShmConfig::from_lookup(&vars).unwrap();
    /// assert_eq!((config.rank, config.size), (1, 3));
    /// ```
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<ShmConfig, BackendError> {
        let env = EnvReader::new(BACKEND, lookup);
        env.require(&[ENV_NAME, ENV_RANK, ENV_SIZE], MISSING_HINT)?;
        let name = env.get(ENV_NAME).expect("checked by require");
        let size = env
            .usize_in(ENV_SIZE, 1, MAX_SIZE)?
            .expect("checked by require");
        let rank = env
            .usize_in(ENV_RANK, 0, size - 1)?
            .expect("checked by require");
        let timeout = env.seconds(ENV_TIMEOUT, DEFAULT_TIMEOUT)?;
        let algorithms = env.algorithms(ENV_ALGORITHMS, ALGORITHMS)?;
        let signalling = env.parsed(
            ENV_SIGNALLING,
            "`flat` or `dissemination`",
            Signalling::from_name,
        )?;
        let config = ShmConfig {
            name,
            rank,
            size,
            timeout,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            algorithms,
            signalling,
        };
        config
            .validate()
            .map_err(|(variable, value, expected)| env.invalid(variable, &value, &expected))?;
        Ok(config)
    }

    /// Checks the fields; on error returns (variable, value, expected).
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String, String)> {
        let name_ok = self.name.len() >= 2
            && self.name.len() <= 200
            && self.name.starts_with('/')
            && !self.name[1..].contains('/')
            && self.name.bytes().all(|b| b.is_ascii_graphic());
        if !name_ok {
            return Err((
                ENV_NAME,
                self.name.clone(),
                "a name that starts with `/`, has no other `/`, no spaces, and at most 200 characters, such as /cobre-job-42".into(),
            ));
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return Err((
                ENV_SIZE,
                self.size.to_string(),
                format!("an integer from 1 to {MAX_SIZE}"),
            ));
        }
        if self.rank >= self.size {
            return Err((
                ENV_RANK,
                self.rank.to_string(),
                format!("an integer from 0 to {}", self.size - 1),
            ));
        }
        let forced = self.algorithms.to_string();
        if let Err(why) = Forced::parse(&forced, ALGORITHMS) {
            return Err((ENV_ALGORITHMS, forced, why));
        }
        if self.chunk_bytes < 4096
            || self.chunk_bytes > MAX_CHUNK_BYTES
            || !self.chunk_bytes.is_multiple_of(4096)
        {
            return Err((
                "chunk_bytes",
                self.chunk_bytes.to_string(),
                format!("a multiple of 4096 from 4096 to {MAX_CHUNK_BYTES}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::test_vars as vars;

    #[test]
    fn bad_values_name_the_variable() {
        let err = ShmConfig::from_lookup(&vars(&[
            ("COBRE_SHM_NAME", "/j"),
            ("COBRE_SHM_RANK", "3"),
            ("COBRE_SHM_SIZE", "3"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("COBRE_SHM_RANK=\"3\" is invalid: expected an integer from 0 to 2"),
            "{err}"
        );
        let err = ShmConfig::from_lookup(&vars(&[
            ("COBRE_SHM_NAME", "job"),
            ("COBRE_SHM_RANK", "0"),
            ("COBRE_SHM_SIZE", "1"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("COBRE_SHM_NAME=\"job\" is invalid: expected a name that starts with `/`"),
            "{err}"
        );
        let err = ShmConfig::from_lookup(&vars(&[("COBRE_SHM_NAME", "/j")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs COBRE_SHM_RANK, COBRE_SHM_SIZE which are not set"),
            "{err}"
        );
        let err = ShmConfig::from_lookup(&vars(&[
            ("COBRE_SHM_NAME", "/j"),
            ("COBRE_SHM_RANK", "0"),
            ("COBRE_SHM_SIZE", "2"),
            ("COBRE_SHM_TIMEOUT_SECS", "soon"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("COBRE_SHM_TIMEOUT_SECS=\"soon\""), "{err}");
        let err = ShmConfig::from_lookup(&vars(&[
            ("COBRE_SHM_NAME", "/j"),
            ("COBRE_SHM_RANK", "0"),
            ("COBRE_SHM_SIZE", "2"),
            ("COBRE_SHM_ALGORITHMS", "allreduce=ring"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("COBRE_SHM_ALGORITHMS=\"allreduce=ring\" is invalid")
                && err.contains(
                    "expected one of direct, reduce-scatter-allgather, single-copy for allreduce"
                ),
            "{err}"
        );
    }

    #[test]
    fn algorithms_are_forced_per_collective() {
        let config = ShmConfig::from_lookup(&vars(&[
            ("COBRE_SHM_NAME", "/j"),
            ("COBRE_SHM_RANK", "0"),
            ("COBRE_SHM_SIZE", "2"),
            ("COBRE_SHM_ALGORITHMS", "allgatherv=single-copy"),
        ]))
        .unwrap();
        assert_eq!(
            config.algorithms.get(Op::Allgatherv),
            Some(Algorithm::SingleCopy)
        );
        assert_eq!(config.algorithms.get(Op::Allreduce), None);
    }

    #[test]
    fn signalling_is_read_from_the_environment() {
        let job = |signalling: Option<&'static str>| {
            let mut pairs = vec![
                ("COBRE_SHM_NAME", "/j"),
                ("COBRE_SHM_RANK", "0"),
                ("COBRE_SHM_SIZE", "2"),
            ];
            pairs.extend(signalling.map(|s| ("COBRE_SHM_SIGNALLING", s)));
            ShmConfig::from_lookup(&vars(&pairs))
        };
        assert_eq!(job(None).unwrap().signalling, None);
        assert_eq!(
            job(Some("dissemination")).unwrap().signalling,
            Some(Signalling::Dissemination)
        );
        let err = job(Some("tree")).unwrap_err().to_string();
        assert!(
            err.contains(
                "COBRE_SHM_SIGNALLING=\"tree\" is invalid: expected `flat` or `dissemination`"
            ),
            "{err}"
        );
    }

    #[test]
    fn dissemination_is_picked_for_large_jobs_with_a_core_each() {
        for size in 1..=FLAT_MAX_RANKS {
            assert_eq!(Signalling::pick(size, 1024), Signalling::Flat);
        }
        assert_eq!(
            Signalling::pick(FLAT_MAX_RANKS + 1, FLAT_MAX_RANKS + 1),
            Signalling::Dissemination
        );
        assert_eq!(
            Signalling::pick(FLAT_MAX_RANKS + 1, FLAT_MAX_RANKS),
            Signalling::Flat
        );
        for s in Signalling::ALL {
            assert_eq!(Signalling::from_code(s.code()), Some(s));
            assert_eq!(Signalling::from_name(s.name()), Some(s));
        }
        assert_eq!(Signalling::from_code(0), None);
    }
}
