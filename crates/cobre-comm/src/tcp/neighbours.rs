//! Which ranks a tcp rank connects to when the job starts: its *neighbours*, the ranks at
//! distance 1, 2, 4, ... either way round the ring of ranks. That is every partner of the
//! algorithms whose latency grows as log p (Bruck's allgather and the allreduce built on
//! it, the dissemination barrier, the binomial broadcast from any root) and of the ring
//! allgatherv, and at most `2 ceil(log2 p)` ranks: a job of 1024 ranks starts with 19
//! connections per rank, not 1023.
//!
//! The relation is symmetric (`q` is a neighbour of `r` exactly when `r` is one of `q`),
//! so both ends of every start-up connection expect it. The large broadcast from 256 ranks
//! (`scatter-bruck`) and the large allreduce on many hosts (`reduce-scatter-bruck`) stay
//! between neighbours too. The algorithms that talk to every rank
//! (the one-round `direct` ones, picked on up to 4 ranks where every rank is a neighbour;
//! the large allreduce; the large broadcast below 256 ranks) open the connections they
//! lack the first time they need them (`rendezvous/on_demand.rs`).

/// The neighbours of `rank` in a job of `size` ranks, in increasing order.
pub(crate) fn neighbours(rank: usize, size: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut distance = 1;
    while distance < size {
        out.push((rank + distance) % size);
        out.push((rank + size - distance) % size);
        distance *= 2;
    }
    out.sort_unstable();
    out.dedup();
    out.retain(|&p| p != rank);
    out
}

/// Whether `a` and `b` are neighbours in a job of `size` ranks: their distance round the
/// ring, one way or the other, is a power of two.
pub(crate) fn are_neighbours(a: usize, b: usize, size: usize) -> bool {
    if a == b || a >= size || b >= size {
        return false;
    }
    let forward = (b + size - a) % size;
    forward.is_power_of_two() || (size - forward).is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_jobs_connect_every_pair() {
        for size in 1..=5 {
            for rank in 0..size {
                let all: Vec<usize> = (0..size).filter(|&p| p != rank).collect();
                assert_eq!(neighbours(rank, size), all, "rank {rank} of {size}");
            }
        }
    }

    #[test]
    fn neighbours_are_few_symmetric_and_agree_with_the_pair_test() {
        for size in 1_usize..=300 {
            let bound = 2 * size.next_power_of_two().trailing_zeros() as usize;
            for rank in 0..size {
                let mine = neighbours(rank, size);
                assert!(mine.len() <= bound, "rank {rank} of {size}: {mine:?}");
                for other in 0..size {
                    let listed = mine.contains(&other);
                    assert_eq!(listed, are_neighbours(rank, other, size));
                    assert_eq!(listed, neighbours(other, size).contains(&rank));
                }
            }
        }
        assert_eq!(neighbours(0, 1024).len(), 19);
        assert_eq!(neighbours(5, 4096).len(), 23);
        assert_eq!(neighbours(3, 12), vec![1, 2, 4, 5, 7, 11]);
    }
}
