//! Thread ids across pid namespaces.
//!
//! The kernel side records host ids (`bpf_get_current_pid_tgid`, `task_struct.pid`), but a
//! process in its own pid namespace (a container) signals its threads by the ids it sees:
//! `tgkill`'s arguments and the Go runtime's `m.procid` are namespace ids. Correlation
//! pairs a signalM with its tgkill and the signal's delivery by thread, so for such a
//! process every namespace id is turned into the host's before correlation.
//!
//! The map comes from `NSpid:` in `/proc/PID/task/TID/status` (the ids in every
//! namespace from goprobe's down to the process's own). It is read when the process is
//! found in another namespace, and again when an id is missing (a new thread) or its host
//! thread is gone (the namespace id may have been reused).

use std::{collections::HashMap, fs, io, os::unix::fs::MetadataExt as _, path::PathBuf};

/// A traced process in another pid namespace than goprobe's.
#[derive(Debug)]
pub struct PidNamespace {
    host_pid: u32,
    /// The process's pid inside its namespace.
    pub ns_pid: u32,
    /// Namespace tid → host tid.
    to_host: HashMap<u32, u32>,
    /// Ids that no read of `/proc` could translate (left as they were).
    pub untranslated: u64,
}

/// Inode of a process's pid namespace (`/proc/PID/ns/pid`).
fn namespace_inode(pid: &str) -> io::Result<u64> {
    Ok(fs::metadata(format!("/proc/{pid}/ns/pid"))?.ino())
}

/// The last id of a `status` file's `NSpid:` line: the id in the innermost namespace,
/// with the first (this /proc's) one.
fn ns_ids(status: &str) -> Option<(u32, u32)> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?;
    let mut ids = line.split_whitespace().map(|id| id.parse::<u32>().ok());
    let outer = ids.next()??;
    let inner = ids.next_back().flatten().unwrap_or(outer);
    Some((outer, inner))
}

impl PidNamespace {
    /// `Some` when `pid` lives in a pid namespace other than goprobe's.
    pub fn of(pid: u32) -> io::Result<Option<PidNamespace>> {
        if namespace_inode(&pid.to_string())? == namespace_inode("self")? {
            return Ok(None);
        }
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let (_, ns_pid) = ns_ids(&status)
            .ok_or_else(|| io::Error::other(format!("/proc/{pid}/status has no NSpid line")))?;
        let mut namespace = PidNamespace {
            host_pid: pid,
            ns_pid,
            to_host: HashMap::new(),
            untranslated: 0,
        };
        namespace.scan();
        Ok(Some(namespace))
    }

    /// Reads every thread's ids again.
    fn scan(&mut self) {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.host_pid)) else {
            return;
        };
        for task in tasks.flatten() {
            let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
            if let Some((host, inner)) = ns_ids(&status) {
                self.to_host.insert(inner, host);
            }
        }
    }

    fn task_dir(&self, host_tid: u32) -> PathBuf {
        PathBuf::from(format!("/proc/{}/task/{host_tid}", self.host_pid))
    }

    /// The host id of the process's thread `ns_tid`; `ns_tid` itself, counted, when no
    /// thread of the process has that id any more.
    pub fn host_tid(&mut self, ns_tid: u32) -> u32 {
        if ns_tid == self.ns_pid {
            return self.host_pid;
        }
        let cached = self.to_host.get(&ns_tid).copied();
        if let Some(host) = cached
            && self.task_dir(host).exists()
        {
            return host;
        }
        self.scan();
        match self.to_host.get(&ns_tid).copied().or(cached) {
            Some(host) => host,
            None => {
                self.untranslated += 1;
                ns_tid
            }
        }
    }

    /// `tgkill(tgid, tid)` as the process passed it: its namespace's ids, in the host's.
    /// A tgid other than the process's own is another process of the namespace, whose
    /// host id is not looked for.
    pub fn host_tgkill_target(&mut self, tgid: u32, tid: u32) -> (u32, u32) {
        if tgid == 0 {
            // A failed tgkill whose arguments could not be read.
            (tgid, tid)
        } else if tgid == self.ns_pid {
            (self.host_pid, self.host_tid(tid))
        } else {
            self.untranslated += 1;
            (tgid, tid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nspid_lines_give_outer_and_inner_ids() {
        let status = "Name:\tspinner\nTgid:\t28749\nNSpid:\t28750\t5000\t4\nNSsid:\t1\n";
        assert_eq!(ns_ids(status), Some((28750, 4)));
        assert_eq!(ns_ids("NSpid:\t77\n"), Some((77, 77)));
        assert_eq!(ns_ids("Name:\tx\n"), None);
    }

    #[test]
    fn goprobes_own_namespace_needs_no_translation() {
        let pid = std::process::id();
        assert!(PidNamespace::of(pid).unwrap().is_none());
    }
}
