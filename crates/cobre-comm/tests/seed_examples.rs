//! The examples of the crate's original description, unchanged, each in its own module
//! with its own imports as a user would paste it.

mod static_dispatch {
    #[allow(unused_imports)]
    use cobre_comm::{CommError, Communicator};

    fn print_topology<C: Communicator>(comm: &C) {
        println!("rank {} of {}", comm.rank(), comm.size());
    }

    #[test]
    fn example() {
        print_topology(&cobre_comm::LocalBackend);
    }
}

mod local_communicator {
    use cobre_comm::LocalCommunicator;

    fn determine_leader(local_comm: &dyn LocalCommunicator) -> bool {
        local_comm.rank() == 0
    }

    #[test]
    fn example() {
        assert!(determine_leader(&cobre_comm::LocalBackend));
    }
}

#[test]
fn local_backend_example() {
    use cobre_comm::{Communicator, LocalBackend, ReduceOp};

    let comm = LocalBackend;
    assert_eq!(comm.rank(), 0);
    assert_eq!(comm.size(), 1);

    // allreduce with one rank: identity copy regardless of op.
    let send = vec![1.0_f64, 2.0, 3.0];
    let mut recv = vec![0.0_f64; 3];
    comm.allreduce(&send, &mut recv, ReduceOp::Sum).unwrap();
    assert_eq!(recv, send);
}

#[test]
fn factory_example() {
    use cobre_comm::{Communicator, create_communicator};

    // With COBRE_COMM_BACKEND unset (auto-detect):
    // - returns FerrompiBackend if launched via mpirun/mpiexec
    // - returns LocalBackend otherwise
    let comm =
        create_communicator(cobre_comm::BackendKind::Auto).expect("backend selection failed");
    println!("rank {} of {}", comm.rank(), comm.size());
}

#[test]
fn comm_backend_example() {
    use cobre_comm::{Communicator, create_communicator};

    // With COBRE_COMM_BACKEND=local, the factory returns CommBackend::Local.
    let comm =
        create_communicator(cobre_comm::BackendKind::Auto).expect("backend selection failed");
    let send = [42.0_f64];
    let mut recv = [0.0_f64];
    comm.allgatherv(&send, &mut recv, &[1], &[0]).unwrap();
    assert_eq!(recv[0], 42.0);
}
