//! Element types at run time: which primitive a `T: CommData` is, and the byte views of
//! `CommData` slices that the byte-moving backends use.
//!
//! Byte views go through [`bytemuck`], which is sound because [`CommData`] requires
//! [`bytemuck::Pod`]: no padding, and every bit pattern valid.

use std::any::TypeId;

use crate::traits::CommData;

/// The element type of a collective's buffers, as seen at run time.
///
/// The seven primitives with reduction kernels have their own variant; every other
/// `CommData` type is [`ElementType::Other`]. Backends put this in their fingerprints so
/// that ranks calling a collective with different element types get a clear error.
///
/// # Example
/// ```
/// use cobre_comm::ElementType;
///
/// assert_eq!(ElementType::of::<f64>(), ElementType::F64);
/// assert_eq!(ElementType::of::<u16>(), ElementType::Other);
/// assert!(ElementType::F64.is_reducible());
/// assert_eq!(ElementType::I32.name(), "i32");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ElementType {
    /// `f32`
    F32 = 1,
    /// `f64`
    F64 = 2,
    /// `i32`
    I32 = 3,
    /// `i64`
    I64 = 4,
    /// `u8`
    U8 = 5,
    /// `u32`
    U32 = 6,
    /// `u64`
    U64 = 7,
    /// Any other `CommData` type (moved as bytes, not reducible).
    Other = 0,
}

impl ElementType {
    /// The element type of `T`. Resolves at compile time after monomorphisation.
    pub fn of<T: 'static>() -> ElementType {
        let id = TypeId::of::<T>();
        if id == TypeId::of::<f32>() {
            ElementType::F32
        } else if id == TypeId::of::<f64>() {
            ElementType::F64
        } else if id == TypeId::of::<i32>() {
            ElementType::I32
        } else if id == TypeId::of::<i64>() {
            ElementType::I64
        } else if id == TypeId::of::<u8>() {
            ElementType::U8
        } else if id == TypeId::of::<u32>() {
            ElementType::U32
        } else if id == TypeId::of::<u64>() {
            ElementType::U64
        } else {
            ElementType::Other
        }
    }

    /// Whether [`ReduceOp`](crate::ReduceOp)s are defined for this type.
    pub const fn is_reducible(self) -> bool {
        !matches!(self, ElementType::Other)
    }

    /// The Rust name of the primitive (`"other"` for [`ElementType::Other`]).
    pub const fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "f32",
            ElementType::F64 => "f64",
            ElementType::I32 => "i32",
            ElementType::I64 => "i64",
            ElementType::U8 => "u8",
            ElementType::U32 => "u32",
            ElementType::U64 => "u64",
            ElementType::Other => "other",
        }
    }

    /// A one-byte code for wire formats and fingerprints (0 for `Other`).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The inverse of [`ElementType::code`].
    ///
    /// ```
    /// use cobre_comm::ElementType;
    /// assert_eq!(ElementType::from_code(2), Some(ElementType::F64));
    /// assert_eq!(ElementType::from_code(99), None);
    /// ```
    pub const fn from_code(code: u8) -> Option<ElementType> {
        Some(match code {
            0 => ElementType::Other,
            1 => ElementType::F32,
            2 => ElementType::F64,
            3 => ElementType::I32,
            4 => ElementType::I64,
            5 => ElementType::U8,
            6 => ElementType::U32,
            7 => ElementType::U64,
            _ => return None,
        })
    }
}

/// The bytes of a `CommData` slice.
///
/// ```
/// assert_eq!(cobre_comm::datatype::as_bytes(&[1_u32]), &1_u32.to_ne_bytes());
/// ```
pub fn as_bytes<T: CommData>(values: &[T]) -> &[u8] {
    bytemuck::cast_slice(values)
}

/// The bytes of a mutable `CommData` slice; any bytes written must come from values of `T`
/// (which `Pod` makes always valid).
///
/// ```
/// let mut v = [0_u32; 1];
/// cobre_comm::datatype::as_bytes_mut(&mut v).copy_from_slice(&7_u32.to_ne_bytes());
/// assert_eq!(v, [7]);
/// ```
pub fn as_bytes_mut<T: CommData>(values: &mut [T]) -> &mut [u8] {
    bytemuck::cast_slice_mut(values)
}

/// `data` as elements of `T`: a view when it is aligned for `T`, else a copy in `scratch`
/// (received or shared bytes are usually aligned; this keeps the rare case correct).
#[cfg(any(feature = "shm", feature = "tcp"))]
pub(crate) fn elements_of<'a, T: CommData>(data: &'a [u8], scratch: &'a mut Vec<T>) -> &'a [T] {
    if let Ok(aligned) = bytemuck::try_cast_slice(data) {
        return aligned;
    }
    scratch.clear();
    scratch.extend(
        data.chunks_exact(std::mem::size_of::<T>())
            .map(bytemuck::pod_read_unaligned::<T>),
    );
    scratch
}

/// A stable 64-bit digest of `T`'s name and size, so fingerprints can tell apart two
/// non-primitive element types of the same size.
#[cfg(any(feature = "shm", feature = "tcp"))]
pub(crate) fn type_digest<T: 'static>() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    std::any::type_name::<T>().hash(&mut hasher);
    std::mem::size_of::<T>().hash(&mut hasher);
    hasher.finish()
}
