//! The element-wise reduction kernels, written once for every backend.
//!
//! A reduction is always computed as the rank-order fold: the accumulator starts as rank
//! 0's contribution and each following rank's contribution is combined into it with
//! [`reduce_into`]. Backends that split the work (chunk owners, trees) must still combine
//! in rank order for `Sum`, which is what makes `local`, `shm` and `tcp` agree bit for bit.

use bytemuck::Pod;

use crate::datatype::ElementType;
use crate::traits::CommData;
use crate::types::{CommError, ReduceOp};

/// The three binary operators of one primitive.
#[derive(Clone, Copy)]
struct Ops<E> {
    sum: fn(E, E) -> E,
    min: fn(E, E) -> E,
    max: fn(E, E) -> E,
}

macro_rules! int_ops {
    ($t:ty) => {
        Ops::<$t> {
            sum: <$t>::wrapping_add,
            min: Ord::min,
            max: Ord::max,
        }
    };
}

fn f32_ops() -> Ops<f32> {
    Ops {
        sum: |a, b| a + b,
        min: f32::min,
        max: f32::max,
    }
}

fn f64_ops() -> Ops<f64> {
    Ops {
        sum: |a, b| a + b,
        min: f64::min,
        max: f64::max,
    }
}

/// Fails with [`CommError::UnsupportedReduction`] unless `T` has a reduction kernel.
/// Backends call it before any data moves.
///
/// # Errors
/// [`CommError::UnsupportedReduction`] naming `T`.
pub fn check_reducible<T: 'static>() -> Result<ElementType, CommError> {
    let ty = ElementType::of::<T>();
    if ty.is_reducible() {
        Ok(ty)
    } else {
        Err(CommError::UnsupportedReduction {
            type_name: std::any::type_name::<T>(),
        })
    }
}

/// `acc[i] = op(acc[i], next[i])` for every `i`: folds the next rank's contribution into
/// the accumulator.
///
/// # Errors
/// [`CommError::UnsupportedReduction`] for element types without a kernel, and
/// [`CommError::InvalidBufferSize`] when the two slices differ in length.
///
/// # Example
/// ```
/// use cobre_comm::{reduce::reduce_into, ReduceOp};
///
/// let mut acc = [1.0_f64, 5.0];
/// reduce_into(&mut acc, &[2.0, 3.0], ReduceOp::Min).unwrap();
/// assert_eq!(acc, [1.0, 3.0]);
/// ```
pub fn reduce_into<T: CommData>(acc: &mut [T], next: &[T], op: ReduceOp) -> Result<(), CommError> {
    if acc.len() != next.len() {
        return Err(CommError::InvalidBufferSize {
            operation: "allreduce",
            expected: acc.len(),
            actual: next.len(),
            message: "a contribution's length differs from the accumulator's".into(),
        });
    }
    match check_reducible::<T>()? {
        ElementType::F32 => fold::<f32, T>(acc, next, op, f32_ops()),
        ElementType::F64 => fold::<f64, T>(acc, next, op, f64_ops()),
        ElementType::I32 => fold::<i32, T>(acc, next, op, int_ops!(i32)),
        ElementType::I64 => fold::<i64, T>(acc, next, op, int_ops!(i64)),
        ElementType::U8 => fold::<u8, T>(acc, next, op, int_ops!(u8)),
        ElementType::U32 => fold::<u32, T>(acc, next, op, int_ops!(u32)),
        ElementType::U64 => fold::<u64, T>(acc, next, op, int_ops!(u64)),
        ElementType::Other => unreachable!("check_reducible rejected it"),
    }
    Ok(())
}

/// Views `T` as the primitive `E` it is (same type, checked by the caller through
/// [`ElementType`]) and applies the operator; `cast_slice` keeps this free of `unsafe`.
fn fold<E: Pod, T: CommData>(acc: &mut [T], next: &[T], op: ReduceOp, ops: Ops<E>) {
    let acc: &mut [E] = bytemuck::cast_slice_mut(acc);
    let next: &[E] = bytemuck::cast_slice(next);
    let f = match op {
        ReduceOp::Sum => ops.sum,
        ReduceOp::Min => ops.min,
        ReduceOp::Max => ops.max,
    };
    for (a, &b) in acc.iter_mut().zip(next) {
        *a = f(*a, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_is_the_rank_order_fold() {
        // (1e16 + 1) + -1e16 == 0 in f64, whereas 1e16 + (1 + -1e16) == 2^0-ish: order matters.
        let contributions = [[1e16_f64], [1.0], [-1e16]];
        let mut acc = contributions[0];
        for c in &contributions[1..] {
            reduce_into(&mut acc, c, ReduceOp::Sum).unwrap();
        }
        assert_eq!(acc[0], (1e16 + 1.0) + -1e16);
    }

    #[test]
    fn integers_wrap_and_compare() {
        let mut acc = [250_u8, 3, 9];
        reduce_into(&mut acc, &[10, 4, 1], ReduceOp::Sum).unwrap();
        assert_eq!(acc, [4, 7, 10]);
        let mut acc = [-3_i64, 8];
        reduce_into(&mut acc, &[2, -9], ReduceOp::Min).unwrap();
        assert_eq!(acc, [-3, -9]);
        let mut acc = [1_u32, 8];
        reduce_into(&mut acc, &[2, 7], ReduceOp::Max).unwrap();
        assert_eq!(acc, [2, 8]);
    }

    #[test]
    fn floats_min_max_skip_nan() {
        let mut acc = [f32::NAN, 1.0];
        reduce_into(&mut acc, &[2.0, f32::NAN], ReduceOp::Max).unwrap();
        assert_eq!(acc, [2.0, 1.0]);
    }

    // With the `mpi` feature CommData is only the seven primitives, so there is no
    // unsupported type to pass.
    #[cfg(not(feature = "mpi"))]
    #[test]
    fn unsupported_types_are_errors() {
        let mut acc = [1_u16];
        let err = reduce_into(&mut acc, &[2], ReduceOp::Sum).unwrap_err();
        assert_eq!(err, CommError::UnsupportedReduction { type_name: "u16" });
    }

    #[test]
    fn unequal_lengths_are_errors() {
        let mut acc = [1_u32, 2];
        assert!(matches!(
            reduce_into(&mut acc, &[2], ReduceOp::Sum),
            Err(CommError::InvalidBufferSize {
                expected: 2,
                actual: 1,
                ..
            })
        ));
    }
}
