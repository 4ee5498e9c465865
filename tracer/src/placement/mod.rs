//! Where to put a uprobe in a Go (linux/amd64) function so that the kernel *emulates* the
//! probed instruction instead of single-stepping it out of line, without changing what the
//! probe sees (the argument registers, R14, RSP, `[RSP]` = return address, and RBP).
//!
//! A uprobe replaces the first byte of an instruction with `int3`. When it fires, the kernel
//! runs the handlers and then has to execute the displaced instruction. For most instructions
//! it copies them to the per-process XOL page and single-steps them (a second trap: `#DB`),
//! which costs several microseconds. A few it emulates in the `int3` handler itself
//! (`arch/x86/kernel/uprobes.c`, see [`kernel`]): on 6.18 that is `push reg`, NOPs and
//! relative `jmp`/`call`/`jcc`. A Go function's first instruction is the stack-bound check
//! `CMPQ SP, 16(R14)` — single-stepped. Its `PUSHQ BP`, right after the check, is emulated.
//!
//! [`placement`] decodes the function prologue (with `iced-x86`, decoder only) and returns
//! the first instruction that
//! 1. every call executes exactly once (the check's slow path calls `morestack` and jumps
//!    back to the *entry*, so the check and its `JBE` may run twice; `PUSHQ BP` runs once),
//! 2. sees the same argument registers (RAX, RBX, RCX, RDI, RSI, R8–R11), R14, RSP, RBP and
//!    `[RSP]` as the entry (only `CMP`, `LEA/MOV/SUB` into the scratch R12 and the check's
//!    forward conditional branches may precede it), and
//! 3. the kernel emulates,
//!
//! or the entry, with the reason, when there is none.

pub mod kernel;
mod syntax;

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

pub use kernel::{KernelHandling, kernel_handling};

/// Where the uprobe goes, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Bytes from the function's entry (0 = the entry itself).
    pub offset: u64,
    /// Why this instruction (for the attach report).
    pub reason: &'static str,
    /// The probed instruction, in Go assembler syntax (`PUSHQ BP`).
    pub instruction: String,
}

impl Placement {
    pub fn is_entry(&self) -> bool {
        self.offset == 0
    }
}

/// Reasons, as constants so callers and tests can match on them.
pub mod reasons {
    pub const AFTER_SMALL_CHECK: &str = "after stack check: PUSHQ BP (emulated)";
    pub const AFTER_LARGE_CHECK: &str = "after large-frame stack check: PUSHQ BP (emulated)";
    pub const AFTER_HUGE_CHECK: &str = "after huge-frame stack check: PUSHQ BP (emulated)";
    pub const ENTRY_PUSH_NOSPLIT: &str = "entry: PUSHQ BP, no stack check (nosplit; emulated)";
    pub const ENTRY_EMULATED: &str = "entry: first instruction is emulated";
    pub const ENTRY_NO_FRAME: &str =
        "entry: no safe emulated instruction (no frame pointer push after the prologue)";
    pub const ENTRY_CLOBBERS: &str =
        "entry: no safe emulated instruction (prologue writes a register the probe reads)";
    pub const ENTRY_BRANCH_INTO: &str =
        "entry: no safe emulated instruction (a branch lands between entry and PUSHQ BP)";
    pub const ENTRY_STUB: &str = "entry: no safe emulated instruction (stack-check slow path does not re-enter at the entry)";
    pub const ENTRY_UNDECODABLE: &str = "entry: no safe emulated instruction (cannot decode)";
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug)]
struct Insn {
    ip: u64,
    len: usize,
    instr: Instruction,
}

impl Insn {
    fn end(&self) -> u64 {
        self.ip + self.len as u64
    }
    /// Target of a direct (relative) jump, jcc or call.
    fn branch_target(&self) -> Option<u64> {
        (0..self.instr.op_count())
            .any(|i| {
                matches!(
                    self.instr.op_kind(i),
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
                )
            })
            .then(|| self.instr.near_branch_target())
    }
}

/// Linear sweep from the entry; stops at the first undecodable (or truncated) instruction.
fn decode(code: &[u8], entry: u64) -> Vec<Insn> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let instr = decoder.decode();
        if instr.is_invalid() {
            break;
        }
        out.push(Insn {
            ip: instr.ip(),
            len: instr.len(),
            instr,
        });
    }
    out
}

/// What one prologue instruction before `PUSHQ BP` is, if it is one Go emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// `CMPQ SP|R12, 16(R14)` (stackguard0) or `24(R14)` (stackguard1, `//go:systemstack`).
    GuardCmp { via_r12: bool },
    /// `LEAQ -n(SP), R12` (large frame).
    LeaR12,
    /// `MOVQ SP, R12` (huge frame).
    MovSpR12,
    /// `SUBQ $n, R12` (huge frame).
    SubR12,
    /// `JBE`/`JLS` after the compare, or `JB`/`JCS` after the huge-frame subtraction.
    CheckBranch { target: u64, after_sub: bool },
}

const G_REG: Register = Register::R14;
/// Go's REGENTRYTMP0: the only register the amd64 prologue may write before `PUSHQ BP`.
const PROLOGUE_TMP: Register = Register::R12;

fn classify(i: &Insn) -> Option<Step> {
    let ins = &i.instr;
    let guard_mem = |op: u32| {
        ins.op_kind(op) == OpKind::Memory
            && ins.memory_base() == G_REG
            && ins.memory_index() == Register::None
            && matches!(ins.memory_displacement64(), 16 | 24)
            && ins.segment_prefix() == Register::None
    };
    match ins.code() {
        Code::Cmp_r64_rm64
            if matches!(ins.op0_register(), Register::RSP | PROLOGUE_TMP) && guard_mem(1) =>
        {
            Some(Step::GuardCmp {
                via_r12: ins.op0_register() == PROLOGUE_TMP,
            })
        }
        Code::Lea_r64_m
            if ins.op0_register() == PROLOGUE_TMP
                && ins.memory_base() == Register::RSP
                && ins.memory_index() == Register::None =>
        {
            Some(Step::LeaR12)
        }
        Code::Mov_rm64_r64 | Code::Mov_r64_rm64
            if ins.op_kind(0) == OpKind::Register
                && ins.op_kind(1) == OpKind::Register
                && ins.op0_register() == PROLOGUE_TMP
                && ins.op1_register() == Register::RSP =>
        {
            Some(Step::MovSpR12)
        }
        Code::Sub_rm64_imm8 | Code::Sub_rm64_imm32
            if ins.op_kind(0) == OpKind::Register && ins.op0_register() == PROLOGUE_TMP =>
        {
            Some(Step::SubR12)
        }
        Code::Jbe_rel8_64 | Code::Jbe_rel32_64 => Some(Step::CheckBranch {
            target: ins.near_branch_target(),
            after_sub: false,
        }),
        Code::Jb_rel8_64 | Code::Jb_rel32_64 => Some(Step::CheckBranch {
            target: ins.near_branch_target(),
            after_sub: true,
        }),
        _ => None,
    }
}

/// A direct `JMP`/`CALL` (iced's `is_jmp_short_or_near` needs the `instr_info` feature).
fn is_direct(i: &Insn, m: Mnemonic) -> bool {
    i.instr.mnemonic() == m && i.branch_target().is_some()
}

fn is_push_rbp(i: &Insn) -> bool {
    i.instr.code() == Code::Push_r64 && i.instr.op0_register() == Register::RBP && i.len == 1
}

/// The stack-check shapes `cmd/internal/obj/x86.stacksplit` emits (identical in Go 1.21–1.27).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Small,
    Large,
    Huge,
}

fn shape_of(steps: &[Step]) -> Option<Shape> {
    use Step::*;
    match steps {
        [
            GuardCmp { via_r12: false },
            CheckBranch {
                after_sub: false, ..
            },
        ] => Some(Shape::Small),
        [
            LeaR12,
            GuardCmp { via_r12: true },
            CheckBranch {
                after_sub: false, ..
            },
        ] => Some(Shape::Large),
        [
            MovSpR12,
            SubR12,
            CheckBranch {
                after_sub: true, ..
            },
            GuardCmp { via_r12: true },
            CheckBranch {
                after_sub: false, ..
            },
        ] => Some(Shape::Huge),
        _ => None,
    }
}

/// A Go ABIInternal integer argument register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgRegister {
    Rax,
    Rbx,
    Rcx,
}

impl ArgRegister {
    /// The register and its narrower views (a write to any of them changes it).
    fn views(self) -> [Register; 5] {
        use Register::*;
        match self {
            ArgRegister::Rax => [RAX, EAX, AX, AL, AH],
            ArgRegister::Rbx => [RBX, EBX, BX, BL, BH],
            ArgRegister::Rcx => [RCX, ECX, CX, CL, CH],
        }
    }
}

/// An argument register loaded with a constant just before a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConstArg {
    pub register: ArgRegister,
    pub value: u64,
}

/// How far before a call its constant argument may be loaded (Go loads arguments right
/// before the call).
const ARG_LOAD_WINDOW: usize = 4;

/// The direct `CALL`s to `callee` in the function whose bytes (from its entry) are `code`:
/// their offsets from the entry. A uprobe on such a call sees the callee's arguments
/// already in their registers, and the kernel emulates `CALL rel32` (no single-step).
/// With `arg`, only the calls whose register is loaded with that constant by one of the
/// few instructions before, with no branch or other write of it in between.
pub fn call_sites(code: &[u8], entry: u64, callee: u64, arg: Option<ConstArg>) -> Vec<u64> {
    let insns = decode(code, entry);
    insns
        .iter()
        .enumerate()
        .filter(|(_, i)| is_direct(i, Mnemonic::Call) && i.branch_target() == Some(callee))
        .filter(|(_, i)| kernel_handling(&code[(i.ip - entry) as usize..][..i.len]).is_emulated())
        .filter(|(at, _)| arg.is_none_or(|arg| loads_constant(&insns[..*at], arg)))
        .map(|(_, i)| i.ip - entry)
        .collect()
}

/// Whether the last instructions of `before` set `arg.register` to `arg.value`.
fn loads_constant(before: &[Insn], arg: ConstArg) -> bool {
    for i in before.iter().rev().take(ARG_LOAD_WINDOW) {
        let ins = &i.instr;
        if i.branch_target().is_some() || matches!(ins.mnemonic(), Mnemonic::Ret | Mnemonic::Jmp) {
            return false;
        }
        if ins.op_count() == 0
            || ins.op0_kind() != OpKind::Register
            || !arg.register.views().contains(&ins.op0_register())
        {
            continue;
        }
        let immediate = matches!(
            ins.op1_kind(),
            OpKind::Immediate8
                | OpKind::Immediate16
                | OpKind::Immediate32
                | OpKind::Immediate64
                | OpKind::Immediate8to32
                | OpKind::Immediate8to64
                | OpKind::Immediate32to64
        );
        return ins.mnemonic() == Mnemonic::Mov && immediate && ins.immediate(1) == arg.value;
    }
    false
}

/// Where to put the uprobe for the function whose bytes (from its entry) are `code`.
///
/// `code` may be a window (say the first 64 bytes) or the whole function. With the whole
/// function every direct branch in it is checked not to land between the entry and the
/// chosen instruction, and the stack check's slow path is checked to end in a `JMP` back to
/// the entry; with a window only what the window holds can be checked (the rest is what the
/// Go compiler guarantees: the prologue is never a branch target and the `morestack` stub
/// always jumps back to the entry).
pub fn placement(code: &[u8], entry: u64) -> Placement {
    let insns = decode(code, entry);
    let Some(first) = insns.first() else {
        return Placement {
            offset: 0,
            reason: reasons::ENTRY_UNDECODABLE,
            instruction: String::new(),
        };
    };
    let entry_fallback = |reason_if_not_emulated: &'static str| {
        let bytes = &code[..first.len];
        let (reason, what) = if kernel_handling(bytes).is_emulated() {
            (reasons::ENTRY_EMULATED, syntax::go(&first.instr))
        } else {
            (reason_if_not_emulated, syntax::go(&first.instr))
        };
        Placement {
            offset: 0,
            reason,
            instruction: what,
        }
    };

    // NOSPLIT function with a frame: the entry is the push itself.
    if is_push_rbp(first) {
        return Placement {
            offset: 0,
            reason: reasons::ENTRY_PUSH_NOSPLIT,
            instruction: syntax::go(&first.instr),
        };
    }

    // Walk the stack check: every instruction up to PUSHQ BP must be one Go's prologue emits.
    let mut steps = Vec::new();
    let mut push = None;
    for (idx, i) in insns.iter().enumerate() {
        if is_push_rbp(i) {
            push = Some(idx);
            break;
        }
        match classify(i) {
            Some(step) => steps.push(step),
            None => {
                let push_follows = insns[idx..].iter().take(8).any(is_push_rbp);
                // Something else before any push: either a frameless function, or a
                // prologue that writes registers (ABI0: `MOVQ FS:-8, CX`). Nothing after it
                // sees the entry's registers for sure.
                let reason = if steps.is_empty() && !push_follows {
                    reasons::ENTRY_NO_FRAME
                } else {
                    reasons::ENTRY_CLOBBERS
                };
                return entry_fallback(reason);
            }
        }
    }
    let Some(push_idx) = push else {
        return entry_fallback(reasons::ENTRY_NO_FRAME);
    };
    let Some(shape) = shape_of(&steps) else {
        return entry_fallback(reasons::ENTRY_CLOBBERS);
    };
    let push_insn = insns[push_idx];

    // The check's branches must go forward, past the push (to the morestack stub at the
    // function's end), never into the prologue.
    let stub_targets: Vec<u64> = steps
        .iter()
        .filter_map(|s| match s {
            Step::CheckBranch { target, .. } => Some(*target),
            _ => None,
        })
        .collect();
    if stub_targets.iter().any(|&t| t <= push_insn.ip) {
        return entry_fallback(reasons::ENTRY_BRANCH_INTO);
    }
    let stub_start = *stub_targets.iter().min().expect("every shape has a branch");

    // No branch in what we were given lands inside (entry, push]; a branch to the entry is
    // only the morestack stub's re-entry.
    for i in &insns {
        let Some(t) = i.branch_target() else { continue };
        if t > entry && t <= push_insn.ip {
            return entry_fallback(reasons::ENTRY_BRANCH_INTO);
        }
        // A CALL to the entry is recursion (a new call); a JMP to it must be the stub's.
        if t == entry
            && !is_direct(i, Mnemonic::Call)
            && !(is_direct(i, Mnemonic::Jmp) && i.ip >= stub_start)
        {
            return entry_fallback(reasons::ENTRY_BRANCH_INTO);
        }
    }

    // If the stub is in view, it must be spills, a CALL (morestack), unspills and `JMP entry`.
    if let Some(start) = insns.iter().position(|i| i.ip == stub_start) {
        if !stub_reenters(&insns[start..], entry) {
            return entry_fallback(reasons::ENTRY_STUB);
        }
    } else if stub_start < insns.last().map_or(entry, Insn::end) {
        // The target is inside the decoded range but not on an instruction boundary.
        return entry_fallback(reasons::ENTRY_BRANCH_INTO);
    }

    let reason = match shape {
        Shape::Small => reasons::AFTER_SMALL_CHECK,
        Shape::Large => reasons::AFTER_LARGE_CHECK,
        Shape::Huge => reasons::AFTER_HUGE_CHECK,
    };
    debug_assert!(kernel_handling(&code[(push_insn.ip - entry) as usize..][..1]).is_emulated());
    Placement {
        offset: push_insn.ip - entry,
        reason,
        instruction: syntax::go(&push_insn.instr),
    }
}

/// The `morestack` stub: `MOVQ reg, n(SP)`… (spills), `CALL runtime.morestack*`,
/// `MOVQ n(SP), reg`… (unspills), `JMP entry`, with NOP padding. False if it does anything
/// else, or ends in a jump elsewhere. If the bytes end before the `JMP` (a window), it is
/// accepted when everything seen so far fits.
fn stub_reenters(stub: &[Insn], entry: u64) -> bool {
    let mut saw_call = false;
    for i in stub.iter().take(64) {
        let ins = &i.instr;
        if is_direct(i, Mnemonic::Call) {
            saw_call = true;
            continue;
        }
        if is_direct(i, Mnemonic::Jmp) {
            return saw_call && ins.near_branch_target() == entry;
        }
        let spill_or_unspill = (0..ins.op_count()).any(|k| ins.op_kind(k) == OpKind::Memory)
            && ins.memory_base() == Register::RSP
            && matches!(
                ins.mnemonic(),
                Mnemonic::Mov
                    | Mnemonic::Movzx
                    | Mnemonic::Movsd
                    | Mnemonic::Movss
                    | Mnemonic::Movups
                    | Mnemonic::Movaps
            );
        if !(spill_or_unspill || ins.mnemonic() == Mnemonic::Nop) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: u64 = 0x40_1000;

    #[test]
    fn finds_direct_calls_to_the_callee_only() {
        // MOVL $1, BX; CALL +0x10 (callee); CALL +0x20 (other); CALL AX (indirect)
        let mut code = vec![0xbb, 1, 0, 0, 0];
        let rel = |at: usize, target: u64| {
            let next = ENTRY + at as u64 + 5;
            (target.wrapping_sub(next) as u32).to_le_bytes()
        };
        let callee = ENTRY + 0x100;
        code.push(0xe8);
        code.extend(rel(5, callee));
        code.push(0xe8);
        code.extend(rel(10, ENTRY + 0x200));
        code.extend([0xff, 0xd0]);
        assert_eq!(call_sites(&code, ENTRY, callee, None), vec![5]);
        assert!(call_sites(&code, ENTRY, ENTRY + 0x300, None).is_empty());
        assert!(call_sites(&[], ENTRY, callee, None).is_empty());
    }

    /// suspendG's two calls to castogscanstatus (Go 1.21-1.27): `MOVL $0x2, BX; MOVL
    /// $0x1002, CX; CALL` for a running goroutine, `ORL $0x1000, CX; MOVL R9, BX; CALL` for
    /// the others. Only the first has CX = 0x1002.
    #[test]
    fn picks_the_call_by_its_constant_argument() {
        let callee = ENTRY + 0x100;
        let rel = |at: usize| {
            let next = ENTRY + at as u64 + 5;
            (callee.wrapping_sub(next) as u32).to_le_bytes()
        };
        let mut code = vec![0xbb, 0x02, 0, 0, 0, 0xb9, 0x02, 0x10, 0, 0, 0xe8];
        code.extend(rel(10));
        // ORL $0x1000, CX; MOVL R9, BX; CALL
        code.extend([0x81, 0xc9, 0x00, 0x10, 0, 0, 0x44, 0x89, 0xcb, 0xe8]);
        let second = code.len() - 1;
        code.extend(rel(second));
        assert_eq!(
            call_sites(&code, ENTRY, callee, None),
            vec![10, second as u64]
        );
        let running = ConstArg {
            register: ArgRegister::Rcx,
            value: 0x1002,
        };
        assert_eq!(call_sites(&code, ENTRY, callee, Some(running)), vec![10]);
        let other = ConstArg {
            register: ArgRegister::Rbx,
            value: 0x1002,
        };
        assert!(call_sites(&code, ENTRY, callee, Some(other)).is_empty());
    }

    /// CMPQ SP, 16(R14); JBE +0x1d; PUSHQ BP; MOVQ SP, BP; SUBQ $0x30, SP; ...; stub
    fn small_with_stub() -> Vec<u8> {
        let mut c = vec![
            0x49, 0x3b, 0x66, 0x10, // cmp rsp,[r14+0x10]
            0x76, 0x10, // jbe +0x10 -> 0x16
            0x55, // push rbp
            0x48, 0x89, 0xe5, // mov rbp,rsp
            0x48, 0x83, 0xec, 0x30, // sub rsp,0x30
            0x48, 0x83, 0xc4, 0x30, // add rsp,0x30
            0x5d, // pop rbp
            0xc3, // ret
            0x90, 0x90, // pad to 0x16
        ];
        assert_eq!(c.len(), 0x16);
        // stub at 0x16: mov [rsp+8],rax; call rel32; mov rax,[rsp+8]; jmp entry
        c.extend_from_slice(&[0x48, 0x89, 0x44, 0x24, 0x08]);
        c.extend_from_slice(&[0xe8, 0, 0, 0, 0]);
        c.extend_from_slice(&[0x48, 0x8b, 0x44, 0x24, 0x08]);
        let jmp_ip = c.len() as i64;
        let rel = -(jmp_ip + 2);
        c.extend_from_slice(&[0xeb, rel as i8 as u8]);
        c
    }

    #[test]
    fn small_frame_places_push() {
        let p = placement(&small_with_stub(), ENTRY);
        assert_eq!(p.offset, 6);
        assert_eq!(p.reason, reasons::AFTER_SMALL_CHECK);
        assert_eq!(p.instruction, "PUSHQ BP");
    }

    #[test]
    fn window_without_stub_still_places_push() {
        let code = small_with_stub();
        let p = placement(&code[..0x14], ENTRY);
        assert_eq!(p.offset, 6);
    }

    #[test]
    fn stub_that_does_not_reenter_falls_back() {
        let mut code = small_with_stub();
        let n = code.len();
        code[n - 1] = code[n - 1].wrapping_add(1); // jmp entry+1
        let p = placement(&code, ENTRY);
        assert!(p.is_entry());
    }

    #[test]
    fn branch_into_prologue_falls_back() {
        let mut code = small_with_stub();
        // replace `add rsp,0x30` with `jmp` back to the push (entry+6): eb xx
        // at offset 14: jmp rel8 to 6 => rel = 6 - 16 = -10
        code[14] = 0xeb;
        code[15] = (-10i8) as u8;
        code[16] = 0x90;
        code[17] = 0x90;
        let p = placement(&code, ENTRY);
        assert!(p.is_entry(), "{p:?}");
        assert_eq!(p.reason, reasons::ENTRY_BRANCH_INTO);
    }

    #[test]
    fn backward_check_branch_falls_back() {
        // cmp; jbe -6 (to entry); push rbp
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0xfa, 0x55, 0x48, 0x89, 0xe5];
        let p = placement(&code, ENTRY);
        assert!(p.is_entry());
    }

    #[test]
    fn nosplit_push_is_entry() {
        let code = [0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10];
        let p = placement(&code, ENTRY);
        assert_eq!(p.offset, 0);
        assert_eq!(p.reason, reasons::ENTRY_PUSH_NOSPLIT);
    }

    #[test]
    fn abi0_tls_g_load_falls_back() {
        // MOVQ FS:-8, CX; CMPQ SP, 16(CX); JBE; PUSHQ BP
        let code = [
            0x64, 0x48, 0x8b, 0x0c, 0x25, 0xf8, 0xff, 0xff, 0xff, 0x48, 0x3b, 0x61, 0x10, 0x76,
            0x40, 0x55,
        ];
        let p = placement(&code, ENTRY);
        assert!(p.is_entry());
        assert_eq!(p.reason, reasons::ENTRY_CLOBBERS);
    }

    #[test]
    fn arg_register_write_before_push_falls_back() {
        // cmp rsp,[r14+16]; mov rax, rbx; jbe; push rbp
        let code = [0x49, 0x3b, 0x66, 0x10, 0x48, 0x89, 0xd8, 0x76, 0x40, 0x55];
        let p = placement(&code, ENTRY);
        assert!(p.is_entry());
        assert_eq!(p.reason, reasons::ENTRY_CLOBBERS);
    }

    #[test]
    fn frameless_leaf_falls_back() {
        // MOVQ 8(AX), AX; RET
        let code = [0x48, 0x8b, 0x40, 0x08, 0xc3];
        let p = placement(&code, ENTRY);
        assert!(p.is_entry());
        assert_eq!(p.reason, reasons::ENTRY_NO_FRAME);
        assert_eq!(p.instruction, "MOVQ 0x8(AX), AX");
    }

    #[test]
    fn frameless_jmp_entry_is_emulated() {
        let code = [0xe9, 0, 0, 0, 0];
        let p = placement(&code, ENTRY);
        assert!(p.is_entry());
        assert_eq!(p.reason, reasons::ENTRY_EMULATED);
    }

    #[test]
    fn empty_is_entry() {
        assert_eq!(placement(&[], ENTRY).reason, reasons::ENTRY_UNDECODABLE);
    }
}
