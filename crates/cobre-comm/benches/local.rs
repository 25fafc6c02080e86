//! `LocalBackend` against the copies its collectives describe: the contract is that they
//! cost nothing more than `copy_from_slice`.
//!
//! ```sh
//! cargo bench -p cobre-comm --bench local
//! ```

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::hint::black_box;

use cobre_comm::{Communicator, LocalBackend, ReduceOp};
use criterion::{Criterion, criterion_group, criterion_main};

fn allgatherv(c: &mut Criterion) {
    let send = vec![1.5_f64; 1 << 17]; // 1 MiB
    let mut recv = vec![0.0_f64; 1 << 17];
    let mut group = c.benchmark_group("allgatherv 1 MiB");
    group.bench_function("copy_from_slice", |b| {
        b.iter(|| black_box(&mut recv[..]).copy_from_slice(black_box(&send)));
    });
    group.bench_function("LocalBackend", |b| {
        b.iter(|| {
            LocalBackend
                .allgatherv(black_box(&send), black_box(&mut recv), &[1 << 17], &[0])
                .unwrap();
        });
    });
    group.finish();
}

fn allreduce(c: &mut Criterion) {
    let send = [1.5_f64];
    let mut recv = [0.0_f64];
    let mut group = c.benchmark_group("allreduce 8 B");
    group.bench_function("copy_from_slice", |b| {
        b.iter(|| black_box(&mut recv[..]).copy_from_slice(black_box(&send)));
    });
    group.bench_function("LocalBackend", |b| {
        b.iter(|| {
            LocalBackend
                .allreduce(black_box(&send), black_box(&mut recv), ReduceOp::Sum)
                .unwrap();
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = allgatherv, allreduce
}
criterion_main!(benches);
