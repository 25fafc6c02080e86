//! Disjoint mutable views of the ranges of a buffer.

/// Splits `buf` into the given `(key, start, end)` ranges, which must not overlap (the
/// precondition checks guarantee it for allgatherv). Returns `(key, slice)` pairs sorted
/// by start.
pub(crate) fn split_ranges<'a, T>(
    mut buf: &'a mut [T],
    ranges: &[(usize, usize, usize)],
) -> Vec<(usize, &'a mut [T])> {
    let mut sorted: Vec<(usize, usize, usize)> = ranges.to_vec();
    sorted.sort_unstable_by_key(|&(key, start, end)| (start, end, key));
    let mut out = Vec::with_capacity(sorted.len());
    let mut offset = 0;
    for (key, start, end) in sorted {
        if start == end {
            out.push((key, &mut [][..]));
            continue;
        }
        let rest = std::mem::take(&mut buf);
        let (_, rest) = rest.split_at_mut(start - offset);
        let (mine, rest) = rest.split_at_mut(end - start);
        out.push((key, mine));
        buf = rest;
        offset = end;
    }
    out
}

/// The blocks of `buf` at `ranges[r] = (start, end)`, in rank order: rank `r`'s block is
/// element `r` (the ranges must not overlap, as the allgatherv checks guarantee).
pub(crate) fn blocks_by_rank<'a, T>(
    buf: &'a mut [T],
    ranges: &[(usize, usize)],
) -> Vec<&'a mut [T]> {
    let keyed: Vec<(usize, usize, usize)> = ranges
        .iter()
        .enumerate()
        .map(|(r, &(start, end))| (r, start, end))
        .collect();
    let mut split = split_ranges(buf, &keyed);
    split.sort_unstable_by_key(|&(r, _)| r);
    split.into_iter().map(|(_, block)| block).collect()
}

/// `buf` cut into consecutive parts of the given lengths, from its start.
pub(crate) fn consecutive<T>(
    mut buf: &mut [T],
    lengths: impl IntoIterator<Item = usize>,
) -> Vec<&mut [T]> {
    let mut parts = Vec::new();
    for len in lengths {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(len);
        parts.push(head);
        buf = tail;
    }
    parts
}

/// The `N` spans `(start, end)` of `buf`, in the order given; they must not overlap, and
/// an empty one may sit anywhere outside the others. For the frames that send from and
/// receive into several places of one buffer at once.
pub(crate) fn spans<const N: usize, T>(buf: &mut [T], spans: [(usize, usize); N]) -> [&mut [T]; N] {
    blocks_by_rank(buf, &spans)
        .try_into()
        .unwrap_or_else(|_| unreachable!("one view per span"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_in_any_order() {
        let mut buf: Vec<u32> = (0..10).collect();
        let parts = split_ranges(&mut buf, &[(0, 6, 9), (1, 0, 2), (2, 4, 4), (3, 2, 3)]);
        let view: Vec<(usize, Vec<u32>)> =
            parts.into_iter().map(|(k, s)| (k, s.to_vec())).collect();
        assert_eq!(
            view,
            vec![
                (1, vec![0, 1]),
                (3, vec![2]),
                (2, vec![]),
                (0, vec![6, 7, 8])
            ]
        );
        let mut buf: Vec<u32> = (0..10).collect();
        let blocks = blocks_by_rank(&mut buf, &[(6, 9), (0, 2), (4, 4)]);
        let view: Vec<Vec<u32>> = blocks.into_iter().map(|b| b.to_vec()).collect();
        assert_eq!(view, vec![vec![6, 7, 8], vec![0, 1], vec![]]);
    }

    #[test]
    fn consecutive_parts_cover_the_buffer_from_its_start() {
        let mut buf: Vec<u32> = (0..6).collect();
        let parts = consecutive(&mut buf, [2, 0, 3]);
        let view: Vec<Vec<u32>> = parts.into_iter().map(|p| p.to_vec()).collect();
        assert_eq!(view, vec![vec![0, 1], vec![], vec![2, 3, 4]]);
    }

    #[test]
    fn spans_come_back_in_the_order_asked() {
        let mut buf: Vec<u32> = (0..10).collect();
        let [a, b, c, d] = spans(&mut buf, [(7, 10), (0, 0), (2, 5), (5, 5)]);
        assert_eq!(
            (a.to_vec(), b.len(), c.to_vec(), d.len()),
            (vec![7, 8, 9], 0, vec![2, 3, 4], 0)
        );
        c[0] = 99;
        assert_eq!(buf[2], 99);
    }
}
