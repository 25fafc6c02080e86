//! # cobre-comm-launcher
//!
//! Starts the ranks of a job on this machine, as `mpiexec` does for MPI: N processes of a
//! program, each with its own environment; every line they print is prefixed with the
//! rank (or their standard output is captured); when one rank fails, the others are
//! stopped and the report says which rank failed and how; an overall timeout stops
//! everything.
//!
//! [`shm_env`] and [`tcp_env`] build the per-rank environment of the `shm` and `tcp`
//! backends of cobre-comm (a unique segment name; a free port and a random token).
//!
//! # Example
//! ```
//! use cobre_comm_launcher::Launcher;
//!
//! let report = Launcher::new("sh")
//!     .args(["-c", "echo rank $COBRE_SHM_RANK"])
//!     .ranks(2)
//!     .rank_env(cobre_comm_launcher::shm_env(2, None))
//!     .capture_stdout(true)
//!     .run()
//!     .unwrap();
//! assert!(report.success());
//! assert_eq!(report.ranks[1].stdout, "rank 1\n");
//! ```

mod bind;
mod env;
mod run;

pub use bind::Binding;
pub use env::{free_port, shm_env, tcp_env, unique_token};
pub use run::{Failure, LaunchReport, Launcher, Outcome, RankReport, RunningJob, Signal};
