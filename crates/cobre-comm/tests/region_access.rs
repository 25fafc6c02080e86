//! Safe code cannot race on a node-shared region across processes (shm, real processes):
//! a follower that writes, a leader that writes while others read, and a follower that
//! reads while the leader writes are each stopped with a message naming the rule, while
//! the allowed pattern (write, fence, read, fence, write, fence, read) works.

use std::time::Duration;

use cobre_comm::{Communicator, SharedMemoryProvider, SharedRegion, ShmBackend};
use cobre_comm_launcher::{Launcher, shm_env};

const CASE: &str = "COBRE_REGION_TEST_CASE";

fn caught(f: impl FnOnce()) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(()) => "no panic".into(),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "a panic without a message".into()),
    }
}

/// The rank's side; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    std::panic::set_hook(Box::new(|_| {})); // the messages are printed below
    let comm = ShmBackend::from_env().expect("shm communicator");
    let mut region = comm.create_shared_region::<u64>(1000).expect("region");
    let leader = comm.is_leader();
    match case.as_str() {
        "follower-writes" => {
            if !leader {
                println!("write: {}", caught(|| region.as_mut_slice()[0] = 7));
            }
        }
        "write-while-read" => {
            if leader {
                region.as_mut_slice().fill(1);
            }
            region.fence().unwrap();
            let sum: u64 = region.as_slice().iter().sum();
            println!("read: {sum}");
            comm.barrier().unwrap(); // every follower has read in this epoch
            if leader {
                println!("write: {}", caught(|| region.as_mut_slice()[0] = 2));
            }
        }
        "read-while-write" => {
            if leader {
                region.as_mut_slice().fill(3);
            }
            comm.barrier().unwrap(); // the leader has written in this epoch
            if !leader {
                println!(
                    "read: {}",
                    caught(|| {
                        let _ = region.as_slice()[0];
                    })
                );
            }
        }
        "allowed" => {
            for round in 1..=3_u64 {
                if leader {
                    region.as_mut_slice().fill(round);
                }
                region.fence().unwrap();
                let all = region.as_slice().iter().all(|&x| x == round);
                println!("round {round}: {all}");
                region.fence().unwrap();
            }
        }
        other => panic!("unknown case {other}"),
    }
}

fn run(case: &str, ranks: usize) -> Vec<String> {
    let report = Launcher::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .ranks(ranks)
        .rank_env(shm_env(ranks, Some(Duration::from_secs(20))))
        .env(CASE, case)
        .capture_stdout(true)
        .timeout(Duration::from_secs(60))
        .run()
        .expect("launch");
    assert!(report.success(), "{case}: {:?}", report.failure);
    report.ranks.into_iter().map(|r| r.stdout).collect()
}

fn said<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.find(key).map(|at| &l[at + key.len()..]))
        .unwrap_or_else(|| panic!("no {key:?} in {out}"))
}

#[test]
fn a_follower_cannot_write() {
    for (rank, out) in run("follower-writes", 3).iter().enumerate().skip(1) {
        let text = said(out, "write: ");
        assert!(
            text.contains(&format!("rank {rank} is not the node's leader")),
            "{text}"
        );
    }
}

#[test]
fn the_leader_cannot_write_while_followers_read() {
    let outputs = run("write-while-read", 3);
    for out in &outputs {
        assert_eq!(said(out, "read: "), "1000");
    }
    let text = said(&outputs[0], "write: ");
    assert!(
        text.contains("may be reading") && text.contains("fence()"),
        "{text}"
    );
}

#[test]
fn a_follower_cannot_read_while_the_leader_writes() {
    for out in run("read-while-write", 3).iter().skip(1) {
        let text = said(out, "read: ");
        assert!(text.contains("may be writing"), "{text}");
    }
}

#[test]
fn writing_and_reading_in_turns_works() {
    for out in run("allowed", 3) {
        for round in 1..=3 {
            assert_eq!(said(&out, &format!("round {round}: ")), "true", "{out}");
        }
    }
}
