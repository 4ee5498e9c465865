//! Just enough of the kernel's BTF (`/sys/kernel/btf/vmlinux`) to find a struct member's
//! byte offset: the raw `signal_generate` tracepoint reads `task_struct.pid` from its
//! `task` argument, and that offset depends on the kernel's build.
//!
//! Format: `include/uapi/linux/btf.h` — a header, then the type section (each type a
//! `btf_type` and its kind-specific trailer) and the string section.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF data (bad magic or truncated header)")]
    BadHeader,
    #[error("truncated or malformed type section at byte {0}")]
    Malformed(usize),
    #[error("struct {0} not found")]
    NoStruct(String),
    #[error("member {member} of struct {ty} not found")]
    NoMember { ty: String, member: String },
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

/// One type's header and where its trailer starts.
struct Type {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    trailer: usize,
}

/// The types of one BTF blob, indexed by type id (id 0 is `void`).
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    index: Vec<Type>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Btf<'a>, BtfError> {
        let header = |at| u32_at(data, at).ok_or(BtfError::BadHeader);
        if data.get(0..2) != Some(&MAGIC.to_le_bytes()[..]) {
            return Err(BtfError::BadHeader);
        }
        let hdr_len = header(4)? as usize;
        let (type_off, type_len) = (header(8)? as usize, header(12)? as usize);
        let (str_off, str_len) = (header(16)? as usize, header(20)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .ok_or(BtfError::BadHeader)
        };
        let types = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let mut index = vec![Type {
            name_off: 0,
            kind: 0,
            vlen: 0,
            kind_flag: false,
            trailer: 0,
        }];
        let mut at = 0;
        while at < types.len() {
            let (Some(name_off), Some(info)) = (u32_at(types, at), u32_at(types, at + 4)) else {
                return Err(BtfError::Malformed(at));
            };
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let trailer = at + 12;
            // Trailer sizes per kind (btf.h): INT 4, ARRAY 12, STRUCT/UNION 12*vlen,
            // ENUM 8*vlen, FUNC_PROTO 8*vlen, VAR 4, DATASEC 12*vlen, DECL_TAG 4,
            // ENUM64 12*vlen; the rest none.
            let size = match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen,
                6 | 13 => 8 * vlen,
                0 | 2 | 7..=12 | 16 | 18 => 0,
                _ => return Err(BtfError::Malformed(at)),
            };
            index.push(Type {
                name_off,
                kind,
                vlen,
                kind_flag: info >> 31 != 0,
                trailer,
            });
            at = trailer + size;
        }
        if at != types.len() {
            return Err(BtfError::Malformed(at));
        }
        Ok(Btf {
            types,
            strings,
            index,
        })
    }

    fn name(&self, off: u32) -> &'a [u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())]
    }

    /// Byte offset of `member` in `struct ty`, looking inside anonymous struct and union
    /// members too (where layout randomisation groups fields).
    pub fn member_offset(&self, ty: &str, member: &str) -> Result<u32, BtfError> {
        let id = self
            .index
            .iter()
            .position(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == ty.as_bytes())
            .ok_or_else(|| BtfError::NoStruct(ty.to_owned()))?;
        self.find_member(id, member.as_bytes(), 0, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember {
                ty: ty.to_owned(),
                member: member.to_owned(),
            })
    }

    fn find_member(&self, id: usize, member: &[u8], base_bits: u32, depth: u32) -> Option<u32> {
        let t = self.index.get(id)?;
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) || depth > 8 {
            return None;
        }
        for i in 0..t.vlen {
            let at = t.trailer + 12 * i;
            let (name_off, type_id, offset) = (
                u32_at(self.types, at)?,
                u32_at(self.types, at + 4)?,
                u32_at(self.types, at + 8)?,
            );
            // With kind_flag the low 24 bits are the bit offset (bitfield size above).
            let bits = base_bits
                + if t.kind_flag {
                    offset & 0xff_ffff
                } else {
                    offset
                };
            let name = self.name(name_off);
            if name == member {
                return Some(bits);
            }
            if name.is_empty()
                && let Some(found) =
                    self.find_member(self.resolve(type_id as usize), member, bits, depth + 1)
            {
                return Some(found);
            }
        }
        None
    }

    /// Follows typedefs and qualifiers (kinds 8–11) to the type they name.
    fn resolve(&self, mut id: usize) -> usize {
        for _ in 0..16 {
            match self.index.get(id) {
                Some(t) if (8..=11).contains(&t.kind) => {
                    id = u32_at(self.types, t.trailer - 4).unwrap_or(0) as usize;
                }
                _ => break,
            }
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `struct task_struct { int state; struct { int x; int pid; }; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0task_struct\0state\0x\0pid\0";
        let name = |s: &[u8]| {
            strings
                .windows(s.len() + 1)
                .position(|w| &w[..s.len()] == s && w[s.len()] == 0)
                .unwrap() as u32
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend(w.to_le_bytes()));
        // 1: int (kind 1), size 4, encoding trailer.
        push(&[name(b"int"), 1 << 24, 4, 32]);
        // 2: anonymous struct { int x @0; int pid @32 bits }.
        push(&[0, (4 << 24) | 2, 8, name(b"x"), 1, 0, name(b"pid"), 1, 32]);
        // 3: struct task_struct { int state @0; anon @64 bits }.
        push(&[
            name(b"task_struct"),
            (4 << 24) | 2,
            16,
            name(b"state"),
            1,
            0,
            0,
            2,
            64,
        ]);
        let mut out = Vec::new();
        for word in [
            0x0001_eb9f_u32,
            24,
            0,
            types.len() as u32,
            types.len() as u32,
        ] {
            out.extend(word.to_le_bytes());
        }
        out.extend((strings.len() as u32).to_le_bytes());
        out.extend(&types);
        out.extend(strings);
        out
    }

    #[test]
    fn finds_direct_and_nested_members() {
        let data = blob();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("task_struct", "state"), Ok(0));
        assert_eq!(btf.member_offset("task_struct", "pid"), Ok(12));
        assert!(matches!(
            btf.member_offset("task_struct", "tgid"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("mm_struct", "pid"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0u8; 64]).is_err());
        let mut data = blob();
        data.truncate(40);
        assert!(Btf::parse(&data).is_err());
    }

    #[test]
    fn reads_this_kernels_task_struct() {
        // Every kernel goprobe supports has BTF; where this one lacks it the test says so.
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            panic!("/sys/kernel/btf/vmlinux unreadable: this host has no kernel BTF");
        };
        let pid = Btf::parse(&data)
            .unwrap()
            .member_offset("task_struct", "pid")
            .unwrap();
        let tgid = Btf::parse(&data)
            .unwrap()
            .member_offset("task_struct", "tgid")
            .unwrap();
        assert_eq!(tgid, pid + 4, "pid and tgid are adjacent pid_t fields");
    }
}
