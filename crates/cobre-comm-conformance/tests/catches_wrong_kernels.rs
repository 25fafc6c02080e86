//! The kit's reduction oracle is its own: a backend whose reduction kernel is wrong fails
//! the kit even though the kit never calls the library's kernels.
//!
//! The backend under test is a test double of several ranks, one thread each, exchanging
//! through shared buffers; its allreduce folds with a kernel chosen by the test: the
//! library's, or one that compares unsigned integers as signed (an MPI library bug this
//! kit once found), or one that folds in reverse rank order.

use std::sync::{Arc, Barrier, Mutex};

use cobre_comm::precondition::{check_allgatherv, check_allreduce, check_broadcast};
use cobre_comm::reduce::check_reduction;
use cobre_comm::{
    CommData, CommError, Communicator, ElementType, HeapRegion, LocalBackend, LocalCommKind,
    ReduceOp, SharedMemoryProvider,
};
use cobre_comm_conformance::{Options, Report, run_suite};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kernel {
    /// `cobre_comm::reduce::reduce_into`, in rank order.
    Library,
    /// Min and Max of unsigned integers compare their bits as signed integers.
    SignedUnsigned,
    /// Folds the contributions from the last rank to the first.
    ReverseOrder,
}

/// What the ranks of one job share.
struct World {
    size: usize,
    kernel: Kernel,
    slots: Mutex<Vec<Vec<u8>>>,
    barrier: Barrier,
}

struct Rank {
    world: Arc<World>,
    rank: usize,
}

impl Rank {
    /// Publishes this rank's bytes, waits for everyone, reads every rank's, and waits
    /// again so the slots can be reused.
    fn exchange(&self, mine: &[u8], mut read: impl FnMut(&[Vec<u8>])) {
        self.world.slots.lock().unwrap()[self.rank] = mine.to_vec();
        self.world.barrier.wait();
        read(&self.world.slots.lock().unwrap());
        self.world.barrier.wait();
    }
}

/// Reinterprets the bytes of an unsigned slice as its signed twin and back, to model the
/// signed-comparison bug.
fn signed_pick<T: CommData>(acc: &mut [T], next: &[T], op: ReduceOp) -> bool {
    fn fold<S: Ord + cobre_comm::bytemuck::Pod>(acc: &mut [u8], next: &[u8], op: ReduceOp) {
        let acc: &mut [S] = cobre_comm::bytemuck::cast_slice_mut(acc);
        let next: &[S] = cobre_comm::bytemuck::cast_slice(next);
        for (a, &b) in acc.iter_mut().zip(next) {
            *a = if op == ReduceOp::Min {
                (*a).min(b)
            } else {
                (*a).max(b)
            };
        }
    }
    if op == ReduceOp::Sum {
        return false;
    }
    let a = cobre_comm::datatype::as_bytes_mut(acc);
    let b = cobre_comm::datatype::as_bytes(next);
    match ElementType::of::<T>() {
        ElementType::U8 => fold::<i8>(a, b, op),
        ElementType::U32 => fold::<i32>(a, b, op),
        ElementType::U64 => fold::<i64>(a, b, op),
        _ => return false,
    }
    true
}

impl Communicator for Rank {
    fn allgatherv<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError> {
        check_allgatherv(
            self.rank,
            self.size(),
            send.len(),
            recv.len(),
            counts,
            displs,
        )?;
        let out = cobre_comm::datatype::as_bytes_mut(recv);
        let elem = std::mem::size_of::<T>();
        self.exchange(cobre_comm::datatype::as_bytes(send), |slots| {
            for (r, data) in slots.iter().enumerate() {
                out[displs[r] * elem..][..data.len()].copy_from_slice(data);
            }
        });
        Ok(())
    }

    fn allreduce<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        check_allreduce(send.len(), recv.len())?;
        check_reduction::<T>(op)?;
        let kernel = self.world.kernel;
        let mut result = Ok(());
        self.exchange(cobre_comm::datatype::as_bytes(send), |slots| {
            let parts: Vec<Vec<T>> = slots
                .iter()
                .map(|bytes| {
                    bytes
                        .chunks_exact(std::mem::size_of::<T>())
                        .map(cobre_comm::bytemuck::pod_read_unaligned)
                        .collect()
                })
                .collect();
            let order: Vec<usize> = if kernel == Kernel::ReverseOrder {
                (0..parts.len()).rev().collect()
            } else {
                (0..parts.len()).collect()
            };
            recv.copy_from_slice(&parts[order[0]]);
            for &r in &order[1..] {
                if kernel == Kernel::SignedUnsigned && signed_pick(recv, &parts[r], op) {
                    continue;
                }
                if let Err(e) = cobre_comm::reduce::reduce_into(recv, &parts[r], op) {
                    result = Err(e);
                }
            }
        });
        result
    }

    fn broadcast<T: CommData>(&self, buf: &mut [T], root: usize) -> Result<(), CommError> {
        check_broadcast(root, self.size())?;
        let mine = if self.rank == root {
            cobre_comm::datatype::as_bytes(buf).to_vec()
        } else {
            Vec::new()
        };
        let out = cobre_comm::datatype::as_bytes_mut(buf);
        self.exchange(&mine, |slots| out.copy_from_slice(&slots[root]));
        Ok(())
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.world.barrier.wait();
        Ok(())
    }

    fn abort(&self, error_code: i32) -> ! {
        std::process::exit(error_code)
    }

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.world.size
    }
}

impl SharedMemoryProvider for Rank {
    type Region<T: CommData> = HeapRegion<T>;

    fn create_shared_region<T: CommData>(&self, count: usize) -> Result<HeapRegion<T>, CommError> {
        HeapRegion::new(count)
    }

    fn split_local(&self) -> Result<LocalCommKind, CommError> {
        LocalBackend.split_local()
    }

    fn is_leader(&self) -> bool {
        true
    }
}

/// Runs the suite on every rank of a job of `size` threads; one report per rank.
fn run(size: usize, kernel: Kernel) -> Vec<Report> {
    let world = Arc::new(World {
        size,
        kernel,
        slots: Mutex::new(vec![Vec::new(); size]),
        barrier: Barrier::new(size),
    });
    let options = Options {
        max_len: 4096,
        sequence_len: 200,
        ..Options::default()
    };
    let ranks: Vec<_> = (0..size)
        .map(|rank| {
            let world = Arc::clone(&world);
            let options = options.clone();
            std::thread::spawn(move || run_suite(&Rank { world, rank }, &options))
        })
        .collect();
    ranks.into_iter().map(|h| h.join().unwrap()).collect()
}

fn failed(reports: &[Report]) -> Vec<String> {
    let mut names: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.results
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.name.clone())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_double_with_the_library_kernel_passes_on_1_to_4_ranks() {
    for size in 1..=4 {
        assert_eq!(
            failed(&run(size, Kernel::Library)),
            Vec::<String>::new(),
            "{size} ranks"
        );
    }
}

#[test]
fn unsigned_integers_compared_as_signed_fail_min_and_max() {
    for size in [2, 3] {
        let failed = failed(&run(size, Kernel::SignedUnsigned));
        for name in ["allreduce min u8", "allreduce max u32", "allreduce max u64"] {
            assert!(
                failed.iter().any(|n| n == name),
                "{size} ranks: {name} passed: {failed:?}"
            );
        }
        assert!(
            failed
                .iter()
                .all(|n| n.starts_with("allreduce") || n == "mixed sequence"),
            "{size} ranks: {failed:?}"
        );
    }
}

#[test]
fn a_sum_out_of_rank_order_fails_where_the_fold_is_promised_bit_for_bit() {
    // The default options promise the exact rank-order fold (local, shm, tcp).
    let failed = failed(&run(3, Kernel::ReverseOrder));
    assert!(
        failed.iter().any(|n| n == "allreduce sum f64"),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|n| n == "allreduce sum f32"),
        "{failed:?}"
    );
    assert!(
        !failed.iter().any(|n| n == "allreduce sum i64"),
        "integer sums are exact: {failed:?}"
    );
}
