//! Types and names shared by goprobe's kernel side (`tracer-ebpf`) and its user side
//! (`tracer`).
//!
//! Everything that crosses the kernel/user boundary is defined here once: map, program
//! and global names, the wire records the BPF programs submit to the ring buffers, and
//! the configuration userspace writes into maps and globals.
//!
//! Wire-record rules: `#[repr(C)]`, explicit padding, only integer fields (no `bool`,
//! `Option` or enums — their invalid bit patterns would be undefined behaviour on the
//! user side), a compile-time size assertion, and every record starts with
//! [`EventHeader`]. `aya::Pod` impls exist only under the `user` feature.
#![no_std]

pub mod config;
pub mod names;
pub mod records;

pub use config::*;
pub use records::*;
