//! The first rank of each host, as a job of its own: rank `i` of it is host `i`'s first
//! rank. Algorithms written for a whole job (Bruck's rounds) run among the hosts through
//! it, so that only one rank per host sends across the hosts' links
//! (`allreduce_host_bruck.rs`).

use std::sync::Arc;

use super::exchange::Exchange;
use super::hosts::Hosts;
use super::scratch::Scratch;
use super::transport::{Fail, RecvOp, SendOp};
use crate::algorithm::Forced;
use crate::fingerprint::Fingerprint;

/// The job of the hosts' first ranks, seen from one of them.
pub(crate) struct Leaders<'m, E> {
    mesh: &'m mut E,
    /// The whole job's hosts: leader `i` is `job.members(i)[0]`.
    job: Arc<Hosts>,
    /// The hosts of the leaders' own job: one rank on each.
    hosts: Arc<Hosts>,
    host: usize,
}

impl<'m, E: Exchange> Leaders<'m, E> {
    /// The leaders' job, seen from `mesh`'s rank, or `None` when that rank does not lead
    /// its host.
    pub(crate) fn of(mesh: &'m mut E) -> Option<Leaders<'m, E>> {
        let job = Arc::clone(mesh.hosts());
        let host = job.of(mesh.rank());
        if job.members(host)[0] != mesh.rank() {
            return None;
        }
        Some(Leaders {
            hosts: job.one_per_host(),
            job,
            mesh,
            host,
        })
    }

    fn leader(&self, host: usize) -> usize {
        self.job.members(host)[0]
    }
}

impl<E: Exchange> Exchange for Leaders<'_, E> {
    fn rank(&self) -> usize {
        self.host
    }

    fn size(&self) -> usize {
        self.job.count()
    }

    fn forced(&self) -> Forced {
        self.mesh.forced()
    }

    fn hosts(&self) -> &Arc<Hosts> {
        &self.hosts
    }

    fn scratch(&mut self) -> &mut Scratch {
        self.mesh.scratch()
    }

    /// The frames go to and come from the leaders of the hosts they name.
    fn exchange_overlapping(
        &mut self,
        fp: &Fingerprint,
        sends: &mut [SendOp<'_>],
        recvs: &mut [RecvOp<'_>],
        work: impl FnOnce(),
    ) -> Result<(), Fail> {
        for send in sends.iter_mut() {
            send.peer = self.leader(send.peer);
        }
        for recv in recvs.iter_mut() {
            recv.peer = self.leader(recv.peer);
        }
        self.mesh.exchange_overlapping(fp, sends, recvs, work)
    }
}
