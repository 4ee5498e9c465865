//! goprobe's userspace alone: records through the whole pipeline (symbols, correlation,
//! aggregation, output) as fast as it goes, no kernel and no workload competing for the
//! CPU. Run by `cargo xtask bench --only pipeline`; prints events/s per output.
//!
//! The records are a realistic mix from a real Go binary (GOPROBE_BENCH_BINARY): for each
//! sysmon tick, a full async-preemption chain, and voluntary yields in between, with PCs
//! inside the binary's text so symbolization does its real work.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    sync::Arc,
    time::Instant,
};

use goprobe::{
    events::{Event, EventData},
    gobin::GoBinary,
    output::{Output, json::JsonOutput},
    pipeline::Pipeline,
    ringbuf::Record,
};
use tracer_common::EventKind;

const TICKS: u64 = 10_000;
const YIELDS_PER_TICK: u64 = 100;

fn records(pc: u64) -> Vec<Record> {
    let mut out = Vec::new();
    let mut ts = 1_000_000_000u64;
    let mut seq = [0u64; 2];
    let mut push = |kind: EventKind, tid: u32, data: EventData, ts: u64| {
        let stream = kind.stream() as usize;
        seq[stream] += 1;
        out.push(Record::Event(Event {
            kind,
            ts_ns: ts,
            tid,
            tgid: 100,
            cpu: 0,
            seq: seq[stream],
            data,
        }));
    };
    let g = |goid: u64, pc: Option<u64>| EventData::Goroutine {
        g_addr: 0xc000_0000 + goid * 0x1000,
        goid: Some(goid),
        pc,
        g_status: Some(2),
        preempted: Some(true),
        preempt_flags: Some((true, false)),
    };
    for tick in 0..TICKS {
        ts += 10_000_000;
        push(
            EventKind::SysmonTick,
            101,
            EventData::SysmonTick { now_ns: ts as i64 },
            ts,
        );
        for i in 0..YIELDS_PER_TICK {
            push(EventKind::Yield, 103, g(7 + (i % 4), None), ts + 10 + i);
        }
        push(EventKind::DoSigPreempt, 102, g(5, Some(pc)), ts + 50_000);
        push(EventKind::AsyncPreempt2, 102, g(5, Some(pc)), ts + 60_000);
        push(EventKind::GoschedImpl, 102, g(5, None), ts + 70_000);
        let _ = tick;
    }
    out
}

fn run(name: &str, binary: &Arc<GoBinary>, pc: u64, output: Box<dyn Output>) {
    let input = records(pc);
    let n = input.len() as f64;
    let mut pipeline = Pipeline::new(vec![output], 0, false);
    pipeline.add_process(100, Arc::clone(binary), 0, None);
    let started = Instant::now();
    for record in input {
        pipeline.process(record).expect("pipeline");
    }
    pipeline.flush_outputs().expect("flush");
    let secs = started.elapsed().as_secs_f64();
    println!("{name:<34} {:>12.0} events/s", n / secs);
}

fn main() {
    let path = std::env::var("GOPROBE_BENCH_BINARY")
        .expect("GOPROBE_BENCH_BINARY: a Go binary (cargo xtask bench sets it)");
    let binary = Arc::new(GoBinary::open(path.as_ref()).expect("opening the Go binary"));
    let pc = binary
        .functions_named("main.main")
        .first()
        .expect("main.main in the binary")
        .entry
        + 8;
    let out = std::env::temp_dir().join("goprobe-bench-pipeline.jsonl");
    println!(
        "== pipeline: goprobe's userspace alone, {TICKS} chains + {} yields",
        TICKS * YIELDS_PER_TICK
    );
    run(
        "summary only (--quiet)",
        &binary,
        pc,
        Box::new(JsonOutput::new(std::io::sink(), false)),
    );
    let file = BufWriter::with_capacity(1 << 16, File::create(&out).expect("temp file"));
    run(
        "every event as JSON to a file",
        &binary,
        pc,
        Box::new(JsonOutput::new(file, true)),
    );
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!("(JSON file: {:.1} MB)", bytes as f64 / 1e6);
    let _ = std::fs::remove_file(&out);
    let _ = std::io::stdout().flush();
}
