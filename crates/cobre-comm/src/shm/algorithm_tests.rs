//! Every shm algorithm, forced, on jobs of 1 to 5 ranks run as threads of this process
//! sharing one segment in its memory: the whole exchange protocol (slots, generations,
//! flat and dissemination signalling, fingerprints, the futex) on the sizes that exercise
//! its edges, checked against plain loops.
//!
//! These are the tests that run under Miri (`cargo +nightly miri test --features shm
//! shm::algorithm_tests`), which checks every access to the segment for data races, bounds
//! and alignment; under Miri the payloads are smaller and the single-copy algorithms,
//! which need the `process_vm_readv` system call, are left out.

use std::sync::Arc;
use std::time::Duration;

use super::ShmBackend;
use super::config::{ALGORITHMS, ShmConfig, Signalling};
use super::exchange::Job;
use super::layout::{H_UNLINKED, Layout};
use super::segment::in_process;
use super::startup::write_header;
use crate::algorithm::{Algorithm, Forced};
use crate::collective_checks;
use crate::traits::Communicator;
use crate::types::{CommError, ReduceOp};

/// The smallest slot the configuration accepts: payloads above it go in several chunks.
const CHUNK: usize = 4096;
/// The longest payload, in elements: several chunks, smaller under Miri, which is slow.
const LONG: usize = if cfg!(miri) { 1100 } else { 70_000 };
/// Cores of the simulated node: jobs of more ranks run with no spinning, as they would.
const CORES: usize = 2;

/// Runs `body` on every rank of a job of `size` threads with `forced` algorithms and
/// `signalling`.
fn job(size: usize, forced: Forced, signalling: Signalling, body: fn(&ShmBackend)) {
    let layout = Layout {
        size,
        chunk: CHUNK,
        signalling,
    };
    let seg = in_process::segment(layout.len());
    write_header(&seg, &layout);
    // No name in /dev/shm to remove.
    seg.u32_at(H_UNLINKED)
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let ranks: Vec<_> = (0..size)
        .map(|rank| {
            let seg = in_process::share(&seg);
            std::thread::spawn(move || {
                let config = ShmConfig {
                    timeout: Duration::from_secs(60),
                    chunk_bytes: CHUNK,
                    algorithms: forced,
                    signalling: Some(signalling),
                    ..ShmConfig::new("/in-process", rank, size)
                };
                let job = Job::in_process(seg, &config, CORES).expect("join");
                body(&ShmBackend::on_job(Arc::new(job)));
            })
        })
        .collect();
    drop(seg);
    for (rank, handle) in ranks.into_iter().enumerate() {
        assert!(
            handle.join().is_ok(),
            "rank {rank} of {size} failed with {forced}, {signalling:?} signalling"
        );
    }
}

fn gathers(comm: &ShmBackend) {
    collective_checks::gathers(comm, LONG / 2);
}

fn reductions(comm: &ShmBackend) {
    collective_checks::reductions(comm, &[1, comm.size() + 1, 513, LONG]);
}

fn broadcasts(comm: &ShmBackend) {
    collective_checks::broadcasts(comm, &[0, 1, 1001, 4 * LONG]);
}

/// Every rank but the last calls an allreduce of 3 elements, the last one of 4: every rank
/// is told what differed, and later calls fail with the same error instead of running on
/// a job whose ranks are out of step.
fn mismatch(comm: &ShmBackend) {
    let (me, n) = (comm.rank(), comm.size());
    let len = if me + 1 == n { 4 } else { 3 };
    let mut recv = vec![0.0; len];
    let first = comm.allreduce(&vec![1.0_f64; len], &mut recv, ReduceOp::Sum);
    match &first {
        Err(CommError::CollectiveMismatch { message, .. }) => {
            assert!(
                message.contains("different element counts"),
                "rank {me}: {message}"
            );
        }
        other => panic!("rank {me} of {n}: expected a mismatch, got {other:?}"),
    }
    let mut recv = [0.0];
    let later = comm.allreduce(&[1.0_f64], &mut recv, ReduceOp::Sum);
    assert_eq!(later.err(), first.err(), "rank {me} of {n}: the call after");
}

/// The `i`-th algorithm of every collective (its last one when it has fewer); under Miri,
/// never single-copy.
fn column(i: usize) -> Forced {
    ALGORITHMS.iter().fold(Forced::NONE, |forced, (op, algs)| {
        let mut pick = algs[i.min(algs.len() - 1)];
        if cfg!(miri) && pick == Algorithm::SingleCopy {
            pick = algs[0];
        }
        forced.with(*op, Some(pick))
    })
}

#[test]
fn every_forced_algorithm_on_1_to_5_ranks_with_both_signallings() {
    let columns = ALGORITHMS.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
    let sizes: &[usize] = if cfg!(miri) {
        &[1, 2, 3]
    } else {
        &[1, 2, 3, 4, 5]
    };
    for i in 0..columns {
        for &size in sizes {
            for signalling in [Signalling::Flat, Signalling::Dissemination] {
                job(size, column(i), signalling, |comm| {
                    gathers(comm);
                    reductions(comm);
                    broadcasts(comm);
                });
            }
        }
    }
}

#[test]
fn a_mismatch_is_reported_on_every_rank_and_sticks() {
    for size in [2, 3] {
        for signalling in [Signalling::Flat, Signalling::Dissemination] {
            job(size, Forced::NONE, signalling, mismatch);
        }
    }
}

/// A broadcast large enough that the readers write their buffers with streaming stores
/// (`broadcast::STREAMING_MIN_JOB_BYTES` on 2 ranks or more), and an allreduce as large,
/// at lengths that leave a head and a tail outside the 16-byte lanes.
fn large(comm: &ShmBackend) {
    let bytes = super::broadcast::STREAMING_MIN_JOB_BYTES / 2 + 13;
    collective_checks::broadcasts(comm, &[bytes]);
    collective_checks::reductions(comm, &[bytes / 8]);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "16 MiB per rank is beyond Miri's pace; `sfence` beyond its reach"
)]
fn large_collectives_on_2_and_3_ranks() {
    let forced = Forced::NONE
        .with(
            crate::algorithm::Op::Allreduce,
            Some(Algorithm::ReduceScatterAllgather),
        )
        .with(crate::algorithm::Op::Broadcast, Some(Algorithm::Direct));
    for size in [2, 3] {
        job(size, forced, Signalling::Flat, large);
    }
}
