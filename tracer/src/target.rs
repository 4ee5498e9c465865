//! The traced process: an existing pid, or a command goprobe starts paused so the probes
//! are in place before its first instruction. Also watches for its exit (pidfd).

use std::{
    ffi::{CString, OsStr},
    fs,
    io::{self, Read as _},
    num::NonZeroU32,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

use thiserror::Error;
use tokio::io::{Interest, unix::AsyncFd};

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("no process with pid {pid} (check the pid, or that goprobe runs in its pid namespace)")]
    NoSuchProcess { pid: u32 },
    #[error("cannot read /proc/{pid}/exe: {error} ({hint})")]
    ExeUnreadable {
        pid: u32,
        // Not the error's source: the message already names it, and anyhow's chain would
        // print it twice.
        error: io::Error,
        hint: &'static str,
    },
    #[error("process {pid} is a kernel thread: it runs no program to trace")]
    KernelThread { pid: u32 },
    #[error("process {pid} has already exited (a zombie its parent has not reaped)")]
    Zombie { pid: u32 },
    #[error("process {pid} has no executable")]
    NoExecutable { pid: u32 },
    #[error("command not found: {command} (not an executable file, nor on PATH)")]
    CommandNotFound { command: String },
    #[error("cannot start {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("argument contains a NUL byte: {0:?}")]
    NulInArgument(String),
}

/// A process being traced.
#[derive(Clone, Debug)]
pub struct Target {
    pub pid: NonZeroU32,
    /// What the uprobes attach to: `/proc/PID/exe` for a running process (the right inode
    /// even inside another mount namespace), the resolved path for a started command.
    pub attach_path: PathBuf,
    /// The executable's path as the process sees it: what to show (`/proc/PID/exe`'s
    /// link, which ends in " (deleted)" when the file was replaced).
    pub exe: PathBuf,
    /// The value of GODEBUG in the target's environment, if set.
    pub godebug: Option<String>,
    /// True when goprobe started the process (and so can reap it and report its status).
    pub is_child: bool,
}

impl Target {
    /// Whether the process still exists (it may have exited during attach).
    pub fn is_alive(&self) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        let sent = unsafe { libc::kill(self.pid.get() as i32, 0) } == 0;
        // EPERM: it exists, and is another user's (goprobe without CAP_KILL).
        sent || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    /// `GODEBUG=asyncpreemptoff=1` in its environment.
    pub fn async_preemption_off(&self) -> bool {
        async_preemption_off(self.godebug.as_deref())
    }

    /// An already running process.
    pub fn existing(pid: NonZeroU32) -> Result<Target, TargetError> {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if !proc_dir.exists() {
            return Err(TargetError::NoSuchProcess { pid: pid.get() });
        }
        // The state first: readable by anyone, unlike a kernel thread's or a zombie's exe.
        let stat = fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        match parse_stat(&stat) {
            Some(('Z', _)) => return Err(TargetError::Zombie { pid: pid.get() }),
            Some((_, flags)) if flags & PF_KTHREAD != 0 => {
                return Err(TargetError::KernelThread { pid: pid.get() });
            }
            Some(_) => {}
            None => return Err(TargetError::NoSuchProcess { pid: pid.get() }),
        }
        let exe = proc_dir.join("exe");
        let real_exe = match fs::read_link(&exe) {
            Ok(path) => path,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(if proc_dir.exists() {
                    TargetError::NoExecutable { pid: pid.get() }
                } else {
                    TargetError::NoSuchProcess { pid: pid.get() }
                });
            }
            Err(error) => {
                // SAFETY: geteuid has no preconditions.
                let hint = if unsafe { libc::geteuid() } == 0 {
                    "even root is refused here: the process belongs to another user \
                     namespace, or ptrace access to it is restricted (Yama, lockdown)"
                } else {
                    "to trace another user's process goprobe needs root, or CAP_SYS_PTRACE"
                };
                return Err(TargetError::ExeUnreadable {
                    pid: pid.get(),
                    error,
                    hint,
                });
            }
        };
        let godebug = fs::read(proc_dir.join("environ"))
            .ok()
            .and_then(|environ| env_value(&environ, b"GODEBUG"));
        Ok(Target {
            pid,
            attach_path: exe,
            exe: real_exe,
            godebug,
            is_child: false,
        })
    }
}

/// `PF_KTHREAD` in the `flags` field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// `(state, flags)` from `/proc/PID/stat` (`pid (comm) state ppid … flags …`; the command
/// name may hold spaces and parentheses, so fields count from its last `)`).
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After state: ppid pgrp session tty_nr tpgid, then flags.
    let flags = fields.nth(5)?.parse().ok()?;
    Some((state, flags))
}

/// `GODEBUG=...` from a NUL-separated environment block.
/// Whether a `GODEBUG` value turns asynchronous preemption off.
fn async_preemption_off(godebug: Option<&str>) -> bool {
    godebug.is_some_and(|godebug| {
        godebug
            .split(',')
            .any(|kv| kv.trim() == "asyncpreemptoff=1")
    })
}

fn env_value(environ: &[u8], name: &[u8]) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name)?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// Resolves a command name like `execvp` would.
pub fn resolve_command(command: &str) -> Result<PathBuf, TargetError> {
    let not_found = || TargetError::CommandNotFound {
        command: command.to_string(),
    };
    if command.contains('/') {
        let path = PathBuf::from(command);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(not_found())
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(not_found)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A forked child waiting, before `exec`, for [`PausedChild::release`].
#[derive(Debug)]
pub struct PausedChild {
    pub pid: NonZeroU32,
    command: String,
    go: OwnedFd,
    exec_error: OwnedFd,
}

/// Forks a child that blocks on a pipe and then `execv`s `path` with `args` (args[0]
/// included) and goprobe's environment. Between the two, goprobe attaches its probes to
/// the child's pid; the kernel keeps them across `exec` (a uprobe's pid filter follows
/// the task's new address space).
pub fn spawn_paused(path: &Path, args: &[String]) -> Result<(Target, PausedChild), TargetError> {
    let command = args.first().cloned().unwrap_or_default();
    let c_path = cstring(path.as_os_str())?;
    let c_args = args
        .iter()
        .map(|arg| cstring(OsStr::new(arg)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|arg| arg.as_ptr()).collect();
    argv.push(std::ptr::null());
    let spawn_error = |source| TargetError::Spawn {
        command: command.clone(),
        source,
    };
    let (go_read, go_write) = pipe().map_err(spawn_error)?;
    let (err_read, err_write) = pipe().map_err(spawn_error)?;
    // SAFETY: no preconditions.
    let parent = unsafe { libc::getpid() };

    // SAFETY: after fork the child only calls async-signal-safe functions (close, prctl,
    // getppid, read, write, execv, _exit) on data prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(spawn_error(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; every fd is ours.
        unsafe {
            // The command never outlives goprobe: if goprobe dies (even by SIGKILL) the
            // kernel sends it SIGTERM, before exec (it is waiting below) and after (the
            // setting survives exec). It is tied to the forking thread, goprobe's main
            // thread, which lives as long as goprobe. Closing the child's copy of the
            // start pipe's write end makes the read below see EOF if goprobe is gone.
            libc::close(go_write.as_raw_fd());
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != parent {
                libc::_exit(127);
            }
            let mut byte = 0u8;
            if libc::read(go_read.as_raw_fd(), (&raw mut byte).cast(), 1) == 1 {
                libc::execv(c_path.as_ptr(), argv.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(err_write.as_raw_fd(), (&raw const errno).cast(), 4);
            }
            libc::_exit(127);
        }
    }
    drop((go_read, err_write));
    let pid = NonZeroU32::new(pid as u32).expect("fork returned a positive pid");
    let target = Target {
        pid,
        attach_path: path.to_path_buf(),
        exe: path.to_path_buf(),
        godebug: std::env::var("GODEBUG").ok(),
        is_child: true,
    };
    Ok((
        target,
        PausedChild {
            pid,
            command,
            go: go_write,
            exec_error: err_read,
        },
    ))
}

impl PausedChild {
    /// Lets the child `exec`. Returns once the exec has happened (or failed).
    pub fn release(self) -> Result<(), TargetError> {
        let spawn_error = |source| TargetError::Spawn {
            command: self.command.clone(),
            source,
        };
        // SAFETY: writing one byte from a local to our own pipe.
        let written = unsafe { libc::write(self.go.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        if written != 1 {
            return Err(spawn_error(io::Error::last_os_error()));
        }
        // The error pipe is close-on-exec: EOF means exec succeeded.
        let mut errno = [0u8; 4];
        let mut pipe = fs::File::from(self.exec_error.try_clone().map_err(spawn_error)?);
        match pipe.read(&mut errno) {
            Ok(4) => Err(spawn_error(io::Error::from_raw_os_error(
                i32::from_ne_bytes(errno),
            ))),
            _ => Ok(()),
        }
    }

    /// Kills and reaps the child (used when attaching failed).
    pub fn abort(self) {
        kill_and_reap(self.pid);
    }
}

/// Kills (SIGKILL) and reaps a child goprobe started.
fn kill_and_reap(pid: NonZeroU32) {
    // SAFETY: our own child; reaping it avoids a zombie.
    unsafe {
        libc::kill(pid.get() as i32, libc::SIGKILL);
        libc::waitpid(pid.get() as i32, std::ptr::null_mut(), 0);
    }
}

fn cstring(text: &OsStr) -> Result<CString, TargetError> {
    CString::new(text.as_bytes())
        .map_err(|_| TargetError::NulInArgument(text.to_string_lossy().into_owned()))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both fds on success; we own them from then on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fds returned by pipe2.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// How the traced process ended, when goprobe can know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// Not our child: we saw it go but not its status.
    Unknown,
}

impl ExitStatus {
    /// goprobe's own exit code for a `-- CMD` run, shell style.
    pub fn as_exit_code(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => 128 + signal,
            ExitStatus::Unknown => 0,
        }
    }
}

/// Notices the target exec'ing another program: the probes sit on the old binary's inode,
/// so they would go silent while signal events kept coming. Compares the file behind
/// `/proc/PID/exe` with the traced binary; goprobe's own binary (a started command before
/// its `exec`) does not count.
pub struct ExecWatch {
    pid: NonZeroU32,
    traced: (u64, u64),
    own: Option<(u64, u64)>,
}

/// Device and inode of a file, following links: what uprobes belong to.
pub fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
}

impl ExecWatch {
    pub fn new(target: &Target) -> io::Result<ExecWatch> {
        Ok(ExecWatch {
            pid: target.pid,
            traced: file_identity(&target.attach_path).ok_or_else(|| {
                io::Error::other(format!("cannot stat {}", target.attach_path.display()))
            })?,
            own: file_identity(Path::new("/proc/self/exe")),
        })
    }

    /// The program the target runs now, when it is no longer the traced binary.
    pub fn exec_seen(&self) -> Option<PathBuf> {
        let exe = PathBuf::from(format!("/proc/{}/exe", self.pid));
        // Gone: the exit watch reports that.
        let now = file_identity(&exe)?;
        if now == self.traced || Some(now) == self.own {
            return None;
        }
        Some(fs::read_link(&exe).unwrap_or(exe))
    }
}

/// Resolves when the process exits.
pub struct ExitWatch {
    pidfd: AsyncFd<OwnedFd>,
    pid: NonZeroU32,
    is_child: bool,
}

impl ExitWatch {
    pub fn new(target: &Target) -> io::Result<ExitWatch> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, target.pid.get() as i32, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd from the kernel.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the OwnedFd stays open as long as the AsyncFd owns it.
        let pidfd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)?;
        Ok(ExitWatch {
            pidfd,
            pid: target.pid,
            is_child: target.is_child,
        })
    }

    /// Stops the command goprobe started: sends it `signal`, waits up to `grace` for it to
    /// exit, then kills it; returns how it ended. The way `timeout(1)` ends a command.
    pub async fn stop_child(
        &self,
        signal: i32,
        grace: std::time::Duration,
    ) -> io::Result<ExitStatus> {
        // SAFETY: signalling our own child; the pidfd keeps its pid from being reused
        // until we reap it.
        unsafe { libc::kill(self.pid.get() as i32, signal) };
        match tokio::time::timeout(grace, self.exited()).await {
            Ok(status) => status,
            Err(_) => {
                // SAFETY: as above.
                unsafe { libc::kill(self.pid.get() as i32, libc::SIGKILL) };
                self.exited().await
            }
        }
    }

    /// Waits for the exit; reaps our own child to get its status.
    pub async fn exited(&self) -> io::Result<ExitStatus> {
        let _ready = self.pidfd.readable().await?;
        if !self.is_child {
            return Ok(ExitStatus::Unknown);
        }
        let mut status = 0;
        // SAFETY: reaping our own exited child; does not block (pidfd is readable).
        let reaped = unsafe { libc::waitpid(self.pid.get() as i32, &mut status, 0) };
        if reaped < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        })
    }
}

/// Load bias of the executable in `pid`'s address space: runtime address minus link-time
/// address. 0 for non-PIE executables. `segments` are (p_vaddr, p_offset) pairs.
pub fn load_bias(pid: NonZeroU32, exe_path: &Path, segments: &[(u64, u64)]) -> Option<u64> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .or_else(|| fs::canonicalize(exe_path).ok())?;
    parse_load_bias(&maps, &exe, segments)
}

fn parse_load_bias(maps: &str, exe: &Path, segments: &[(u64, u64)]) -> Option<u64> {
    let exe = exe.to_str()?;
    maps.lines()
        .filter(|line| line.ends_with(exe))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, _) = fields.next()?.split_once('-')?;
            let offset = u64::from_str_radix(fields.nth(1)?, 16).ok()?;
            Some((u64::from_str_radix(start, 16).ok()?, offset))
        })
        .min_by_key(|(_, offset)| *offset)
        .and_then(|(start, offset)| {
            // The segment whose page-aligned file range starts at this mapping's offset.
            let (vaddr, file_offset) = segments
                .iter()
                .filter(|(_, seg_offset)| *seg_offset & !0xfff <= offset)
                .max_by_key(|(_, seg_offset)| *seg_offset)?;
            let link_addr = (vaddr & !0xfff) + (offset - (file_offset & !0xfff));
            start.checked_sub(link_addr)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_godebug_from_environ() {
        let environ = b"PATH=/bin\0GODEBUG=asyncpreemptoff=1,gctrace=1\0HOME=/\0";
        assert_eq!(
            env_value(environ, b"GODEBUG").as_deref(),
            Some("asyncpreemptoff=1,gctrace=1")
        );
        assert_eq!(env_value(b"GODEBUGX=1\0", b"GODEBUG"), None);
        assert_eq!(env_value(b"", b"GODEBUG"), None);
    }

    #[test]
    fn load_bias_for_pie_and_non_pie() {
        let maps = "\
555555554000-555555600000 r--p 00000000 fd:01 123 /app/bin\n\
555555600000-555555700000 r-xp 000ac000 fd:01 123 /app/bin\n\
7ffff7dd3000-7ffff7dfc000 r-xp 00000000 fd:01 456 /usr/lib/ld.so\n";
        let segments = [(0, 0), (0xad000, 0xac000)];
        assert_eq!(
            parse_load_bias(maps, Path::new("/app/bin"), &segments),
            Some(0x555555554000)
        );
        let non_pie = "00400000-00500000 r-xp 00000000 fd:01 1 /app/static\n";
        assert_eq!(
            parse_load_bias(non_pie, Path::new("/app/static"), &[(0x400000, 0)]),
            Some(0)
        );
        assert_eq!(
            parse_load_bias(non_pie, Path::new("/other"), &[(0x400000, 0)]),
            None
        );
    }

    #[test]
    fn resolves_commands() {
        assert!(resolve_command("sh").is_ok());
        assert!(matches!(
            resolve_command("definitely-not-a-command-xyz"),
            Err(TargetError::CommandNotFound { .. })
        ));
        assert!(resolve_command("/etc/passwd").is_err(), "not executable");
    }

    #[test]
    fn missing_pid_is_reported() {
        // pid_max is at most 2^22 on Linux.
        let pid = NonZeroU32::new(4_194_305).unwrap();
        assert!(matches!(
            Target::existing(pid),
            Err(TargetError::NoSuchProcess { pid: 4_194_305 })
        ));
    }

    #[test]
    fn stat_state_and_flags() {
        let zombie = "4321 (my (odd) name) Z 1 4321 4321 0 -1 4194564 0 0";
        assert_eq!(parse_stat(zombie), Some(('Z', 4194564)));
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0";
        assert!(parse_stat(kthread).is_some_and(|(_, flags)| flags & PF_KTHREAD != 0));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn kernel_threads_and_zombies_are_named() {
        // pid 2 is kthreadd on Linux.
        let err = Target::existing(NonZeroU32::new(2).unwrap()).unwrap_err();
        assert!(matches!(err, TargetError::KernelThread { pid: 2 }), "{err}");
    }

    #[test]
    fn exit_status_codes() {
        assert_eq!(ExitStatus::Code(3).as_exit_code(), 3);
        assert_eq!(ExitStatus::Signal(9).as_exit_code(), 137);
    }
}

/// What `/proc` says about a running target that decides whether it can be preempted
/// asynchronously: read for `goprobe verify` before a started command is stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    /// `GODEBUG` and `GOMAXPROCS` from its environment.
    pub godebug: Option<String>,
    pub gomaxprocs: Option<String>,
    /// The `Seccomp:` mode (0 none, 1 strict, 2 filter).
    pub seccomp: Option<u32>,
    pub threads: u32,
    /// SIGURG ignored (`SigIgn`) or caught (`SigCgt`): process-wide.
    pub sigurg_ignored: bool,
    pub sigurg_caught: bool,
    /// Threads with SIGURG in their `SigBlk` mask, still there when looked at again
    /// (the runtime blocks every signal for a moment while it starts a thread).
    pub sigurg_blocked: Vec<BlockedThread>,
}

/// A thread of the target that blocks SIGURG: no preemption signal reaches the
/// goroutine it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedThread {
    pub tid: u32,
    /// Its `comm`.
    pub name: String,
}

/// Further looks at threads seen blocking SIGURG, each after twice the wait of the last:
/// a starting thread blocks every signal until it reaches `minit`, which takes well under
/// the first 50 ms here but can take longer on a slow or overloaded CPU (a qemu guest
/// without KVM). 750 ms in all, paid only when some thread blocks it.
const BLOCKED_RECHECKS: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(200),
    std::time::Duration::from_millis(400),
];

impl ProcessFacts {
    /// `GODEBUG=asyncpreemptoff=1` in its environment.
    pub fn async_preemption_off(&self) -> bool {
        async_preemption_off(self.godebug.as_deref())
    }

    /// `None` when the process is gone.
    pub fn read(pid: u32) -> Option<ProcessFacts> {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let status = fs::read_to_string(dir.join("status")).ok()?;
        let environ = fs::read(dir.join("environ")).unwrap_or_default();
        let field = |status: &str, name: &str| -> Option<String> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(|value| value.trim().to_string())
        };
        let has_sigurg = |mask: Option<String>| {
            mask.and_then(|hex| u64::from_str_radix(&hex, 16).ok())
                .is_some_and(|mask| mask & (1 << (libc::SIGURG - 1)) != 0)
        };
        // `None` for a thread that is gone.
        let blocks_sigurg = |tid: &str| {
            fs::read_to_string(dir.join("task").join(tid).join("status"))
                .ok()
                .map(|status| has_sigurg(field(&status, "SigBlk")))
        };
        let mut facts = ProcessFacts {
            godebug: env_value(&environ, b"GODEBUG"),
            gomaxprocs: env_value(&environ, b"GOMAXPROCS"),
            seccomp: field(&status, "Seccomp").and_then(|mode| mode.parse().ok()),
            sigurg_ignored: has_sigurg(field(&status, "SigIgn")),
            sigurg_caught: has_sigurg(field(&status, "SigCgt")),
            ..ProcessFacts::default()
        };
        let mut blocked = Vec::new();
        for task in fs::read_dir(dir.join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let tid = task.file_name().to_string_lossy().into_owned();
            let Some(blocks) = blocks_sigurg(&tid) else {
                continue;
            };
            facts.threads += 1;
            if blocks {
                blocked.push(tid);
            }
        }
        for wait in BLOCKED_RECHECKS {
            if blocked.is_empty() {
                break;
            }
            std::thread::sleep(wait);
            blocked.retain(|tid| blocks_sigurg(tid) == Some(true));
        }
        facts.sigurg_blocked = blocked
            .into_iter()
            .filter_map(|tid| {
                let name = fs::read_to_string(dir.join("task").join(&tid).join("comm"))
                    .unwrap_or_default();
                Some(BlockedThread {
                    tid: tid.parse().ok()?,
                    name: name.trim().to_string(),
                })
            })
            .collect();
        Some(facts)
    }
}
