//! `--metrics`: a Prometheus endpoint scraped while tracing, its exposition checked with
//! the Prometheus client's own parser, and its counters against the final summary.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use goprobe_integration::{env, split_output, temp_path, wait_timeout};
use serde_json::Value;

fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("metrics endpoint listening");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: goprobe\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// Parses the exposition with prometheus_client; returns {"name{labels}": value}.
fn parse_with_prometheus_client(text: &str) -> Value {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut python = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", workspace.join(".goprobe/python"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition (install it with `cargo xtask setup`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_endpoint_serves_live_counters() {
    let env = env();
    let fixture = env.fixture(env.newest(), "default", "spinner");
    let addr = "127.0.0.1:19465";
    let out = temp_path("metrics.jsonl");
    let mut goprobe = Command::new(&env.goprobe)
        .args(["--json", "-q", "-o"])
        .arg(&out)
        .args(["--metrics", addr, "--"])
        .arg(&fixture)
        .args(["-workers", "2", "-procs", "1", "-duration", "3s"])
        .stdout(Stdio::null())
        .spawn()
        .expect("goprobe starts");
    std::thread::sleep(Duration::from_millis(2200));
    let text = scrape(addr);
    let parsed = parse_with_prometheus_client(&text);
    let live = parsed["goprobe_preemptions_total{action=\"reschedule\",path=\"async\"}"]
        .as_f64()
        .unwrap_or_else(|| panic!("no async preemptions metric:\n{text}"));
    assert!(live >= 20.0, "after ~2 s of spinning: {live}");
    let buckets = parsed
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("goprobe_hop_latency_seconds_bucket"))
        .count();
    assert!(buckets > 10, "hop latency histograms: {buckets} buckets");

    let status = wait_timeout(&mut goprobe, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let (_, _, summary) = split_output(&out);
    let total = summary["preemptions"]["async_reschedule"].as_f64().unwrap();
    assert!(
        total >= live,
        "counters only grow: live {live}, final {total}"
    );
}
