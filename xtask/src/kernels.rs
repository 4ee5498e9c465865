//! `cargo xtask kernels`: goprobe's integration tests inside other kernels, under qemu.
//!
//! Each kernel is the newest `linux-image-*-amd64` of a Debian suite, fetched with
//! `apt-get download` (a private apt state per suite under `target/kernels/`, so the
//! host's sources are untouched) and unpacked with `dpkg-deb`. The guest boots a
//! busybox-static initramfs that loads the virtio, 9p and overlay modules from the same
//! package, mounts the host's root read-only over 9p with a tmpfs overlay on top (so the
//! guest runs the very binaries and fixtures built here), mounts proc, sysfs, tracefs and
//! bpffs, brings up loopback, and runs the chosen integration test binaries one after
//! another. Results come back through a second, writable 9p share. KVM is used when
//! `/dev/kvm` works and the CPU has vmx or svm; otherwise TCG, 5–10× slower.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{fixtures, go, setup, util};

#[derive(Args, Clone, Debug)]
pub struct KernelsArgs {
    /// Kernels to boot (comma separated), each `SUITE[:RELEASE-PREFIX]`: the newest amd64
    /// kernel of that Debian suite whose release starts with the prefix. bullseye (5.10),
    /// bookworm:6.1, bookworm (its newest: 6.12 from bookworm-security), trixie (6.12), …
    #[arg(long, value_delimiter = ',', default_value = "bookworm:6.1")]
    pub kernel: Vec<String>,
    /// Integration test files (tests/tests/NAME.rs) to run in each guest; `all` for every
    /// one.
    #[arg(long, value_delimiter = ',', default_value = "verify,chain")]
    pub tests: Vec<String>,
    /// Guest memory.
    #[arg(long, default_value_t = 3072)]
    pub memory_mib: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    pub smp: u32,
    /// Kernel messages at full verbosity on the console, and a panic (with its stack) on a
    /// soft lockup or an RCU stall instead of a silent hang: for diagnosing a wedged guest.
    #[arg(long)]
    pub debug_console: bool,
    /// Give up on a guest after this many minutes.
    #[arg(long, default_value_t = 30)]
    pub timeout_minutes: u64,
    /// Arguments for each test binary, after `--` (e.g. a test name filter).
    #[arg(last = true)]
    pub harness_args: Vec<String>,
}

/// Modules the initramfs loads, by file stem; absent ones (built in, or merged into
/// another in that release) are skipped, and the loop in `init` settles the order.
const MODULES: &[&str] = &[
    "virtio",
    "virtio_ring",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
    "9p",
    "overlay",
];

/// The guest's init. It must `switch_root`, not `chroot`: under a chroot, a process that
/// `unshare` put in a mount namespace of its own shows its `/proc/PID/exe` from the
/// namespace's real root (`/merged/tmp/…`), so `--all --exe /tmp/…` missed it.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for pass in 1 2 3 4; do for m in /modules/*.ko; do insmod "$m" 2>/dev/null; done; done
mkdir -p /host /rw /merged
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /host || echo "goprobe-guest: 9p root failed"
mount -t tmpfs tmpfs /rw; mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /merged || echo "goprobe-guest: overlay failed"
mkdir -p /merged/goprobe-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /merged/goprobe-out
exec switch_root /merged /bin/sh -c 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mkdir -p /goprobe-host-tmp; mount --bind /tmp /goprobe-host-tmp; mount -t tmpfs tmpfs /tmp; mount -t tracefs nodev /sys/kernel/tracing; mount -t bpf bpf /sys/fs/bpf; mount -t cgroup2 cgroup2 /sys/fs/cgroup; ip link set lo up; . /goprobe-out/run.sh; sync; /bin/busybox poweroff -f'
"#;

pub fn run(args: &KernelsArgs) -> anyhow::Result<()> {
    if !util::is_root() {
        bail!("cargo xtask kernels needs root (apt-get, and the tests in the guest run as root)");
    }
    util::apt_install_missing(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
    ])?;
    let root = util::workspace_root();
    let mut args = args.clone();
    if args.tests.iter().any(|t| t == "all") {
        args.tests = all_test_files(&root)?;
    }
    let args = &args;
    let binaries = build_host_side(&root, &args.tests)?;
    let accel = accelerator();
    let mut rows = Vec::new();
    for spec in &args.kernel {
        let (suite, prefix) = spec.split_once(':').unwrap_or((spec, ""));
        let kernel = fetch_kernel(&root, suite, prefix)?;
        let initrd = initramfs(&kernel)?;
        let results = boot(&root, args, &kernel, &initrd, &binaries, accel)?;
        rows.extend(
            results
                .into_iter()
                .map(|(test, outcome)| (format!("{suite} ({})", kernel.release), test, outcome)),
        );
    }
    println!("\nkernel matrix (qemu, {accel})");
    println!("{:<36} {:<12} result", "kernel", "tests");
    let mut failed = 0;
    for (kernel, test, outcome) in &rows {
        if !outcome.starts_with("pass") {
            failed += 1;
        }
        println!("{kernel:<36} {test:<12} {outcome}");
    }
    if failed > 0 {
        bail!("{failed} of {} test files failed in a guest", rows.len());
    }
    Ok(())
}

/// Every integration test file, by name.
fn all_test_files(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(root.join("tests/tests"))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Builds goprobe, the newest release's fixtures and the chosen test binaries, as
/// `cargo xtask test` does; returns (test name, executable).
fn build_host_side(root: &Path, tests: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let setup = setup::run(&setup::SetupArgs {
        go: vec![go::NEWEST.to_string()],
        all_go: false,
    })?;
    util::run(
        Command::new("cargo")
            .current_dir(root)
            .args(["build", "--package", "goprobe"]),
    )?;
    let toolchain = &setup.go[setup.go.len() - 1];
    for variant in fixtures::Variant::ALL {
        fixtures::build(toolchain, variant)?;
    }
    fixtures::ship_workload(toolchain, &root.join("target/debug"))?;
    let newest = go::ensure(go::NEWEST)?;
    util::run(
        newest
            .command()
            .current_dir(root.join("tests/tracecount"))
            .args(["build", "-o"])
            .arg(root.join("target/tools/tracecount"))
            .arg("."),
    )?;
    let mut build = Command::new("cargo");
    build
        .current_dir(root)
        .args(["test", "--package", "goprobe-integration", "--no-run"])
        .args(["--message-format", "json"]);
    for test in tests {
        build.args(["--test", test]);
    }
    let out = util::output(&mut build)?;
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" || message["target"]["kind"][0] != "test" {
            continue;
        }
        if let (Some(name), Some(exe)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            binaries.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    for test in tests {
        if !binaries.iter().any(|(name, _)| name == test) {
            bail!("no integration test file tests/tests/{test}.rs");
        }
    }
    Ok(binaries)
}

fn accelerator() -> &'static str {
    let cpu = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt = cpu
        .split_whitespace()
        .any(|flag| flag == "vmx" || flag == "svm");
    let kvm = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if virt && kvm { "kvm" } else { "tcg" }
}

struct Kernel {
    dir: PathBuf,
    release: String,
    vmlinuz: PathBuf,
    modules: PathBuf,
}

/// The newest `linux-image-N-amd64` of `suite` whose release starts with `prefix` (and
/// then `.` or `-`, so `6.1` is not `6.12`), downloaded and unpacked once.
fn fetch_kernel(root: &Path, suite: &str, prefix: &str) -> anyhow::Result<Kernel> {
    let dir = root.join("target/kernels").join(suite);
    let apt = dir.join("apt");
    for sub in ["lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(apt.join(sub))?;
    }
    let security = match suite {
        "bullseye" | "bookworm" | "trixie" => {
            format!("deb http://deb.debian.org/debian-security {suite}-security main\n")
        }
        _ => String::new(),
    };
    fs::write(
        apt.join("sources.list"),
        format!("deb http://deb.debian.org/debian {suite} main\n{security}"),
    )?;
    let apt_options = |cmd: &mut Command| {
        cmd.arg("-o")
            .arg(format!(
                "Dir::Etc::SourceList={}",
                apt.join("sources.list").display()
            ))
            .args(["-o", "Dir::Etc::SourceParts=/nonexistent"])
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", apt.join("lists").display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", apt.join("cache").display()))
            .args(["-o", "APT::Sandbox::User=root"]);
    };
    if fs::read_dir(apt.join("lists"))?.count() <= 1 {
        let mut update = Command::new("apt-get");
        apt_options(&mut update);
        util::run(update.arg("update").arg("-q"))?;
    }
    let mut search = Command::new("apt-cache");
    apt_options(&mut search);
    let found = util::stdout(search.args([
        "search",
        "--names-only",
        // `6.1.0-57-amd64` (bookworm and older), `6.12.57+deb13-amd64` (trixie on).
        r"^linux-image-[0-9][0-9.]*(-[0-9]+|\+deb[0-9]+)-amd64$",
    ]))?;
    let mut packages: Vec<&str> = found
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            let release = name.trim_start_matches("linux-image-");
            prefix.is_empty()
                || release
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with(['.', '-', '+']))
        })
        .collect();
    packages.sort_by_key(|name| version_key(name));
    let Some(package) = packages.last().copied() else {
        bail!("no linux-image-{prefix}*-amd64 package in Debian {suite}");
    };
    let release = package.trim_start_matches("linux-image-").to_string();
    let unpacked = dir.join(&release);
    // The image: `boot/vmlinuz-R`, or (unstable's linux-binary-R) `usr/lib/modules/R/vmlinuz`.
    let vmlinuz = || {
        [
            unpacked.join(format!("boot/vmlinuz-{release}")),
            unpacked.join(format!("usr/lib/modules/{release}/vmlinuz")),
        ]
        .into_iter()
        .find(|path| path.is_file())
    };
    if vmlinuz().is_none() {
        // Debian unstable (7.x) splits the kernel: `linux-image-R` depends on
        // `linux-binary-R` (the image) and `linux-modules-R`; older suites ship both in
        // `linux-image-R` itself.
        let mut wanted = vec![package.to_string()];
        for part in ["linux-binary", "linux-modules"] {
            let name = format!("{part}-{release}");
            let mut show = Command::new("apt-cache");
            apt_options(&mut show);
            if show
                .args(["show", &name])
                .output()
                .is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
            {
                wanted.push(name);
            }
        }
        for name in &wanted {
            let mut download = Command::new("apt-get");
            apt_options(&mut download);
            util::run(download.current_dir(&dir).args(["download", name]))?;
            let deb = fs::read_dir(&dir)?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}_")))
                })
                .with_context(|| format!("apt-get download {name} left no .deb"))?;
            util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
        }
    }
    Ok(Kernel {
        vmlinuz: vmlinuz().with_context(|| format!("{package} unpacked without a vmlinuz"))?,
        // trixie and later ship them under /usr (merged /usr).
        modules: ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|dir| unpacked.join(dir).join(&release))
            .find(|dir| dir.exists())
            .with_context(|| format!("{package} has no lib/modules/{release}"))?,
        dir,
        release,
    })
}

/// `linux-image-6.1.0-48-amd64` → [6, 1, 0, 48]: newest last.
fn version_key(package: &str) -> Vec<u64> {
    package
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// The busybox initramfs with this kernel's modules, decompressed (busybox's insmod
/// takes plain `.ko`).
fn initramfs(kernel: &Kernel) -> anyhow::Result<PathBuf> {
    let tree = kernel.dir.join("initramfs");
    let _ = fs::remove_dir_all(&tree);
    for sub in ["bin", "modules", "proc", "sys", "dev"] {
        fs::create_dir_all(tree.join(sub))?;
    }
    let busybox = util::stdout(Command::new("sh").args(["-c", "command -v busybox"]))?;
    fs::copy(&busybox, tree.join("bin/busybox"))?;
    let mut files = Vec::new();
    collect_files(&kernel.modules.join("kernel"), &mut files)?;
    for stem in MODULES {
        let Some(file) = files.iter().find(|f| {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            name == format!("{stem}.ko") || name.starts_with(&format!("{stem}.ko."))
        }) else {
            continue;
        };
        let to = tree.join("modules").join(format!("{stem}.ko"));
        let name = file.to_string_lossy();
        let decompress = if name.ends_with(".xz") {
            Some("xz")
        } else if name.ends_with(".zst") {
            Some("zstd")
        } else {
            None
        };
        match decompress {
            Some(tool) => {
                let out = util::output(Command::new(tool).args(["-d", "-c"]).arg(file))?;
                fs::write(&to, out.stdout)?;
            }
            None => {
                fs::copy(file, &to)?;
            }
        }
    }
    let init = tree.join("init");
    fs::write(&init, INIT)?;
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let image = kernel
        .dir
        .join(format!("initramfs-{}.cpio.gz", kernel.release));
    util::run(Command::new("sh").current_dir(&tree).arg("-c").arg(format!(
        "find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > {}",
        image.display()
    )))?;
    Ok(image)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Boots `kernel` and runs each test binary in it: (test, "pass …" / "FAIL …").
fn boot(
    root: &Path,
    args: &KernelsArgs,
    kernel: &Kernel,
    initrd: &Path,
    binaries: &[(String, PathBuf)],
    accel: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let out = kernel.dir.join("out");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out)?;
    let newest = go::ensure(go::NEWEST)?;
    // The guest reads the host's files live over 9p: a rebuild on the host while a guest
    // runs would swap goprobe or a test binary under it (seen as SIGSEGVs). It runs
    // copies instead, with the workload `goprobe verify` looks for beside goprobe.
    let bin = kernel.dir.join("bin");
    let _ = fs::remove_dir_all(&bin);
    fs::create_dir_all(&bin)?;
    for name in ["goprobe", "goprobe-workload"] {
        let from = root.join("target/debug").join(name);
        if from.exists() {
            fs::copy(&from, bin.join(name)).with_context(|| format!("copying {name}"))?;
        }
    }
    let quote = |p: &Path| format!("'{}'", p.display());
    let harness: String = args
        .harness_args
        .iter()
        .map(|a| format!(" '{a}'"))
        .collect();
    // The guest mounts a tmpfs of its own on /tmp, where the tests make their files; a
    // workspace under the host's /tmp (a CI clone) is bound back in from where the init
    // script kept the host's /tmp.
    let mut script = match root.strip_prefix("/tmp") {
        Ok(inside) => format!(
            "mkdir -p {root} && mount --bind {kept} {root}\n",
            root = quote(root),
            kept = quote(&Path::new("/goprobe-host-tmp").join(inside)),
        ),
        Err(_) => String::new(),
    };
    script += &format!(
        "cd {}\nexport GOPROBE_BIN={} GOPROBE_FIXTURES={} GOPROBE_GO_RELEASES={} \
         GOPROBE_TRACECOUNT={} GOPROBE_TRACE_GO={} GOCACHE={} GOPATH={}\n\
         uname -r > /goprobe-out/uname\n",
        quote(root),
        quote(&bin.join("goprobe")),
        quote(&root.join("target/fixtures")),
        go::NEWEST,
        quote(&root.join("target/tools/tracecount")),
        quote(&newest.go),
        // The host's caches, through the overlay: `go tool trace` is already built there,
        // and building it again under TCG takes minutes.
        quote(&root.join("target/go-cache")),
        quote(&root.join("target/go-path")),
    );
    for test in &args.tests {
        let (_, built) = binaries
            .iter()
            .find(|(name, _)| name == test)
            .expect("built above");
        let exe = &bin.join(test);
        fs::copy(built, exe).with_context(|| format!("copying {}", built.display()))?;
        script += &format!(
            "start=$(date +%s); {} --test-threads=1{harness} > /goprobe-out/{test}.log 2>&1; \
             echo \"$? $(( $(date +%s) - start ))\" > /goprobe-out/{test}.rc\n",
            quote(exe)
        );
    }
    fs::write(out.join("run.sh"), script)?;

    let console = kernel.dir.join("console.log");
    let started = Instant::now();
    eprintln!(
        "xtask: booting {} ({accel}); console in {}",
        kernel.release,
        console.display()
    );
    let mut qemu = Command::new("timeout");
    qemu.arg(format!("{}m", args.timeout_minutes))
        .arg("qemu-system-x86_64")
        .args(["-accel", accel, "-smp"])
        .arg(args.smp.to_string())
        .arg("-m")
        .arg(args.memory_mib.to_string())
        .args(["-nographic", "-no-reboot", "-net", "none"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(if args.debug_console {
            "console=ttyS0 rdinit=/init panic=-1 loglevel=7 softlockup_panic=1 \
             sysctl.kernel.panic_on_rcu_stall=1 hung_task_panic=1 hung_task_timeout_secs=120"
        } else {
            "console=ttyS0 rdinit=/init panic=-1 quiet"
        })
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs",
        ])
        .arg(format!(
            "local,path={},mount_tag=out,security_model=none",
            out.display()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&console)?)
        .stderr(std::process::Stdio::inherit());
    let host_before = HostCpu::now();
    let status = qemu.status().context("starting qemu-system-x86_64")?;
    let elapsed = started.elapsed();
    let contention = host_before.other_work_share(elapsed);
    eprintln!(
        "xtask: {} finished after {:.0} s ({status}); other work on the host took {:.0}% \
         of its CPUs meanwhile",
        kernel.release,
        elapsed.as_secs_f64(),
        contention * 100.0
    );
    // The guest's clock is the host's: a vCPU the host does not run for a while looks, in
    // the guest, like a thread stalled for that long, and bounds on handoffs fail.
    let busy_host = (contention > BUSY_HOST_SHARE).then(|| {
        format!(
            "; the host was busy with other work ({:.0}% of its CPUs): timing bounds may \
             not hold",
            contention * 100.0
        )
    });
    let uname = fs::read_to_string(out.join("uname")).unwrap_or_default();
    if uname.trim() != kernel.release {
        bail!(
            "the guest never ran the tests (uname {:?}); see {}",
            uname.trim(),
            console.display()
        );
    }
    let mut results = Vec::new();
    for test in &args.tests {
        let rc = fs::read_to_string(out.join(format!("{test}.rc"))).unwrap_or_default();
        let mut parts = rc.split_whitespace();
        let outcome = match (parts.next(), parts.next()) {
            (Some("0"), Some(secs)) => format!("pass ({secs} s)"),
            (Some(code), Some(secs)) => {
                let log = out.join(format!("{test}.log"));
                print_failures(&log);
                format!("FAIL (exit {code}, {secs} s; {})", log.display())
            }
            _ => format!(
                "FAIL (did not finish within {} min)",
                Duration::from_secs(args.timeout_minutes * 60).as_secs() / 60
            ),
        };
        let outcome = match (&busy_host, outcome.starts_with("pass")) {
            (Some(busy), false) => outcome + busy,
            _ => outcome,
        };
        results.push((test.clone(), outcome));
    }
    Ok(results)
}

/// Above this share of the host's CPU capacity taken by other processes while a guest
/// ran, a guest test's failure is flagged as possibly the host's doing.
const BUSY_HOST_SHARE: f64 = 0.10;

/// The host's busy CPU time and what qemu (a waited-for descendant) used, to tell how much
/// other work competed with the guest's vCPUs.
struct HostCpu {
    busy_s: f64,
    children_s: f64,
}

impl HostCpu {
    fn now() -> HostCpu {
        HostCpu {
            busy_s: host_busy_seconds(),
            children_s: children_cpu_seconds(),
        }
    }

    /// The share of the host's CPU capacity over `elapsed` that went to processes other
    /// than the guest (0 when /proc/stat cannot be read).
    fn other_work_share(&self, elapsed: Duration) -> f64 {
        let busy = host_busy_seconds() - self.busy_s;
        let guest = children_cpu_seconds() - self.children_s;
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        ((busy - guest) / (elapsed.as_secs_f64() * cpus)).max(0.0)
    }
}

/// Non-idle CPU time of the whole host since boot (/proc/stat's `cpu` line: everything
/// but idle and iowait, in USER_HZ ticks).
fn host_busy_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let busy: f64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, t)| t)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy / hz
}

/// User and system time of this process's waited-for children and their descendants.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one rusage; zeroed is a valid one.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Prints what a failed test binary said about its failures, so that a CI log shows the
/// cause without the guest's output directory.
fn print_failures(log: &Path) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    // libtest prints "failures:" twice: the first starts the panics' output.
    let from = lines
        .iter()
        .position(|l| l.trim() == "failures:")
        .unwrap_or(lines.len().saturating_sub(80));
    eprintln!("xtask: ---- {} ----", log.display());
    for line in lines[from..].iter().take(200) {
        eprintln!("{line}");
    }
    eprintln!("xtask: ---- end of {} ----", log.display());
}
