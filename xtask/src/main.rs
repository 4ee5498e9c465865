//! goprobe's developer tasks: `cargo xtask <command>`.
//!
//! Every command that needs tools installs what is missing first (see [`setup`]), so a
//! fresh Debian 12 host with rustup needs no hand work.

mod bench;
mod demo;
mod fixtures;
mod go;
mod kernels;
mod offsets;
mod setup;
mod soak;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "goprobe developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing need, skipping what is present: nightly
    /// rust-src, bpf-linker (against nightly's LLVM), Go toolchains, tracefs.
    Setup(setup::SetupArgs),
    /// Build the Go fixture programs for the given Go releases into target/fixtures.
    Fixtures(fixtures::FixturesArgs),
    /// Build everything and trace the bundled demo workload with goprobe.
    Demo(demo::DemoArgs),
    /// Benchmarks: attach time on a big binary, per-hit cost of probe placement, userspace
    /// throughput. Prints numbers, each against a baseline from the same run.
    Bench(bench::BenchArgs),
    /// Regenerate tracer/src/gobin/offsets_table.json from the DWARF of every supported Go
    /// release (or check it with --check).
    GenOffsets(offsets::GenOffsetsArgs),
    /// Everything CI checks: fmt, clippy (host and BPF), unit tests, and privileged
    /// integration tests with real BPF against real Go fixtures.
    Test(test::TestArgs),
    /// Boot the newest kernel of each chosen Debian suite under qemu and run integration
    /// tests inside it; prints a pass/fail table.
    Kernels(kernels::KernelsArgs),
    /// goprobe --all as a node daemon for N minutes while Go processes churn; prints its
    /// RSS minute by minute and the slope.
    Soak(soak::SoakArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(args) => setup::run(&args).map(drop),
        Command::Fixtures(args) => fixtures::run(&args).map(drop),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::GenOffsets(args) => offsets::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Kernels(args) => kernels::run(&args),
        Command::Soak(args) => soak::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
