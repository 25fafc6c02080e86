//! The conformance suite on the single-process backend (and on `CommBackend::Local` when
//! a distributed feature is compiled in). Multi-process backends run the same suite on
//! 1 to 4 real processes in their own tests.

use cobre_comm::{Backend, LocalBackend};
use cobre_comm_conformance::{options_for, run_suite};

#[test]
fn local_backend_passes_the_conformance_suite() {
    let report = run_suite(&LocalBackend, &options_for(Backend::Local));
    assert_eq!((report.rank, report.size), (0, 1));
    assert!(
        report.results.len() > 40,
        "the suite ran only {} checks",
        report.results.len()
    );
    assert!(report.passed(), "{:#?}", report.failures());
}

#[test]
fn factory_local_backend_passes_the_conformance_suite() {
    let comm =
        cobre_comm::create_communicator_with(Backend::Local).expect("local is always available");
    let report = run_suite(&comm, &options_for(Backend::Local));
    assert!(report.passed(), "{:#?}", report.failures());
}
