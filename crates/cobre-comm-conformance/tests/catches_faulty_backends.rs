//! The kit must fail backends that are subtly wrong: test doubles that wrap `LocalBackend`
//! and corrupt one thing each.

use cobre_comm::{
    CommData, CommError, Communicator, HeapRegion, LocalBackend, LocalCommKind, ReduceOp,
    SharedMemoryProvider,
};
use cobre_comm_conformance::{Options, Report, run_suite};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Flips the lowest bit of one byte of the allreduce result.
    AllreduceBitFlip,
    /// Writes one element past the rank's target range in allgatherv.
    GatherOutOfRange,
    /// Accepts any broadcast root.
    UncheckedRoot,
    /// Leaves the last allgatherv element unwritten.
    GatherShort,
}

struct Faulty(Fault);

impl Communicator for Faulty {
    fn allgatherv<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError> {
        let before = recv.to_vec();
        LocalBackend.allgatherv(send, recv, counts, displs)?;
        let end = displs[0] + counts[0];
        if self.0 == Fault::GatherOutOfRange && end < recv.len() && !send.is_empty() {
            recv[end] = send[0];
        }
        if self.0 == Fault::GatherShort && !send.is_empty() {
            recv[end - 1] = before[end - 1];
        }
        Ok(())
    }

    fn allreduce<T: CommData>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        LocalBackend.allreduce(send, recv, op)?;
        if self.0 == Fault::AllreduceBitFlip && recv.len() > 1 {
            let bytes = cobre_comm::datatype::as_bytes_mut(recv);
            let i = bytes.len() / 2;
            bytes[i] ^= 1;
        }
        Ok(())
    }

    fn broadcast<T: CommData>(&self, buf: &mut [T], root: usize) -> Result<(), CommError> {
        if self.0 == Fault::UncheckedRoot {
            return Ok(());
        }
        LocalBackend.broadcast(buf, root)
    }

    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }

    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn abort(&self, error_code: i32) -> ! {
        std::process::exit(error_code)
    }
}

impl SharedMemoryProvider for Faulty {
    type Region<T: CommData> = HeapRegion<T>;

    fn create_shared_region<T: CommData>(&self, count: usize) -> Result<HeapRegion<T>, CommError> {
        HeapRegion::new(count)
    }

    fn split_local(&self) -> Result<LocalCommKind, CommError> {
        LocalBackend.split_local()
    }

    fn is_leader(&self) -> bool {
        true
    }
}

fn run(fault: Fault) -> Report {
    let options = Options {
        max_len: 10_000,
        sequence_len: 300,
        ..Options::default()
    };
    run_suite(&Faulty(fault), &options)
}

fn failed(report: &Report) -> Vec<String> {
    report
        .results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.name.clone())
        .collect()
}

#[test]
fn a_faithful_double_passes() {
    let report = run(Fault::None);
    assert!(report.passed(), "{:#?}", report.failures());
}

#[test]
fn a_single_flipped_bit_in_allreduce_fails_every_allreduce_check() {
    let report = run(Fault::AllreduceBitFlip);
    let failed = failed(&report);
    for name in [
        "allreduce sum f64",
        "allreduce min u8",
        "allreduce max i32",
        "mixed sequence",
    ] {
        assert!(
            failed.iter().any(|n| n == name),
            "{name} did not fail: {failed:?}"
        );
    }
    assert!(
        failed
            .iter()
            .all(|n| n.starts_with("allreduce") || n == "mixed sequence"),
        "{failed:?}"
    );
    let detail = &report
        .results
        .iter()
        .find(|r| r.name == "allreduce sum f64")
        .unwrap()
        .detail;
    assert!(detail.contains("expected"), "{detail}");
}

#[test]
fn writing_outside_the_target_range_fails() {
    let failed_names = failed(&run(Fault::GatherOutOfRange));
    assert!(
        failed_names.iter().any(|n| n == "allgatherv uneven f64"),
        "{failed_names:?}"
    );
    assert!(
        failed_names
            .iter()
            .any(|n| n == "allgatherv non-contiguous displacements"),
        "{failed_names:?}"
    );
}

#[test]
fn a_missing_element_fails() {
    let failed_names = failed(&run(Fault::GatherShort));
    assert!(
        failed_names.iter().any(|n| n == "allgatherv large"),
        "{failed_names:?}"
    );
}

#[test]
fn an_unchecked_root_fails_the_error_row() {
    assert_eq!(
        failed(&run(Fault::UncheckedRoot)),
        ["error: broadcast root >= size"]
    );
}
