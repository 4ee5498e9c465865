//! `cargo xtask bench`: what tracing costs, as one table. Every row is a ratio or a
//! delta against a baseline measured in the same run, repetitions interleaved (baseline,
//! goprobe, peer, baseline, …, in a rotating order), reported as the median with the
//! spread (min–max) of the per-repetition results, and the goal where there is one.
//!
//! Rows (`--only` picks groups):
//! - `throughput`: a CPU-bound program (`hashwork`: SHA-256 over fresh buffers, GC on) —
//!   its ops per CPU-second traced / untraced, with `-q` and with every record written as
//!   JSON; goprobe's own CPU and memory on it; bpftrace with the same probes as a peer.
//! - `hits`: the cost of one probe hit (every `runtime.Gosched` recorded, `--yields`),
//!   against the kernel's floor (the same instruction probed by an empty program); a
//!   Gosched flood without `--yields`; the highest event rate with nothing lost.
//! - `lifecycle`: time to attached and SIGINT→exit, for 1 process and for 20 processes
//!   of 3 binaries; bpftrace's for the same probes.
//! - `syscalls`: what each `--syscall-hooks` costs every syscall on the host.
//! - `http`: a Go HTTP server no one here wrote (esbuild's `--serve`, a stripped release
//!   build from npm) under wrk: requests/s and p99 traced / untraced.
//! - `startup`: analysis and attach on a generated 59 MB binary against a small one.
//! - `pipeline`: goprobe's userspace alone, records/s through every stage.

mod http;
mod lifecycle;
mod probe_hits;
mod runner;
mod startup;
mod syscalls;
mod table;
mod throughput;

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::{
    demo,
    fixtures::{self, Variant},
    go, setup, util,
};

pub use table::{Row, Stat, Table};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Bench {
    Throughput,
    Hits,
    Lifecycle,
    Syscalls,
    Http,
    Startup,
    Pipeline,
}

#[derive(Args, Clone, Debug, Default)]
pub struct BenchArgs {
    /// Which groups of rows (comma separated). Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Bench>,
    /// Repetitions of each measurement, interleaved with its baseline (the median and the
    /// spread are reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Generated functions in the big binary of `startup` (~700 bytes of binary each).
    #[arg(long, default_value_t = 140_000)]
    pub big_functions: usize,
    /// Leave out the bpftrace peer rows.
    #[arg(long)]
    pub no_bpftrace: bool,
}

/// What every group needs.
pub struct Context {
    pub args: BenchArgs,
    pub goprobe: PathBuf,
    pub fixtures: PathBuf,
    pub toolchain: go::Toolchain,
    /// `bpftrace` when installed and wanted.
    pub bpftrace: Option<PathBuf>,
    /// goprobe's measured cost of one probe hit (the `hits` group), for accounting.
    pub per_hit_ns: std::cell::Cell<Option<f64>>,
}

impl Context {
    pub fn fixture(&self, name: &str) -> PathBuf {
        self.fixtures.join(name)
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let setup = setup::run(&setup::SetupArgs {
        go: vec![go::NEWEST.to_string()],
        all_go: false,
    })?;
    let toolchain = setup.go[0].clone();
    let all = args.only.is_empty();
    let wants = |bench: Bench| all || args.only.contains(&bench);
    let mut packages = vec![("wrk", "wrk"), ("dd", "coreutils"), ("bpftool", "bpftool")];
    if !args.no_bpftrace {
        packages.push(("bpftrace", "bpftrace"));
    }
    if wants(Bench::Http) || wants(Bench::Throughput) || wants(Bench::Lifecycle) {
        util::apt_install_missing(&packages)?;
    }
    demo::build_goprobe()?;
    let fixtures = fixtures::build(&toolchain, Variant::Default)?;
    let cx = Context {
        args: args.clone(),
        goprobe: util::workspace_root().join("target/release/goprobe"),
        fixtures,
        toolchain,
        bpftrace: (!args.no_bpftrace).then(|| which("bpftrace")).flatten(),
        per_hit_ns: std::cell::Cell::new(None),
    };
    // BPF run-time statistics cost two clock reads per program run: off while measuring.
    let stats = std::path::Path::new("/proc/sys/kernel/bpf_stats_enabled");
    let stats_were = std::fs::read_to_string(stats).unwrap_or_default();
    if stats_were.trim() == "1" {
        std::fs::write(stats, "0")?;
    }
    let measured = measure(&cx, &wants);
    if stats_were.trim() == "1" {
        std::fs::write(stats, "1")?;
    }
    let (table, extra) = measured?;
    println!(
        "\n== goprobe bench: {} repetitions, {} on {} CPUs\n",
        args.reps,
        kernel_release(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    print!("{}", table.render());
    if !extra.is_empty() {
        println!("\n{extra}");
    }
    Ok(())
}

fn measure(cx: &Context, wants: &dyn Fn(Bench) -> bool) -> anyhow::Result<(Table, String)> {
    let mut table = Table::default();
    let mut extra = String::new();
    // Hits first: throughput accounts its records with the measured cost of a hit.
    if wants(Bench::Hits) {
        table.extend(probe_hits::rows(cx)?);
        print_so_far(&table);
    }
    if wants(Bench::Throughput) {
        table.extend(throughput::rows(cx)?);
        print_so_far(&table);
    }
    if wants(Bench::Lifecycle) {
        table.extend(lifecycle::rows(cx)?);
        print_so_far(&table);
    }
    if wants(Bench::Syscalls) {
        table.extend(syscalls::rows(cx)?);
        print_so_far(&table);
    }
    if wants(Bench::Http) {
        table.extend(http::rows(cx)?);
        print_so_far(&table);
    }
    if wants(Bench::Startup) {
        table.extend(startup::rows(cx)?);
    }
    if wants(Bench::Pipeline) {
        extra += &startup::pipeline(&cx.fixtures)?;
    }
    Ok((table, extra))
}

/// The table so far on stderr, so a long run shows progress.
fn print_so_far(table: &Table) {
    eprintln!("\n{}", table.render());
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "Linux".into())
}

/// A program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
