//! `ReduceOp::BitwiseOr` (cobre-comm 0.18): exact on every integer type, refused on floats.

use cobre_comm::{CommError, Communicator, ReduceOp, SharedMemoryProvider};

use crate::{CheckFn, Ctx};

/// Each rank sets bit `rank % 64` of element 0, and a rank-dependent pattern in the
/// others; the result is the OR of every rank's words, on `u64`, `i32` and `u8`.
fn integers<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let n = ctx.size;
    let word = |r: usize, i: usize| -> u64 {
        if i == 0 {
            1 << (r % 64)
        } else {
            crate::values::mix(0x0b17_0b17, r, i as u64) & (0xFF << (8 * (i % 8)))
        }
    };
    let len = 9;
    let send: Vec<u64> = (0..len).map(|i| word(ctx.rank, i)).collect();
    let expected: Vec<u64> = (0..len)
        .map(|i| (0..n).fold(0, |acc, r| acc | word(r, i)))
        .collect();
    let mut recv = vec![0_u64; len];
    if let Some(()) = ctx.ok(
        "allreduce u64 bitwise-or",
        ctx.comm.allreduce(&send, &mut recv, ReduceOp::BitwiseOr),
    ) {
        ctx.expect(recv == expected, || {
            format!("u64 bitwise-or: got {recv:x?}, expected {expected:x?}")
        });
    }
    let send32: Vec<i32> = send.iter().map(|&w| w as i32).collect();
    let expected32: Vec<i32> = expected.iter().map(|&w| w as i32).collect();
    let mut recv32 = vec![0_i32; len];
    if let Some(()) = ctx.ok(
        "allreduce i32 bitwise-or",
        ctx.comm
            .allreduce(&send32, &mut recv32, ReduceOp::BitwiseOr),
    ) {
        ctx.expect(recv32 == expected32, || {
            format!("i32 bitwise-or: got {recv32:x?}, expected {expected32:x?}")
        });
    }
    let send8: Vec<u8> = send.iter().map(|&w| w as u8).collect();
    let expected8: Vec<u8> = expected.iter().map(|&w| w as u8).collect();
    let mut recv8 = vec![0_u8; len];
    if let Some(()) = ctx.ok(
        "allreduce u8 bitwise-or",
        ctx.comm.allreduce(&send8, &mut recv8, ReduceOp::BitwiseOr),
    ) {
        ctx.expect(recv8 == expected8, || {
            format!("u8 bitwise-or: got {recv8:x?}, expected {expected8:x?}")
        });
    }
}

/// `BitwiseOr` on `f64` is an `UnsupportedOperator` error on every rank, before any data
/// moves (so no rank waits), and the communicator stays usable.
fn floats_refused<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let mut recv = [7.0_f64; 2];
    match ctx
        .comm
        .allreduce(&[1.0, 2.0], &mut recv, ReduceOp::BitwiseOr)
    {
        Err(CommError::UnsupportedOperator {
            op: ReduceOp::BitwiseOr,
            type_name,
        }) => ctx.expect(type_name == "f64", || {
            format!("bitwise-or on f64: the error names type {type_name:?}, expected \"f64\"")
        }),
        other => ctx.fail(format!(
            "bitwise-or on f64: got {other:?}, expected Err(UnsupportedOperator)"
        )),
    }
    ctx.expect(recv == [7.0; 2], || {
        format!("bitwise-or on f64: recv was written ({recv:?}) by a refused call")
    });
    let mut after = [0.0_f64];
    if let Some(()) = ctx.ok(
        "allreduce after a refused bitwise-or",
        ctx.comm.allreduce(&[1.0], &mut after, ReduceOp::Sum),
    ) {
        let size = ctx.size;
        ctx.expect(after[0] == size as f64, || {
            format!(
                "sum after a refused bitwise-or: got {}, expected {size}",
                after[0]
            )
        });
    }
}

pub(crate) fn bitwise_checks<C: Communicator + SharedMemoryProvider>() -> Vec<(String, CheckFn<C>)>
{
    vec![
        (
            "allreduce bitwise-or (u64, i32, u8)".into(),
            integers::<C> as CheckFn<C>,
        ),
        (
            "error: allreduce bitwise-or on f64".into(),
            floats_refused::<C>,
        ),
    ]
}
