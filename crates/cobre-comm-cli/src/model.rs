//! `cobre-comm model`: the tcp backend's own collective code on a simulated network of P
//! ranks over H hosts (`cobre_comm::model`), reported like `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use cobre_comm_bench::{BenchOp, BenchReport, BenchRow, message_sizes, render_table};

use crate::CliError;
use crate::bench::Cells;

/// The networks `--network` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkName {
    /// Loopback on one host, as measured on the reference machine of docs/PERFORMANCE.md.
    Loopback,
    /// A 25 Gb/s Ethernet cluster through the kernel's TCP stack.
    #[value(name = "25gbe")]
    Ethernet25,
}

/// Arguments of `cobre-comm model`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backend modelled (only tcp has a model).
    #[arg(long, default_value = "tcp", value_parser = ["tcp"])]
    backend: String,
    /// Number of simulated ranks.
    #[arg(short = 'n', long = "ranks", value_name = "P", default_value_t = 2)]
    ranks: usize,
    /// Number of simulated hosts, ranks spread over them in blocks [default: 1 on
    /// loopback, else one host per rank].
    #[arg(long, value_name = "H")]
    hosts: Option<usize>,
    /// The network's defaults; the flags below change single figures.
    #[arg(long, value_enum, default_value = "25gbe")]
    network: NetworkName,
    /// One-way latency between hosts, in microseconds.
    #[arg(long, value_name = "US")]
    latency_us: Option<f64>,
    /// Bandwidth of each host's link, each direction, in Gb/s.
    #[arg(long, value_name = "GBPS")]
    bandwidth_gbps: Option<f64>,
    /// CPU time per message sent or received, in microseconds.
    #[arg(long, value_name = "US")]
    overhead_us: Option<f64>,
    /// Cores per host (0: a core per rank); ranks beyond them share the cores.
    #[arg(long, value_name = "C")]
    cores_per_host: Option<usize>,
    #[command(flatten)]
    cells: Cells,
    /// Force algorithms, as `collective=algorithm,...` (as `COBRE_TCP_ALGORITHMS`).
    #[arg(long, value_name = "SPEC")]
    algorithms: Option<String>,
    /// Write the results as JSON: {"ranks": P, "results": [...]}, as `bench` does.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

fn to_op(op: BenchOp) -> cobre_comm::algorithm::Op {
    use cobre_comm::algorithm::Op;
    match op {
        BenchOp::Allreduce => Op::Allreduce,
        BenchOp::Allgatherv => Op::Allgatherv,
        BenchOp::Broadcast => Op::Broadcast,
        BenchOp::Barrier => Op::Barrier,
    }
}

/// The simulated job the arguments describe.
fn job(args: &Args) -> Result<cobre_comm::model::Job, CliError> {
    use cobre_comm::model::{Job, Network};
    if args.ranks == 0 || args.ranks > 1 << 16 {
        return Err(CliError::usage(format!(
            "-n must be from 1 to 65536 (got {})",
            args.ranks
        )));
    }
    let mut network = match args.network {
        NetworkName::Loopback => Network::LOOPBACK,
        NetworkName::Ethernet25 => Network::ETHERNET_25G,
    };
    let positive = |name: &str, v: Option<f64>| -> Result<Option<f64>, CliError> {
        match v {
            Some(x) if !(x.is_finite() && x > 0.0) => Err(CliError::usage(format!(
                "--{name} must be a positive number (got {x})"
            ))),
            other => Ok(other),
        }
    };
    if let Some(us) = positive("latency-us", args.latency_us)? {
        network.latency_us = us;
    }
    if let Some(gbps) = positive("bandwidth-gbps", args.bandwidth_gbps)? {
        // Gb/s to bytes per microsecond.
        network.bandwidth = gbps * 1e3 / 8.0;
    }
    if let Some(us) = positive("overhead-us", args.overhead_us)? {
        network.overhead_us = us;
    }
    if let Some(cores) = args.cores_per_host {
        network.cores_per_host = cores;
    }
    let hosts = args.hosts.unwrap_or(match args.network {
        NetworkName::Loopback => 1,
        NetworkName::Ethernet25 => args.ranks,
    });
    if hosts == 0 || hosts > args.ranks {
        return Err(CliError::usage(format!(
            "--hosts must be from 1 to the number of ranks ({}), got {hosts}",
            args.ranks
        )));
    }
    let mut job = Job::new(args.ranks, hosts, network);
    if let Some(spec) = &args.algorithms {
        job.forced = cobre_comm::algorithm::Forced::parse(spec, cobre_comm::tcp_config::ALGORITHMS)
            .map_err(|why| CliError::usage(format!("--algorithms {spec:?}: expected {why}")))?;
    }
    Ok(job)
}

/// Runs `cobre-comm model`.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    args.cells.check()?;
    let job = job(args)?;
    let ops = args.cells.ops();
    let sizes = args.cells.config();
    let mut report = BenchReport {
        ranks: args.ranks,
        results: Vec::new(),
    };
    for op in ops {
        for bytes in message_sizes(&sizes, op) {
            let predicted = job.predict(to_op(op), bytes).map_err(CliError::new)?;
            let avg_us = predicted.avg_us;
            report.results.push(BenchRow {
                backend: "tcp".into(),
                op: op.name().into(),
                bytes,
                avg_us,
                min_us: avg_us,
                max_us: avg_us,
                iters: 1,
                connections: Some(predicted.connections),
            });
        }
    }
    println!(
        "cobre-comm model: tcp on {} simulated ranks over {} host(s); latency {} us, {:.1} Gb/s per host link, {} us per message",
        job.ranks,
        job.hosts,
        job.network.latency_us,
        job.network.bandwidth * 8.0 / 1e3,
        job.network.overhead_us
    );
    print!("{}", render_table(&report));
    println!("\n# connections per rank each call needs (the most of any rank)");
    for row in &report.results {
        if let Some(connections) = row.connections {
            println!("{:>10} {:>10} B {connections:>6}", row.op, row.bytes);
        }
    }
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::new(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(ExitCode::SUCCESS)
}
