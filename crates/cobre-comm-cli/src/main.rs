//! The `cobre-comm` command-line tool: launches ranks, checks a backend with the
//! conformance suite, reports what the environment offers, and benchmarks collectives.

mod bench;
mod check;
mod info;
mod launch;
#[cfg(feature = "tcp")]
mod model;
mod ranks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Collective communication for distributed numerical programs: launch ranks, check
/// backends, inspect the environment, benchmark.
#[derive(Debug, Parser)]
#[command(name = "cobre-comm", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start N local ranks of a program with the environment of the shm or tcp backend.
    Launch(launch::Args),
    /// Run the conformance suite on N ranks of a backend and print a pass/fail table.
    Check(check::Args),
    /// Show the compiled backends, what auto-detection picks and why, and the environment.
    Info(info::Args),
    /// Measure collective latency per message size (OSU style), several backends side by side.
    Bench(bench::Args),
    /// Predict collective latency on a simulated network of P ranks over H hosts, running the
    /// tcp backend's own algorithms (up to thousands of ranks).
    #[cfg(feature = "tcp")]
    Model(model::Args),
    /// One rank of a `check` or `bench` job (started by those commands).
    #[command(name = "__rank", hide = true)]
    Rank(ranks::RankArgs),
}

/// An error for the user: printed as `cobre-comm: error: ...`.
#[derive(Debug)]
pub struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// An error that ends the tool with exit code 1.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 1,
        }
    }

    /// An error about the command line (exit code 2, as for clap's own errors).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 2,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Launch(args) => launch::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Bench(args) => bench::run(&args),
        #[cfg(feature = "tcp")]
        Command::Model(args) => model::run(&args),
        Command::Rank(args) => ranks::rank_main(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cobre-comm: error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
