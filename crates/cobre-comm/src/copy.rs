//! Bulk copies that avoid a slow path of `memcpy` on AMD processors.
//!
//! glibc's `memcpy` copies with `rep movsb` from a few KiB up to the size of the L2 cache
//! on AMD processors. On Zen cores `rep movsb` runs 10 to 20 times slower when the
//! destination lies a few bytes *after* the source modulo 4 KiB (the two streams then
//! look like one that overlaps itself, and the core stops combining the stores). That is
//! exactly how a collective's buffers line up: the shared-memory slots start on a page,
//! and a `Vec` of a few pages or more starts 16 bytes into one (malloc's header), so every
//! copy from a slot into a caller's buffer fell into it. Measured on an AMD EPYC with
//! glibc 2.36, 64 KiB: 24-50 us instead of 1.4-2.1 us; 256 KiB: 90 us instead of 7.
//! Recent glibc releases check for it themselves; older ones are what many clusters run.
//!
//! [`copy`] therefore hands such copies to `memcpy` in blocks of [`BLOCK_BYTES`], below the
//! size at which glibc starts using `rep movsb` (4 KiB with AVX2), and leaves every other
//! copy alone: other alignments, sizes at or above the L2 size (glibc does not use
//! `rep movsb` there on AMD), and processors other than x86-64.

use std::sync::OnceLock;

/// Bytes handed to each `memcpy` when a copy is split. Smaller than glibc's `rep movsb`
/// threshold, large enough that the calls cost nothing next to the copying itself
/// (64 KiB: 1.9 us in blocks against 2.3 us whole, when whole is not slowed down).
pub(crate) const BLOCK_BYTES: usize = 2048;

/// Destinations this many bytes or fewer after the source (modulo 4 KiB) are slowed
/// down (measured: 4 to 28 bytes; the documented window is a cache line).
const ALIASING_WINDOW: usize = 63;

/// The L2 cache size when it cannot be read.
const DEFAULT_L2_BYTES: usize = 1 << 20;

/// The L2 cache size of this machine (per core), read once from sysfs.
fn l2_bytes() -> usize {
    static L2: OnceLock<usize> = OnceLock::new();
    *L2.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index2/size")
            .ok()
            .and_then(|text| parse_cache_size(&text))
            .unwrap_or(DEFAULT_L2_BYTES)
    })
}

/// Parses sysfs's cache size notation: `512K`, `1024K`, `2M`, or plain bytes.
fn parse_cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 1 << 10),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// How many bytes to hand to each `memcpy` when copying `len` bytes from address `src`
/// to address `dst`: `len` itself (one call), or [`BLOCK_BYTES`] where one call would hit
/// the slow path described in the module documentation.
pub(crate) fn block_len(dst: usize, src: usize, len: usize) -> usize {
    let skew = dst.wrapping_sub(src) % 4096;
    if cfg!(target_arch = "x86_64")
        && (1..=ALIASING_WINDOW).contains(&skew)
        && len > BLOCK_BYTES
        && len < l2_bytes()
    {
        BLOCK_BYTES
    } else {
        len
    }
}

/// `dst.copy_from_slice(src)`, split into blocks where one `memcpy` would be slow.
///
/// # Panics
/// If the lengths differ, as `copy_from_slice` does.
pub(crate) fn copy<T: Copy>(dst: &mut [T], src: &[T]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy: destination has {} elements, source {}",
        dst.len(),
        src.len()
    );
    let elem = std::mem::size_of::<T>().max(1);
    let block = block_len(
        dst.as_ptr() as usize,
        src.as_ptr() as usize,
        std::mem::size_of_val(src),
    );
    let per_block = (block / elem).max(1);
    if per_block >= src.len() {
        dst.copy_from_slice(src);
        return;
    }
    for (to, from) in dst.chunks_mut(per_block).zip(src.chunks(per_block)) {
        to.copy_from_slice(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("512K\n"), Some(512 << 10));
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("65536"), Some(65536));
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("lots"), None);
    }

    #[test]
    fn only_copies_in_the_aliasing_window_below_the_l2_size_are_split() {
        let len = 64 << 10;
        let split = if cfg!(target_arch = "x86_64") {
            BLOCK_BYTES
        } else {
            len
        };
        assert_eq!(block_len(4096 + 16, 4096, len), split);
        assert_eq!(block_len(16, 4096, len), split, "modulo 4 KiB");
        assert_eq!(block_len(4096, 4096, len), len, "same alignment");
        assert_eq!(block_len(4096, 4096 + 16, len), len, "destination before");
        assert_eq!(block_len(4096 + 64, 4096, len), len, "past the window");
        assert_eq!(block_len(4096 + 16, 4096, BLOCK_BYTES), BLOCK_BYTES);
        assert_eq!(block_len(4096 + 16, 4096, 64 << 20), 64 << 20, "above L2");
    }

    #[test]
    fn split_copies_copy_every_element() {
        // A source and destination 16 bytes apart modulo 4 KiB, the split case, with a
        // length that is not a multiple of the block.
        let src: Vec<u64> = (0..100_003).collect();
        let mut backing = vec![0_u64; 100_003 + 1024];
        let base = backing.as_ptr() as usize;
        let wanted = (src.as_ptr() as usize + 16) % 4096;
        let start = (0..512)
            .find(|&i| (base + i * 8) % 4096 == wanted)
            .unwrap_or(0);
        let dst = &mut backing[start..start + src.len()];
        copy(dst, &src);
        assert_eq!(dst, &src[..]);
    }

    #[test]
    #[should_panic(expected = "destination has 2 elements, source 3")]
    fn different_lengths_panic_as_copy_from_slice_does() {
        copy(&mut [0_u8; 2], &[1, 2, 3]);
    }
}
