//! Checks of the four collectives with valid arguments.

use cobre_comm::{Communicator, ReduceOp, SharedMemoryProvider};

use crate::values::{TestValue, contribution, first_difference, within_sum_bound};
use crate::{CheckFn, Ctx};

/// Distinct salts keep the data sets of different checks apart.
const SALT_GATHER: u64 = 0x1000;
const SALT_REDUCE: u64 = 0x2000;
const SALT_BCAST: u64 = 0x3000;

pub(crate) fn rank_and_size<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let (rank, size) = (ctx.rank, ctx.size);
    ctx.expect(size >= 1, || {
        format!("size() is {size}, expected at least 1")
    });
    ctx.expect(rank < size, || {
        format!("rank() is {rank}, expected less than size() = {size}")
    });
    let counts = vec![1; size];
    let displs: Vec<usize> = (0..size).collect();
    let mut ranks = vec![usize::MAX as u64; size];
    if ctx
        .ok(
            "allgatherv of ranks",
            ctx.comm
                .allgatherv(&[rank as u64], &mut ranks, &counts, &displs),
        )
        .is_some()
    {
        let expected: Vec<u64> = (0..size as u64).collect();
        ctx.expect(ranks == expected, || {
            format!("ranks gathered from every rank are {ranks:?}, expected {expected:?} (each rank exactly once, in order)")
        });
    }
}

pub(crate) fn barrier<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    for i in 0..64 {
        if ctx
            .ok(&format!("barrier #{i}"), ctx.comm.barrier())
            .is_none()
        {
            return;
        }
    }
}

/// Runs one allgatherv of `T` with the given counts and displacements and checks every
/// target range, and that elements outside them are untouched.
pub(crate) fn gather_and_check<C: Communicator, T: TestValue>(
    ctx: &mut Ctx<'_, C>,
    label: &str,
    counts: &[usize],
    displs: &[usize],
    salt: u64,
) {
    let seed = ctx.opts.seed;
    let recv_len = counts
        .iter()
        .zip(displs)
        .map(|(c, d)| c + d)
        .max()
        .unwrap_or(0)
        + 3;
    let sentinel: Vec<T> = contribution(seed, usize::MAX, salt ^ 0xDEAD, recv_len);
    let mut recv = sentinel.clone();
    let send: Vec<T> = contribution(seed, ctx.rank, salt, counts[ctx.rank]);
    if ctx
        .ok(label, ctx.comm.allgatherv(&send, &mut recv, counts, displs))
        .is_none()
    {
        return;
    }
    let mut expected = sentinel;
    for r in 0..ctx.size {
        let part: Vec<T> = contribution(seed, r, salt, counts[r]);
        expected[displs[r]..displs[r] + counts[r]].copy_from_slice(&part);
    }
    if let Some(i) = first_difference(&recv, &expected) {
        let owner = (0..ctx.size).find(|&r| (displs[r]..displs[r] + counts[r]).contains(&i));
        let place = owner.map_or_else(
            || "outside every target range (must stay untouched)".to_string(),
            |r| format!("in rank {r}'s range"),
        );
        ctx.fail(format!(
            "{label} ({} x {}): element {i} {place} is {:?}, expected {:?}",
            recv.len(),
            T::NAME,
            recv.get(i),
            expected.get(i)
        ));
    }
}

fn uneven<C: Communicator, T: TestValue>(ctx: &mut Ctx<'_, C>) {
    let size = ctx.size;
    let counts: Vec<usize> = (0..size).map(|r| 1 + 3 * r + (r % 2) * 5).collect();
    let displs = prefix_sums(&counts);
    gather_and_check::<C, T>(
        ctx,
        "allgatherv with uneven counts",
        &counts,
        &displs,
        SALT_GATHER + 1,
    );
}

fn zero_length<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let size = ctx.size;
    // Even ranks contribute nothing.
    let counts: Vec<usize> = (0..size)
        .map(|r| if r % 2 == 0 { 0 } else { r + 1 })
        .collect();
    gather_and_check::<C, f64>(
        ctx,
        "allgatherv with empty even ranks",
        &counts,
        &prefix_sums(&counts),
        SALT_GATHER + 2,
    );
    // Only the last rank contributes.
    let counts: Vec<usize> = (0..size)
        .map(|r| if r + 1 == size { 5 } else { 0 })
        .collect();
    gather_and_check::<C, u32>(
        ctx,
        "allgatherv with only the last rank",
        &counts,
        &prefix_sums(&counts),
        SALT_GATHER + 3,
    );
    // Nobody contributes.
    let counts = vec![0; size];
    gather_and_check::<C, i64>(
        ctx,
        "allgatherv with all counts zero",
        &counts,
        &vec![0; size],
        SALT_GATHER + 4,
    );
}

fn gaps<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let size = ctx.size;
    // Reversed order with gaps in between: rank r lands at (size - 1 - r) * stride + 2.
    let counts: Vec<usize> = (0..size).map(|r| 2 + r).collect();
    let stride = size + 4;
    let displs: Vec<usize> = (0..size).map(|r| (size - 1 - r) * stride + 2).collect();
    gather_and_check::<C, f64>(
        ctx,
        "allgatherv with reversed, gapped displacements",
        &counts,
        &displs,
        SALT_GATHER + 5,
    );
    gather_and_check::<C, u8>(
        ctx,
        "allgatherv of u8 with gaps",
        &counts,
        &displs,
        SALT_GATHER + 6,
    );
}

fn large<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let size = ctx.size;
    let base = ctx.opts.max_len / size;
    // Uneven counts that add up to exactly `max_len`: the largest gather the options allow
    // (8 MiB by default, where the shm backend starts writing with streaming stores).
    let mut counts: Vec<usize> = (0..size).map(|r| base.saturating_sub(17 * r)).collect();
    counts[0] += ctx.opts.max_len - counts.iter().sum::<usize>();
    gather_and_check::<C, f64>(
        ctx,
        "large allgatherv",
        &counts,
        &prefix_sums(&counts),
        SALT_GATHER + 7,
    );
    let counts: Vec<usize> = (0..size).map(|r| base / 2 + 3 * r + 1).collect();
    gather_and_check::<C, u8>(
        ctx,
        "large allgatherv of u8",
        &counts,
        &prefix_sums(&counts),
        SALT_GATHER + 8,
    );
}

fn prefix_sums(counts: &[usize]) -> Vec<usize> {
    counts
        .iter()
        .scan(0, |acc, &c| {
            let start = *acc;
            *acc += c;
            Some(start)
        })
        .collect()
}

macro_rules! per_type {
    ($f:ident, $c:ty, $prefix:expr) => {
        vec![
            (format!("{} f32", $prefix), $f::<$c, f32> as CheckFn<$c>),
            (format!("{} f64", $prefix), $f::<$c, f64>),
            (format!("{} i32", $prefix), $f::<$c, i32>),
            (format!("{} i64", $prefix), $f::<$c, i64>),
            (format!("{} u8", $prefix), $f::<$c, u8>),
            (format!("{} u32", $prefix), $f::<$c, u32>),
            (format!("{} u64", $prefix), $f::<$c, u64>),
        ]
    };
}

pub(crate) fn allgatherv_checks<C: Communicator + SharedMemoryProvider>()
-> Vec<(String, CheckFn<C>)> {
    let mut checks = per_type!(uneven, C, "allgatherv uneven");
    checks.push((
        "allgatherv zero-length contributions".into(),
        zero_length::<C>,
    ));
    checks.push(("allgatherv non-contiguous displacements".into(), gaps::<C>));
    checks.push(("allgatherv large".into(), large::<C>));
    checks
}

const OP_SUM: u8 = 0;
const OP_MIN: u8 = 1;
const OP_MAX: u8 = 2;

const fn op_of(code: u8) -> ReduceOp {
    match code {
        OP_SUM => ReduceOp::Sum,
        OP_MIN => ReduceOp::Min,
        _ => ReduceOp::Max,
    }
}

/// The rank-order fold of every rank's contribution (computed by the kit's own oracle,
/// [`TestValue::combine`], never by the library), and the sum of absolute values.
pub(crate) fn reference_reduce<T: TestValue>(
    seed: u64,
    size: usize,
    salt: u64,
    len: usize,
    op: ReduceOp,
) -> (Vec<T>, Vec<f64>) {
    let mut acc: Vec<T> = contribution(seed, 0, salt, len);
    let mut abs: Vec<f64> = acc.iter().map(|v| v.to_f64().abs()).collect();
    for r in 1..size {
        let next: Vec<T> = contribution(seed, r, salt, len);
        for (a, v) in abs.iter_mut().zip(&next) {
            *a += v.to_f64().abs();
        }
        for (a, &v) in acc.iter_mut().zip(&next) {
            *a = a.combine(v, op);
        }
    }
    (acc, abs)
}

/// Checks an allreduce result against the reference; float sums within a rounding bound
/// when the backend does not promise the exact fold.
pub(crate) fn check_reduced<C: Communicator, T: TestValue>(
    ctx: &mut Ctx<'_, C>,
    label: &str,
    got: &[T],
    salt: u64,
    op: ReduceOp,
) {
    let (expected, abs) = reference_reduce::<T>(ctx.opts.seed, ctx.size, salt, got.len(), op);
    let exact = ctx.opts.bit_exact_sum || op != ReduceOp::Sum;
    let bad = if exact {
        first_difference(got, &expected)
    } else {
        (0..got.len()).find(|&i| !within_sum_bound(got[i], expected[i], abs[i], ctx.size))
    };
    if let Some(i) = bad {
        ctx.fail(format!(
            "{label}: element {i} of {} is {:?}, expected {:?} ({})",
            got.len(),
            got[i],
            expected[i],
            if exact {
                "the rank-order fold, bit for bit"
            } else {
                "the sum within rounding"
            }
        ));
    }
}

fn allreduce_check<C: Communicator, T: TestValue, const OP: u8>(ctx: &mut Ctx<'_, C>) {
    let op = op_of(OP);
    let mut lengths = vec![1, 2, 17, 4099, 65_537];
    if op == ReduceOp::Sum {
        lengths.push(ctx.opts.max_len);
    }
    lengths.retain(|&l| l >= 1 && l <= ctx.opts.max_len.max(1));
    for (i, len) in lengths.into_iter().enumerate() {
        let salt = SALT_REDUCE + (u64::from(OP) << 8) + i as u64;
        let send: Vec<T> = contribution(ctx.opts.seed, ctx.rank, salt, len);
        let mut recv = vec![T::default(); len];
        let label = format!("allreduce {op} of {len} x {}", T::NAME);
        if ctx
            .ok(&label, ctx.comm.allreduce(&send, &mut recv, op))
            .is_none()
        {
            return;
        }
        check_reduced(ctx, &label, &recv, salt, op);
        ctx.expect_identical_everywhere(&label, &recv);
    }
}

pub(crate) fn allreduce_checks<C: Communicator + SharedMemoryProvider>() -> Vec<(String, CheckFn<C>)>
{
    let mut checks = Vec::new();
    macro_rules! ops {
        ($($code:ident),*) => {$(
            let name = op_of($code).name();
            checks.extend(vec![
                (format!("allreduce {name} f32"), allreduce_check::<C, f32, $code> as CheckFn<C>),
                (format!("allreduce {name} f64"), allreduce_check::<C, f64, $code>),
                (format!("allreduce {name} i32"), allreduce_check::<C, i32, $code>),
                (format!("allreduce {name} i64"), allreduce_check::<C, i64, $code>),
                (format!("allreduce {name} u8"), allreduce_check::<C, u8, $code>),
                (format!("allreduce {name} u32"), allreduce_check::<C, u32, $code>),
                (format!("allreduce {name} u64"), allreduce_check::<C, u64, $code>),
            ]);
        )*};
    }
    ops!(OP_SUM, OP_MIN, OP_MAX);
    checks
}

fn broadcast_from_every_root<C: Communicator, T: TestValue>(ctx: &mut Ctx<'_, C>) {
    let lengths = [0, 1, 1001, ctx.opts.max_len / 2];
    for root in 0..ctx.size {
        for (i, &len) in lengths.iter().enumerate() {
            let salt = SALT_BCAST + ((root as u64) << 8) + i as u64;
            let expected: Vec<T> = contribution(ctx.opts.seed, root, salt, len);
            let mut buf = if ctx.rank == root {
                expected.clone()
            } else {
                contribution(ctx.opts.seed, ctx.rank, salt ^ 0xBAD, len)
            };
            let label = format!("broadcast of {len} x {} from root {root}", T::NAME);
            if ctx.ok(&label, ctx.comm.broadcast(&mut buf, root)).is_none() {
                return;
            }
            if let Some(j) = first_difference(&buf, &expected) {
                ctx.fail(format!(
                    "{label}: element {j} is {:?}, expected root's {:?}",
                    buf[j], expected[j]
                ));
            }
        }
    }
}

pub(crate) fn broadcast_checks<C: Communicator + SharedMemoryProvider>() -> Vec<(String, CheckFn<C>)>
{
    vec![
        (
            "broadcast f64 from every root".into(),
            broadcast_from_every_root::<C, f64> as CheckFn<C>,
        ),
        (
            "broadcast u8 from every root".into(),
            broadcast_from_every_root::<C, u8>,
        ),
        (
            "broadcast i32 from every root".into(),
            broadcast_from_every_root::<C, i32>,
        ),
    ]
}
