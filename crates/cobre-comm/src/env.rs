//! Reading backend configuration from environment variables, written once for every
//! backend. Every function takes a lookup closure instead of reading the process
//! environment directly, so configuration parsing is testable without `set_var`.

use std::time::Duration;

use crate::types::BackendError;

/// A source of variables: the process environment, or a map in tests.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Looks `name` up in the process environment. A variable that is set but empty counts
/// as unset; a value that is not UTF-8 is passed on lossily so that it fails validation
/// with a readable message.
pub(crate) fn process_env(name: &str) -> Option<String> {
    let value = std::env::var_os(name)?;
    let value = value.to_string_lossy().trim().to_string();
    (!value.is_empty()).then_some(value)
}

/// Reads the variables of one backend, producing errors that name it.
pub(crate) struct EnvReader<'a> {
    backend: &'static str,
    lookup: Lookup<'a>,
}

#[allow(dead_code)] // each backend uses the readers it needs
impl<'a> EnvReader<'a> {
    pub(crate) fn new(backend: &'static str, lookup: Lookup<'a>) -> Self {
        EnvReader { backend, lookup }
    }

    /// The trimmed value of `name`, `None` when unset or empty.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Fails with [`BackendError::MissingConfiguration`] naming every variable of `names`
    /// that is unset. The error's message adds the backend's own hint (how to start its
    /// ranks); `_hint` documents the call site.
    pub(crate) fn require(&self, names: &[&str], _hint: &str) -> Result<(), BackendError> {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| self.get(n).is_none())
            .map(|n| (*n).to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(BackendError::MissingConfiguration {
                backend: self.backend.to_string(),
                missing_vars: missing,
            })
        }
    }

    /// An error saying that `name=value` is not what was `expected`.
    pub(crate) fn invalid(&self, name: &str, value: &str, expected: &str) -> BackendError {
        BackendError::InvalidConfiguration {
            backend: self.backend.to_string(),
            variable: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    /// The value `parse` makes of variable `name`, `None` when unset; an error naming
    /// `expected` when `parse` refuses it.
    pub(crate) fn parsed<T>(
        &self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, BackendError> {
        self.get(name)
            .map(|v| parse(&v).ok_or_else(|| self.invalid(name, &v, expected)))
            .transpose()
    }

    /// An unsigned integer, `None` when unset.
    pub(crate) fn usize(&self, name: &str) -> Result<Option<usize>, BackendError> {
        self.get(name)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| self.invalid(name, &v, "a non-negative integer"))
            })
            .transpose()
    }

    /// An unsigned integer within `min..=max`, `None` when unset.
    pub(crate) fn usize_in(
        &self,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<usize>, BackendError> {
        let Some(value) = self.usize(name)? else {
            return Ok(None);
        };
        if (min..=max).contains(&value) {
            Ok(Some(value))
        } else {
            Err(self.invalid(
                name,
                &value.to_string(),
                &format!("an integer from {min} to {max}"),
            ))
        }
    }

    /// The algorithms a `*_ALGORITHMS` variable forces (none when unset), among `table`.
    pub(crate) fn algorithms(
        &self,
        name: &str,
        table: &crate::algorithm::Table,
    ) -> Result<crate::algorithm::Forced, BackendError> {
        let Some(v) = self.get(name) else {
            return Ok(crate::algorithm::Forced::NONE);
        };
        crate::algorithm::Forced::parse(&v, table).map_err(|why| self.invalid(name, &v, &why))
    }

    /// A positive duration in seconds (fractions allowed), `default` when unset.
    pub(crate) fn seconds(&self, name: &str, default: Duration) -> Result<Duration, BackendError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 1e9 => {
                Ok(Duration::from_secs_f64(secs))
            }
            _ => Err(self.invalid(name, &v, "a positive number of seconds, such as 60 or 0.5")),
        }
    }
}

/// A lookup over fixed `(name, value)` pairs, for tests of configuration parsing.
#[cfg(test)]
pub(crate) fn test_vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_vars as vars;

    #[test]
    fn reads_and_validates() {
        let lookup = vars(&[
            ("A", " 3 "),
            ("B", "x"),
            ("T", "0.5"),
            ("E", "  "),
            ("Z", "-1"),
        ]);
        let env = EnvReader::new("shm", &lookup);
        assert_eq!(env.usize("A").ok(), Some(Some(3)));
        assert_eq!(env.usize("E").ok(), Some(None));
        let err = env.usize("B").unwrap_err().to_string();
        assert!(
            err.contains("backend `shm`: B=\"x\" is invalid: expected a non-negative integer"),
            "{err}"
        );
        assert!(
            env.usize_in("A", 4, 8)
                .unwrap_err()
                .to_string()
                .contains("from 4 to 8")
        );
        assert_eq!(
            env.seconds("T", Duration::from_secs(60)).ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            env.seconds("U", Duration::from_secs(60)).ok(),
            Some(Duration::from_secs(60))
        );
        assert!(env.seconds("Z", Duration::from_secs(1)).is_err());
        match env.require(&["A", "E", "U"], "use cobre-comm launch") {
            Err(BackendError::MissingConfiguration { missing_vars, .. }) => {
                assert_eq!(missing_vars, ["E", "U"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
