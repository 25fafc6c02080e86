//! `kill -9` at random moments: 30 trials per backend (`shm`, `tcp`), each killing a random
//! rank of a 3- or 4-rank job at a random call of a mixed sequence of collectives (from
//! 8 bytes to 1 MiB, so some die in the middle of a large transfer). Every survivor must
//! report the right rank within 2 s, and nothing of the job may be left in `/dev/shm`.
//! On tcp a third of the trials force the multi-round algorithms (Bruck, binomial) and
//! another third the ring, so that ranks die between rounds too.
//!
//! The ranks are this test binary, re-executed through the launcher with
//! `stop_on_failure(false)`, so the survivors are left to notice the loss themselves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cobre_comm::{BackendKind, Communicator, ReduceOp, create_communicator};
use cobre_comm_launcher::{Launcher, Outcome, shm_env, tcp_env};

const VICTIM: &str = "COBRE_KILL_TEST_VICTIM";
const MOMENT: &str = "COBRE_KILL_TEST_MOMENT";
const TRIALS: u64 = 30;
/// What tcp trials force, by `seed`: the default picks, the log-p algorithms, the ring.
const TCP_FORCED: [&str; 3] = [
    "",
    "allreduce=bruck,allgatherv=bruck,broadcast=binomial",
    "allgatherv=ring",
];

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A small deterministic generator (splitmix64), so a failing trial can be replayed from
/// the seed it prints.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The rank's side; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(victim) = std::env::var(VICTIM) else {
        return;
    };
    let victim: usize = victim.parse().unwrap();
    let moment: usize = std::env::var(MOMENT).unwrap().parse().unwrap();
    let comm = create_communicator(BackendKind::Auto).expect("communicator");
    let (rank, size) = (comm.rank(), comm.size());
    let lengths = [1_usize, 8, 1000, 32 << 10, 128 << 10];
    let mut buffer = vec![0.0_f64; 128 << 10];
    let mut out = vec![0.0_f64; (128 << 10) * size];
    for i in 0..100_000 {
        if rank == victim && i == moment {
            println!("dying at {}", now_ns());
            let me = rustix::process::getpid();
            let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        }
        let len = lengths[i % lengths.len()];
        buffer[..len].fill(i as f64);
        let result = match i % 4 {
            0 => comm.allreduce(&buffer[..len], &mut out[..len], ReduceOp::Sum),
            1 => {
                let counts = vec![len; size];
                let displs: Vec<usize> = (0..size).map(|r| r * len).collect();
                comm.allgatherv(&buffer[..len], &mut out[..len * size], &counts, &displs)
            }
            2 => comm.broadcast(&mut buffer[..len], i % size),
            _ => comm.barrier(),
        };
        if let Err(e) = result {
            println!("error at {}: {e}", now_ns());
            return;
        }
    }
    panic!("rank {rank}: 100000 calls and no error, but rank {victim} was to die at call {moment}");
}

fn leftovers(name: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| f.starts_with(name.trim_start_matches('/')))
                .collect()
        })
        .unwrap_or_default()
}

fn trial(backend: &str, seed: u64) {
    let ranks = 3 + (mix(seed) % 2) as usize;
    let victim = (mix(seed ^ 1) % ranks as u64) as usize;
    let moment = (mix(seed ^ 2) % 120) as usize;
    let forced = if backend == "tcp" {
        TCP_FORCED[(mix(seed ^ 3) % 3) as usize]
    } else {
        ""
    };
    let what = format!(
        "{backend} trial seed {seed}: rank {victim} of {ranks} killed at call {moment} ({})",
        if forced.is_empty() {
            "default algorithms"
        } else {
            forced
        }
    );
    let timeout = Some(Duration::from_secs(20));
    let env = if backend == "shm" {
        shm_env(ranks, timeout)
    } else {
        tcp_env(ranks, timeout).expect("a free port")
    };
    let shm_name = env[0]
        .iter()
        .find(|(k, _)| k == "COBRE_SHM_NAME")
        .map(|(_, v)| v.clone());
    let mut env = env;
    if !forced.is_empty() {
        for vars in &mut env {
            vars.push((
                cobre_comm::tcp_config::ENV_ALGORITHMS.to_string(),
                forced.to_string(),
            ));
        }
    }
    let report = Launcher::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .ranks(ranks)
        .rank_env(env)
        .env(VICTIM, victim.to_string())
        .env(MOMENT, moment.to_string())
        .capture_stdout(true)
        .stop_on_failure(false)
        .timeout(Duration::from_secs(40))
        .run()
        .expect("launch");
    let victim_report = &report.ranks[victim];
    assert_eq!(
        victim_report.outcome,
        Outcome::Signaled(9),
        "{what}: the victim: {}",
        victim_report.stdout
    );
    let died: u128 = victim_report
        .stdout
        .lines()
        .find_map(|l| l[l.find("dying at ")? + 9..].trim().parse().ok())
        .unwrap_or_else(|| panic!("{what}: the victim did not say when it died"));
    for survivor in report.ranks.iter().filter(|r| r.rank != victim) {
        let out = &survivor.stdout;
        assert_eq!(
            survivor.outcome,
            Outcome::Exited(0),
            "{what}: rank {}: {out}",
            survivor.rank
        );
        let line = out
            .lines()
            .find_map(|l| l.find("error at ").map(|at| &l[at + 9..]))
            .unwrap_or_else(|| panic!("{what}: rank {} reported nothing: {out}", survivor.rank));
        let (at, error) = line.split_once(": ").expect("time: error");
        let at: u128 = at.parse().expect("a time");
        let delay = Duration::from_nanos(at.saturating_sub(died) as u64);
        assert!(
            delay < Duration::from_secs(2),
            "{what}: rank {} took {delay:?}: {error}",
            survivor.rank
        );
        assert!(
            error.contains(&format!("lost rank {victim}:")),
            "{what}: rank {} blamed the wrong rank: {error}",
            survivor.rank
        );
    }
    if let Some(name) = shm_name {
        assert_eq!(
            leftovers(&name),
            Vec::<String>::new(),
            "{what}: left in /dev/shm"
        );
    }
}

fn campaign(backend: &str) {
    let base = std::env::var("COBRE_KILL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ns() as u64);
    println!("{backend} campaign: base seed {base} (set COBRE_KILL_TEST_SEED to replay)");
    for k in 0..TRIALS {
        trial(backend, base.wrapping_add(k));
    }
}

#[test]
fn kill_minus_9_at_random_moments_on_shm() {
    campaign("shm");
}

#[test]
fn kill_minus_9_at_random_moments_on_tcp() {
    campaign("tcp");
}
