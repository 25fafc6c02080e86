//! The shared-region lifecycle (allocate, leader writes, fence, everyone reads) and
//! `split_local`.

use cobre_comm::{Communicator, LocalCommunicator, ReduceOp, SharedMemoryProvider, SharedRegion};

use crate::Ctx;
use crate::values::{TestValue, contribution, first_difference};

const SALT_REGION: u64 = 0x5000;

fn round<C: Communicator + SharedMemoryProvider, T: TestValue>(
    ctx: &mut Ctx<'_, C>,
    count: usize,
    salt: u64,
) {
    let label = format!("region of {count} x {}", T::NAME);
    let Some(mut region) = ctx.ok(
        &format!("create_shared_region ({label})"),
        ctx.comm.create_shared_region::<T>(count),
    ) else {
        return;
    };
    let leader = ctx.comm.is_leader();
    let zeros = vec![T::default(); count];
    ctx.expect(region.as_slice().len() == count, || {
        format!(
            "{label}: as_slice().len() is {}, expected {count}",
            region.as_slice().len()
        )
    });
    ctx.expect(
        first_difference(region.as_slice(), &zeros).is_none(),
        || format!("{label}: a new region is not zero-initialised"),
    );
    // Everyone has checked the initial contents before the leader writes.
    if ctx
        .ok(&format!("fence before writing ({label})"), region.fence())
        .is_none()
    {
        return;
    }
    for phase in 0..2_u64 {
        let data: Vec<T> = contribution(ctx.opts.seed, 0, salt + phase, count);
        if leader {
            region.as_mut_slice().copy_from_slice(&data);
        }
        if ctx
            .ok(
                &format!("fence after write {phase} ({label})"),
                region.fence(),
            )
            .is_none()
        {
            return;
        }
        let expected = if leader || ctx.opts.true_shared_memory {
            &data
        } else {
            &zeros
        };
        if let Some(i) = first_difference(region.as_slice(), expected) {
            let what = if leader {
                "its own write"
            } else if ctx.opts.true_shared_memory {
                "the leader's write (true shared memory)"
            } else {
                "its own zero-initialised copy (heap region)"
            };
            ctx.fail(format!(
                "{label}, write {phase}: rank {} reads {:?} at element {i}, expected {what}: {:?}",
                ctx.rank,
                region.as_slice()[i],
                expected[i]
            ));
        }
        // Nobody reads while the leader writes the next phase.
        if ctx
            .ok(
                &format!("fence after reading {phase} ({label})"),
                region.fence(),
            )
            .is_none()
        {
            return;
        }
    }
}

pub(crate) fn lifecycle<C: Communicator + SharedMemoryProvider>(ctx: &mut Ctx<'_, C>) {
    round::<C, f64>(ctx, 1000, SALT_REGION);
    round::<C, u8>(ctx, (1 << 20) + 3, SALT_REGION + 0x10);
    round::<C, u32>(ctx, 0, SALT_REGION + 0x20);
    round::<C, i64>(ctx, 1, SALT_REGION + 0x30);
}

pub(crate) fn split_local<C: Communicator + SharedMemoryProvider>(ctx: &mut Ctx<'_, C>) {
    let Some(local) = ctx.ok("split_local", ctx.comm.split_local()) else {
        return;
    };
    let (lrank, lsize, size) = (local.rank(), local.size(), ctx.size);
    ctx.expect(lsize >= 1 && lsize <= size, || {
        format!("split_local size is {lsize}, expected 1..={size}")
    });
    ctx.expect(lrank < lsize, || {
        format!("split_local rank is {lrank}, expected less than its size {lsize}")
    });
    // The seed's code used a `Box<dyn LocalCommunicator>`: `local.as_ref()` still works.
    let as_dyn: &dyn LocalCommunicator = local.as_ref();
    let (drank, dsize) = (as_dyn.rank(), as_dyn.size());
    ctx.expect((drank, dsize) == (lrank, lsize), || {
        format!("split_local().as_ref() says rank {drank} of {dsize}, the communicator rank {lrank} of {lsize}")
    });
    for i in 0..3 {
        ctx.ok(&format!("node barrier #{i}"), as_dyn.barrier());
    }
    let leader = ctx.comm.is_leader();
    ctx.expect(leader == (lrank == 0), || {
        format!("is_leader() is {leader} but the node rank is {lrank} (the leader is node rank 0)")
    });
    let mut leaders = [0_u64];
    if ctx
        .ok(
            "allreduce of leader flags",
            ctx.comm
                .allreduce(&[u64::from(leader)], &mut leaders, ReduceOp::Sum),
        )
        .is_some()
    {
        ctx.expect(leaders[0] >= 1 && leaders[0] as usize <= size, || {
            format!(
                "{} ranks claim to be node leaders, expected 1..={size}",
                leaders[0]
            )
        });
    }
}
