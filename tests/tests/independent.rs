//! goprobe's counts against independent sources.

use std::{fs, path::Path};

use goprobe_integration::{env, temp_path, trace_command};

const TRACEFS: &str = "/sys/kernel/tracing";

/// A uprobe created through tracefs (`uprobe_events`), counted by the kernel itself in
/// `uprobe_profile`: nothing of goprobe is involved. Removed on drop.
struct TracefsUprobe {
    name: &'static str,
}

impl TracefsUprobe {
    fn new(name: &'static str, binary: &Path, file_offset: u64) -> TracefsUprobe {
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

    fn hits(&self) -> u64 {
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
fn planned_offset(goprobe: &Path, binary: &Path, function: &str) -> u64 {
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

/// The number of asynchronous preemptions goprobe reports equals the number of times
/// `runtime.asyncPreempt2` executed, as counted by a kernel uprobe goprobe knows nothing
/// of.
#[test]
fn async_preemptions_equal_kernel_counted_async_preempt2_executions() {
    let env = env();
    for release in &env.releases {
        // A private copy: no other process can hit a uprobe on this inode.
        let binary = temp_path("spinner");
        fs::copy(env.fixture(release, "default", "spinner"), &binary).unwrap();
        let offset = planned_offset(&env.goprobe, &binary, "runtime.asyncPreempt2");
        let probe = TracefsUprobe::new("ap2", &binary, offset);
        let traced = trace_command(
            &env,
            &[],
            &binary,
            &["-workers", "4", "-procs", "1", "-duration", "2s"],
            &[],
        );
        let hits = probe.hits();
        drop(probe);
        let _ = fs::remove_file(&binary);
        let asyncs = traced.count("async_preempt");
        eprintln!(
            "{release}: goprobe async preemptions {asyncs}, kernel-counted asyncPreempt2 \
             executions {hits}"
        );
        assert!(
            hits >= 50,
            "{release}: kernel counted only {hits} executions"
        );
        assert_eq!(asyncs, hits, "{release}: goprobe vs kernel uprobe_profile");
    }
}
