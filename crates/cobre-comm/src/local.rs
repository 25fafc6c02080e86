//! The single-process backend: [`LocalBackend`] and the heap-backed [`HeapRegion`].

use crate::copy::copy;
use crate::precondition::{check_allgatherv, check_allreduce, check_broadcast};
use crate::reduce::check_reduction;
use crate::topology::ExecutionTopology;
use crate::traits::{
    CommData, Communicator, LocalCommKind, LocalCommunicator, SharedMemoryProvider, SharedRegion,
    TopologyProvider,
};
use crate::types::CommError;

/// The single-process backend: rank 0 of 1, always available, zero-sized.
///
/// Collectives check their preconditions like every backend, then do the copy they
/// describe: `allgatherv` and `allreduce` copy `send` into `recv`, `broadcast` and
/// `barrier` do nothing. After inlining that is a `copy_from_slice`.
///
/// # Example
/// ```
/// use cobre_comm::{LocalBackend, Communicator, ReduceOp};
///
/// let comm = LocalBackend;
/// assert_eq!(comm.rank(), 0);
/// assert_eq!(comm.size(), 1);
///
/// // allreduce with one rank: identity copy regardless of op.
/// let send = vec![1.0_f64, 2.0, 3.0];
/// let mut recv = vec![0.0_f64; 3];
/// comm.allreduce(&send, &mut recv, ReduceOp::Sum).unwrap();
/// assert_eq!(recv, send);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LocalBackend;

impl Communicator for LocalBackend {
    #[inline]
    fn allgatherv<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError> {
        check_allgatherv(0, 1, send.len(), recv.len(), counts, displs)?;
        copy(&mut recv[displs[0]..displs[0] + counts[0]], send);
        Ok(())
    }

    #[inline]
    fn allreduce<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: crate::ReduceOp,
    ) -> Result<(), CommError> {
        check_allreduce(send.len(), recv.len())?;
        check_reduction::<T>(op)?;
        copy(recv, send);
        Ok(())
    }

    #[inline]
    fn broadcast<T: CommData>(&self, _buf: &mut [T], root: usize) -> Result<(), CommError> {
        check_broadcast(root, 1)
    }

    #[inline]
    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }

    #[inline]
    fn rank(&self) -> usize {
        0
    }

    #[inline]
    fn size(&self) -> usize {
        1
    }

    fn abort(&self, error_code: i32) -> ! {
        std::process::exit(error_code)
    }
}

impl TopologyProvider for LocalBackend {
    /// This host, rank 0 of 1, computed once per process (the backend is zero-sized).
    fn topology(&self) -> &ExecutionTopology {
        static TOPOLOGY: std::sync::OnceLock<ExecutionTopology> = std::sync::OnceLock::new();
        TOPOLOGY.get_or_init(|| crate::topology::single_process(crate::BackendKind::Local))
    }
}

impl LocalCommunicator for LocalBackend {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }
}

impl SharedMemoryProvider for LocalBackend {
    type Region<T: CommData> = HeapRegion<T>;

    fn create_shared_region<T: CommData>(&self, count: usize) -> Result<HeapRegion<T>, CommError> {
        HeapRegion::new(count)
    }

    fn split_local(&self) -> Result<LocalCommKind, CommError> {
        Ok(LocalCommKind::Local(LocalBackend))
    }

    fn is_leader(&self) -> bool {
        true
    }
}

/// A "shared" region that is a private heap allocation of each rank.
///
/// Used where there is nothing to share with (the `local` backend). `fence` is a no-op and
/// each rank sees only its own writes.
///
/// # Example
/// ```
/// use cobre_comm::{HeapRegion, SharedRegion};
///
/// let mut region = HeapRegion::<f64>::new(4).unwrap();
/// assert_eq!(region.as_slice(), &[0.0; 4]);
/// region.as_mut_slice()[2] = 1.5;
/// region.fence().unwrap();
/// assert_eq!(region.as_slice()[2], 1.5);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HeapRegion<T> {
    data: Vec<T>,
}

impl<T: CommData> HeapRegion<T> {
    /// Allocates `count` default-initialised elements.
    ///
    /// # Errors
    /// [`CommError::AllocationFailed`] when the byte size overflows or the allocator
    /// refuses the memory (instead of aborting the process).
    pub fn new(count: usize) -> Result<Self, CommError> {
        let requested_bytes = count.saturating_mul(std::mem::size_of::<T>());
        let mut data = Vec::new();
        data.try_reserve_exact(count)
            .map_err(|e| CommError::AllocationFailed {
                requested_bytes,
                message: format!("heap allocation of {count} elements failed: {e}"),
            })?;
        data.resize(count, T::default());
        Ok(HeapRegion { data })
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(cobre_comm::HeapRegion::<u8>::new(5).unwrap().len(), 5);
    /// ```
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the region holds no element.
    ///
    /// ```
    /// assert!(cobre_comm::HeapRegion::<u8>::new(0).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl<T: CommData> SharedRegion<T> for HeapRegion<T> {
    fn as_slice(&self) -> &[T] {
        &self.data
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    fn fence(&self) -> Result<(), CommError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_region_refuses_absurd_sizes() {
        let err = HeapRegion::<u64>::new(usize::MAX / 4).unwrap_err();
        assert!(matches!(err, CommError::AllocationFailed { .. }), "{err}");
    }

    #[test]
    fn allgatherv_writes_only_the_named_range() {
        let mut recv = [9_i32; 5];
        LocalBackend
            .allgatherv(&[1, 2], &mut recv, &[2], &[2])
            .unwrap();
        assert_eq!(recv, [9, 9, 1, 2, 9]);
    }
}
