//! Empty on purpose: the programs live in the `goprobe-ebpf` binary (`main.rs`), built
//! for `bpfel-unknown-none` by `tracer/build.rs`.
#![no_std]
