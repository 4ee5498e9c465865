//! `deny-tgkill PROGRAM [ARGS…]`: installs a seccomp filter under which `tgkill` fails
//! with EPERM, then execs PROGRAM (the filter is inherited). What a too-strict container
//! profile does to a Go program: its SIGURGs are never sent. For `goprobe verify`'s test.

use std::{ffi::CString, os::unix::ffi::OsStrExt as _};

// Classic BPF for seccomp: load the syscall number, compare, return.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

fn main() {
    let args: Vec<CString> = std::env::args_os()
        .skip(1)
        .map(|arg| CString::new(arg.as_bytes()).expect("no NUL in arguments"))
        .collect();
    if args.is_empty() {
        eprintln!("usage: deny-tgkill PROGRAM [ARGS...]");
        std::process::exit(2);
    }
    let filter = [
        // seccomp_data.arch at offset 4: anything but x86_64 is allowed untouched.
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 4,
        },
        libc::sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 3,
            k: AUDIT_ARCH_X86_64,
        },
        // seccomp_data.nr at offset 0.
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_tgkill as u32,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with documented arguments; `program` outlives the call.
    unsafe {
        assert_eq!(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            0,
            "no_new_privs"
        );
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const _
            ),
            0,
            "seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: NUL-terminated argv of live CStrings.
    unsafe { libc::execvp(argv[0], argv.as_ptr()) };
    eprintln!(
        "deny-tgkill: exec {:?}: {}",
        args[0],
        std::io::Error::last_os_error()
    );
    std::process::exit(127);
}
