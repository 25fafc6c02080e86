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
//! `rep movsb` there on AMD), and processors other than AMD's (see [`amd_cores`]: on
//! Intel cores the split is the slow path).

use std::sync::OnceLock;

#[cfg(feature = "shm")]
use crate::datatype::{as_bytes, as_bytes_mut};
#[cfg(feature = "shm")]
use crate::traits::CommData;

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
pub(crate) fn l2_bytes() -> usize {
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

/// Whether this process runs on AMD (or Hygon) x86-64 cores, the ones with the slow path.
///
/// Elsewhere a split copy is itself the slow one: on Intel cores `rep movsb` writes whole
/// cache lines without first reading them, while the blocks, below glibc's `rep movsb`
/// threshold, go through vector stores that fetch every line. Into a slot the other
/// core has just read, each fetch is a trip to that core: publishing a 1 MiB broadcast in
/// 128 KiB pieces on a Xeon (Sapphire Rapids) took 296-670 us per call split and 132-216
/// unsplit, four interleaved pairs of jobs.
fn amd_cores() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        static AMD: OnceLock<bool> = OnceLock::new();
        *AMD.get_or_init(|| {
            let leaf = std::arch::x86_64::__cpuid(0);
            let mut vendor = [0_u8; 12];
            vendor[..4].copy_from_slice(&leaf.ebx.to_le_bytes());
            vendor[4..8].copy_from_slice(&leaf.edx.to_le_bytes());
            vendor[8..].copy_from_slice(&leaf.ecx.to_le_bytes());
            matches!(&vendor, b"AuthenticAMD" | b"HygonGenuine")
        })
    }
    // Miri cannot run `cpuid`; it checks the split copies, the path with the arithmetic.
    #[cfg(miri)]
    return true;
    #[cfg(all(not(target_arch = "x86_64"), not(miri)))]
    false
}

/// How many bytes to hand to each `memcpy` when copying `len` bytes from address `src`
/// to address `dst`: `len` itself (one call), or [`BLOCK_BYTES`] where one call would hit
/// the slow path described in the module documentation.
pub(crate) fn block_len(dst: usize, src: usize, len: usize) -> usize {
    block_len_on(amd_cores(), dst, src, len)
}

/// [`block_len`] on AMD cores (`amd`) or on others.
fn block_len_on(amd: bool, dst: usize, src: usize, len: usize) -> usize {
    let skew = dst.wrapping_sub(src) % 4096;
    if amd && (1..=ALIASING_WINDOW).contains(&skew) && len > BLOCK_BYTES && len < l2_bytes() {
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
    copy_in_blocks(dst, src, (block / elem).max(1));
}

/// `dst.copy_from_slice(src)` in calls of `per_block` elements (one call when it is
/// the whole length).
fn copy_in_blocks<T: Copy>(dst: &mut [T], src: &[T], per_block: usize) {
    if per_block >= src.len() {
        dst.copy_from_slice(src);
        return;
    }
    for (to, from) in dst.chunks_mut(per_block).zip(src.chunks(per_block)) {
        to.copy_from_slice(from);
    }
}

/// [`copy_streaming`] when `streaming`, else [`copy`]: callers decide from the size of
/// the whole destination (see each collective's `STREAMING_MIN_BYTES`).
#[cfg(feature = "shm")]
pub(crate) fn copy_into<T: CommData>(dst: &mut [T], src: &[T], streaming: bool) {
    if streaming {
        copy_streaming(as_bytes_mut(dst), as_bytes(src));
    } else {
        copy(dst, src);
    }
}

/// Copies `src` into `dst` (equal lengths) with non-temporal stores on x86-64: the
/// destination's lines go to memory without first being read into the cache, which
/// nearly halves the memory traffic of a copy larger than the caches (8 MiB: 0.9 ms
/// against 1.3-1.5 ms for `memcpy`, 128 MiB: 12-14 ms against 18-21 ms, on the reference
/// machine). The copied bytes are not left in the cache, so this is for copies whose
/// destination is too large to stay there anyway. Elsewhere, a plain [`copy`].
#[cfg(feature = "shm")]
pub(crate) fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_streaming: lengths differ");
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        const LANE: usize = 16;
        // Plain copies for the bytes before the first 16-byte boundary of `dst` and after
        // the last whole group of 64 bytes; streaming stores in between.
        let head = dst.as_ptr().align_offset(LANE).min(dst.len());
        let body = (dst.len() - head) / 64 * 64;
        let (dst_head, rest) = dst.split_at_mut(head);
        let (dst_body, dst_tail) = rest.split_at_mut(body);
        let (src_head, rest) = src.split_at(head);
        let (src_body, src_tail) = rest.split_at(body);
        copy(dst_head, src_head);
        for (to, from) in dst_body.chunks_exact_mut(64).zip(src_body.chunks_exact(64)) {
            // `to` is 16-byte aligned (below); `from` is only read unaligned.
            #[allow(clippy::cast_ptr_alignment)]
            let (to, from) = (
                to.as_mut_ptr().cast::<__m128i>(),
                from.as_ptr().cast::<__m128i>(),
            );
            // SAFETY: `to` and `from` each point at 64 bytes of their slices (chunks of
            // exactly 64), read and written as four 16-byte lanes; `to` is 16-byte
            // aligned (`dst_body` starts at `head`, a 16-byte boundary of `dst`, and its
            // chunks are multiples of 16 bytes), as `_mm_stream_si128` requires;
            // `_mm_loadu_si128` takes any alignment. SSE2 is part of x86-64.
            unsafe {
                for lane in 0..4 {
                    _mm_stream_si128(to.add(lane), _mm_loadu_si128(from.add(lane)));
                }
            }
        }
        // Streaming stores are weakly ordered: the fence orders them before every later
        // store of this thread (the step's signalling words among them).
        // SAFETY: a store fence has no memory-safety preconditions.
        unsafe { _mm_sfence() };
        copy(dst_tail, src_tail);
    }
    #[cfg(not(target_arch = "x86_64"))]
    copy(dst, src);
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
    fn only_copies_in_the_aliasing_window_below_the_l2_size_are_split_on_amd_cores() {
        let len = 64 << 10;
        assert_eq!(block_len_on(true, 4096 + 16, 4096, len), BLOCK_BYTES);
        assert_eq!(
            block_len_on(true, 16, 4096, len),
            BLOCK_BYTES,
            "modulo 4 KiB"
        );
        assert_eq!(block_len_on(true, 4096, 4096, len), len, "same alignment");
        assert_eq!(
            block_len_on(true, 4096, 4096 + 16, len),
            len,
            "destination before"
        );
        assert_eq!(
            block_len_on(true, 4096 + 64, 4096, len),
            len,
            "past the window"
        );
        assert_eq!(
            block_len_on(true, 4096 + 16, 4096, BLOCK_BYTES),
            BLOCK_BYTES
        );
        assert_eq!(
            block_len_on(true, 4096 + 16, 4096, 64 << 20),
            64 << 20,
            "above L2"
        );
        assert_eq!(
            block_len_on(false, 4096 + 16, 4096, len),
            len,
            "other cores"
        );
    }

    #[test]
    fn the_processor_vendor_is_read_as_the_kernel_reports_it() {
        let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
            return;
        };
        let Some(vendor) = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("vendor_id"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim())
        else {
            return;
        };
        assert_eq!(
            amd_cores(),
            matches!(vendor, "AuthenticAMD" | "HygonGenuine"),
            "/proc/cpuinfo says {vendor}"
        );
    }

    #[test]
    fn split_copies_copy_every_element() {
        // A source and destination 16 bytes apart modulo 4 KiB, the split case on AMD
        // cores, with a length that is not a multiple of the block.
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
        // The split itself, whichever processor runs the test.
        let mut split = vec![0_u64; src.len()];
        copy_in_blocks(&mut split, &src, BLOCK_BYTES / 8);
        assert_eq!(split, src);
    }

    #[test]
    #[cfg(feature = "shm")]
    #[cfg_attr(
        miri,
        ignore = "Miri cannot run `sfence` (AddressSanitizer checks this one)"
    )]
    fn streaming_copies_copy_every_byte_whatever_the_alignment_and_length() {
        let src: Vec<u8> = (0..5000_u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..20 {
            for len in [0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4000] {
                let mut backing = vec![0_u8; 4200];
                let dst = &mut backing[start..start + len];
                copy_streaming(dst, &src[7..7 + len]);
                assert_eq!(dst, &src[7..7 + len], "start {start}, length {len}");
                assert!(backing[..start].iter().all(|&b| b == 0), "wrote before");
                assert!(
                    backing[start + len..].iter().all(|&b| b == 0),
                    "wrote after"
                );
            }
        }
        let mut words = vec![0.0_f64; 1000];
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        copy_into(&mut words, &values, true);
        assert_eq!(words, values);
    }

    #[test]
    #[should_panic(expected = "destination has 2 elements, source 3")]
    fn different_lengths_panic_as_copy_from_slice_does() {
        copy(&mut [0_u8; 2], &[1, 2, 3]);
    }
}
