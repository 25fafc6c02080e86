//! Every precondition row of the contract: each rank makes the same invalid call, gets the
//! documented error without any data moving, and the communicator still works afterwards.

use cobre_comm::{CommError, Communicator, ReduceOp, SharedMemoryProvider};

use crate::{CheckFn, Ctx};

/// Checks `result` is `InvalidBufferSize` for `operation` with the given expected/actual.
fn expect_buffer_error<C: Communicator>(
    ctx: &mut Ctx<'_, C>,
    label: &str,
    result: Result<(), CommError>,
    operation: &str,
    want: (usize, usize),
) {
    match result {
        Err(CommError::InvalidBufferSize {
            operation: op,
            expected,
            actual,
        }) => {
            // `operation` is "collective: what was wrong" (0.18's fields, no message field).
            let (name, message) = op.split_once(": ").unwrap_or((op, ""));
            ctx.expect(name == operation && (expected, actual) == want, || {
                format!(
                    "{label}: got InvalidBufferSize {{ operation: {op}, expected: {expected}, actual: {actual} }}, expected operation {operation} with expected/actual {want:?}"
                )
            });
            ctx.expect(!message.is_empty(), || {
                format!("{label}: the error message is empty")
            });
        }
        other => ctx.fail(format!(
            "{label}: got {other:?}, expected Err(InvalidBufferSize)"
        )),
    }
}

/// After an error, a valid collective must still work.
fn still_works<C: Communicator>(ctx: &mut Ctx<'_, C>, after: &str) {
    let mut total = [0_u64];
    let size = ctx.size as u64;
    if ctx
        .ok(
            &format!("allreduce after {after}"),
            ctx.comm
                .allreduce(&[ctx.rank as u64 + 1], &mut total, ReduceOp::Sum),
        )
        .is_some()
    {
        ctx.expect(total[0] == size * (size + 1) / 2, || {
            format!(
                "allreduce after {after} gave {}, expected {}",
                total[0],
                size * (size + 1) / 2
            )
        });
    }
}

fn expect_untouched<C: Communicator>(ctx: &mut Ctx<'_, C>, label: &str, recv: &[f64], fill: f64) {
    ctx.expect(recv.iter().all(|&x| x == fill), || {
        format!("{label}: recv was modified by a call that failed its precondition")
    });
}

fn counts_len<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let n = ctx.size;
    let counts = vec![1; n + 1];
    let displs: Vec<usize> = (0..=n).collect();
    let mut recv = vec![7.0; n + 1];
    let result = ctx.comm.allgatherv(&[1.0], &mut recv, &counts, &displs);
    expect_buffer_error(
        ctx,
        "counts.len() = size + 1",
        result,
        "allgatherv",
        (n, n + 1),
    );
    expect_untouched(ctx, "counts.len() = size + 1", &recv, 7.0);
    still_works(ctx, "a bad counts length");
}

fn displs_len<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let n = ctx.size;
    let counts = vec![1; n];
    let displs: Vec<usize> = (0..n - 1).collect();
    let mut recv = vec![7.0; n];
    let result = ctx.comm.allgatherv(&[1.0], &mut recv, &counts, &displs);
    expect_buffer_error(
        ctx,
        "displs.len() = size - 1",
        result,
        "allgatherv",
        (n, n - 1),
    );
    expect_untouched(ctx, "displs.len() = size - 1", &recv, 7.0);
    still_works(ctx, "a bad displs length");
}

fn send_len<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let n = ctx.size;
    let counts = vec![2; n];
    let displs: Vec<usize> = (0..n).map(|r| 2 * r).collect();
    let mut recv = vec![7.0; 2 * n];
    let result = ctx
        .comm
        .allgatherv(&[1.0, 2.0, 3.0], &mut recv, &counts, &displs);
    expect_buffer_error(
        ctx,
        "send.len() != counts[rank]",
        result,
        "allgatherv",
        (2, 3),
    );
    expect_untouched(ctx, "send.len() != counts[rank]", &recv, 7.0);
    still_works(ctx, "a bad send length");
}

fn recv_short<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let n = ctx.size;
    let counts = vec![2; n];
    let displs: Vec<usize> = (0..n).map(|r| 2 * r).collect();
    let mut recv = vec![7.0; 2 * n - 1];
    let result = ctx
        .comm
        .allgatherv(&[1.0, 2.0], &mut recv, &counts, &displs);
    expect_buffer_error(
        ctx,
        "recv one element short",
        result,
        "allgatherv",
        (2 * n, 2 * n - 1),
    );
    expect_untouched(ctx, "recv one element short", &recv, 7.0);
    still_works(ctx, "a short recv");
}

fn overlap<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let n = ctx.size;
    if n < 2 {
        return; // one rank has one range: nothing can overlap
    }
    let counts = vec![2; n];
    let displs: Vec<usize> = (0..n).collect();
    let mut recv = vec![7.0; n + 1];
    let result = ctx
        .comm
        .allgatherv(&[1.0, 2.0], &mut recv, &counts, &displs);
    match result {
        Err(CommError::InvalidBufferSize {
            operation: message, ..
        }) if message.starts_with("allgatherv: ") => {
            ctx.expect(message.contains("overlap"), || {
                format!("overlapping ranges: message {message:?} does not say they overlap")
            });
        }
        other => ctx.fail(format!(
            "overlapping ranges: got {other:?}, expected Err(InvalidBufferSize)"
        )),
    }
    expect_untouched(ctx, "overlapping ranges", &recv, 7.0);
    still_works(ctx, "overlapping ranges");
}

fn allreduce_lengths<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let mut recv = vec![7.0; 2];
    let result = ctx
        .comm
        .allreduce(&[1.0, 2.0, 3.0], &mut recv, ReduceOp::Sum);
    expect_buffer_error(ctx, "allreduce send 3, recv 2", result, "allreduce", (3, 2));
    expect_untouched(ctx, "allreduce send 3, recv 2", &recv, 7.0);
    still_works(ctx, "mismatched allreduce lengths");
}

fn allreduce_empty<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let mut recv: Vec<f64> = Vec::new();
    let result = ctx.comm.allreduce(&[], &mut recv, ReduceOp::Max);
    expect_buffer_error(ctx, "allreduce of nothing", result, "allreduce", (1, 0));
    still_works(ctx, "an empty allreduce");
}

fn broadcast_root<C: Communicator>(ctx: &mut Ctx<'_, C>) {
    let n = ctx.size;
    for root in [n, n + 1, usize::MAX] {
        let mut buf = vec![7.0; 3];
        let result = ctx.comm.broadcast(&mut buf, root);
        ctx.expect(result == Err(CommError::InvalidRoot { root, size: n }), || {
            format!("broadcast from root {root}: got {result:?}, expected Err(InvalidRoot {{ root: {root}, size: {n} }})")
        });
        expect_untouched(ctx, "broadcast from an invalid root", &buf, 7.0);
    }
    still_works(ctx, "an invalid root");
}

pub(crate) fn error_checks<C: Communicator + SharedMemoryProvider>() -> Vec<(String, CheckFn<C>)> {
    vec![
        (
            "error: allgatherv counts.len() != size".into(),
            counts_len::<C> as CheckFn<C>,
        ),
        (
            "error: allgatherv displs.len() != size".into(),
            displs_len::<C>,
        ),
        (
            "error: allgatherv send.len() != counts[rank]".into(),
            send_len::<C>,
        ),
        ("error: allgatherv recv too short".into(), recv_short::<C>),
        ("error: allgatherv overlapping ranges".into(), overlap::<C>),
        (
            "error: allreduce send.len() != recv.len()".into(),
            allreduce_lengths::<C>,
        ),
        ("error: allreduce empty send".into(), allreduce_empty::<C>),
        ("error: broadcast root >= size".into(), broadcast_root::<C>),
    ]
}
