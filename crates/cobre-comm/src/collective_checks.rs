//! Checks of the collectives against plain loops, for the tests that run every algorithm
//! of a backend on jobs whose ranks are threads of the test (`tcp/algorithm_tests.rs`,
//! `shm/algorithm_tests.rs`). Every rank of a job calls the same check.

use crate::traits::Communicator;
use crate::types::ReduceOp;

/// A value of rank `r` at index `i` whose sums round differently in different orders.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn value(r: usize, i: usize) -> f64 {
    let magnitude = [1e16, 1.0, -1e16, 3.5, 1e-3][(r + i) % 5];
    magnitude * (1.0 + (r * 31 + i * 7) as f64 / 97.0)
}

/// Allgathervs with uneven counts (zero for some ranks, for all, for all but the last,
/// about `long` for every rank), back to back, into reversed, gapped places, and each
/// way on every other rank.
pub(crate) fn gathers<C: Communicator>(comm: &C, long: usize) {
    let (me, n) = (comm.rank(), comm.size());
    let patterns: Vec<Vec<usize>> = vec![
        (0..n).map(|r| 1 + 3 * r + (r % 2) * 5).collect(),
        (0..n).map(|r| if r % 2 == 0 { 0 } else { r + 1 }).collect(),
        (0..n).map(|r| if r + 1 == n { 5 } else { 0 }).collect(),
        vec![0; n],
        (0..n).map(|r| long + r).collect(),
    ];
    for counts in patterns {
        // Back to back in rank order after two spare elements (the usual layout, which
        // some algorithms gather in place), and reversed with gaps in between.
        let back_to_back: Vec<usize> = (0..n)
            .map(|r| 2 + counts[..r].iter().sum::<usize>())
            .collect();
        let stride = counts.iter().max().copied().unwrap_or(0) + 3;
        let reversed: Vec<usize> = (0..n).map(|r| (n - 1 - r) * stride + 2).collect();
        // Each rank lays out its own `recv`: one may gather in place while another does not.
        let mixed = if me % 2 == 0 {
            back_to_back.clone()
        } else {
            reversed.clone()
        };
        for displs in [back_to_back, reversed, mixed] {
            gather(comm, &counts, &displs);
        }
    }
}

/// One allgatherv of `counts[r]` elements from each rank `r` to `displs[r]`, checked.
fn gather<C: Communicator>(comm: &C, counts: &[usize], displs: &[usize]) {
    let (me, n) = (comm.rank(), comm.size());
    let len = (0..n).map(|r| displs[r] + counts[r]).max().unwrap_or(0) + 2;
    let send: Vec<u32> = (0..counts[me]).map(|i| (me * 100_000 + i) as u32).collect();
    let mut recv = vec![u32::MAX; len];
    comm.allgatherv(&send, &mut recv, counts, displs)
        .expect("allgatherv");
    let mut expected = vec![u32::MAX; len];
    for r in 0..n {
        for i in 0..counts[r] {
            expected[displs[r] + i] = (r * 100_000 + i) as u32;
        }
    }
    assert_eq!(
        recv, expected,
        "rank {me} of {n}, counts {counts:?}, displs {displs:?}"
    );
}

/// Allreduces of `lengths` elements: `Sum` of floats bit for bit the rank-order fold,
/// `Min` and `Max` of integers.
pub(crate) fn reductions<C: Communicator>(comm: &C, lengths: &[usize]) {
    let (me, n) = (comm.rank(), comm.size());
    for &len in lengths {
        let send: Vec<f64> = (0..len).map(|i| value(me, i)).collect();
        let mut recv = vec![0.0; len];
        comm.allreduce(&send, &mut recv, ReduceOp::Sum)
            .expect("allreduce");
        let exact = (0..len).all(|i| {
            let fold = (1..n).fold(value(0, i), |acc, r| acc + value(r, i));
            recv[i].to_bits() == fold.to_bits()
        });
        assert!(
            exact,
            "rank {me} of {n}: sum of {len} is not the rank-order fold"
        );
        let column = |i: usize| (0..n).map(move |r| ((r * 7 + i) % 11) as i32 - 5);
        for op in [ReduceOp::Min, ReduceOp::Max] {
            let send: Vec<i32> = (0..len).map(|i| ((me * 7 + i) % 11) as i32 - 5).collect();
            let mut recv = vec![0; len];
            comm.allreduce(&send, &mut recv, op).expect("allreduce");
            let expected: Vec<i32> = (0..len)
                .map(|i| match op {
                    ReduceOp::Min => column(i).min().unwrap_or(0),
                    _ => column(i).max().unwrap_or(0),
                })
                .collect();
            assert_eq!(recv, expected, "rank {me} of {n}: {op:?} of {len}");
        }
    }
}

/// Broadcasts of `lengths` bytes from every root, then a barrier.
pub(crate) fn broadcasts<C: Communicator>(comm: &C, lengths: &[usize]) {
    let (me, n) = (comm.rank(), comm.size());
    for root in 0..n {
        for &len in lengths {
            let expected: Vec<u8> = (0..len).map(|i| (i * 13 + root) as u8).collect();
            let mut buf = if me == root {
                expected.clone()
            } else {
                vec![0xEE; len]
            };
            comm.broadcast(&mut buf, root).expect("broadcast");
            assert!(
                buf == expected,
                "rank {me} of {n}: broadcast of {len} from {root}"
            );
        }
    }
    comm.barrier().expect("barrier");
}
