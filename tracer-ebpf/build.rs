//! Rebuild when `bpf-linker` changes: the crate has an undeclared dependency on it.
use which::which;

fn main() {
    // Only meaningful for the BPF target; on the host this crate is never linked.
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
