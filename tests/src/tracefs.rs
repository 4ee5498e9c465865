//! Kernel-side counts that involve nothing of goprobe: uprobes made through tracefs
//! (`uprobe_events`) and counted by the kernel in `uprobe_profile`, at the file offsets
//! goprobe plans (`--list-probes`).

use std::{fs, path::Path};

const TRACEFS: &str = "/sys/kernel/tracing";

/// A uprobe created through tracefs (`uprobe_events`), counted by the kernel itself in
/// `uprobe_profile`: nothing of goprobe is involved. Removed on drop.
pub struct TracefsUprobe {
    name: &'static str,
}

impl TracefsUprobe {
    pub fn new(name: &'static str, binary: &Path, file_offset: u64) -> TracefsUprobe {
        let definition = format!(
            "p:goprobe_test/{name} {}:{file_offset:#x}\n",
            binary.display()
        );
        append(&format!("{TRACEFS}/uprobe_events"), &definition);
        let probe = TracefsUprobe { name };
        fs::write(probe.dir().join("enable"), "1").expect("enable tracefs uprobe");
        probe
    }

    fn dir(&self) -> std::path::PathBuf {
        Path::new(TRACEFS)
            .join("events/goprobe_test")
            .join(self.name)
    }

    pub fn hits(&self) -> u64 {
        let profile = fs::read_to_string(format!("{TRACEFS}/uprobe_profile")).unwrap();
        // "<file> <event> <hits>", the event without its group.
        profile
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(self.name))
            .and_then(|line| line.split_whitespace().nth(2)?.parse().ok())
            .unwrap_or_else(|| panic!("{} not in uprobe_profile:\n{profile}", self.name))
    }
}

impl Drop for TracefsUprobe {
    fn drop(&mut self) {
        let _ = fs::write(self.dir().join("enable"), "0");
        append(
            &format!("{TRACEFS}/uprobe_events"),
            &format!("-:goprobe_test/{}\n", self.name),
        );
    }
}

fn append(path: &str, text: &str) {
    use std::io::Write as _;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .unwrap_or_else(|err| panic!("writing {text:?} to {path}: {err}"));
}

/// File offset of a function's probe as goprobe plans it (`--list-probes`).
pub fn planned_offset(goprobe: &Path, binary: &Path, function: &str) -> u64 {
    let out = std::process::Command::new(goprobe)
        .args(["--list-probes", "--"])
        .arg(binary)
        .output()
        .expect("goprobe --list-probes");
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line: how this kernel attaches, probed by loading the object (as root).
    let kernel = text.lines().last().unwrap_or_default();
    assert!(
        kernel.starts_with("kernel: Linux ")
            && (kernel.ends_with("uprobes: uprobe_multi")
                || kernel.contains("uprobes: perf-event uprobe links")),
        "{kernel}"
    );
    let line = text
        .lines()
        .find(|line| {
            line.split_whitespace().nth(2) == Some(function)
                || line.contains(&format!(" {function} "))
        })
        .unwrap_or_else(|| panic!("{function} not in --list-probes output:\n{text}"));
    let hex: String = line
        .split("file offset 0x")
        .nth(1)
        .unwrap_or_else(|| panic!("no file offset in {line:?}"))
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u64::from_str_radix(&hex, 16).expect("hex offset")
}
