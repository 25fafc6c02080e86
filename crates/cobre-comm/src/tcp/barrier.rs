//! barrier: one algorithm, `dissemination` (`barrier_dissemination.rs`), `ceil(log2 p)`
//! rounds of empty frames at every job size. `COBRE_TCP_ALGORITHMS=barrier=dissemination`
//! is accepted, so that forcing texts can name every collective.

use super::barrier_dissemination;
use super::exchange::Exchange;
use super::transport::Fail;
use crate::algorithm::Algorithm;
use crate::fingerprint::Fingerprint;

pub(crate) fn barrier(mesh: &mut impl Exchange, fp: &Fingerprint) -> Result<(), Fail> {
    barrier_dissemination::run(mesh, &fp.with_algorithm(Algorithm::Dissemination))
}
