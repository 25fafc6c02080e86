//! The precondition checks of the collectives, written once and called by every backend
//! before any data moves and before any rank blocks.
//!
//! Each check returns an error that says what was expected and what was found.

use crate::types::CommError;

/// Checks an `allgatherv` call made on `rank` of a communicator of `size` ranks, and
/// returns the length of `recv` the call writes into (`max(displs[r] + counts[r])`).
///
/// # Errors
/// [`CommError::InvalidBufferSize`] when `counts` or `displs` does not have one entry per
/// rank, `send_len != counts[rank]`, `recv_len` is shorter than the furthest target range,
/// a target range overflows `usize`, or two non-empty target ranges overlap.
///
/// # Example
/// ```
/// use cobre_comm::precondition::check_allgatherv;
///
/// // Rank 1 of 3 sends 2 elements; ranges [0,1), [1,3), [5,6) in a recv of 6.
/// assert_eq!(check_allgatherv(1, 3, 2, 6, &[1, 2, 1], &[0, 1, 5]), Ok(6));
/// assert!(check_allgatherv(1, 3, 2, 6, &[1, 2, 1], &[0, 0, 5]).is_err()); // overlap
/// ```
pub fn check_allgatherv(
    rank: usize,
    size: usize,
    send_len: usize,
    recv_len: usize,
    counts: &[usize],
    displs: &[usize],
) -> Result<usize, CommError> {
    let invalid = |operation: &'static str, expected, actual| CommError::InvalidBufferSize {
        operation,
        expected,
        actual,
    };
    if counts.len() != size {
        return Err(invalid(
            "allgatherv: counts must have one entry per rank (counts.len() == size)",
            size,
            counts.len(),
        ));
    }
    if displs.len() != size {
        return Err(invalid(
            "allgatherv: displs must have one entry per rank (displs.len() == size)",
            size,
            displs.len(),
        ));
    }
    if send_len != counts[rank] {
        return Err(invalid(
            "allgatherv: send.len() must equal counts[rank] of the calling rank",
            counts[rank],
            send_len,
        ));
    }
    let mut ranges = Vec::with_capacity(size);
    let mut needed = 0_usize;
    for (r, (&count, &displ)) in counts.iter().zip(displs).enumerate() {
        let Some(end) = displ.checked_add(count) else {
            return Err(invalid(
                "allgatherv: displs[r] + counts[r] overflows usize (expected at most usize::MAX - counts[r], found displs[r])",
                usize::MAX - count,
                displ,
            ));
        };
        needed = needed.max(end);
        if count > 0 {
            ranges.push((displ, end, r));
        }
    }
    if recv_len < needed {
        return Err(invalid(
            "allgatherv: recv is too short for the furthest target range (recv.len() >= max(displs[r] + counts[r]))",
            needed,
            recv_len,
        ));
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let ((_, a_end, _), (b_start, _, _)) = (pair[0], pair[1]);
        if b_start < a_end {
            return Err(invalid(
                "allgatherv: target ranges overlap (expected a range to start at or after the end of the one before it, found its start)",
                a_end,
                b_start,
            ));
        }
    }
    Ok(needed)
}

/// Checks an `allreduce` call.
///
/// # Errors
/// [`CommError::InvalidBufferSize`] when `send_len != recv_len` or `send_len == 0`.
///
/// # Example
/// ```
/// use cobre_comm::precondition::check_allreduce;
/// assert!(check_allreduce(3, 3).is_ok());
/// assert!(check_allreduce(3, 2).is_err());
/// assert!(check_allreduce(0, 0).is_err());
/// ```
pub fn check_allreduce(send_len: usize, recv_len: usize) -> Result<(), CommError> {
    if send_len == 0 {
        return Err(CommError::InvalidBufferSize {
            operation: "allreduce: send must hold at least one element",
            expected: 1,
            actual: 0,
        });
    }
    if recv_len != send_len {
        return Err(CommError::InvalidBufferSize {
            operation: "allreduce: recv.len() must equal send.len()",
            expected: send_len,
            actual: recv_len,
        });
    }
    Ok(())
}

/// Checks a `broadcast` root.
///
/// # Errors
/// [`CommError::InvalidRoot`] when `root >= size`.
///
/// # Example
/// ```
/// use cobre_comm::precondition::check_broadcast;
/// assert!(check_broadcast(1, 2).is_ok());
/// assert!(check_broadcast(2, 2).is_err());
/// ```
pub fn check_broadcast(root: usize, size: usize) -> Result<(), CommError> {
    if root >= size {
        return Err(CommError::InvalidRoot { root, size });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect_invalid(
        result: Result<usize, CommError>,
        expected: usize,
        actual: usize,
        needle: &str,
    ) {
        match result {
            Err(CommError::InvalidBufferSize {
                expected: e,
                actual: a,
                operation: message,
            }) => {
                assert_eq!((e, a), (expected, actual), "{message}");
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected InvalidBufferSize, got {other:?}"),
        }
    }

    #[test]
    fn allgatherv_rows() {
        expect_invalid(check_allgatherv(0, 2, 1, 2, &[1], &[0, 1]), 2, 1, "counts");
        expect_invalid(check_allgatherv(0, 2, 1, 2, &[1, 1], &[0]), 2, 1, "displs");
        expect_invalid(
            check_allgatherv(1, 2, 3, 4, &[1, 2], &[0, 1]),
            2,
            3,
            "counts[rank]",
        );
        expect_invalid(
            check_allgatherv(0, 2, 1, 2, &[1, 2], &[0, 1]),
            3,
            2,
            "too short",
        );
        expect_invalid(
            check_allgatherv(0, 2, 2, 4, &[2, 2], &[0, 1]),
            2,
            1,
            "overlap",
        );
        expect_invalid(
            check_allgatherv(0, 2, 1, 4, &[1, 1], &[0, usize::MAX]),
            usize::MAX - 1,
            usize::MAX,
            "overflows",
        );
    }

    #[test]
    fn allgatherv_accepts_gaps_zero_counts_and_any_order() {
        // Zero-length ranges may sit anywhere, even inside another rank's range.
        assert_eq!(
            check_allgatherv(2, 3, 0, 10, &[3, 2, 0], &[7, 0, 1]),
            Ok(10)
        );
        assert_eq!(check_allgatherv(0, 1, 0, 0, &[0], &[0]), Ok(0));
    }
}
