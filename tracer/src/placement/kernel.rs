//! What the x86-64 uprobe code of Linux 6.18 does with the instruction under a probe, from
//! its raw bytes: the decision of `arch_uprobe_analyze_insn()` in
//! `arch/x86/kernel/uprobes.c`.
//!
//! ```text
//! uprobe_init_insn()        decode; refuse ES/CS/SS/DS and LOCK prefixes (is_prefix_bad)
//!                           and opcodes outside good_insns_64 / good_2byte_insns
//! branch_setup_xol_ops()    -> branch_xol_ops.emulate = branch_emulate_op
//!     insn->length <= ASM_NOP_MAX && !memcmp(insn, x86_nops[insn->length], length)  (NOP1..8;
//!                                         NOP9..11 carry a CS prefix and are refused above)
//!     0x90 (prefix* + nop)
//!     0xeb jmp rel8, 0xe9 jmp rel32, 0xe8 call rel32,
//!     0x70..0x7f jcc rel8, 0x0f 0x80..0x8f jcc rel32
//!     any of the branches with a 0x66 prefix: -ENOTSUPP (the probe cannot be registered)
//! push_setup_xol_ops()      -> push_xol_ops.emulate = push_emulate_op
//!     0x50..0x57 alone (push rax..rdi), or 0x41 0x50..0x57 (push r8..r15); nothing else
//!     (48 55 = REX.W push rbp is single-stepped)
//! everything else           -> default_xol_ops: copied to the XOL page and single-stepped
//! ```
//!
//! 6.18 also has the uprobe *optimization* (`arch_uprobe_optimize`, `sys_uprobe`): a probe on
//! a 5-byte NOP (`0f 1f 44 00 00`, `can_optimize()`) that does not cross a page is rewritten
//! into a `call` to a per-process trampoline after its first hit, so later hits take no trap
//! at all. Go never emits that NOP at a function start, so goprobe cannot use it.
//!
//! Emulation of `mov` and `sub` (and optimizing on top of emulated instructions) were posted
//! as an RFC in November 2025, after 6.18: not in this kernel (`/proc/kallsyms` has
//! `push_emulate_op` and `branch_emulate_op`, no `mov_emulate_op`/`sub_emulate_op`).

/// How the kernel executes the probed instruction after the handlers ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelHandling {
    /// `push_emulate_op`: the value is stored below RSP by `copy_to_user`, RSP and RIP moved.
    EmulatedPush,
    /// `branch_emulate_op` on a NOP (a jump of 0).
    EmulatedNop {
        /// A 5-byte NOP: 6.18 may optimize the probe into a call (no trap at all).
        optimizable: bool,
    },
    /// `branch_emulate_op`: `jmp`, `call` (pushes the return address) or `jcc`.
    EmulatedBranch,
    /// `default_xol_ops`: executed out of line with TF set, a second trap.
    SingleStep,
    /// `arch_uprobe_analyze_insn` fails: the probe cannot be registered here.
    Refused,
}

impl KernelHandling {
    pub fn is_emulated(self) -> bool {
        matches!(
            self,
            Self::EmulatedPush | Self::EmulatedNop { .. } | Self::EmulatedBranch
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::EmulatedPush => "emulated (push)",
            Self::EmulatedNop { optimizable: true } => "emulated (nop5; optimizable)",
            Self::EmulatedNop { optimizable: false } => "emulated (nop)",
            Self::EmulatedBranch => "emulated (branch)",
            Self::SingleStep => "single-stepped out of line",
            Self::Refused => "refused by the kernel",
        }
    }
}

/// `x86_nops[]` for 64-bit (arch/x86/include/asm/nops.h, BYTES_NOP1..BYTES_NOP8). NOP9..11
/// start with 0x2e (CS), which `is_prefix_bad()` refuses before this table is consulted.
const X86_NOPS: [&[u8]; 9] = [
    &[],
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

fn is_legacy_prefix(b: u8) -> bool {
    matches!(
        b,
        0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3
    )
}

/// The kernel's treatment of the instruction whose bytes are exactly `insn` (one
/// instruction; use a decoder to find its length).
pub fn kernel_handling(insn: &[u8]) -> KernelHandling {
    if insn.is_empty() {
        return KernelHandling::Refused;
    }
    let npfx = insn.iter().take_while(|&&b| is_legacy_prefix(b)).count();
    let prefixes = &insn[..npfx];
    // is_prefix_bad(): ES, CS, SS, DS segment overrides and LOCK.
    if prefixes
        .iter()
        .any(|b| matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0xf0))
    {
        return KernelHandling::Refused;
    }
    let rest = &insn[npfx..];
    let (rex, op) = match rest.first() {
        Some(&b) if (0x40..=0x4f).contains(&b) => (Some(b), &rest[1..]),
        _ => (None, rest),
    };
    let Some(&opc1) = op.first() else {
        return KernelHandling::Refused;
    };
    // Refusals that matter near a prologue (int3, int, hlt, syscall, ...); the full
    // good_insns_64 table is not reproduced.
    if matches!(opc1, 0xcc | 0xcd | 0xce | 0xf1 | 0xf4 | 0xfa | 0xfb)
        || (opc1 == 0x0f && matches!(op.get(1), Some(0x05 | 0x07 | 0x0b | 0x34 | 0x35)))
    {
        return KernelHandling::Refused;
    }

    // branch_setup_xol_ops()
    let len = insn.len();
    if len < X86_NOPS.len() && insn == X86_NOPS[len] {
        return KernelHandling::EmulatedNop {
            optimizable: len == 5,
        };
    }
    let has_66 = prefixes.contains(&0x66);
    if opc1 == 0x90 && rex.is_none() {
        // `case 0x90: goto setup` (prefix* + nop), before the 0x66 check.
        return KernelHandling::EmulatedNop { optimizable: false };
    }
    let cond_short = |o: u8| (0x70..=0x7f).contains(&o);
    let is_branch = match opc1 {
        0xeb | 0xe9 | 0xe8 => true,
        0x0f => op
            .get(1)
            .is_some_and(|&o2| cond_short(o2.wrapping_sub(0x10))),
        o => cond_short(o),
    };
    if is_branch {
        return if has_66 {
            KernelHandling::Refused
        } else {
            KernelHandling::EmulatedBranch
        };
    }

    // push_setup_xol_ops()
    if (0x50..=0x57).contains(&opc1) {
        if len == 1 || (len == 2 && rex == Some(0x41) && npfx == 0) {
            return KernelHandling::EmulatedPush;
        }
        return KernelHandling::SingleStep;
    }
    KernelHandling::SingleStep
}

#[cfg(test)]
mod tests {
    use super::KernelHandling::*;
    use super::*;

    #[test]
    fn go_prologue_instructions() {
        assert_eq!(kernel_handling(&[0x49, 0x3b, 0x66, 0x10]), SingleStep); // CMPQ SP, 16(R14)
        assert_eq!(kernel_handling(&[0x76, 0x54]), EmulatedBranch); // JBE rel8
        assert_eq!(kernel_handling(&[0x0f, 0x86, 1, 2, 0, 0]), EmulatedBranch); // JBE rel32
        assert_eq!(kernel_handling(&[0x55]), EmulatedPush); // PUSHQ BP
        assert_eq!(kernel_handling(&[0x48, 0x89, 0xe5]), SingleStep); // MOVQ SP, BP
        assert_eq!(kernel_handling(&[0x48, 0x83, 0xec, 0x30]), SingleStep); // SUBQ $0x30, SP
        assert_eq!(kernel_handling(&[0x4c, 0x8d, 0x64, 0x24, 0x80]), SingleStep); // LEAQ -0x80(SP), R12
        assert_eq!(kernel_handling(&[0x4d, 0x3b, 0x66, 0x10]), SingleStep); // CMPQ R12, 16(R14)
        assert_eq!(kernel_handling(&[0x49, 0x89, 0xe4]), SingleStep); // MOVQ SP, R12
        assert_eq!(kernel_handling(&[0x0f, 0x82, 0, 0, 0, 0]), EmulatedBranch); // JB rel32
        assert_eq!(kernel_handling(&[0x90]), EmulatedNop { optimizable: false }); // inline mark
    }

    #[test]
    fn pushes() {
        for r in 0x50..=0x57 {
            assert_eq!(kernel_handling(&[r]), EmulatedPush);
            assert_eq!(kernel_handling(&[0x41, r]), EmulatedPush);
        }
        assert_eq!(kernel_handling(&[0x48, 0x55]), SingleStep); // REX.W push rbp
        assert_eq!(kernel_handling(&[0x66, 0x55]), SingleStep); // pushw bp
        assert_eq!(kernel_handling(&[0xff, 0x75, 0x08]), SingleStep); // push [rbp+8]
    }

    #[test]
    fn nops_and_branches() {
        assert_eq!(
            kernel_handling(&[0x0f, 0x1f, 0x44, 0x00, 0x00]),
            EmulatedNop { optimizable: true }
        );
        assert_eq!(
            kernel_handling(&[0x66, 0x90]),
            EmulatedNop { optimizable: false }
        );
        assert_eq!(
            kernel_handling(&[0x0f, 0x1f, 0x00]),
            EmulatedNop { optimizable: false }
        );
        assert_eq!(
            kernel_handling(&[0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0]),
            Refused
        );
        assert_eq!(kernel_handling(&[0xe8, 0, 0, 0, 0]), EmulatedBranch);
        assert_eq!(kernel_handling(&[0xeb, 0x10]), EmulatedBranch);
        assert_eq!(kernel_handling(&[0x66, 0xe8, 0, 0]), Refused);
        assert_eq!(kernel_handling(&[0xff, 0xd0]), SingleStep); // call rax
        assert_eq!(kernel_handling(&[0xc3]), SingleStep); // ret
        assert_eq!(kernel_handling(&[0xcc]), Refused);
    }
}
