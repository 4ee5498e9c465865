//! The cost of one probe hit, the kernel's floor for it, a Gosched flood, and the highest
//! event rate goprobe takes with nothing lost.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use super::{
    Context, Row, Stat,
    runner::{self, Run, Tracer},
    table::{Goal, Unit, si},
};

/// One Gosched per op on one P: each op is one hit of the yield probe with `--yields`.
const YIELD_ONE_P: [&str; 6] = ["-goroutines", "4", "-procs", "1", "-duration", "2s"];
/// The flood: 16 goroutines yielding on 8 Ps.
const FLOOD: [&str; 6] = ["-goroutines", "16", "-procs", "8", "-duration", "2s"];
/// tracefs group of the floor probe.
const FLOOR_GROUP: &str = "goprobe_bench";

pub fn rows(cx: &Context) -> anyhow::Result<Vec<Row>> {
    let fixture = cx.fixture("yield");
    let mut rows = per_hit(cx, &fixture)?;
    rows.push(flood(cx, &fixture)?);
    rows.extend(highest_rate(cx, &fixture)?);
    Ok(rows)
}

fn ops(run: &Run) -> f64 {
    run.field("ops_per_sec").unwrap_or(f64::NAN)
}

/// ns per hit = (1/ops traced − 1/ops untraced) / hits per op, per repetition.
fn per_hit(cx: &Context, fixture: &Path) -> anyhow::Result<Vec<Row>> {
    eprintln!("xtask: bench hits: yield on one P, untraced / goprobe --yields / tracefs floor");
    let address = yield_probe_offset(&cx.goprobe, fixture)?;
    let tracefs = Path::new("/sys/kernel/tracing");
    let events = tracefs.join("uprobe_events");
    let enable = tracefs.join(format!("events/{FLOOR_GROUP}/enable"));
    let definition = format!("p:{FLOOR_GROUP}/floor {}:{address:#x}\n", fixture.display());
    let tracing_on = tracefs.join("tracing_on");
    let was_on = std::fs::read_to_string(&tracing_on).unwrap_or_default();
    let runs = runner::interleaved(cx.args.reps, 4, |variant| match variant {
        0 => runner::run(&cx.goprobe, fixture, &YIELD_ONE_P, &Tracer::None),
        1 => runner::run(
            &cx.goprobe,
            fixture,
            &YIELD_ONE_P,
            &Tracer::goprobe(&["--yields"], false),
        ),
        3 => {
            let program = EmptyProgram::attach(fixture, address)?;
            let run = runner::run(&cx.goprobe, fixture, &YIELD_ONE_P, &Tracer::None);
            drop(program);
            run
        }
        _ => {
            // The uprobe with nothing attached but a disabled trace buffer: the trap, the
            // kernel's emulation of the CALL and the uprobe dispatch, no BPF program.
            append(&events, &definition)?;
            std::fs::write(&tracing_on, "0")?;
            std::fs::write(&enable, "1")?;
            let run = runner::run(&cx.goprobe, fixture, &YIELD_ONE_P, &Tracer::None);
            std::fs::write(&enable, "0")?;
            std::fs::write(&tracing_on, was_on.trim())?;
            append(&events, &format!("-:{FLOOR_GROUP}/floor\n"))?;
            run
        }
    })?;
    let bare: Vec<f64> = runs[0].iter().map(ops).collect();
    let mut goprobe_ns = Vec::new();
    let mut lost = 0;
    for (run, base) in runs[1].iter().zip(&bare) {
        let tracer = run.tracer.as_ref().context("traced run")?;
        let summary = tracer.summary.as_ref().context("summary")?;
        let hits = summary["events"]["yield"].as_f64().unwrap_or(0.0);
        let total_ops = run.field("ops")?;
        lost += tracer.lost();
        goprobe_ns.push((1.0 / ops(run) - 1.0 / base) / (hits / total_ops) * 1e9);
    }
    // Each op is one call of the probed instruction.
    let floor_ns: Vec<f64> = runs[2]
        .iter()
        .zip(&bare)
        .map(|(run, base)| (1.0 / ops(run) - 1.0 / base) * 1e9)
        .collect();
    let empty_ns: Vec<f64> = runs[3]
        .iter()
        .zip(&bare)
        .map(|(run, base)| (1.0 / ops(run) - 1.0 / base) * 1e9)
        .collect();
    let median = |v: Vec<f64>| Stat::of(&v).map_or(f64::NAN, |s| s.median);
    cx.per_hit_ns.set(Stat::of(&goprobe_ns).map(|s| s.median));
    let baseline = format!("untraced {} ops/s", si(median(bare)));
    Ok(vec![
        Row::new(
            "probe hit: goprobe (--yields, a record each)",
            Unit::Nanos,
            &goprobe_ns,
        )
        .baseline(baseline.clone())
        .measured(format!(
            "{} ops/s, lost {lost}",
            si(median(runs[1].iter().map(ops).collect()))
        ))
        .goal(Goal::AtMost(600.0)),
        Row::new("probe hit: an empty BPF program", Unit::Nanos, &empty_ns)
            .baseline(baseline.clone())
            .measured(format!(
                "{} ops/s, perf-event uprobe, r0 = 0",
                si(median(runs[3].iter().map(ops).collect()))
            )),
        Row::new(
            "probe hit: kernel floor (no program)",
            Unit::Nanos,
            &floor_ns,
        )
        .baseline(baseline)
        .measured(format!(
            "{} ops/s, tracefs uprobe at {address:#x}",
            si(median(runs[2].iter().map(ops).collect()))
        )),
    ])
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {text:?} to {}", path.display()))
}

/// The file offset goprobe probes for voluntary yields (`gosched_m`'s call), from
/// `--list-probes --yields`.
fn yield_probe_offset(goprobe: &Path, fixture: &Path) -> anyhow::Result<u64> {
    let out = Command::new(goprobe)
        .args(["--list-probes", "--yields", "--"])
        .arg(fixture)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("runtime.gosched_m+"))
        .context("no yield probe in --list-probes")?;
    let Some(hex) = line
        .split("file offset 0x")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
    else {
        bail!("no file offset in {line:?}");
    };
    Ok(u64::from_str_radix(hex.trim(), 16)?)
}

fn flood(cx: &Context, fixture: &Path) -> anyhow::Result<Row> {
    eprintln!("xtask: bench hits: Gosched flood, untraced / goprobe -q");
    let runs = runner::interleaved(cx.args.reps, 2, |variant| {
        let tracer = match variant {
            0 => Tracer::None,
            _ => Tracer::goprobe(&[], false),
        };
        runner::run(&cx.goprobe, fixture, &FLOOD, &tracer)
    })?;
    let ratios: Vec<f64> = runs[1]
        .iter()
        .zip(&runs[0])
        .map(|(traced, bare)| ops(traced) / ops(bare))
        .collect();
    let median = |v: Vec<f64>| Stat::of(&v).map_or(f64::NAN, |s| s.median);
    Ok(
        Row::new("Gosched flood, 16 goroutines on 8 Ps", Unit::Ratio, &ratios)
            .baseline(format!(
                "untraced {} ops/s",
                si(median(runs[0].iter().map(ops).collect()))
            ))
            .measured(format!(
                "{} ops/s",
                si(median(runs[1].iter().map(ops).collect()))
            ))
            .goal(Goal::AtLeast(0.9)),
    )
}

/// Paced yields recorded with `--yields` on two Ps, up a ladder of rates: the highest
/// event rate goprobe received with nothing lost, summarising and writing every event.
fn highest_rate(cx: &Context, fixture: &Path) -> anyhow::Result<Vec<Row>> {
    const LADDER: [&str; 6] = ["100000", "200000", "400000", "800000", "1600000", "0"];
    let mut rows = Vec::new();
    for (name, events) in [("-q", false), ("every event as JSON", true)] {
        eprintln!("xtask: bench hits: highest lossless rate, {name}");
        let mut best: Vec<f64> = Vec::new();
        for _ in 0..cx.args.reps.clamp(1, 3) {
            let mut highest = 0.0f64;
            for rate in LADDER {
                let args = [
                    "-goroutines",
                    "4",
                    "-procs",
                    "2",
                    "-duration",
                    "2s",
                    "-rate",
                    rate,
                ];
                let run = runner::run(
                    &cx.goprobe,
                    fixture,
                    &args,
                    &Tracer::goprobe(&["--yields"], events),
                )?;
                let tracer = run.tracer.as_ref().context("traced run")?;
                if tracer.lost() > 0 {
                    break;
                }
                highest = highest.max(tracer.events_total() as f64 / run.window().as_secs_f64());
            }
            best.push(highest);
        }
        rows.push(
            Row::new(
                format!("highest event rate with 0 lost, {name}"),
                Unit::PerSecond,
                &best,
            )
            .baseline("paced yields, --yields, 2 Ps")
            .measured("ladder 100 k … flat out"),
        );
    }
    Ok(rows)
}

/// An empty BPF program (`r0 = 0; exit`) on a uprobe at `offset` in `binary`, through a
/// perf-event uprobe link (raw `bpf(2)` and `perf_event_open(2)`, as libbpf does): the
/// kernel's trap and program dispatch with nothing of goprobe's. Dropping it detaches.
struct EmptyProgram {
    // Held for their drop: closing them detaches the program.
    _prog: std::os::fd::OwnedFd,
    _event: std::os::fd::OwnedFd,
}

impl EmptyProgram {
    fn attach(binary: &Path, offset: u64) -> anyhow::Result<EmptyProgram> {
        use std::os::fd::FromRawFd as _;
        // BPF_MOV64_IMM(R0, 0); BPF_EXIT_INSN()
        let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
        let license = c"GPL";
        // union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, ...
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&2u32.to_ne_bytes()); // BPF_PROG_TYPE_KPROBE
        attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        // SAFETY: a valid bpf_attr for BPF_PROG_LOAD (5), pointing at live buffers.
        let prog = unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()) };
        if prog < 0 {
            bail!(
                "loading an empty BPF program: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: a new fd we own.
        let prog = unsafe { std::os::fd::OwnedFd::from_raw_fd(prog as i32) };
        let pmu: u32 = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")?
            .trim()
            .parse()?;
        let path = std::ffi::CString::new(binary.as_os_str().as_encoded_bytes())?;
        // struct perf_event_attr: type, size, config, ..., config1 (uprobe_path) at 56,
        // config2 (probe_offset) at 64.
        let mut event = [0u8; 128];
        event[0..4].copy_from_slice(&pmu.to_ne_bytes());
        event[4..8].copy_from_slice(&112u32.to_ne_bytes()); // PERF_ATTR_SIZE_VER5
        event[16..24].copy_from_slice(&1u64.to_ne_bytes()); // sample_period
        event[56..64].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
        event[64..72].copy_from_slice(&offset.to_ne_bytes());
        // SAFETY: a valid perf_event_attr; pid -1 and cpu 0 as libbpf does for a probe
        // event, whose BPF program then runs on every CPU.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                event.as_ptr(),
                -1,
                0,
                -1,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            bail!(
                "perf_event_open (uprobe): {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: a new fd we own.
        let event = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        use std::os::fd::AsRawFd as _;
        // SAFETY: PERF_EVENT_IOC_SET_BPF and _ENABLE on our own fds.
        unsafe {
            if libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd()) < 0
                || libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) < 0
            {
                bail!(
                    "attaching the empty program: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(EmptyProgram {
            _prog: prog,
            _event: event,
        })
    }
}

/// `_IOW('$', 8, __u32)` and `_IO('$', 0)`.
const PERF_EVENT_IOC_SET_BPF: libc::Ioctl = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::Ioctl = 0x2400;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
