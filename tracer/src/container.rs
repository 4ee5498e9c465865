//! Which container a process runs in, as far as the host can tell: its pid inside its
//! pid namespace, its cgroup, and a container id where the cgroup path has a runtime's
//! recognisable shape (docker, containerd, CRI-O, podman, Kubernetes pods).

use std::fs;

/// Where a traced process lives, for display.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The process's pid in its own pid namespace, when that is not goprobe's.
    pub ns_pid: Option<u32>,
    /// Its cgroup v2 path (`0::` in `/proc/PID/cgroup`), or the first v1 one; `None` at
    /// the root.
    pub cgroup: Option<String>,
    pub container: Option<ContainerId>,
}

/// A container runtime's id, from the cgroup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerId {
    /// `docker`, `containerd`, `cri-o`, `podman` or `kubernetes` (a pod's cgroup whose
    /// runtime the path does not say).
    pub runtime: &'static str,
    /// The full id (64 hex digits).
    pub id: String,
}

impl ContainerId {
    /// The 12-digit form the runtimes' tools print.
    pub fn short(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

impl ContainerInfo {
    pub fn read(pid: u32, ns_pid: Option<u32>) -> ContainerInfo {
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| cgroup_path(&text));
        let container = cgroup.as_deref().and_then(container_id);
        ContainerInfo {
            ns_pid,
            cgroup,
            container,
        }
    }

    /// Nothing to say: the host's pid namespace and the root cgroup.
    pub fn is_host(&self) -> bool {
        self.ns_pid.is_none() && self.cgroup.is_none()
    }

    /// "pid 1 in its pid namespace, container docker 1a2b3c4d5e6f, cgroup /…", or "" on
    /// the host.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ns_pid) = self.ns_pid {
            parts.push(format!("pid {ns_pid} in its pid namespace"));
        }
        if let Some(container) = &self.container {
            parts.push(format!(
                "container {} {}",
                container.runtime,
                container.short()
            ));
        }
        if let Some(cgroup) = &self.cgroup {
            parts.push(format!("cgroup {cgroup}"));
        }
        parts.join(", ")
    }
}

/// The cgroup v2 path of a `/proc/PID/cgroup` file, else the first non-root v1 path
/// (hybrid hosts may leave v2's at the root). `None` when every path is the root.
fn cgroup_path(text: &str) -> Option<String> {
    let paths: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let id = fields.next()?;
            let _controllers = fields.next()?;
            Some((id, fields.next()?))
        })
        .collect();
    let v2 = paths
        .iter()
        .find(|(id, _)| *id == "0")
        .map(|(_, path)| *path);
    v2.filter(|path| *path != "/")
        .or_else(|| {
            paths
                .iter()
                .map(|(_, path)| *path)
                .find(|path| *path != "/" && container_id(path).is_some())
        })
        .map(str::to_string)
}

/// The container id in a cgroup path: the innermost segment that carries 64 hex digits.
/// systemd's driver names scopes `docker-ID.scope`, `cri-containerd-ID.scope`,
/// `crio-ID.scope`, `libpod-ID.scope`; cgroupfs drivers use `/docker/ID`,
/// `/kubepods/…/pod…/ID`, `/libpod_parent/libpod-ID`.
fn container_id(path: &str) -> Option<ContainerId> {
    let in_pod = path.contains("kubepods");
    path.rsplit('/').find_map(|segment| {
        let name = segment.strip_suffix(".scope").unwrap_or(segment);
        let (prefix, id) = match name.rsplit_once('-') {
            Some((prefix, id)) => (prefix, id),
            None => ("", name),
        };
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let runtime = match prefix {
            "docker" => "docker",
            "cri-containerd" => "containerd",
            "crio" => "cri-o",
            "libpod" => "podman",
            // `crio-conmon-ID` is CRI-O's monitor, not the container.
            "crio-conmon" | "libpod-conmon" => return None,
            "" if path.contains("/docker/") => "docker",
            "" if in_pod => "kubernetes",
            _ => return None,
        };
        Some(ContainerId {
            runtime,
            id: id.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn id_of(path: &str) -> Option<(&'static str, String)> {
        container_id(path).map(|c| (c.runtime, c.id))
    }

    #[test]
    fn runtimes_are_recognised_by_their_cgroup_shapes() {
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), "docker"),
            (format!("/docker/{ID}"), "docker"),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c.slice/cri-containerd-{ID}.scope"
                ),
                "containerd",
            ),
            (
                format!("/kubepods.slice/kubepods-pod1b2c.slice/crio-{ID}.scope"),
                "cri-o",
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                "podman",
            ),
            (
                format!("/kubepods/besteffort/pod0f3e-11/{ID}"),
                "kubernetes",
            ),
        ];
        for (path, runtime) in cases {
            assert_eq!(id_of(&path), Some((runtime, ID.to_string())), "{path}");
        }
        assert_eq!(
            id_of(&format!("/machine.slice/crio-conmon-{ID}.scope")),
            None
        );
        assert_eq!(id_of("/user.slice/user-0.slice/session-3.scope"), None);
        assert_eq!(id_of(&format!("/other-{ID}")), None);
    }

    #[test]
    fn cgroup_v2_path_is_preferred_and_the_root_is_nothing() {
        let hybrid = format!("4:memory:/docker/{ID}\n1:cpu:/\n0::/\n");
        assert_eq!(cgroup_path(&hybrid), Some(format!("/docker/{ID}")));
        assert_eq!(
            cgroup_path("0::/system.slice/x.service\n").as_deref(),
            Some("/system.slice/x.service")
        );
        // A v1 path that names no container (this host's own sandbox) is not the process's.
        assert_eq!(cgroup_path("4:memory:/process_api/efc7\n0::/\n"), None);
        assert_eq!(cgroup_path("0::/\n"), None);
    }

    #[test]
    fn description_names_what_is_known() {
        let info = ContainerInfo {
            ns_pid: Some(1),
            cgroup: Some(format!("/docker/{ID}")),
            container: container_id(&format!("/docker/{ID}")),
        };
        assert_eq!(
            info.describe(),
            format!(
                "pid 1 in its pid namespace, container docker 0123456789ab, cgroup /docker/{ID}"
            )
        );
        assert!(ContainerInfo::default().is_host());
        assert_eq!(ContainerInfo::default().describe(), "");
    }
}
