//! `--metrics`: a Prometheus endpoint scraped while tracing, its exposition checked with
//! the Prometheus client's own parser, and its counters against the final summary.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use goprobe_integration::{
    KillOnDrop, env, goprobe_with_stderr, send_signal, split_output, temp_path, wait_timeout,
    waiting_spinner,
};
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

/// The sum of the samples of `metric` whose labels include every one of `labels`, and how
/// many there were, in `parse_with_prometheus_client`'s output.
fn sum_of(parsed: &Value, metric: &str, labels: &[(&str, &str)]) -> (f64, usize) {
    let prefix = format!("{metric}{{");
    parsed
        .as_object()
        .unwrap()
        .iter()
        .filter(|(key, _)| {
            key.starts_with(&prefix)
                && labels
                    .iter()
                    .all(|(k, v)| key.contains(&format!("{k}=\"{v}\"")))
        })
        .fold((0.0, 0), |(sum, n), (_, value)| {
            (sum + value.as_f64().unwrap_or(0.0), n + 1)
        })
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
        if sum_of(&parsed, "goprobe_events_total", &[("kind", "sysmon_tick")]).0 > 0.0 {
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
    // One process, named by its labels.
    let labels = [
        ("path", "async"),
        ("action", "reschedule"),
        ("exe", "spinner"),
    ];
    let (live, series) = sum_of(&late, "goprobe_preemptions_total", &labels);
    assert_eq!(series, 1, "one series for the one process:\n{text}");
    assert_eq!(late["goprobe_processes{}"].as_f64(), Some(1.0), "{text}");
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

/// Percent-encodes a PromQL query for a URL.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query to Prometheus's HTTP API: the result vector's (labels, value) pairs.
fn promql(server: &str, query: &str) -> Vec<(Value, f64)> {
    let request = format!(
        "GET /api/v1/query?query={} HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\r\n",
        encode(query)
    );
    let (head, body) = http(server, &[request.as_bytes()]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let body = body
        .split_once('{')
        .map(|(_, rest)| format!("{{{rest}"))
        .unwrap_or(body);
    let json: Value = serde_json::from_str(body.trim_end_matches(|c: char| c != '}'))
        .unwrap_or_else(|err| panic!("Prometheus answered {body:?}: {err}"));
    assert_eq!(json["status"], "success", "{json}");
    json["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sample| {
            let value = sample["value"][1].as_str().unwrap().parse().unwrap();
            (sample["metric"].clone(), value)
        })
        .collect()
}

/// Prometheus's readiness endpoint says 200.
fn prometheus_ready(server: &str) -> bool {
    let (head, _) = http(
        server,
        &[b"GET /-/ready HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\r\n"],
    );
    head.starts_with("HTTP/1.1 200")
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus server (the Debian package) scrapes `goprobe --all --metrics` every
/// second: its HTTP API then has one series per traced process, labelled with the pid,
/// the executable and the container, and they go stale once the process exits.
#[test]
fn prometheus_server_sees_per_process_series_of_all() {
    let env = env();
    let dir = temp_path("prometheus");
    std::fs::create_dir(&dir).unwrap();
    let exe = dir.join("spinner");
    std::fs::copy(env.fixture(env.newest(), "default", "spinner"), &exe).unwrap();
    let args = ["-workers", "2", "-procs", "1", "-duration", "4s"];
    let spinners = [
        waiting_spinner(&exe, &args, false),
        waiting_spinner(&exe, &args, true),
    ];
    let pids: Vec<String> = spinners.iter().map(|(_, pid)| pid.to_string()).collect();

    let pattern = format!("{}/*", dir.display());
    let (goprobe, stderr) = goprobe_with_stderr(
        &env,
        &[
            "--all",
            "--exe",
            &pattern,
            "-q",
            "-o",
            "/dev/null",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let mut goprobe = KillOnDrop(goprobe);
    let mut said = Vec::new();
    let metrics = loop {
        let line = stderr
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("goprobe: {said:#?}"));
        said.push(line.clone());
        if let Some(addr) = line
            .strip_prefix("goprobe: serving Prometheus metrics at http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
        {
            break addr.to_string();
        }
    };
    while !said
        .last()
        .unwrap()
        .contains("Go processes, and those that start")
    {
        said.push(
            stderr
                .recv_timeout(Duration::from_secs(30))
                .expect("tracing"),
        );
    }

    let server = format!("127.0.0.1:{}", free_port());
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: goprobe\n    \
             static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={server}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package `prometheus`, installed by cargo xtask setup)"),
    );
    // Scraping goprobe before the workloads start.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // It accepts connections before its storage is open, and answers 503 until then.
        let up = TcpStream::connect(&server).is_ok() && prometheus_ready(&server) && {
            let up = promql(&server, "up{job=\"goprobe\"}");
            up.iter().any(|(_, value)| *value == 1.0)
        };
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped goprobe"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for (_, pid) in &spinners {
        send_signal(*pid, libc::SIGUSR1);
    }

    // Both processes, by pid, preempted, with their exe label.
    let query = "sum by (pid, exe, container) (goprobe_preemptions_total{path=\"async\"})";
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let ok = TcpStream::connect(&server).is_ok();
        let result = if ok {
            promql(&server, query)
        } else {
            Vec::new()
        };
        let preempted: Vec<&(Value, f64)> = result.iter().filter(|(_, n)| *n > 0.0).collect();
        if preempted.len() == 2 {
            break result;
        }
        assert!(Instant::now() < deadline, "Prometheus has {result:?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut labelled: Vec<String> = seen
        .iter()
        .map(|(labels, _)| {
            assert_eq!(labels["exe"], "spinner", "{labels}");
            labels["pid"].as_str().unwrap().to_string()
        })
        .collect();
    labelled.sort();
    let mut want = pids.clone();
    want.sort();
    assert_eq!(labelled, want, "one series per process, by host pid");

    // The spinners exit: their series leave goprobe's exposition and go stale.
    for (spawned, _) in spinners {
        let _ = spawned.finish(Duration::from_secs(20));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(&metrics);
        let gone = pids
            .iter()
            .all(|pid| !text.contains(&format!("pid=\"{pid}\"")));
        let live = promql(&server, "goprobe_target_info");
        if gone && live.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {live:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(prometheus);
    send_signal(goprobe.0.id(), libc::SIGINT);
    assert!(wait_timeout(&mut goprobe.0, Duration::from_secs(20)).success());
    let _ = std::fs::remove_dir_all(&dir);
}
