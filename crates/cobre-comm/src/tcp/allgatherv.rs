//! allgatherv: picks a named algorithm and runs it.
//!
//! | algorithm | rounds | picked when |
//! |---|---|---|
//! | `direct` (`allgatherv_direct.rs`) | 1 | up to [`DIRECT_MAX_RANKS`] ranks, at every size |
//! | `bruck` (`allgatherv_bruck.rs`) | `ceil(log2 p)` | more ranks, below [`RING_MIN_BYTES`] gathered |
//! | `ring` (`allgatherv_ring.rs`) | `p - 1` | more ranks, larger gathers |
//!
//! `COBRE_TCP_ALGORITHMS=allgatherv=NAME` forces one at every size.

use super::exchange::Exchange;
use super::transport::Fail;
use super::{DIRECT_MAX_RANKS, allgatherv_bruck, allgatherv_direct, allgatherv_ring};
use crate::algorithm::{Algorithm, Op};
use crate::fingerprint::Fingerprint;

/// Gathers of at least this many bytes in all (on more than [`DIRECT_MAX_RANKS`] ranks)
/// go around the ring: there the per-round latency no longer matters, and each rank
/// talks only to its two neighbours, with no final copy.
pub(crate) const RING_MIN_BYTES: usize = 256 << 10;

/// The algorithm for a gather of `total` bytes on `ranks` ranks: the `forced` one, else
/// `direct` on few ranks, `bruck` for small gathers and `ring` for large ones.
pub(crate) fn pick(forced: Option<Algorithm>, ranks: usize, total: usize) -> Algorithm {
    match forced {
        Some(forced @ (Algorithm::Direct | Algorithm::Bruck | Algorithm::Ring)) => forced,
        _ if ranks <= DIRECT_MAX_RANKS => Algorithm::Direct,
        _ if total >= RING_MIN_BYTES => Algorithm::Ring,
        _ => Algorithm::Bruck,
    }
}

/// `ranges[r] = (start, end)` in bytes of rank `r`'s block in `recv` (checked to fit and
/// not to overlap).
pub(crate) fn allgatherv(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    send: &[u8],
    recv: &mut [u8],
    ranges: &[(usize, usize)],
) -> Result<(), Fail> {
    let total = ranges.iter().map(|&(start, end)| end - start).sum();
    let algorithm = pick(mesh.forced().get(Op::Allgatherv), mesh.size(), total);
    let fp = &fp.with_algorithm(algorithm);
    match algorithm {
        Algorithm::Bruck => allgatherv_bruck::run(mesh, fp, send, recv, ranges),
        Algorithm::Ring => allgatherv_ring::run(mesh, fp, send, recv, ranges),
        _ => allgatherv_direct::run(mesh, fp, send, recv, ranges),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_ranks_go_direct_more_ranks_bruck_then_ring() {
        assert_eq!(pick(None, 1, 0), Algorithm::Direct);
        assert_eq!(pick(None, DIRECT_MAX_RANKS, 1 << 30), Algorithm::Direct);
        assert_eq!(pick(None, DIRECT_MAX_RANKS + 1, 0), Algorithm::Bruck);
        assert_eq!(pick(None, 1024, RING_MIN_BYTES - 1), Algorithm::Bruck);
        assert_eq!(pick(None, 1024, RING_MIN_BYTES), Algorithm::Ring);
    }

    #[test]
    fn a_forced_algorithm_runs_at_every_size() {
        for forced in [Algorithm::Direct, Algorithm::Bruck, Algorithm::Ring] {
            for (ranks, total) in [(1, 0), (3, 7), (8, 1 << 30)] {
                assert_eq!(pick(Some(forced), ranks, total), forced);
            }
        }
    }
}
