//! Cross-memory attach: copying bytes out of another rank's address space with one
//! system call (`process_vm_readv`), so a large payload is copied once, from the owner's
//! buffer into the reader's, instead of twice through the shared slots.
//!
//! The kernel allows it between processes of the same user unless the Yama security
//! module restricts tracing (`kernel.yama.ptrace_scope` above 0); then the backend keeps
//! to the slots and `cobre-comm info` says why. A remote address is never dereferenced
//! here: the kernel copies, and a bad address (a corrupt or hostile peer) is an `EFAULT`
//! error, not undefined behaviour.

use std::io;

/// Where the Yama module publishes its tracing policy.
const YAMA_SCOPE: &str = "/proc/sys/kernel/yama/ptrace_scope";

/// Whether this kernel lets ranks of one user read each other's memory; the reason when
/// it does not.
pub(crate) fn availability() -> Result<(), String> {
    match std::fs::read_to_string(YAMA_SCOPE) {
        // No Yama: the classic rule (same user, dumpable) applies.
        Err(_) => Ok(()),
        Ok(scope) if scope.trim() == "0" => Ok(()),
        Ok(scope) => Err(format!(
            "kernel.yama.ptrace_scope is {} (single-copy transfers need 0): large \
             allgatherv and broadcast go through the shared slots, copying each byte twice",
            scope.trim()
        )),
    }
}

/// Copies `dest.len()` bytes from address `remote` of process `pid` into `dest`.
///
/// # Errors
/// The system call's error (`EPERM`: not allowed to read that process; `ESRCH`: it is
/// gone; `EFAULT`: the range is not mapped there), or `UnexpectedEof` if the kernel
/// copied less than asked and then nothing.
pub(crate) fn read_from(pid: u32, remote: u64, dest: &mut [u8]) -> io::Result<()> {
    transfer(pid, remote, dest.as_mut_ptr(), dest.len(), Direction::Read)
}

/// Copies `src` to address `remote` of process `pid`.
///
/// # Errors
/// As [`read_from`]; `EFAULT` also when the range is not writable there.
pub(crate) fn write_to(pid: u32, remote: u64, src: &[u8]) -> io::Result<()> {
    // The kernel only reads through this pointer when writing to the other process.
    transfer(
        pid,
        remote,
        src.as_ptr().cast_mut(),
        src.len(),
        Direction::Write,
    )
}

/// Which way [`transfer`] copies.
#[derive(Clone, Copy)]
enum Direction {
    /// From the other process into this one (`process_vm_readv`).
    Read,
    /// From this process into the other (`process_vm_writev`).
    Write,
}

/// Copies `len` bytes between `local` (this process) and `remote` (process `pid`), the
/// way `direction` says, resuming after partial copies and interrupted calls.
fn transfer(
    pid: u32,
    remote: u64,
    local: *mut u8,
    len: usize,
    direction: Direction,
) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "process id out of range"))?;
    let mut done = 0;
    while done < len {
        let local_iov = libc::iovec {
            iov_base: local.wrapping_add(done).cast(),
            iov_len: len - done,
        };
        let remote_iov = libc::iovec {
            // An address of the other process, only ever interpreted by the kernel.
            iov_base: (remote + done as u64) as usize as *mut libc::c_void,
            iov_len: len - done,
        };
        // SAFETY: `local_iov` describes the last `len - done` bytes of the caller's slice
        // (`read_from` borrows it mutably for the call: the kernel writes at most
        // `iov_len` bytes there; `write_to` borrows it shared: the kernel only reads it).
        // The remote iovec is checked by the kernel against the other process's mappings
        // (EFAULT).
        let copied = unsafe {
            match direction {
                Direction::Read => libc::process_vm_readv(
                    pid,
                    &raw const local_iov,
                    1,
                    &raw const remote_iov,
                    1,
                    0,
                ),
                Direction::Write => libc::process_vm_writev(
                    pid,
                    &raw const local_iov,
                    1,
                    &raw const remote_iov,
                    1,
                    0,
                ),
            }
        };
        match copied {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("copied {done} of {len} bytes"),
                ));
            }
            n => done += n.unsigned_abs(),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_refuses_bad_addresses() {
        let source: Vec<u8> = (0..100_000_u32).map(|i| (i % 251) as u8).collect();
        let mut dest = vec![0_u8; source.len()];
        let me = std::process::id();
        if availability().is_ok() {
            read_from(me, source.as_ptr() as u64, &mut dest).unwrap();
            assert_eq!(dest, source);
        }
        let err = read_from(me, 8, &mut dest[..16]).unwrap_err();
        assert!(
            matches!(err.raw_os_error(), Some(libc::EFAULT | libc::EPERM)),
            "{err}"
        );
    }
}
