//! A long, seeded sequence of collectives of mixed kinds, types and sizes, each checked
//! against the locally computed reference.

use cobre_comm::{Communicator, ReduceOp};

use crate::Ctx;
use crate::collectives::{check_reduced, gather_and_check};
use crate::values::{TestValue, contribution, first_difference, mix};

const SALT_SEQUENCE: u64 = 0x4000_0000;

pub(crate) fn mixed_sequence<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    // Seeded identically on every rank, so every rank draws the same calls.
    let mut rng = fastrand::Rng::with_seed(mix(ctx.opts.seed, 0, SALT_SEQUENCE));
    for k in 0..ctx.opts.sequence_len {
        let salt = SALT_SEQUENCE + k as u64;
        let max_len = if rng.u8(..20) == 0 {
            ctx.opts.max_len.min(100_000)
        } else {
            64
        };
        let ok = match rng.u8(..4) {
            0 => {
                let counts: Vec<usize> = (0..ctx.size).map(|_| rng.usize(..=max_len)).collect();
                let displs: Vec<usize> = counts
                    .iter()
                    .scan(0, |acc, &c| {
                        *acc += c;
                        Some(*acc - c)
                    })
                    .collect();
                let label = format!("call #{k}: allgatherv");
                if rng.bool() {
                    gather_and_check::<C, f64>(ctx, &label, &counts, &displs, salt);
                } else {
                    gather_and_check::<C, u32>(ctx, &label, &counts, &displs, salt);
                }
                true
            }
            1 => {
                let len = rng.usize(1..=max_len.max(1));
                let op = ReduceOp::ALL[rng.usize(..3)];
                match rng.u8(..4) {
                    0 => reduce_step::<C, f64>(ctx, k, len, op, salt),
                    1 => reduce_step::<C, i64>(ctx, k, len, op, salt),
                    2 => reduce_step::<C, u8>(ctx, k, len, op, salt),
                    _ => reduce_step::<C, f32>(ctx, k, len, op, salt),
                }
            }
            2 => {
                let root = rng.usize(..ctx.size);
                let len = rng.usize(..=max_len);
                let expected: Vec<f64> = contribution(ctx.opts.seed, root, salt, len);
                let mut buf = if ctx.rank == root {
                    expected.clone()
                } else {
                    vec![-1.0; len]
                };
                let label = format!("call #{k}: broadcast of {len} x f64 from root {root}");
                let ok = ctx.ok(&label, ctx.comm.broadcast(&mut buf, root)).is_some();
                if ok && let Some(j) = first_difference(&buf, &expected) {
                    ctx.fail(format!(
                        "{label}: element {j} is {}, expected {}",
                        buf[j], expected[j]
                    ));
                }
                ok
            }
            _ => ctx
                .ok(&format!("call #{k}: barrier"), ctx.comm.barrier())
                .is_some(),
        };
        if !ok {
            return;
        }
    }
}

fn reduce_step<C: Communicator, T: TestValue>(
    ctx: &mut Ctx<'_, C>,
    k: usize,
    len: usize,
    op: ReduceOp,
    salt: u64,
) -> bool {
    let send: Vec<T> = contribution(ctx.opts.seed, ctx.rank, salt, len);
    let mut recv = vec![T::default(); len];
    let label = format!("call #{k}: allreduce {op} of {len} x {}", T::NAME);
    if ctx
        .ok(&label, ctx.comm.allreduce(&send, &mut recv, op))
        .is_none()
    {
        return false;
    }
    check_reduced(ctx, &label, &recv, salt, op);
    true
}
