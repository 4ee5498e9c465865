//! uprobe_multi (Linux 6.6+): every uprobe of one binary in one BPF link.
//!
//! Why by hand: each perf-event uprobe link pays an RCU-tasks-trace grace period under the
//! kernel's `event_mutex` when it is closed (~0.1–0.2 s each here), so eleven of them made
//! goprobe's exit take over a second; one uprobe_multi link pays one grace period for the
//! whole binary. aya 0.14 (the newest release that builds with the toolchains goprobe
//! supports) can neither parse a `uprobe.multi` section nor load a program with the
//! `BPF_TRACE_UPROBE_MULTI` expected attach type, so this module loads the dispatching
//! program `go_runtime` a second time itself: the same object, parsed and relocated
//! against the maps aya created with aya-obj's public API, loaded with
//! `BPF_PROG_LOAD(expected_attach_type = BPF_TRACE_UPROBE_MULTI)` and attached with
//! `BPF_LINK_CREATE`. The attribute layouts are `include/uapi/linux/bpf.h`'s.
//! Replace with aya's own support (`UProbe` on a `uprobe.multi` program) once goprobe can
//! use an aya release that has it.

use std::{
    collections::HashSet,
    ffi::{CStr, CString},
    io,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::Path,
};

use aya::{Ebpf, maps::Map};
use thiserror::Error;

/// `BPF_PROG_TYPE_KPROBE` (uprobes are kprobe-type programs).
const BPF_PROG_TYPE_KPROBE: u32 = 2;
/// `BPF_TRACE_UPROBE_MULTI`.
const BPF_TRACE_UPROBE_MULTI: u32 = 48;
/// `bpf(2)` commands.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

#[derive(Debug, Error)]
pub enum MultiError {
    #[error("this kernel has no uprobe_multi links (6.6+)")]
    Unsupported,
    #[error("preparing the uprobe_multi program: {0}")]
    Prepare(String),
    #[error("the kernel rejected program {program} (uprobe_multi): {summary}")]
    Verifier {
        program: String,
        summary: String,
        log: String,
    },
    #[error("attaching uprobe_multi to {path}: {source}")]
    Attach {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type` (the kernel zero
/// fills the rest when given a shorter size).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` with the `uprobe_multi` member.
#[repr(C)]
#[derive(Default)]
struct UprobeMultiLinkAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    path: u64,
    offsets: u64,
    ref_ctr_offsets: u64,
    cookies: u64,
    cnt: u32,
    multi_flags: u32,
    pid: u32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = super::sys::bpf(cmd, attr)?;
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The dispatching program, loaded for uprobe_multi links.
pub struct MultiProgram {
    fd: OwnedFd,
}

impl MultiProgram {
    /// Loads `program` from `object` against the maps of `ebpf` (already loaded from the
    /// same object). [`MultiError::Unsupported`] when the kernel does not know the attach
    /// type: it refuses such a load before verifying anything, leaving the log empty.
    pub fn load(ebpf: &Ebpf, object: &[u8], program: &str) -> Result<MultiProgram, MultiError> {
        let prepare =
            |what: &str, err: &dyn std::fmt::Display| MultiError::Prepare(format!("{what}: {err}"));
        let mut obj = aya_obj::Object::parse(object).map_err(|err| prepare("parsing", &err))?;
        let maps: Vec<(String, aya_obj::Map)> = obj.maps.drain().collect();
        let mut fds = Vec::with_capacity(maps.len());
        for (name, _) in &maps {
            let map = ebpf
                .map(name)
                .ok_or_else(|| MultiError::Prepare(format!("map {name} was not loaded")))?;
            let fd = map_fd(map)
                .ok_or_else(|| MultiError::Prepare(format!("map {name}: unexpected type")))?;
            fds.push(fd);
        }
        let text_sections: HashSet<usize> = obj.functions.keys().map(|(index, _)| *index).collect();
        obj.relocate_maps(
            maps.iter()
                .zip(&fds)
                .map(|((name, map), fd)| (name.as_str(), *fd, map)),
            &text_sections,
        )
        .map_err(|err| prepare("relocating maps", &err))?;
        obj.relocate_calls(&text_sections)
            .map_err(|err| prepare("relocating calls", &err))?;
        let found = obj
            .programs
            .get(program)
            .ok_or_else(|| MultiError::Prepare(format!("no program {program}")))?;
        let function = obj
            .functions
            .get(&found.function_key())
            .ok_or_else(|| MultiError::Prepare(format!("no code for {program}")))?;
        let license = found.license.clone();
        let insns = &function.instructions;

        let mut name = [0u8; 16];
        for (slot, byte) in name.iter_mut().zip(program.bytes().take(15)) {
            *slot = byte;
        }
        let load = |log: Option<&mut Vec<u8>>| {
            let mut attr = ProgLoadAttr {
                prog_type: BPF_PROG_TYPE_KPROBE,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: license.as_ptr() as u64,
                prog_name: name,
                expected_attach_type: BPF_TRACE_UPROBE_MULTI,
                ..ProgLoadAttr::default()
            };
            if let Some(log) = log {
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
            }
            bpf(BPF_PROG_LOAD, &mut attr)
        };
        let loaded = match load(None) {
            Ok(fd) => Ok(MultiProgram { fd }),
            Err(err)
                if err.raw_os_error() == Some(libc::EINVAL)
                    || err.raw_os_error() == Some(libc::EACCES) =>
            {
                let mut log = vec![0u8; 1 << 20];
                let retry = load(Some(&mut log));
                let text = CStr::from_bytes_until_nul(&log)
                    .map(|log| log.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match retry {
                    Ok(fd) => Ok(MultiProgram { fd }),
                    Err(_) if text.trim().is_empty() => Err(MultiError::Unsupported),
                    Err(err) => Err(MultiError::Verifier {
                        program: program.to_owned(),
                        summary: format!("{} ({err})", last_complaint(&text)),
                        log: text,
                    }),
                }
            }
            Err(err) => Err(MultiError::Verifier {
                program: program.to_owned(),
                summary: err.to_string(),
                log: String::new(),
            }),
        }?;
        if loaded.links_are_supported() {
            Ok(loaded)
        } else {
            Err(MultiError::Unsupported)
        }
    }

    /// Kernels before 6.6 load a kprobe-type program whatever its expected attach type
    /// (so the load above proves nothing), then refuse the link with EINVAL before looking
    /// at its arguments. 6.6+ looks the path up first: a path that does not exist gives
    /// ENOENT there, and nothing is attached either way.
    fn links_are_supported(&self) -> bool {
        let path = c"/nonexistent/goprobe-uprobe-multi-probe";
        let offsets = [0u64];
        let mut attr = UprobeMultiLinkAttr {
            prog_fd: self.fd.as_fd().as_raw_fd() as u32,
            attach_type: BPF_TRACE_UPROBE_MULTI,
            path: path.as_ptr() as u64,
            offsets: offsets.as_ptr() as u64,
            cnt: 1,
            ..UprobeMultiLinkAttr::default()
        };
        match bpf(BPF_LINK_CREATE, &mut attr) {
            Ok(_) => true,
            Err(err) => err.raw_os_error() != Some(libc::EINVAL),
        }
    }

    /// One link for all `points` (file offset, cookie) in `binary`, for every process
    /// mapping it or, with `pid`, that process only. Closing the fd detaches them all.
    pub fn attach(
        &self,
        binary: &Path,
        points: &[(u64, u64)],
        pid: Option<u32>,
    ) -> Result<OwnedFd, MultiError> {
        let path_text = binary.display().to_string();
        let path = CString::new(binary.as_os_str().as_encoded_bytes()).map_err(|_| {
            MultiError::Attach {
                path: path_text.clone(),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            }
        })?;
        let offsets: Vec<u64> = points.iter().map(|(offset, _)| *offset).collect();
        let cookies: Vec<u64> = points.iter().map(|(_, cookie)| *cookie).collect();
        let mut attr = UprobeMultiLinkAttr {
            prog_fd: self.fd.as_fd().as_raw_fd() as u32,
            attach_type: BPF_TRACE_UPROBE_MULTI,
            path: path.as_ptr() as u64,
            offsets: offsets.as_ptr() as u64,
            cookies: cookies.as_ptr() as u64,
            cnt: points.len() as u32,
            pid: pid.unwrap_or(0),
            ..UprobeMultiLinkAttr::default()
        };
        bpf(BPF_LINK_CREATE, &mut attr).map_err(|source| MultiError::Attach {
            path: path_text,
            source,
        })
    }
}

/// The fd of one of the object's maps, of the kinds goprobe's object has.
fn map_fd(map: &Map) -> Option<RawFd> {
    let data = match map {
        Map::Array(data)
        | Map::HashMap(data)
        | Map::PerCpuArray(data)
        | Map::PerCpuHashMap(data)
        | Map::RingBuf(data)
        | Map::PerfEventArray(data)
        | Map::Unsupported(data) => data,
        _ => return None,
    };
    Some(data.fd().as_fd().as_raw_fd())
}

/// The last line of a verifier log that says what went wrong.
pub fn last_complaint(log: &str) -> String {
    let line = log
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| {
            !line.is_empty()
                && !line.starts_with("processed ")
                && !line.starts_with("verification time")
                && !line.starts_with("stack depth")
        })
        .unwrap_or("rejected");
    super::name_unknown_helpers(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_layouts_match_the_uapi() {
        // include/uapi/linux/bpf.h: expected_attach_type at 68; uprobe_multi.pid at 56.
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(UprobeMultiLinkAttr, path), 16);
        assert_eq!(std::mem::offset_of!(UprobeMultiLinkAttr, cnt), 48);
        assert_eq!(std::mem::offset_of!(UprobeMultiLinkAttr, pid), 56);
    }
}
