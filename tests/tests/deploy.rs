//! The deployment files in `deploy/`: the Kubernetes DaemonSet against Kubernetes' own
//! schemas (kubernetes-validate, strict) and field by field, the systemd unit with
//! `systemd-analyze verify`; and goprobe itself run with each one's arguments and
//! nothing but each one's capabilities.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use goprobe_integration::{env, perf_event_needs_sys_admin, temp_path};
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python(script: &str, args: &[&Path]) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", workspace().join(".goprobe/python"))
        .output()
        .expect("python3 runs")
}

/// goprobe with `args` (the metrics port made free), for one second, with only the
/// capabilities `caps` in its bounding set (as root, the way both files run it).
fn goprobe_runs_with(goprobe: &Path, args: &[String], caps: &[&str]) {
    let (status, stderr) = goprobe_with_only(goprobe, args, caps);
    assert!(
        status.success(),
        "goprobe {args:?} with only {caps:?}: {status}\n{stderr}"
    );
    assert!(stderr.contains("serving Prometheus metrics"), "{stderr}");
}

fn goprobe_with_only(
    goprobe: &Path,
    args: &[String],
    caps: &[&str],
) -> (std::process::ExitStatus, String) {
    let args: Vec<String> = args
        .iter()
        .map(|arg| {
            if arg.ends_with(":9464") {
                "127.0.0.1:0".to_string()
            } else {
                arg.clone()
            }
        })
        .collect();
    let bounding = format!(
        "-all,{}",
        caps.iter()
            .map(|cap| format!("+{}", cap.to_lowercase().trim_start_matches("cap_")))
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = Command::new("setpriv")
        .arg(format!("--bounding-set={bounding}"))
        .arg(goprobe)
        .args(&args)
        .args(["--duration", "1"])
        .output()
        .expect("setpriv runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn daemonset_is_valid_kubernetes_and_grants_what_goprobe_needs() {
    let env = env();
    let file = workspace().join("deploy/kubernetes/goprobe-daemonset.yaml");
    let out = python(
        "import sys\nfrom kubernetes_validate.__main__ import main\nsys.argv = ['kubernetes-validate', '--strict', sys.argv[1]]\nsys.exit(main())",
        &[&file],
    );
    assert!(
        out.status.success(),
        "kubernetes-validate --strict rejects it:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = python(
        "import json, sys, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        &[&file],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let daemonset = docs
        .iter()
        .find(|doc| doc["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true, "host pids: {pod}");
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["privileged"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let caps: Vec<&str> = security["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cap| cap.as_str().unwrap())
        .collect();
    assert_eq!(caps, ["BPF", "PERFMON", "DAC_READ_SEARCH", "SYS_PTRACE"]);
    // tracefs and BTF from the host, at the paths goprobe reads.
    for (path, volume) in [
        ("/sys/kernel/tracing", "tracefs"),
        ("/sys/kernel/btf", "btf"),
    ] {
        let mounted = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == path && m["name"] == volume);
        let from_host = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == volume && v["hostPath"]["path"] == path);
        assert!(mounted && from_host, "{path} from the host");
    }
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap().to_string())
        .collect();
    assert!(args.contains(&"--all".to_string()), "{args:?}");
    let metrics = args
        .iter()
        .skip_while(|arg| *arg != "--metrics")
        .nth(1)
        .expect("--metrics ADDR");
    let port = metrics.rsplit_once(':').unwrap().1;
    assert_eq!(container["ports"][0]["containerPort"].to_string(), port);
    assert_eq!(
        daemonset["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
        port
    );
    let mut caps: Vec<String> = caps.iter().map(|cap| format!("CAP_{cap}")).collect();
    if perf_event_needs_sys_admin() {
        // As the manifest's comment says: on such a node its set fails, naming the level
        // and the fix, and works with SYS_ADMIN added.
        let only: Vec<&str> = caps.iter().map(String::as_str).collect();
        let (status, stderr) = goprobe_with_only(&env.goprobe, &args, &only);
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("kernel.perf_event_paranoid is")
                && stderr.contains("add CAP_SYS_ADMIN"),
            "names the cause: {stderr}"
        );
        caps.push("CAP_SYS_ADMIN".into());
    }
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    goprobe_runs_with(&env.goprobe, &args, &caps);
}

#[test]
fn systemd_unit_verifies_and_its_command_runs() {
    let env = env();
    let unit = std::fs::read_to_string(workspace().join("deploy/systemd/goprobe.service"))
        .expect("the unit");
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let (program, args) = exec.split_once(' ').unwrap();
    assert_eq!(program, "/usr/local/bin/goprobe");
    // Verified as installed, with the binary at the place the unit names: here, ours.
    let dir = temp_path("systemd");
    std::fs::create_dir(&dir).unwrap();
    let local = dir.join("goprobe.service");
    std::fs::write(
        &local,
        unit.replace(program, &env.goprobe.display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .expect("systemd-analyze (Debian systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze: {said}"
    );
    let caps: Vec<&str> = unit
        .lines()
        .find_map(|line| line.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet")
        .split_whitespace()
        .collect();
    let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
    assert!(args.contains(&"--all".to_string()), "{args:?}");
    goprobe_runs_with(&env.goprobe, &args, &caps);
}
