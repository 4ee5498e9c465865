//! The `bpf(2)` calls goprobe makes itself, where aya 0.14 has no API: loading and
//! linking for uprobe_multi ([`super::multi`]) and the kernel's count of skipped runs.

use std::{
    io,
    mem::{offset_of, size_of},
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya_obj::generated::bpf_prog_info;

/// `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `bpf(cmd, attr)`, its non-negative result (an fd, or 0) or errno.
pub(super) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised bpf_attr prefix of the size passed.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(result)
}

/// `bpf_attr.info` of `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// How many times the kernel skipped running the program instead of nesting it
/// (`bpf_prog_info.recursion_misses`): a raw tracepoint program already running on the
/// CPU (counted since 6.2), a classic tracepoint program while any tracing program runs
/// on the CPU (since 6.7). `None` where the kernel's `bpf_prog_info` has no such field
/// (before 5.12). uprobe programs are never skipped: the kernel runs them nested.
pub fn recursion_misses(program: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    // SAFETY: bpf_prog_info is plain integers; all-zero is the request "no arrays".
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoByFd {
        bpf_fd: program.as_raw_fd() as u32,
        info_len: size_of::<bpf_prog_info>() as u32,
        info: (&raw mut info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    // The kernel fills what it knows and says how much that was.
    let known = attr.info_len as usize >= offset_of!(bpf_prog_info, recursion_misses) + 8;
    Ok(known.then_some(info.recursion_misses))
}
