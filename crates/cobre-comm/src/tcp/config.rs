//! Configuration of the TCP backend: [`TcpConfig`], from code or from the `COBRE_TCP_*`
//! environment variables.

use std::net::IpAddr;
use std::time::Duration;

use crate::env::{EnvReader, process_env};
use crate::types::BackendError;

/// Host name or address of rank 0 (required on ranks > 0).
pub const ENV_COORDINATOR: &str = "COBRE_TCP_COORDINATOR";
/// TCP port rank 0 listens on (default [`DEFAULT_PORT`]).
pub const ENV_PORT: &str = "COBRE_TCP_PORT";
/// This process's rank, `0..size` (required).
pub const ENV_RANK: &str = "COBRE_TCP_RANK";
/// The number of ranks (required).
pub const ENV_SIZE: &str = "COBRE_TCP_SIZE";
/// Seconds to wait for a silent peer, and for the rendezvous (default 60).
pub const ENV_TIMEOUT: &str = "COBRE_TCP_TIMEOUT_SECS";
/// Optional shared secret every rank must know (proved with HMAC-SHA256, never sent).
pub const ENV_TOKEN: &str = "COBRE_TCP_TOKEN";
/// Optional IP address rank 0 listens on (default: every interface).
pub const ENV_BIND: &str = "COBRE_TCP_BIND";

/// The port rank 0 listens on when `COBRE_TCP_PORT` is not set.
pub const DEFAULT_PORT: u16 = 29500;
/// The timeout when `COBRE_TCP_TIMEOUT_SECS` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest job the backend accepts (every rank keeps one connection to every other).
pub const MAX_SIZE: usize = 4096;

const BACKEND: &str = "tcp";

/// How a [`TcpBackend`](crate::TcpBackend) joins its job.
///
/// Every rank of a job needs the same `size`, `port`, `token`, and each its own `rank`.
/// Rank 0 listens on `bind:port`; the other ranks connect to `coordinator:port`.
///
/// * `bind` (rank 0 only): the address to listen on. `None` (the default) listens on every
///   interface (`[::]` accepting IPv4 and IPv6, or `0.0.0.0` where IPv6 is off), so any
///   host that can reach the port can try to join: set a `token` on shared networks, or
///   bind a private interface (`127.0.0.1` for a single machine).
/// * `token`: without a token anyone who can reach the port can take a free rank; with
///   one, peers prove they know it (HMAC-SHA256 over random nonces) and it never travels.
/// * `timeout`: how long the rendezvous may take, and how long a collective waits for a
///   silent peer before failing with [`CommError::Timeout`](crate::CommError::Timeout).
///
/// # Example
/// ```
/// use std::time::Duration;
/// use cobre_comm::TcpConfig;
///
/// let config = TcpConfig {
///     coordinator: Some("node01".into()),
///     token: Some("s3cret".into()),
///     timeout: Duration::from_secs(30),
///     ..TcpConfig::new(1, 4)
/// };
/// assert_eq!(config.port, 29500);
///
/// let vars = [("COBRE_TCP_RANK", "0"), ("COBRE_TCP_SIZE", "2")];
/// let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
/// let parsed = TcpConfig::from_lookup(&lookup).unwrap();
/// assert_eq!((parsed.rank, parsed.size), (0, 2));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// This process's rank, `0..size`.
    pub rank: usize,
    /// The number of ranks, `1..=MAX_SIZE`.
    pub size: usize,
    /// Host name or address of rank 0; required on ranks > 0, ignored on rank 0.
    pub coordinator: Option<String>,
    /// The port rank 0 listens on.
    pub port: u16,
    /// The rendezvous deadline and the longest wait for a silent peer.
    pub timeout: Duration,
    /// Shared secret; `None` accepts any peer that speaks the protocol.
    pub token: Option<String>,
    /// Listen address of rank 0; `None` listens on every interface.
    pub bind: Option<IpAddr>,
}

impl std::fmt::Debug for TcpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConfig")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("coordinator", &self.coordinator)
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("bind", &self.bind)
            .finish()
    }
}

impl TcpConfig {
    /// Rank `rank` of a job of `size` ranks, with the defaults: no coordinator, port
    /// 29500, a 60 s timeout, no token, listening on every interface.
    ///
    /// ```
    /// let config = cobre_comm::TcpConfig::new(0, 1);
    /// assert!(config.token.is_none() && config.bind.is_none());
    /// ```
    pub fn new(rank: usize, size: usize) -> TcpConfig {
        TcpConfig {
            rank,
            size,
            coordinator: None,
            port: DEFAULT_PORT,
            timeout: DEFAULT_TIMEOUT,
            token: None,
            bind: None,
        }
    }

    /// Reads the `COBRE_TCP_*` variables of the process environment.
    ///
    /// # Errors
    /// [`BackendError::MissingConfiguration`] naming the unset required variables,
    /// [`BackendError::InvalidConfiguration`] naming a variable whose value is unusable.
    ///
    /// ```no_run
    /// let config = cobre_comm::TcpConfig::from_env().unwrap();
    /// ```
    pub fn from_env() -> Result<TcpConfig, BackendError> {
        Self::from_lookup(&process_env)
    }

    /// Reads the `COBRE_TCP_*` variables through `lookup` (a map in tests, the process
    /// environment in [`TcpConfig::from_env`]).
    ///
    /// # Errors
    /// As [`TcpConfig::from_env`].
    ///
    /// # Example
    /// ```
    /// use cobre_comm::TcpConfig;
    ///
    /// let lookup = |name: &str| match name {
    ///     "COBRE_TCP_RANK" => Some("1".to_string()),
    ///     "COBRE_TCP_SIZE" => Some("2".to_string()),
    ///     _ => None,
    /// };
    /// let err = TcpConfig::from_lookup(&lookup).unwrap_err();
    /// assert!(err.to_string().contains("COBRE_TCP_COORDINATOR"));
    /// ```
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<TcpConfig, BackendError> {
        let env = EnvReader::new(BACKEND, lookup);
        let hint = "set them for every rank, or start the ranks with `cobre-comm launch -n N --backend tcp`";
        env.require(&[ENV_RANK, ENV_SIZE], hint)?;
        let size = env
            .usize_in(ENV_SIZE, 1, MAX_SIZE)?
            .expect("checked by require");
        let rank = env
            .usize_in(ENV_RANK, 0, size - 1)?
            .expect("checked by require");
        let coordinator = env.get(ENV_COORDINATOR);
        if rank > 0 && coordinator.is_none() {
            env.require(
                &[ENV_COORDINATOR],
                "ranks other than 0 need the host of rank 0",
            )?;
        }
        let port = env
            .usize_in(ENV_PORT, 1, usize::from(u16::MAX))?
            .map_or(DEFAULT_PORT, |p| p as u16);
        let timeout = env.seconds(ENV_TIMEOUT, DEFAULT_TIMEOUT)?;
        let token = env.get(ENV_TOKEN);
        let bind = env
            .get(ENV_BIND)
            .map(|v| {
                v.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .map_err(|_| {
                        env.invalid(
                            ENV_BIND,
                            &v,
                            "an IP address such as 127.0.0.1, 0.0.0.0 or ::",
                        )
                    })
            })
            .transpose()?;
        Ok(TcpConfig {
            rank,
            size,
            coordinator,
            port,
            timeout,
            token,
            bind,
        })
    }

    /// Checks the fields set from code.
    pub(crate) fn validate(&self) -> Result<(), BackendError> {
        let invalid =
            |variable: &str, value: String, expected: &str| BackendError::InvalidConfiguration {
                backend: BACKEND.into(),
                variable: variable.into(),
                value,
                expected: expected.into(),
            };
        if self.size == 0 || self.size > MAX_SIZE {
            return Err(invalid(
                "size",
                self.size.to_string(),
                &format!("an integer from 1 to {MAX_SIZE}"),
            ));
        }
        if self.rank >= self.size {
            return Err(invalid(
                "rank",
                self.rank.to_string(),
                &format!("a rank from 0 to {}", self.size - 1),
            ));
        }
        if self.rank > 0 && self.coordinator.as_deref().is_none_or(str::is_empty) {
            return Err(BackendError::MissingConfiguration {
                backend: BACKEND.into(),
                missing_vars: vec![ENV_COORDINATOR.into()],
            });
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                "timeout",
                format!("{:?}", self.timeout),
                "a positive duration",
            ));
        }
        Ok(())
    }

    /// The key of the HMAC proofs: the token's bytes (empty without a token).
    pub(crate) fn key(&self) -> &[u8] {
        self.token.as_deref().map_or(&[], str::as_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::test_vars as vars;

    #[test]
    fn parses_and_defaults() {
        let c = TcpConfig::from_lookup(&vars(&[
            (ENV_RANK, "2"),
            (ENV_SIZE, "4"),
            (ENV_COORDINATOR, "::1"),
            (ENV_PORT, "4000"),
            (ENV_TIMEOUT, "2.5"),
            (ENV_TOKEN, "abc"),
            (ENV_BIND, "[::]"),
        ]))
        .unwrap();
        assert_eq!((c.rank, c.size, c.port), (2, 4, 4000));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.bind, Some("::".parse().unwrap()));
        assert!(!format!("{c:?}").contains("abc"));
        let c = TcpConfig::from_lookup(&vars(&[(ENV_RANK, "0"), (ENV_SIZE, "1")])).unwrap();
        assert_eq!(c, TcpConfig::new(0, 1));
    }

    #[test]
    fn errors_name_the_variable() {
        let text = |pairs: &[(&str, &str)]| {
            TcpConfig::from_lookup(&vars(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(text(&[]).contains("COBRE_TCP_RANK, COBRE_TCP_SIZE"));
        assert!(text(&[(ENV_RANK, "1"), (ENV_SIZE, "2")]).contains(ENV_COORDINATOR));
        assert!(text(&[(ENV_RANK, "2"), (ENV_SIZE, "2")]).contains("from 0 to 1"));
        assert!(text(&[(ENV_RANK, "0"), (ENV_SIZE, "0")]).contains(ENV_SIZE));
        assert!(text(&[(ENV_RANK, "0"), (ENV_SIZE, "1"), (ENV_PORT, "70000")]).contains(ENV_PORT));
        assert!(text(&[(ENV_RANK, "0"), (ENV_SIZE, "1"), (ENV_BIND, "eth0")]).contains(ENV_BIND));
        assert!(
            text(&[(ENV_RANK, "0"), (ENV_SIZE, "1"), (ENV_TIMEOUT, "0")]).contains(ENV_TIMEOUT)
        );
        assert!(TcpConfig::new(3, 2).validate().is_err());
        assert!(TcpConfig::new(1, 2).validate().is_err());
    }
}
