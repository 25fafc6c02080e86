//! broadcast: picks a named algorithm and runs it.
//!
//! | algorithm | rounds | picked when |
//! |---|---|---|
//! | `direct` (`broadcast_direct.rs`) | 1 | small buffers on up to 3 ranks, and below [`TREE_MIN_BYTES`] on 4 |
//! | `binomial` (`broadcast_binomial.rs`) | `ceil(log2 p)` | small buffers on more ranks, medium ones from 4 ranks |
//! | `scatter-allgather` (`broadcast_scatter_allgather.rs`) | 2 | from [`SPLIT_MIN_BYTES`] on 3 ranks, from [`SPLIT_MIN_BYTES_MANY`] on 4 or more |
//! | `scatter-bruck` (`broadcast_scatter_bruck.rs`) | about `2 ceil(log2 p)` | from [`SPLIT_MIN_BYTES_MANY`] on [`SCATTER_BRUCK_MIN_RANKS`] or more |
//!
//! `COBRE_TCP_ALGORITHMS=broadcast=NAME` forces one at every size. The thresholds are the
//! crossovers measured on loopback with `cobre-comm bench --algorithms` (docs/PERFORMANCE.md,
//! "tcp crossovers"): on 4 ranks the root's one copy per rank makes `direct` lose to
//! `binomial` from 64 KiB (34.8 against 31.7 us; 230.8 against 163.4 at 512 KiB), and
//! `scatter-allgather` wins from 1 MiB; on 3 ranks from 256 KiB. Above 4 ranks (not
//! measured here) the 4-rank crossovers are kept.

use super::exchange::Exchange;
use super::transport::Fail;
use super::{
    DIRECT_MAX_RANKS, broadcast_binomial, broadcast_direct, broadcast_scatter_allgather,
    broadcast_scatter_bruck,
};
use crate::algorithm::{Algorithm, Op};
use crate::fingerprint::Fingerprint;

/// Broadcasts of at least this many bytes (on 3 ranks or more) use scatter + allgather,
/// where the root sends each byte about twice instead of once per rank (or per round).
pub(crate) const SPLIT_MIN_BYTES: usize = 256 << 10;

/// [`SPLIT_MIN_BYTES`] on 4 ranks or more, where `binomial` is faster below it.
pub(crate) const SPLIT_MIN_BYTES_MANY: usize = 1 << 20;

/// Broadcasts of at least this many bytes on 4 ranks go `binomial` rather than `direct`:
/// the root then sends two copies instead of three.
pub(crate) const TREE_MIN_BYTES: usize = 64 << 10;

/// Large broadcasts on at least this many ranks go `scatter-bruck`: in the network model
/// (25 GbE, one rank per host and 16 per host) it is level with or ahead of
/// `scatter-allgather` at 1 and 16 MiB from 256 ranks (0.38x at 1 MiB on 512 ranks, one
/// per host: `2 log2 p` rounds instead of `p - 1` messages per rank) and up to 1.5x
/// behind it on 16 to 128 ranks (a binomial scatter forwards half the buffer more than
/// once). It also needs no connection beyond a rank's neighbours.
pub(crate) const SCATTER_BRUCK_MIN_RANKS: usize = 256;

/// The algorithm for a broadcast of `bytes` bytes on `ranks` ranks: the `forced` one,
/// else `scatter-allgather` for large buffers (`scatter-bruck` on many ranks), `direct`
/// on few ranks, `binomial` above.
pub(crate) fn pick(forced: Option<Algorithm>, ranks: usize, bytes: usize) -> Algorithm {
    match forced {
        Some(
            forced @ (Algorithm::Direct
            | Algorithm::ScatterAllgather
            | Algorithm::Binomial
            | Algorithm::ScatterBruck),
        ) => forced,
        _ if ranks >= SCATTER_BRUCK_MIN_RANKS && bytes >= SPLIT_MIN_BYTES_MANY => {
            Algorithm::ScatterBruck
        }
        _ if ranks == 3 && bytes >= SPLIT_MIN_BYTES => Algorithm::ScatterAllgather,
        _ if ranks >= 4 && bytes >= SPLIT_MIN_BYTES_MANY => Algorithm::ScatterAllgather,
        _ if ranks > DIRECT_MAX_RANKS => Algorithm::Binomial,
        _ if ranks == 4 && bytes >= TREE_MIN_BYTES => Algorithm::Binomial,
        _ => Algorithm::Direct,
    }
}

pub(crate) fn broadcast(
    mesh: &mut impl Exchange,
    fp: &Fingerprint,
    buf: &mut [u8],
    root: usize,
) -> Result<(), Fail> {
    let algorithm = pick(mesh.forced().get(Op::Broadcast), mesh.size(), buf.len());
    let fp = &fp.with_algorithm(algorithm);
    match algorithm {
        Algorithm::ScatterAllgather => broadcast_scatter_allgather::run(mesh, fp, buf, root),
        Algorithm::ScatterBruck => broadcast_scatter_bruck::run(mesh, fp, buf, root),
        Algorithm::Binomial => broadcast_binomial::run(mesh, fp, buf, root),
        _ => broadcast_direct::run(mesh, fp, buf, root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffers_go_direct_on_few_ranks_and_binomial_on_more() {
        assert_eq!(pick(None, 2, SPLIT_MIN_BYTES), Algorithm::Direct);
        assert_eq!(pick(None, DIRECT_MAX_RANKS, 0), Algorithm::Direct);
        assert_eq!(pick(None, DIRECT_MAX_RANKS + 1, 0), Algorithm::Binomial);
        assert_eq!(pick(None, 1024, SPLIT_MIN_BYTES - 1), Algorithm::Binomial);
        assert_eq!(pick(None, 4, TREE_MIN_BYTES - 1), Algorithm::Direct);
        assert_eq!(pick(None, 4, TREE_MIN_BYTES), Algorithm::Binomial);
        assert_eq!(pick(None, 3, TREE_MIN_BYTES), Algorithm::Direct);
    }

    #[test]
    fn large_buffers_scatter_then_allgather() {
        assert_eq!(pick(None, 3, SPLIT_MIN_BYTES), Algorithm::ScatterAllgather);
        assert_eq!(pick(None, 4, SPLIT_MIN_BYTES), Algorithm::Binomial);
        assert_eq!(
            pick(None, 4, SPLIT_MIN_BYTES_MANY),
            Algorithm::ScatterAllgather
        );
        assert_eq!(
            pick(None, 64, SPLIT_MIN_BYTES_MANY - 1),
            Algorithm::Binomial
        );
        assert_eq!(
            pick(None, SCATTER_BRUCK_MIN_RANKS - 1, 1 << 30),
            Algorithm::ScatterAllgather
        );
        assert_eq!(
            pick(None, SCATTER_BRUCK_MIN_RANKS, SPLIT_MIN_BYTES_MANY),
            Algorithm::ScatterBruck
        );
        assert_eq!(pick(None, 1024, 1 << 30), Algorithm::ScatterBruck);
    }

    #[test]
    fn a_forced_algorithm_runs_at_every_size() {
        for forced in [
            Algorithm::Direct,
            Algorithm::ScatterAllgather,
            Algorithm::Binomial,
            Algorithm::ScatterBruck,
        ] {
            for (ranks, bytes) in [(1, 0), (3, 7), (8, 1 << 30)] {
                assert_eq!(pick(Some(forced), ranks, bytes), forced);
            }
        }
    }
}
