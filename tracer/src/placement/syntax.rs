//! A small Go-assembler-syntax printer (what `go tool objdump` shows), for the attach report.
//! iced-x86's formatters are left out to keep the dependency to its decoder.

use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

fn reg(r: Register) -> String {
    use Register::*;
    let s = match r {
        RAX | EAX => "AX",
        RBX | EBX => "BX",
        RCX | ECX => "CX",
        RDX | EDX => "DX",
        RSI | ESI => "SI",
        RDI | EDI => "DI",
        RSP | ESP => "SP",
        RBP | EBP => "BP",
        AL => "AL",
        BL => "BL",
        CL => "CL",
        DL => "DL",
        RIP => "IP",
        FS => "FS",
        GS => "GS",
        _ => {
            let d = format!("{r:?}");
            // R8..R15 (and R8D...): keep the number.
            if let Some(n) = d.strip_prefix('R') {
                let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
                if !digits.is_empty() {
                    return format!("R{digits}");
                }
            }
            return d;
        }
    };
    s.to_string()
}

fn hex(v: i64) -> String {
    if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

fn operand(ins: &Instruction, i: u32) -> String {
    match ins.op_kind(i) {
        OpKind::Register => reg(ins.op_register(i)),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            format!("{:#x}", ins.near_branch_target())
        }
        OpKind::Memory => {
            let mut s = String::new();
            if ins.segment_prefix() != Register::None {
                s.push_str(&reg(ins.segment_prefix()));
                s.push(':');
            }
            let disp = ins.memory_displacement64() as i64;
            if ins.memory_base() == Register::RIP {
                return format!("{:#x}(IP)", ins.memory_displacement64());
            }
            if disp != 0 || ins.memory_base() == Register::None {
                s.push_str(&hex(disp));
            }
            if ins.memory_base() != Register::None {
                s.push_str(&format!("({})", reg(ins.memory_base())));
            }
            if ins.memory_index() != Register::None {
                s.push_str(&format!(
                    "({}*{})",
                    reg(ins.memory_index()),
                    ins.memory_index_scale()
                ));
            }
            s
        }
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => format!("${}", hex(ins.immediate(i) as i64)),
        k => format!("{k:?}"),
    }
}

fn q_suffix(ins: &Instruction) -> &'static str {
    let q = matches!(
        ins.code(),
        Code::Push_r64
            | Code::Pop_r64
            | Code::Cmp_r64_rm64
            | Code::Cmp_rm64_r64
            | Code::Cmp_rm64_imm8
            | Code::Cmp_rm64_imm32
            | Code::Mov_r64_rm64
            | Code::Mov_rm64_r64
            | Code::Mov_rm64_imm32
            | Code::Mov_r64_imm64
            | Code::Lea_r64_m
            | Code::Sub_rm64_imm8
            | Code::Sub_rm64_imm32
            | Code::Add_rm64_imm8
            | Code::Add_rm64_imm32
            | Code::Test_rm64_r64
            | Code::Xor_rm64_r64
            | Code::Xor_r64_rm64
    );
    if q { "Q" } else { "" }
}

/// `PUSHQ BP`, `CMPQ SP, 0x10(R14)`, `JBE 0x43ea27`, `MOVQ 0x8(AX), AX`.
pub fn go(ins: &Instruction) -> String {
    let m = ins.mnemonic();
    let mut name = match m {
        Mnemonic::Nop => "NOPL".to_string(),
        _ => format!("{m:?}").to_uppercase(),
    };
    name.push_str(q_suffix(ins));
    // Go syntax lists the operands source first, except for CMP.
    let mut ops: Vec<String> = (0..ins.op_count()).map(|i| operand(ins, i)).collect();
    if m != Mnemonic::Cmp {
        ops.reverse();
    }
    if ops.is_empty() || m == Mnemonic::Nop {
        name
    } else {
        format!("{name} {}", ops.join(", "))
    }
}
