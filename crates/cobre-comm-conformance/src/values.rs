//! Test data: deterministic per-rank contributions for the seven primitive types, and the
//! comparisons used to check results.

use cobre_comm::{CommData, ElementType, ReduceOp};

/// A primitive the kit can generate, reduce and compare.
pub trait TestValue: CommData + PartialEq + std::fmt::Debug {
    /// The Rust name of the type.
    const NAME: &'static str;
    /// A value drawn from `rng`: the full range for integers; for floats, a mix of
    /// magnitudes from 1e-3 to 1e16 so that the order of a sum changes its rounding.
    fn random(rng: &mut fastrand::Rng) -> Self;
    /// The value as `f64` (for error bounds of inexact sums).
    fn to_f64(self) -> f64;
    /// `self` combined with `next` by `op`: the kit's own oracle, written with plain
    /// operators and independent of the library's reduction kernels (integers wrap on
    /// overflow; floats compare with `<` and `>`).
    #[must_use]
    fn combine(self, next: Self, op: ReduceOp) -> Self;
}

/// The oracle's minimum and maximum: plain comparisons.
fn pick<T: PartialOrd>(a: T, b: T, op: ReduceOp) -> T {
    let take_b = match op {
        ReduceOp::Min => b < a,
        _ => b > a,
    };
    if take_b { b } else { a }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl TestValue for $t {
            const NAME: &'static str = stringify!($t);
            fn random(rng: &mut fastrand::Rng) -> Self {
                <$t>::from_ne_bytes(rng.u64(..).to_ne_bytes()[..std::mem::size_of::<$t>()].try_into().expect("size"))
            }
            #[allow(clippy::cast_lossless)] // i64 and u64 have no lossless conversion
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn combine(self, next: Self, op: ReduceOp) -> Self {
                match op {
                    ReduceOp::Sum => self.wrapping_add(next),
                    ReduceOp::BitwiseOr => self | next,
                    _ => pick(self, next, op),
                }
            }
        }
    )*};
}
int_value!(i32, i64, u8, u32, u64);

const MAGNITUDES: [f64; 4] = [1e-3, 1.0, 1e8, 1e16];

impl TestValue for f64 {
    fn combine(self, next: Self, op: ReduceOp) -> Self {
        match op {
            ReduceOp::Sum => self + next,
            ReduceOp::Min | ReduceOp::Max => pick(self, next, op),
            ReduceOp::BitwiseOr => unreachable!("the kit never folds floats with BitwiseOr"),
        }
    }
    const NAME: &'static str = "f64";
    fn random(rng: &mut fastrand::Rng) -> Self {
        (rng.f64() - 0.5) * MAGNITUDES[rng.usize(..MAGNITUDES.len())]
    }
    fn to_f64(self) -> f64 {
        self
    }
}

impl TestValue for f32 {
    fn combine(self, next: Self, op: ReduceOp) -> Self {
        match op {
            ReduceOp::Sum => self + next,
            ReduceOp::Min | ReduceOp::Max => pick(self, next, op),
            ReduceOp::BitwiseOr => unreachable!("the kit never folds floats with BitwiseOr"),
        }
    }
    const NAME: &'static str = "f32";
    fn random(rng: &mut fastrand::Rng) -> Self {
        ((rng.f64() - 0.5) * MAGNITUDES[rng.usize(..3)]) as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

/// Mixes the suite seed, a rank and a salt into one generator seed.
pub(crate) fn mix(seed: u64, rank: usize, salt: u64) -> u64 {
    let mut z = seed
        ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ salt.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 31)
}

/// Rank `rank`'s contribution of `len` values for the data set named by `salt`. Every rank
/// can compute every other rank's contribution, which is how results are checked.
pub(crate) fn contribution<T: TestValue>(seed: u64, rank: usize, salt: u64, len: usize) -> Vec<T> {
    let mut rng = fastrand::Rng::with_seed(mix(seed, rank, salt));
    (0..len).map(|_| T::random(&mut rng)).collect()
}

/// Index of the first element whose bytes differ, if any.
pub(crate) fn first_difference<T: CommData>(got: &[T], expected: &[T]) -> Option<usize> {
    if got.len() != expected.len() {
        return Some(got.len().min(expected.len()));
    }
    let size = std::mem::size_of::<T>();
    let (g, e) = (
        cobre_comm::datatype::as_bytes(got),
        cobre_comm::datatype::as_bytes(expected),
    );
    g.chunks_exact(size.max(1))
        .zip(e.chunks_exact(size.max(1)))
        .position(|(a, b)| a != b)
}

/// Whether `got` is within rounding distance of the exact sum of the contributions
/// (for backends that do not promise the rank-order fold).
pub(crate) fn within_sum_bound<T: TestValue>(
    got: T,
    expected: T,
    abs_sum: f64,
    ranks: usize,
) -> bool {
    let eps = match ElementType::of::<T>() {
        ElementType::F32 => f64::from(f32::EPSILON),
        ElementType::F64 => f64::EPSILON,
        _ => return got == expected,
    };
    (got.to_f64() - expected.to_f64()).abs() <= eps * abs_sum * (ranks as f64 + 1.0)
}

/// A 64-bit digest of a slice's bytes, to compare results across ranks cheaply.
pub(crate) fn digest<T: CommData>(values: &[T]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    cobre_comm::datatype::as_bytes(values).hash(&mut hasher);
    hasher.finish()
}
