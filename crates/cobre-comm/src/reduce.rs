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

/// The binary operators of one primitive (`or` only for integers).
#[derive(Clone, Copy)]
struct Ops<E> {
    sum: fn(E, E) -> E,
    min: fn(E, E) -> E,
    max: fn(E, E) -> E,
    or: Option<fn(E, E) -> E>,
}

impl<E> Ops<E> {
    fn pick(self, op: ReduceOp) -> Option<fn(E, E) -> E> {
        match op {
            ReduceOp::Sum => Some(self.sum),
            ReduceOp::Min => Some(self.min),
            ReduceOp::Max => Some(self.max),
            ReduceOp::BitwiseOr => self.or,
        }
    }
}

macro_rules! int_ops {
    ($t:ty) => {
        Ops::<$t> {
            sum: <$t>::wrapping_add,
            min: Ord::min,
            max: Ord::max,
            or: Some(|a, b| a | b),
        }
    };
}

fn f32_ops() -> Ops<f32> {
    Ops {
        sum: |a, b| a + b,
        min: f32::min,
        max: f32::max,
        or: None,
    }
}

fn f64_ops() -> Ops<f64> {
    Ops {
        sum: |a, b| a + b,
        min: f64::min,
        max: f64::max,
        or: None,
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

/// Fails unless `op` is defined for `T`: [`check_reducible`], and `BitwiseOr` only for
/// integer types. Backends call it before any data moves.
///
/// # Errors
/// [`CommError::UnsupportedReduction`] for a type without kernels,
/// [`CommError::UnsupportedOperator`] for `BitwiseOr` on `f32` / `f64`.
///
/// # Example
/// ```
/// use cobre_comm::{reduce::check_reduction, CommError, ReduceOp};
///
/// assert!(check_reduction::<u64>(ReduceOp::BitwiseOr).is_ok());
/// assert!(matches!(
///     check_reduction::<f64>(ReduceOp::BitwiseOr),
///     Err(CommError::UnsupportedOperator { .. })
/// ));
/// ```
pub fn check_reduction<T: 'static>(op: ReduceOp) -> Result<ElementType, CommError> {
    let ty = check_reducible::<T>()?;
    if !op.applies_to_floats() && matches!(ty, ElementType::F32 | ElementType::F64) {
        return Err(CommError::UnsupportedOperator {
            op,
            type_name: std::any::type_name::<T>(),
        });
    }
    Ok(ty)
}

/// `acc[i] = op(acc[i], next[i])` for every `i`: folds the next rank's contribution into
/// the accumulator.
///
/// # Errors
/// [`CommError::UnsupportedReduction`] for element types without a kernel,
/// [`CommError::UnsupportedOperator`] for `BitwiseOr` on floats, and
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
            operation: "allreduce: a contribution's length differs from the accumulator's",
            expected: acc.len(),
            actual: next.len(),
        });
    }
    let unsupported = || CommError::UnsupportedOperator {
        op,
        type_name: std::any::type_name::<T>(),
    };
    match check_reducible::<T>()? {
        ElementType::F32 => fold::<f32, T>(acc, next, f32_ops().pick(op).ok_or_else(unsupported)?),
        ElementType::F64 => fold::<f64, T>(acc, next, f64_ops().pick(op).ok_or_else(unsupported)?),
        ElementType::I32 => {
            fold::<i32, T>(acc, next, int_ops!(i32).pick(op).ok_or_else(unsupported)?);
        }
        ElementType::I64 => {
            fold::<i64, T>(acc, next, int_ops!(i64).pick(op).ok_or_else(unsupported)?);
        }
        ElementType::U8 => fold::<u8, T>(acc, next, int_ops!(u8).pick(op).ok_or_else(unsupported)?),
        ElementType::U32 => {
            fold::<u32, T>(acc, next, int_ops!(u32).pick(op).ok_or_else(unsupported)?);
        }
        ElementType::U64 => {
            fold::<u64, T>(acc, next, int_ops!(u64).pick(op).ok_or_else(unsupported)?);
        }
        ElementType::Other => {
            return Err(CommError::UnsupportedReduction {
                type_name: std::any::type_name::<T>(),
            });
        }
    }
    Ok(())
}

/// Views `T` as the primitive `E` it is (same type, checked by the caller through
/// [`ElementType`]) and applies the operator; `cast_slice` keeps this free of `unsafe`.
fn fold<E: Pod, T: CommData>(acc: &mut [T], next: &[T], f: fn(E, E) -> E) {
    let acc: &mut [E] = bytemuck::cast_slice_mut(acc);
    let next: &[E] = bytemuck::cast_slice(next);
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
    fn bitwise_or_on_integers_only() {
        let mut acc = [0b0101_u8, 0x80];
        reduce_into(&mut acc, &[0b0011, 0x01], ReduceOp::BitwiseOr).unwrap();
        assert_eq!(acc, [0b0111, 0x81]);
        let mut acc = [-2_i64, 4];
        reduce_into(&mut acc, &[1, 1], ReduceOp::BitwiseOr).unwrap();
        assert_eq!(acc, [-1, 5]);
        let mut acc = [1.0_f64];
        let err = reduce_into(&mut acc, &[2.0], ReduceOp::BitwiseOr).unwrap_err();
        assert_eq!(
            err,
            CommError::UnsupportedOperator {
                op: ReduceOp::BitwiseOr,
                type_name: "f64"
            }
        );
        assert!(
            err.to_string().contains("expected an integer type"),
            "{err}"
        );
        assert_eq!(
            acc,
            [1.0],
            "a refused reduction leaves the accumulator alone"
        );
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
