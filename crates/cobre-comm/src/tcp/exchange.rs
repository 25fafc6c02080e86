//! What the tcp algorithms need from a network: [`Exchange`]. The backend's [`Mesh`] of
//! sockets implements it, and so does the network model (`crate::model`), which runs the
//! very same algorithm code on simulated ranks to predict times at sizes this machine
//! cannot host.

use std::sync::Arc;

use super::hosts::Hosts;
use super::scratch::Scratch;
use super::transport::{Fail, Mesh, RecvOp, SendOp};
use crate::algorithm::Forced;
use crate::fingerprint::Fingerprint;

/// A rank's view of its job's network.
pub(crate) trait Exchange {
    /// This rank.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// The algorithms the job forces.
    fn forced(&self) -> Forced;
    /// The hosts the job's ranks run on (the same on every rank).
    fn hosts(&self) -> &Arc<Hosts>;
    /// Space kept between calls (allreduce pieces, rotated Bruck blocks).
    fn scratch(&mut self) -> &mut Scratch;
    /// Sends every frame of `sends` and receives every frame of `recvs`, all at once.
    fn exchange(
        &mut self,
        fp: &Fingerprint,
        sends: &mut [SendOp<'_>],
        recvs: &mut [RecvOp<'_>],
    ) -> Result<(), Fail> {
        self.exchange_overlapping(fp, sends, recvs, || {})
    }
    /// Does `work`: this rank's copying and reducing between exchanges. Every such step of
    /// an algorithm goes through here, so that a network that moves no bytes (the model's)
    /// can skip what would only shuffle meaningless data.
    fn local(&self, work: impl FnOnce()) {
        work();
    }
    /// [`Exchange::exchange`] with `work` ([`Exchange::local`] work that touches none of
    /// the frames' buffers) done along the way: the sockets' copy runs in the kernel, so
    /// a rank that would otherwise wait for its peers does its own copying then.
    fn exchange_overlapping(
        &mut self,
        fp: &Fingerprint,
        sends: &mut [SendOp<'_>],
        recvs: &mut [RecvOp<'_>],
        work: impl FnOnce(),
    ) -> Result<(), Fail>;
}

impl Exchange for Mesh {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn forced(&self) -> Forced {
        self.algorithms
    }

    fn hosts(&self) -> &Arc<Hosts> {
        &self.hosts
    }

    fn scratch(&mut self) -> &mut Scratch {
        &mut self.scratch
    }

    fn exchange_overlapping(
        &mut self,
        fp: &Fingerprint,
        sends: &mut [SendOp<'_>],
        recvs: &mut [RecvOp<'_>],
        work: impl FnOnce(),
    ) -> Result<(), Fail> {
        Mesh::exchange_overlapping(self, fp, sends, recvs, work)
    }
}
