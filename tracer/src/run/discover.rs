//! `--all`: which processes to trace. Every process is looked at when tracing starts and
//! again at each exec (`sched_process_exec`); a process is traced when the filters let
//! it through and its binary is a Go program goprobe supports. Each binary is judged
//! once, by device and inode, however many processes run it.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::Path,
};

use crate::{cli::Cli, container::ContainerInfo, gobin::GoBinary, gobin::GoBinaryError};

/// What became of a binary already looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// Probed, in this BINARIES slot.
    Traced(usize),
    /// Not traced: not Go, too old, unreadable (said once, when first seen).
    Skipped,
}

/// A first look at a binary.
pub enum Verdict {
    Go(Box<GoBinary>),
    /// Not an ELF executable, or no Go runtime tables: ignored without a word.
    NotGo,
}

pub struct Discovery {
    exe: Option<glob::Pattern>,
    comm: Option<String>,
    cgroup: Option<String>,
    binaries: HashMap<(u64, u64), Known>,
    /// goprobe itself, and processes whose executable could not be read (said once).
    ignored: HashSet<u32>,
}

impl Discovery {
    pub fn new(cli: &Cli) -> Discovery {
        Discovery {
            exe: cli.exe.clone(),
            comm: cli.comm.clone(),
            cgroup: cli.cgroup.clone(),
            binaries: HashMap::new(),
            ignored: HashSet::from([std::process::id()]),
        }
    }

    /// Whether the filters let process `pid` through (kernel threads never).
    pub fn admits(&self, pid: u32) -> bool {
        if self.ignored.contains(&pid) {
            return false;
        }
        let proc_dir = format!("/proc/{pid}");
        if let Some(pattern) = &self.exe {
            let Ok(exe) = fs::read_link(format!("{proc_dir}/exe")) else {
                return false;
            };
            if !pattern.matches_path(&exe) {
                return false;
            }
        }
        if let Some(comm) = &self.comm {
            let found = fs::read_to_string(format!("{proc_dir}/comm")).unwrap_or_default();
            if found.trim_end_matches('\n') != comm {
                return false;
            }
        }
        if let Some(wanted) = &self.cgroup {
            let info = ContainerInfo::read(pid, None);
            let by_path = info
                .cgroup
                .as_deref()
                .is_some_and(|path| path.starts_with(wanted.as_str()));
            let by_id = info
                .container
                .as_ref()
                .is_some_and(|container| container.id.starts_with(wanted.as_str()));
            if !by_path && !by_id {
                return false;
            }
        }
        true
    }

    pub fn seen(&self, identity: (u64, u64)) -> Option<Known> {
        self.binaries.get(&identity).copied()
    }

    pub fn skip(&mut self, identity: (u64, u64)) {
        self.binaries.insert(identity, Known::Skipped);
    }

    pub fn trace(&mut self, identity: (u64, u64), slot: usize) {
        self.binaries.insert(identity, Known::Traced(slot));
    }
}

/// Every pid in `/proc` now, numerically.
pub fn running_pids() -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Opens a binary and tells a Go program from anything else. Errors other than "not
/// Go" (a damaged Go binary, an unreadable file) are said, since the user asked for
/// every Go program; `shown` names it.
pub fn classify(path: &Path, shown: &Path) -> Verdict {
    match GoBinary::open(path) {
        Ok(binary) => Verdict::Go(Box::new(binary)),
        Err(
            GoBinaryError::NotElf { .. }
            | GoBinaryError::NotGo { .. }
            | GoBinaryError::UnsupportedElf { .. },
        ) => Verdict::NotGo,
        Err(err) => {
            crate::diag!("goprobe: skipping {}: {err}", shown.display());
            Verdict::NotGo
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(exe: Option<&str>, comm: Option<&str>, cgroup: Option<&str>) -> Discovery {
        Discovery {
            exe: exe.map(|p| glob::Pattern::new(p).unwrap()),
            comm: comm.map(str::to_string),
            cgroup: cgroup.map(str::to_string),
            binaries: HashMap::new(),
            ignored: HashSet::from([std::process::id()]),
        }
    }

    #[test]
    fn filters_admit_by_exe_comm_and_cgroup() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        let own_cgroup = ContainerInfo::read(pid, None).cgroup;
        let cases = [
            (discovery(None, None, None), true),
            (discovery(Some("*/sleep"), None, None), true),
            (
                discovery(Some(&exe.display().to_string()), Some("sleep"), None),
                true,
            ),
            (discovery(Some("/nowhere/*"), None, None), false),
            (discovery(None, Some("sleep"), None), true),
            (discovery(None, Some("sleepy"), None), false),
            (
                discovery(None, None, Some("/goprobe-no-such-cgroup")),
                false,
            ),
        ];
        for (index, (filters, admitted)) in cases.iter().enumerate() {
            assert_eq!(filters.admits(pid), *admitted, "case {index}");
        }
        if let Some(cgroup) = own_cgroup {
            assert!(discovery(None, None, Some(&cgroup)).admits(pid));
        }
        // goprobe itself, never.
        assert!(!discovery(None, None, None).admits(std::process::id()));
        let _ = child.kill();
        let _ = child.wait();
    }
}
