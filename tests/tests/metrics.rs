//! `--metrics`: a Prometheus endpoint scraped while tracing, its exposition checked with
//! the Prometheus client's own parser, and its counters against the final summary.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use goprobe_integration::{env, send_signal, split_output, temp_path, wait_timeout};
use serde_json::Value;

/// Sends a raw request in `parts` (a pause between them, as TCP segments) and returns
/// the response's head and body. The request must ask for `Connection: close`.
fn http(addr: &str, parts: &[&[u8]]) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("metrics endpoint listening");
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        stream.write_all(part).unwrap();
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_string(), body.to_string())
}

fn scrape(addr: &str) -> String {
    let (head, body) = http(
        addr,
        &[b"GET /metrics HTTP/1.1\r\nHost: goprobe\r\nConnection: close\r\n\r\n"],
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("text/plain; version=0.0.4"),
        "{head}"
    );
    body
}

/// The histogram series (`…_bucket{…le=…}`) of an exposition.
fn bucket_series(parsed: &Value) -> Vec<String> {
    let mut keys: Vec<String> = parsed
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.contains("_bucket{"))
        .cloned()
        .collect();
    keys.sort();
    keys
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
    let out = temp_path("metrics.jsonl");
    // Port 0: goprobe must print the port the kernel chose.
    let mut goprobe = Command::new(&env.goprobe)
        .args(["--json", "-q", "-o"])
        .arg(&out)
        .args(["--metrics", "127.0.0.1:0", "--"])
        .arg(&fixture)
        // Long enough for any machine: the test ends the trace itself with SIGINT.
        .args(["-workers", "2", "-procs", "1", "-duration", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("goprobe starts");
    let mut stderr = BufReader::new(goprobe.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("goprobe: serving Prometheus metrics at http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("first stderr line names the endpoint: {first:?}"))
        .to_string();
    assert!(!addr.ends_with(":0"), "the real port, not 0: {addr}");
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));

    // The first scrape as soon as tracing has counted something (polled, not slept: a
    // slow machine starts slowly).
    let early = loop {
        let parsed = parse_with_prometheus_client(&scrape(&addr));
        if parsed["goprobe_events_total{kind=\"sysmon_tick\"}"].as_f64() > Some(0.0) {
            break parsed;
        }
        assert!(
            goprobe.try_wait().unwrap().is_none(),
            "goprobe ended before counting a sysmon tick"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Everything that can fail is exported, and is zero on a calm run.
    for (series, want) in [
        ("goprobe_malformed_records_total{}", 0.0),
        ("goprobe_read_errors_total{kind=\"signal_m\"}", 0.0),
        ("goprobe_lost_events_total{kind=\"tgkill\"}", 0.0),
    ] {
        assert_eq!(early[series].as_f64(), Some(want), "{series}");
    }

    // A real HTTP server: HEAD, query strings, a request split across segments,
    // methods and paths it does not serve.
    let (head, body) = http(
        &addr,
        &[b"HEAD /metrics HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"],
    );
    assert!(head.starts_with("HTTP/1.1 200"), "HEAD: {head}");
    assert!(body.is_empty(), "HEAD has no body: {body:?}");
    for parts in [
        &[&b"GET /metrics?x=1 HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"[..]][..],
        &[
            b"GET /metr",
            b"ics HTTP/1.1\r\nHost: g\r\n",
            b"Connection: close\r\n\r\n",
        ],
    ] {
        let (head, body) = http(&addr, parts);
        assert!(head.starts_with("HTTP/1.1 200"), "{parts:?}: {head}");
        assert!(body.contains("goprobe_events_total"), "{parts:?}");
    }
    let (head, _) = http(
        &addr,
        &[b"GET /nothing HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"],
    );
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = http(
        &addr,
        &[b"POST /metrics HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"],
    );
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");

    std::thread::sleep(Duration::from_millis(1500));
    let text = scrape(&addr);
    let late = parse_with_prometheus_client(&text);
    let live = late["goprobe_preemptions_total{action=\"reschedule\",path=\"async\"}"]
        .as_f64()
        .unwrap_or_else(|| panic!("no async preemptions metric:\n{text}"));
    assert!(live >= 10.0, "after ~1.5 s of spinning: {live}");
    // Histogram series are fixed from the first scrape: none appear later.
    let buckets = bucket_series(&late);
    assert!(buckets.len() > 10, "histograms: {} buckets", buckets.len());
    assert_eq!(
        bucket_series(&early),
        buckets,
        "le series changed between scrapes"
    );

    send_signal(goprobe.id(), libc::SIGINT);
    let status = wait_timeout(&mut goprobe, Duration::from_secs(30));
    // The command got the SIGINT too, and goprobe exits with its status.
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status}");
    let (_, _, summary) = split_output(&out);
    let total = summary["preemptions"]["async_reschedule"].as_f64().unwrap();
    assert!(
        total >= live,
        "counters only grow: live {live}, final {total}"
    );
}
