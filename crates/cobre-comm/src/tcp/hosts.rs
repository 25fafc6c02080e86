//! Which host each rank of a job runs on, as every rank sees it: the algorithms that send
//! differently within a host and across hosts (`allreduce_reduce_scatter_grid.rs`) and
//! the picks that weigh a host's shared link (`allreduce.rs`, `allgatherv.rs`) read it.

use std::sync::{Arc, OnceLock};

/// Ranks on the fullest host when `ranks` ranks spread evenly over `hosts` hosts (at
/// least one host, at most one per rank): what the picks weigh a host's link by.
pub(crate) fn ranks_per_host(ranks: usize, hosts: usize) -> usize {
    ranks.div_ceil(hosts.clamp(1, ranks.max(1)))
}

/// The hosts of a job and their ranks. Every rank builds the same one (from the
/// hostnames gathered at start-up), so the schedules derived from it agree.
#[derive(Debug, Clone)]
pub(crate) struct Hosts {
    /// Host index of each rank.
    host: Vec<usize>,
    /// Index of each rank among its host's ranks.
    local: Vec<usize>,
    /// The ranks of each host, ascending; hosts ordered by their first rank.
    members: Vec<Vec<usize>>,
    /// The job of the hosts' first ranks (one rank per host), made once when first asked.
    one_per_host: OnceLock<Arc<Hosts>>,
}

impl PartialEq for Hosts {
    fn eq(&self, other: &Hosts) -> bool {
        self.members == other.members
    }
}

impl Eq for Hosts {}

impl Hosts {
    /// `size` ranks on one host.
    pub(crate) fn one(size: usize) -> Hosts {
        Hosts::from_members(size, vec![(0..size).collect()])
    }

    /// `ranks` ranks over `hosts` hosts in blocks (ranks `0..ranks/hosts` on the first
    /// host, and so on, as Slurm's block distribution places them).
    pub(crate) fn blocks(ranks: usize, hosts: usize) -> Hosts {
        let hosts = hosts.clamp(1, ranks.max(1));
        let mut members = vec![Vec::new(); hosts];
        for r in 0..ranks {
            members[r * hosts / ranks].push(r);
        }
        Hosts::from_members(ranks, members)
    }

    /// The hosts whose ranks are `members` (each rank of `0..size` on exactly one host;
    /// a rank missing from every list gets a host of its own, so the map is total).
    pub(crate) fn from_members(size: usize, members: Vec<Vec<usize>>) -> Hosts {
        let mut members: Vec<Vec<usize>> = members.into_iter().filter(|m| !m.is_empty()).collect();
        let mut host = vec![usize::MAX; size];
        for (h, ranks) in members.iter_mut().enumerate() {
            ranks.retain(|&r| r < size && host[r] == usize::MAX);
            ranks.sort_unstable();
            ranks.dedup();
            for &r in ranks.iter() {
                host[r] = h;
            }
        }
        for (r, h) in host.iter_mut().enumerate() {
            if *h == usize::MAX {
                *h = members.len();
                members.push(vec![r]);
            }
        }
        members.retain(|m| !m.is_empty());
        members.sort_unstable_by_key(|m| m[0]);
        let mut local = vec![0; size];
        for (h, ranks) in members.iter().enumerate() {
            for (i, &r) in ranks.iter().enumerate() {
                host[r] = h;
                local[r] = i;
            }
        }
        Hosts {
            host,
            local,
            members,
            one_per_host: OnceLock::new(),
        }
    }

    /// The number of hosts (at least one).
    pub(crate) fn count(&self) -> usize {
        self.members.len().max(1)
    }

    /// The host of `rank`.
    pub(crate) fn of(&self, rank: usize) -> usize {
        self.host[rank]
    }

    /// The ranks of host `h`, ascending.
    pub(crate) fn members(&self, h: usize) -> &[usize] {
        &self.members[h]
    }

    /// The index of `rank` among its host's ranks.
    pub(crate) fn local_index(&self, rank: usize) -> usize {
        self.local[rank]
    }

    /// Whether each host's ranks are consecutive (as Slurm's block placement puts them),
    /// so that a ring of ranks crosses each host's link once each way.
    pub(crate) fn in_blocks(&self) -> bool {
        self.members
            .iter()
            .all(|m| m[m.len() - 1] - m[0] + 1 == m.len())
    }

    /// The hosts of a job made of one rank per host of this one (`leaders.rs`).
    pub(crate) fn one_per_host(&self) -> Arc<Hosts> {
        let hosts = self.count();
        Arc::clone(
            self.one_per_host
                .get_or_init(|| Arc::new(Hosts::blocks(hosts, hosts))),
        )
    }

    /// The rank of host `h` through which what belongs to rank `owner` leaves or enters
    /// host `h`: `owner` itself when it runs on `h`, else the rank of `h` at `owner`'s
    /// local index (modulo `h`'s size). With the same number of ranks on every host, each
    /// rank deals with one rank per other host: the one at its own local index.
    pub(crate) fn carrier(&self, h: usize, owner: usize) -> usize {
        if self.host[owner] == h {
            owner
        } else {
            let ranks = &self.members[h];
            ranks[self.local[owner] % ranks.len()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_told_from_dealt_ranks() {
        assert!(Hosts::blocks(10, 3).in_blocks());
        assert!(Hosts::one(4).in_blocks());
        assert!(!Hosts::from_members(4, vec![vec![0, 2], vec![1, 3]]).in_blocks());
    }

    #[test]
    fn blocks_spread_ranks_as_slurm_does() {
        let hosts = Hosts::blocks(10, 3);
        assert_eq!(hosts.count(), 3);
        assert_eq!(hosts.members(0), &[0, 1, 2, 3]);
        assert_eq!(hosts.members(1), &[4, 5, 6]);
        assert_eq!(hosts.members(2), &[7, 8, 9]);
        assert_eq!((hosts.of(5), hosts.local_index(5)), (1, 1));
        assert_eq!(Hosts::blocks(3, 8).count(), 3);
        assert_eq!(Hosts::one(4).members(0), &[0, 1, 2, 3]);
    }

    #[test]
    fn members_are_ordered_and_every_rank_has_a_host() {
        let hosts = Hosts::from_members(6, vec![vec![4, 1], vec![], vec![0, 5, 1]]);
        // Rank 1 stays on the host that listed it first; 2 and 3 get hosts of their own.
        assert_eq!(hosts.count(), 4);
        assert_eq!(hosts.members(0), &[0, 5]);
        assert_eq!(hosts.members(1), &[1, 4]);
        assert_eq!(hosts.members(2), &[2]);
        assert_eq!(hosts.members(3), &[3]);
        assert_eq!((hosts.of(4), hosts.local_index(4)), (1, 1));
    }

    #[test]
    fn carriers_pair_ranks_at_the_same_local_index() {
        let hosts = Hosts::from_members(7, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(hosts.carrier(0, 4), 1);
        assert_eq!(hosts.carrier(1, 1), 4);
        assert_eq!(hosts.carrier(0, 2), 2);
        // A host with fewer ranks wraps; a host with one rank carries everything.
        assert_eq!(hosts.carrier(2, 5), 6);
        assert_eq!(hosts.carrier(0, 6), 0);
        assert_eq!(hosts.carrier(1, 6), 3);
    }
}
