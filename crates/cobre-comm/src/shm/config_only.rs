//! The shared-memory backend is not compiled into this build (feature `shm`); its
//! configuration is, so that auto-detection and launchers name its variables from one
//! place in every build.

#[allow(dead_code)] // the backend that reads the configuration is not compiled in
mod config;

pub use config::{
    ALGORITHMS, DEFAULT_CHUNK_BYTES, DEFAULT_TIMEOUT, ENV_ALGORITHMS, ENV_NAME, ENV_RANK,
    ENV_SIGNALLING, ENV_SIZE, ENV_TIMEOUT, ENV_VARS, FLAT_MAX_RANKS, MAX_CHUNK_BYTES, MAX_SIZE,
    ShmConfig, Signalling, rank_env, timeout_value,
};
