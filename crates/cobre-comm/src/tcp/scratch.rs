//! [`Scratch`]: the space a rank's algorithms keep between calls for what they receive
//! before folding or placing it (allreduce pieces, rotated Bruck blocks).

use memmap2::MmapMut;

use crate::traits::CommData;

/// Space kept between calls, grown to the largest call so far and never shrunk, so that
/// large calls do not map fresh pages at every call. The real backend keeps it on the heap;
/// the network model's simulated ranks keep it in fresh anonymous mappings, which they
/// never touch (they skip the algorithms' copying and reducing): thousands of zeroed heap
/// blocks would be written zero by zero by the allocator, which serves most blocks of a
/// process with thousands of threads from its arenas.
#[derive(Debug)]
pub(crate) enum Scratch {
    /// Heap words (`u64`, so any element type fits aligned).
    Heap(Vec<u64>),
    /// A mapping (or none yet) whose pages stay untouched until written.
    Mapped(Option<MmapMut>),
}

impl Default for Scratch {
    /// Empty, on the heap.
    fn default() -> Scratch {
        Scratch::Heap(Vec::new())
    }
}

impl Scratch {
    /// Empty, grown by fresh mappings (the network model's).
    pub(crate) fn mapped() -> Scratch {
        Scratch::Mapped(None)
    }

    /// The first `count` elements as `T`, growing the space when needed. What a previous
    /// call left there stays, except when the space grows: then it is all zero.
    ///
    /// # Panics
    ///
    /// When a mapping of the size cannot be made (the model only: the heap aborts on
    /// exhaustion as every `Vec` does).
    pub(crate) fn elements<T: CommData>(&mut self, count: usize) -> &mut [T] {
        let bytes = count * std::mem::size_of::<T>();
        let all: &mut [u8] = match self {
            Scratch::Heap(words) => {
                let needed = bytes.div_ceil(8);
                if words.len() < needed {
                    // A fresh zeroed allocation, not `resize`: the old contents are not
                    // needed, and the allocator hands large zeroed blocks over as untouched
                    // pages instead of writing every byte.
                    *words = vec![0; needed];
                }
                bytemuck::cast_slice_mut(&mut words[..])
            }
            Scratch::Mapped(map) => {
                if map.as_ref().is_none_or(|m| m.len() < bytes) {
                    let fresh = MmapMut::map_anon(bytes.max(1)).unwrap_or_else(|e| {
                        panic!("cannot map {bytes} bytes of a simulated rank's scratch: {e}")
                    });
                    *map = Some(fresh);
                }
                &mut map.as_mut().expect("mapped above")[..]
            }
        };
        // Both start aligned for every element type: heap words on 8 bytes, a mapping on a
        // page.
        bytemuck::cast_slice_mut(&mut all[..bytes])
    }
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    #[test]
    fn both_kinds_grow_zeroed_and_keep_what_fits() {
        for mut scratch in [Scratch::default(), Scratch::mapped()] {
            assert!(scratch.elements::<f64>(0).is_empty());
            let first: &mut [f64] = scratch.elements(3);
            assert_eq!(first, [0.0; 3]);
            first[2] = 7.0;
            // Smaller or equal: the same space, contents kept.
            assert_eq!(scratch.elements::<f64>(3)[2], 7.0);
            assert_eq!(scratch.elements::<u8>(24).len(), 24);
            // Larger: fresh, zeroed.
            let grown: &mut [i32] = scratch.elements(5000);
            assert!(grown.iter().all(|&x| x == 0));
            assert_eq!(grown.len(), 5000);
        }
    }
}
