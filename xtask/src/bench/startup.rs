//! Start-up: analysing and attaching to a big (>50 MB) generated Go binary, against a
//! small one: wall time of `--list-probes` (parse + plan) and to "attached" (load,
//! verify, attach), and goprobe's peak RSS against the binary's pclntab size. And
//! goprobe's userspace alone (`tracer/benches/pipeline.rs`).

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use super::{
    Context, Row,
    runner::wait_with_usage,
    table::{Stat, Unit},
};
use crate::{demo, go, util};

pub fn rows(cx: &Context) -> anyhow::Result<Vec<Row>> {
    let big = big_binary(&cx.toolchain, cx.args.big_functions)?;
    let small = cx.fixture("spinner");
    let mut measured = Vec::new();
    for path in [&small, &big] {
        measured.push(startup(cx.args.reps, &cx.goprobe, path)?);
    }
    let size = |path: &Path| -> anyhow::Result<String> {
        Ok(format!(
            "{:.1} MB, pclntab {:.1} MB",
            std::fs::metadata(path)?.len() as f64 / 1e6,
            pclntab_size(path).unwrap_or(0) as f64 / 1e6
        ))
    };
    let (small_text, big_text) = (size(&small)?, size(&big)?);
    let median = |v: &[f64]| Stat::of(v).map_or(f64::NAN, |s| s.median);
    let mut rows = Vec::new();
    for (i, what) in ["--list-probes (parse, plan)", "start → attached"]
        .into_iter()
        .enumerate()
    {
        rows.push(
            Row::new(
                format!("start-up, big binary: {what}"),
                Unit::Millis,
                &measured[1][i],
            )
            .baseline(format!(
                "small ({small_text}) {:.0} ms",
                median(&measured[0][i])
            ))
            .measured(big_text.clone()),
        );
    }
    for (i, what) in ["--list-probes", "attached"].into_iter().enumerate() {
        rows.push(
            Row::new(
                format!("start-up, big binary: peak RSS, {what}"),
                Unit::MiB,
                &measured[1][2 + i],
            )
            .baseline(format!("small {:.1} MiB", median(&measured[0][2 + i]))),
        );
    }
    Ok(rows)
}

/// Per repetition: ms to list probes, ms to attached, peak RSS (MiB) of each.
fn startup(reps: usize, goprobe: &Path, path: &Path) -> anyhow::Result<[Vec<f64>; 4]> {
    let mut out: [Vec<f64>; 4] = Default::default();
    for _ in 0..reps {
        let start = Instant::now();
        let mut child = Command::new(goprobe)
            .args(["--list-probes", "--"])
            .arg(path)
            .stdout(Stdio::null())
            .spawn()?;
        let (code, usage) = wait_with_usage(&mut child)?;
        if code != 0 {
            bail!("goprobe --list-probes {} failed", path.display());
        }
        out[0].push(start.elapsed().as_secs_f64() * 1e3);
        out[2].push(usage.max_rss_kib as f64 / 1024.0);

        let start = Instant::now();
        let mut child = demo::privileged(goprobe)
            .args(["--quiet", "--duration", "0.2", "-o", "/dev/null", "--"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut line = String::new();
        for next in BufReader::new(stderr).lines() {
            line = next?;
            if line.contains("attached") {
                break;
            }
        }
        out[1].push(start.elapsed().as_secs_f64() * 1e3);
        let (_, usage) = wait_with_usage(&mut child)?;
        out[3].push(usage.max_rss_kib as f64 / 1024.0);
        if !line.contains("attached") {
            bail!("goprobe never attached to {}", path.display());
        }
    }
    Ok(out)
}

/// Size of `.gopclntab` (or the PIE/cgo name of it) from the section headers.
fn pclntab_size(path: &Path) -> Option<u64> {
    let out = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("gopclntab"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // [Nr] Name Type Address Off Size ...: the size follows the offset.
    let at = fields.iter().position(|f| f.contains("gopclntab"))?;
    u64::from_str_radix(fields.get(at + 4)?, 16).ok()
}

/// A generated Go program of `functions` distinct, non-inlinable functions plus a large
/// slice of the standard library: over 50 MB with the default count. Cached.
fn big_binary(toolchain: &go::Toolchain, functions: usize) -> anyhow::Result<PathBuf> {
    let dir = util::workspace_root()
        .join("target/bench/bigprog")
        .join(format!("{}-{functions}", toolchain.version));
    let binary = dir.join("bigprog");
    if binary.is_file() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("go.mod"), "module bigprog\n\ngo 1.21\n")?;
    const PER_FILE: usize = 1000;
    let files = functions.div_ceil(PER_FILE);
    for file in 0..files {
        let mut src = String::from("package main\n\n");
        let first = file * PER_FILE;
        let last = (first + PER_FILE).min(functions);
        for i in first..last {
            let _ = write!(
                src,
                "//go:noinline\nfunc f{i}(x uint64) uint64 {{\n\
                 \ts := x ^ {i}\n\
                 \tfor k := uint64(0); k < x&7; k++ {{\n\
                 \t\ts = s*{m} + k\n\
                 \t\tswitch (s >> 3) & 7 {{\n\
                 \t\tcase 0:\n\t\t\ts ^= {a}\n\
                 \t\tcase 1:\n\t\t\ts += {b}\n\
                 \t\tcase 2:\n\t\t\ts -= {c}\n\
                 \t\tcase 3:\n\t\t\ts = s<<7 | s>>57\n\
                 \t\tcase 4:\n\t\t\ts *= {d}\n\
                 \t\tdefault:\n\t\t\ts = s<<1 | s>>63\n\
                 \t\t}}\n\t}}\n\treturn s\n}}\n\n",
                m = 2 * i + 3,
                a = i * 7 + 1,
                b = i * 13 + 5,
                c = i * 17 + 11,
                d = i * 31 + 7,
            );
        }
        let _ = writeln!(src, "var table{file} = []func(uint64) uint64{{");
        for i in first..last {
            let _ = writeln!(src, "\tf{i},");
        }
        src.push_str("}\n");
        std::fs::write(dir.join(format!("gen{file:03}.go")), src)?;
    }
    let mut main = String::from(
        "package main\n\nimport (\n\t_ \"crypto/tls\"\n\t_ \"database/sql\"\n\t\
         _ \"encoding/json\"\n\t_ \"go/types\"\n\t_ \"html/template\"\n\t_ \"image/png\"\n\t\
         _ \"net/http\"\n\t\"os\"\n\t\"time\"\n)\n\nvar tables = [][]func(uint64) uint64{\n",
    );
    for file in 0..files {
        let _ = writeln!(main, "\ttable{file},");
    }
    main.push_str(
        "}\n\n// Calls every function, then keeps busy for a second so a tracer can attach.\n\
         func main() {\n\tvar s uint64\n\tfor _, t := range tables {\n\t\tfor i, f := range t \
         {\n\t\t\ts += f(uint64(i))\n\t\t}\n\t}\n\tdeadline := time.Now().Add(time.Second)\n\t\
         for time.Now().Before(deadline) {\n\t\ts = tables[0][s%7](s)\n\t}\n\t\
         if s == 42 {\n\t\tos.Exit(3)\n\t}\n}\n",
    );
    std::fs::write(dir.join("main.go"), main)?;
    eprintln!("xtask: building the {functions}-function benchmark binary (a few minutes, once)");
    util::run(
        toolchain
            .command()
            .current_dir(&dir)
            .env("CGO_ENABLED", "0")
            .args(["build", "-o"])
            .arg(&binary)
            .arg("."),
    )?;
    Ok(binary)
}

/// goprobe's userspace alone (`tracer/benches/pipeline.rs`): events/s through the whole
/// pipeline to each output, with no workload competing for this host's two CPUs.
pub fn pipeline(fixtures: &Path) -> anyhow::Result<String> {
    let output = Command::new("cargo")
        .current_dir(util::workspace_root())
        .args([
            "bench",
            "--quiet",
            "--package",
            "goprobe",
            "--bench",
            "pipeline",
        ])
        .env("GOPROBE_BENCH_BINARY", fixtures.join("yield"))
        .stderr(Stdio::inherit())
        .output()
        .context("cargo bench --bench pipeline")?;
    if !output.status.success() {
        bail!("the pipeline benchmark failed: {}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned() + "\n")
}
